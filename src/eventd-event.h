/* SPDX-License-Identifier: MIT */
/*
 * From a Socket.IO event to a D-Bus signal: which member, which id, which
 * payload string. Pure, so that it can be unit-tested and fuzzed alone.
 */
#pragma once

#include <json-c/json.h>

struct event_kind {
        const char *event;      /* Samdock's event name */
        const char *member;     /* the D-Bus signal */
        const char *id_key;     /* the entity's own key, after _id and id */
        const char *id_arg;     /* the signal's first argument name */
};

/* The known events, in the order of the D-Bus contract; NULL-terminated. */
extern const struct event_kind event_kinds[];

/* The kind for an event name, or NULL (then the signal is Event). */
const struct event_kind *event_kind_find(const char *name);

struct sio_event_view;

struct event_signal {
        const struct event_kind *kind;  /* NULL: Event(stream, name, payload) */
        const char *name;               /* the event name, owned by the packet or below */
        char *name_owned;               /* for the fast path, which has no packet */
        char *id;                       /* "" when the payload names none */
        char *payload;                  /* compact JSON */
};

/*
 * Maps a decoded EVENT array ["name", args...] (offset already removed).
 * The payload is the single argument; "null" when there is none, and a JSON
 * array of all arguments when there are several. The id is the payload's
 * "_id", else "id", else the kind's own key, as a string (numbers in their
 * JSON form), or the payload itself when it is a string or number; "" when
 * there is none or it is not valid for D-Bus.
 * -EBADMSG when the array is not an event or the payload is not valid
 * UTF-8 for D-Bus; -ENOMEM.
 */
int event_map(json_object *event, struct event_signal *ret);
void event_signal_release(struct event_signal *s);

/*
 * The same from a zero-copy view (the fast path), with n_args arguments
 * (the recovery offset already left out). Gives exactly what event_map()
 * gives for the same packet, or -EAGAIN where only the slow path can (ids
 * with escapes, several arguments, names over 255 bytes).
 */
int event_map_view(const struct sio_event_view *v, size_t n_args, struct event_signal *ret);

/* The id rule alone, for other payloads (browse replies, imports). */
char *event_payload_id(json_object *payload, const char *own_key);
