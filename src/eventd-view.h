/* SPDX-License-Identifier: MIT */
/*
 * Zero-copy views of Socket.IO EVENT packets: the fast path for the common
 * case. Building json-c objects, writing them out again and freeing them
 * costs about half of the daemon's work per event; when an event's JSON is
 * already compact and written the way json-c would write it, slices of the
 * frame are the very same text. Anything else is -EAGAIN: not an error,
 * only a sign to take the slow path (sio_decode()), which decides.
 * Pure: no allocation, no I/O.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SIO_VIEW_MAX_ARGS 4

struct sio_event_view {
        int64_t ack_id;                 /* SIO_NO_ACK_ID when absent */
        const char *name;               /* the event name, no escapes, not NUL-terminated */
        size_t name_len;
        size_t n_args;                  /* arguments after the name */
        const char *arg[SIO_VIEW_MAX_ARGS];
        size_t arg_len[SIO_VIEW_MAX_ARGS];
};

/*
 * Views msg (the data of an Engine.IO MESSAGE) when it is an EVENT on the
 * main namespace, `2[ack id]["name",args...]`, whose whole text is
 * valid UTF-8 and valid JSON in canonical compact form: no blank outside
 * strings; in strings only the escapes \" \\ \b \f \n \r \t and lower-case
 * \u00XX for the other control characters except \u0000; integers of at
 * most 18 digits and never -0; nesting at most 32 deep; no key twice in
 * an object, at most 64 keys in one; a name without escapes; at most
 * SIO_VIEW_MAX_ARGS arguments. -EAGAIN otherwise.
 */
int sio_event_view(const char *msg, size_t len, struct sio_event_view *ret);

/* The value of key at the top level of the object text obj[0..len) (from a
 * view, so known to be valid and compact, and without a key twice: the first
 * match is the only one). False when absent or obj is no object. */
bool json_view_member(const char *obj, size_t len, const char *key, const char **ret,
                      size_t *ret_len);

/* True when a string value (quotes included) has no escapes, so that its
 * content is the slice between the quotes. */
bool json_view_is_plain_string(const char *value, size_t len);
