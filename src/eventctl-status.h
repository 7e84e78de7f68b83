/* SPDX-License-Identifier: MIT */
/*
 * What samdock-eventctl reads of the daemon's properties: the main object's
 * and each stream's, and how the status command lays them out.
 */
#pragma once

#include <stdint.h>
#include <stdio.h>
#include <systemd/sd-bus.h>

struct daemon_status {
        char *version, *state;
        char **watched_imports;
        uint64_t token_expiry, events_emitted, events_dropped;
};

struct stream_status {
        char *name, *url, *state, *last_error;
        uint64_t since, next_retry, events_received;
        uint32_t reconnects;
};

/* Reads an a{sv} (GetAll's reply, PropertiesChanged's changes) into d;
 * what it does not hold stays as it was. */
int daemon_status_read(sd_bus_message *m, struct daemon_status *d);
void daemon_status_release(struct daemon_status *d);

/* Reads GetManagedObjects' reply: every object with the stream interface,
 * sorted by name. */
int stream_status_read_all(sd_bus_message *m, struct stream_status **ret, size_t *ret_n);
void stream_status_free_all(struct stream_status *streams, size_t n);

/* Writes the status command's output; now is CLOCK_REALTIME in µs. */
void status_print(FILE *f, const struct daemon_status *d, const struct stream_status *streams,
                  size_t n, uint64_t now);
