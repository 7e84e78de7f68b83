/* SPDX-License-Identifier: MIT */
/*
 * Browse calls waiting for the server: BrowseActivitiesByPerson and
 * ...ByOrganization are answered asynchronously, by an ACK to their emit or
 * by a same-named event, whichever comes first, or fail on a timeout or
 * when the link goes. Owns the waiting sd-bus calls and their timers.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>
#include <json-c/json.h>

#include "eventd-bus.h"

#define BROWSE_MAX_WAITING 256

struct browses;

int browses_new(struct browses **ret, sd_event *event);
/* Answers every waiting call with NotConnected first. NULL is fine. */
struct browses *browses_free(struct browses *b);

/* The Socket.IO event a browse emits (and that may answer it). */
const char *browse_event_name(enum bus_browse kind);
/* The id field of that emit. */
const char *browse_id_key(enum bus_browse kind);

/* Keeps call (referenced) until answered; -EBUSY when too many wait. */
int browses_add(struct browses *b, enum bus_browse kind, const char *id, int64_t ack_id,
                sd_bus_message *call, uint64_t timeout_usec);
/* Drops the one just added again (its emit failed); the caller answers. */
void browses_cancel(struct browses *b, int64_t ack_id);

/* An ACK: answers the call with that ack id. False when none waits. */
bool browses_take_ack(struct browses *b, int64_t ack_id, json_object *args);
/* A same-named event ["activities-by-person", reply...]: answers the call
 * whose id it names, or the oldest when it names none. False otherwise. */
bool browses_take_event(struct browses *b, const char *name, json_object *event);

/* Fails the oldest call, or all of them, with a D-Bus error. */
bool browses_fail_oldest(struct browses *b, const char *error, const char *message);
void browses_fail_all(struct browses *b, const char *error, const char *message);
size_t browses_waiting(const struct browses *b);
