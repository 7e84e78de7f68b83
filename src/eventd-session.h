/* SPDX-License-Identifier: MIT */
/*
 * The Engine.IO / Socket.IO session of one stream, without the socket: the
 * handshake, the heartbeat deadlines, the namespace CONNECT and connection
 * state recovery. It reads the server's text frames and tells its stream
 * what to do with the link (send, close, ...); events, acks and dropped
 * frames go to the stream through session_ops.
 * Pure: no I/O, no logging, no clock; `now` is CLOCK_BOOTTIME µs, given.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <json-c/json.h>

#include "eventd-codec.h"
#include "eventd-view.h"

struct session;

/* Why a frame was dropped. */
enum session_drop {
        SESSION_DROP_MALFORMED, /* not Engine.IO / Socket.IO, or out of place */
        SESSION_DROP_OVERSIZE,  /* a message bigger than the largest allowed */
        SESSION_DROP_BINARY,    /* a binary frame or event, which has no JSON-only form */
        SESSION_DROP_NO_ROOM,   /* an event before the CONNECT reply, beyond what is kept */
};

struct session_ops {
        /* An EVENT; the recovery offset is already stripped from p->data. */
        void (*event)(struct session *session, struct sio_packet *p, void *userdata);
        /* The fast path: an EVENT as slices of the frame, n_args arguments
         * (the offset left out). -EAGAIN hands it back for event(). */
        int (*event_view)(struct session *session, const struct sio_event_view *v,
                          size_t n_args, void *userdata);
        /* An ACK to one of our emits. */
        void (*ack)(struct session *session, int64_t ack_id, json_object *args, void *userdata);
        /* A frame was dropped. */
        void (*dropped)(struct session *session, enum session_drop why, void *userdata);
};

/* What the stream must do with its link after a frame or a deadline. */
enum session_action {
        SESSION_CONTINUE,       /* nothing (re-arm the liveness timer if result.rearm) */
        SESSION_SEND,           /* queue result.frame; if that fails, close with result.why */
        SESSION_OPENED,         /* Engine.IO is open: re-arm, send session_encode_connect() */
        SESSION_CONNECTED,      /* the namespace answered CONNECT: result.recovered says
                                 * whether the server replayed what was missed; re-arm,
                                 * then session_release_early() */
        SESSION_CLOSE,          /* drop the link for result.why; result.slow_retry */
        SESSION_AUTH_FAILED,    /* the server refused the credentials, result.why */
};

struct session_result {
        bool rearm;             /* a deadline moved: see session_next_deadline() */
        bool recovered;
        bool slow_retry;        /* a mismatch that retrying soon will not heal */
        unsigned early_lost;    /* SESSION_CONNECTED: events before it that found no room
                                 * (then recovered is false) */
        char frame[160];
        char why[256];
};

/* Engine.IO 4 and messages up to 1 MiB until configured otherwise. */
int session_new(struct session **ret, const struct session_ops *ops, void *userdata);
struct session *session_free(struct session *session);

/* engine_io: 3 or 4. Takes effect at once. */
void session_configure(struct session *session, unsigned engine_io, size_t max_event_size);
unsigned session_engine_io(const struct session *session);

/* A link starts: the handshake is due within 20 s from now. */
void session_begin(struct session *session, uint64_t now);
/* The link is gone: forget what belonged to it. The recovery state (pid and
 * offset) and the ack ids carry over to the next link. */
void session_end(struct session *session);
/* No recovery on the next link: it starts afresh. */
void session_forget_recovery(struct session *session);

/* A piece of a WebSocket message from the server, as it arrives: binary
 * says what kind of message (looked at on its first piece), final marks its
 * last piece. The message is read once it is complete; one bigger than
 * max_event_size is dropped, so are binary ones (the attachments of a
 * binary packet without being counted again). */
enum session_action session_receive(struct session *session, const char *data, size_t len,
                                    bool binary, bool final, uint64_t now,
                                    struct session_result *ret);
/* After SESSION_CONNECTED: hands over the events that came before the
 * CONNECT reply (a recovering server replays missed packets first). Stops
 * when an event handler ends the link. */
void session_release_early(struct session *session);

/* The liveness timer fired: SESSION_CLOSE when a deadline passed, SESSION_SEND
 * for the client's ping (Engine.IO 3), else SESSION_CONTINUE. */
enum session_action session_tick(struct session *session, uint64_t now,
                                 struct session_result *ret);
/* When session_tick() is due next; 0 for never. */
uint64_t session_next_deadline(const struct session *session);

/* CONNECT with the auth object (token, and pid and offset to recover); *ret
 * is NULL for Engine.IO 3, whose servers need none. The frame may carry the
 * token: wipe it before freeing it. */
int session_encode_connect(struct session *session, const char *token, char **ret);
/* An EVENT from us; -ENOTCONN before the CONNECT reply. */
int session_encode_emit(const struct session *session, const char *name, json_object *arg,
                        int64_t ack_id, char **ret);
/* A fresh ack id for session_encode_emit(). */
int64_t session_next_ack_id(struct session *session);

/* The query that asks the Socket.IO path for a WebSocket of this Engine.IO
 * version; snprintf's return. */
int session_format_query(const struct session *session, char *buf, size_t size);
/* What the link cannot know: why a server of another Engine.IO version ends
 * a link. Each is a mismatch that retrying soon will not heal; NULL when the
 * protocol has nothing to say. The upgrade was refused with http_status: */
const char *session_explain_refusal(const struct session *session, unsigned http_status);
/* The server closed an upgraded WebSocket before the session was connected
 * (the handshake never came): */
const char *session_explain_early_close(const struct session *session);

bool session_open_seen(const struct session *session);
bool session_connected(const struct session *session);
uint64_t session_ping_interval_usec(const struct session *session);
uint64_t session_ping_timeout_usec(const struct session *session);
/* The recovery state: "" when the server gave no pid, or no event since. */
const char *session_pid(const struct session *session);
const char *session_offset(const struct session *session);
