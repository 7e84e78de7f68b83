/* SPDX-License-Identifier: MIT */
/*
 * Engine.IO (v3 and v4) and Socket.IO (v4 and v5 protocol) packet codec.
 *
 * Pure: no I/O, no logging, no global state. Decoders take one WebSocket text
 * frame (one Engine.IO packet per frame, as the WebSocket transport sends)
 * and never read past the given length; buffers need not be NUL-terminated.
 * Every function returns 0 or a negative errno; -EBADMSG means malformed input.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <json-c/json.h>

enum eio_type {
        EIO_OPEN = 0,
        EIO_CLOSE = 1,
        EIO_PING = 2,
        EIO_PONG = 3,
        EIO_MESSAGE = 4,
        EIO_UPGRADE = 5,
        EIO_NOOP = 6,
};

/* One Engine.IO packet; data points into the decoded frame (not copied). */
struct eio_packet {
        enum eio_type type;
        const char *data;
        size_t len;
};

/* Parses the type digit of a text frame. Empty frames and unknown types are
 * -EBADMSG. */
int eio_decode(const char *frame, size_t len, struct eio_packet *ret);

/* The handshake (`0{...}`) fields this client needs. */
struct eio_open {
        char sid[64];
        uint64_t ping_interval_ms;
        uint64_t ping_timeout_ms;
        uint64_t max_payload;           /* 0 when the server did not say */
};

/* Parses the JSON of an open packet (the part after `0`). sid, pingInterval
 * and pingTimeout are required; pingInterval and pingTimeout must be positive
 * and at most one day; an over-long sid is -EBADMSG. */
int eio_open_parse(const char *data, size_t len, struct eio_open *ret);

enum sio_type {
        SIO_CONNECT = 0,
        SIO_DISCONNECT = 1,
        SIO_EVENT = 2,
        SIO_ACK = 3,
        SIO_CONNECT_ERROR = 4,
        SIO_BINARY_EVENT = 5,
        SIO_BINARY_ACK = 6,
};

#define SIO_NO_ACK_ID (-1)
#define SIO_NSP_MAX 256

/*
 * One Socket.IO packet, decoded from the data of an Engine.IO MESSAGE:
 *   <type>[<attachments>-][<namespace>,][<ack id>][<JSON>]
 * nsp is "/" when absent. data is the parsed JSON (owned, may be NULL when
 * the packet had none). The JSON must be valid UTF-8 and consume the rest of
 * the packet exactly. Shape rules, all -EBADMSG when broken:
 *   EVENT, BINARY_EVENT: a non-empty array whose first element is a string
 *   ACK, BINARY_ACK: an array, and an ack id is present
 *   CONNECT: absent, or an object
 *   CONNECT_ERROR: an object, or a string (Socket.IO v2 servers), or absent
 *   DISCONNECT: no data
 *   BINARY_*: an attachment count (0 < n <= 1000) is present; other types
 *   have none
 * Ack ids are decimal, at most 15 digits.
 */
struct sio_packet {
        enum sio_type type;
        unsigned attachments;
        char nsp[SIO_NSP_MAX];
        int64_t ack_id;                 /* SIO_NO_ACK_ID when absent */
        json_object *data;
};

int sio_decode(const char *msg, size_t len, struct sio_packet *ret);
/* Releases ret->data; safe on a zeroed or already released packet. */
void sio_packet_release(struct sio_packet *p);

/* For an EVENT: the event name (first element). NULL otherwise. The string
 * belongs to p->data. */
const char *sio_event_name(const struct sio_packet *p);

/*
 * Connection state recovery: when a pid was given in the CONNECT reply the
 * server appends the offset as the last argument of each EVENT. This removes
 * it from p->data (which must be an EVENT with at least one argument after
 * the name, the last one a string) and copies it to ret_offset (at most
 * offset_size bytes including the NUL). -EBADMSG when there is no such
 * argument or it is too long.
 */
int sio_event_take_offset(struct sio_packet *p, char *ret_offset, size_t offset_size);

/* The fields of a CONNECT reply (`40{"sid":..,"pid":..}`). sid is required
 * (its absence means a Socket.IO v2 server: -EPROTO); pid is optional and
 * empty when absent. */
struct sio_connect_reply {
        char sid[64];
        char pid[64];
};
int sio_connect_reply_parse(const struct sio_packet *p, struct sio_connect_reply *ret);

/*
 * Encoders. Each returns a newly allocated, NUL-terminated complete
 * WebSocket text frame, Engine.IO MESSAGE prefix included (e.g. `42[...]`),
 * via ret; the caller frees it. nsp NULL or "/" means the main namespace.
 *
 * sio_encode_connect: `40`, with the auth object when it is not NULL
 *   (Engine.IO 4 clients always send one; v2 servers take none).
 * sio_encode_event: `42[<nsp>,][<ack id>]["name",arg]`, arg may be NULL
 *   (then no argument). ack_id SIO_NO_ACK_ID for none.
 */
int sio_encode_connect(const char *nsp, json_object *auth, char **ret);
int sio_encode_event(const char *nsp, int64_t ack_id, const char *name, json_object *arg,
                     char **ret);

/* True when s[0..len) is well-formed UTF-8 without NUL bytes (what D-Bus
 * accepts for a string). */
bool utf8_is_valid(const char *s, size_t len);
/* Turns each byte of the C string s that does not start a well-formed
 * character into '?', for text from outside (a helper's stderr, a library's
 * message) that must fit in a D-Bus string. NULL is fine. */
void utf8_scrub(char *s);
/* The character starting the C string s: its length (1 to 4), and its code
 * point in *ret; 0 when no well-formed character starts there (a NUL
 * included). */
size_t utf8_decode(const char *s, uint32_t *ret);
/* Besides the C0 controls and DEL, what a terminal or log viewer acts on
 * rather than shows: the C1 controls (U+009B is CSI, as ESC [ is), the line
 * and paragraph separators, and the bidi embeddings, overrides and isolates,
 * which can make a line display in another order than it was sent
 * ("Trojan Source"). */
bool unicode_is_invisible_control(uint32_t c);
