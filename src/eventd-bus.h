/* SPDX-License-Identifier: MIT */
/*
 * The D-Bus face of the daemon: the app.samdock.Events object, one
 * app.samdock.Events.Stream object per stream, signals, and coalesced
 * PropertiesChanged. Method calls go to the owner through bus_ops; the owner
 * writes state into bus_state() and calls bus_changed() / bus_stream_changed().
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "eventd-config.h"
#include "eventd-event.h"

#define BUS_NAME "app.samdock.Events"
#define BUS_PATH "/app/samdock/Events"
#define BUS_INTERFACE "app.samdock.Events"
#define BUS_STREAM_INTERFACE "app.samdock.Events.Stream"
#define BUS_STREAMS_PATH BUS_PATH "/streams"

#define BUS_ERROR_NOT_CONNECTED "app.samdock.Events.Error.NotConnected"
#define BUS_ERROR_TIMEOUT "app.samdock.Events.Error.Timeout"
#define BUS_ERROR_INVALID_ARGUMENT "app.samdock.Events.Error.InvalidArgument"
#define BUS_ERROR_AUTH_FAILED "app.samdock.Events.Error.AuthFailed"
#define BUS_ERROR_SERVER_ERROR "app.samdock.Events.Error.ServerError"

struct stream;
struct bus;

enum bus_browse {
        BUS_BROWSE_PERSON,
        BUS_BROWSE_ORGANIZATION,
};

struct bus_ops {
        /* Takes a reference on call and answers it later; or fails. */
        int (*browse)(void *userdata, enum bus_browse kind, const char *id,
                      sd_bus_message *call, sd_bus_error *error);
        int (*watch_import)(void *userdata, const char *id, sd_bus_error *error);
        int (*unwatch_import)(void *userdata, const char *id, sd_bus_error *error);
        int (*reconnect)(void *userdata, sd_bus_error *error);
        int (*reload)(void *userdata, sd_bus_error *error);
        /* logind says the machine woke up: links are probably dead. */
        void (*resumed)(void *userdata);
};

/* The main object's properties; the owner writes them, then calls bus_changed(). */
struct bus_state {
        const char *state;
        char **watched_imports;         /* NULL-terminated */
        uint64_t token_expiry;
        uint64_t events_emitted;
        uint64_t events_dropped;
};

enum bus_change {
        BUS_CHANGE_STATE = 1 << 0,
        BUS_CHANGE_WATCHED_IMPORTS = 1 << 1,
        BUS_CHANGE_TOKEN_EXPIRY = 1 << 2,
        BUS_CHANGE_COUNTERS = 1 << 3,   /* sent at most once a second */
};

int bus_new(struct bus **ret, sd_event *event, enum config_bus kind,
            const struct bus_ops *ops, void *userdata);
struct bus_state *bus_state(struct bus *b);
struct bus *bus_free(struct bus *b);

/* Publishes a stream object; before bus_acquire_name(). */
int bus_add_stream(struct bus *b, struct stream *s);
/* Takes the well-known name; everything must be in place by then. */
int bus_acquire_name(struct bus *b);

int bus_emit_event(struct bus *b, const char *stream, const struct event_signal *sig);
int bus_emit_resumed(struct bus *b, const char *stream, bool recovered, uint64_t offline_usec);

/* Marks properties as changed; PropertiesChanged goes out once per loop
 * turn for states and at most once a second for counters. */
void bus_changed(struct bus *b, enum bus_change what);
void bus_stream_changed(struct bus *b, struct stream *s, bool counters_only);

/* Messages waiting to be written to the bus (for backpressure). */
uint64_t bus_queued(struct bus *b);
sd_bus *bus_get(struct bus *b);

/* Checks an entity id from a caller: non-empty, at most 128 printable ASCII
 * characters without spaces. */
bool bus_id_is_valid(const char *id);
