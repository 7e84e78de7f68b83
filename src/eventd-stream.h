/* SPDX-License-Identifier: MIT */
/*
 * One Socket.IO connection to one path of the server ("activities",
 * "import"): its state, its timers, and reconnecting with backoff. The
 * WebSocket is its link (eventd-link.h); the Engine.IO handshake and
 * heartbeat, the Socket.IO CONNECT and connection state recovery run in its
 * session (eventd-session.h). The stream knows
 * nothing of D-Bus or of what the events mean; it hands decoded events and
 * acks to its owner through stream_ops.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>
#include <json-c/json.h>

#include "eventd-backoff.h"
#include "eventd-codec.h"
#include "eventd-view.h"

struct lws_context;
struct stream;

enum stream_state {
        STREAM_IDLE,            /* not wanted (the import stream with no watches) */
        STREAM_CONNECTING,
        STREAM_CONNECTED,
        STREAM_BACKOFF,
        STREAM_AUTH_FAILED,
        STREAM_STOPPED,         /* shutting down */
        _STREAM_STATE_MAX,
};

const char *stream_state_to_string(enum stream_state s);

/* Why an incoming frame was dropped; each is counted and logged at a rate. */
enum stream_drop {
        STREAM_DROP_MALFORMED,  /* not Engine.IO / Socket.IO */
        STREAM_DROP_OVERSIZE,   /* bigger than MaxEventSize= */
        STREAM_DROP_BINARY,     /* a binary frame or event, which has no D-Bus form */
        STREAM_DROP_INVALID,    /* valid packet, payload not fit for D-Bus */
        STREAM_DROP_NO_ROOM,    /* replayed before the CONNECT reply, beyond what is kept */
        _STREAM_DROP_MAX,
};

struct stream_ops {
        /* The namespace answered CONNECT: send subscriptions now. recovered
         * tells whether the server replayed what was missed. */
        void (*connected)(struct stream *s, bool recovered, uint64_t offline_usec,
                          bool first, void *userdata);
        /* An EVENT; the recovery offset is already stripped from p->data. */
        void (*event)(struct stream *s, struct sio_packet *p, void *userdata);
        /* The fast path: an EVENT seen as slices of the frame, with n_args
         * arguments (the offset left out). -EAGAIN hands it back, and it
         * comes again, decoded, through event(). */
        int (*event_view)(struct stream *s, const struct sio_event_view *v, size_t n_args,
                          void *userdata);
        /* An ACK to one of our emits. */
        void (*ack)(struct stream *s, int64_t ack_id, json_object *args, void *userdata);
        /* The link went down (also for a connection that never came up); any
         * emits waiting for an answer will not get one. */
        void (*disconnected)(struct stream *s, void *userdata);
        /* State or a property changed. */
        void (*changed)(struct stream *s, void *userdata);
        /* A frame was dropped. */
        void (*dropped)(struct stream *s, enum stream_drop why, void *userdata);
        /* The backoff is over: false holds the connect (the token is being
         * fetched) until the owner calls stream_start(). NULL: always go. */
        bool (*may_connect)(struct stream *s, void *userdata);
};

struct stream_settings {
        const char *host;
        uint16_t port;
        bool tls;
        const char *path;               /* Socket.IO path with trailing '/' */
        unsigned engine_io;             /* 3 or 4 */
        size_t max_event_size;
        uint64_t initial_delay_usec;
        uint64_t max_delay_usec;
};

int stream_new(struct stream **ret, const char *name, sd_event *event,
               const struct stream_ops *ops, void *userdata);
struct stream *stream_free(struct stream *s);

/* (Re)configures; takes effect at the next connect. */
int stream_configure(struct stream *s, const struct stream_settings *settings);
/* The lws context to connect through; NULL detaches (drops the link). */
void stream_set_lws(struct stream *s, struct lws_context *lws);
/* The bearer token for CONNECT's auth object; copied, NULL for none. */
int stream_set_token(struct stream *s, const char *token);

/* Wanted: connect now if idle, held, or auth-failed; a backoff delay
 * that is still running is kept. */
int stream_start(struct stream *s);
/* Not wanted: drop the link, go idle. */
void stream_stop(struct stream *s);
/* Drop the link and connect again at once with the backoff reset. */
int stream_reconnect(struct stream *s);
/* The server refused our credentials: stop retrying until the token changes. */
void stream_auth_failed(struct stream *s, const char *why);
/* Drop the link on purpose (a protocol error seen by the owner) and back off. */
void stream_fail(struct stream *s, const char *why);

/* Queues `42[...]` with name and arg; ack_id SIO_NO_ACK_ID for none.
 * -ENOTCONN unless connected. */
int stream_emit(struct stream *s, const char *name, json_object *arg, int64_t ack_id);
/* A fresh ack id for stream_emit. */
int64_t stream_next_ack_id(struct stream *s);

/* Stop or resume reading from the socket (backpressure from the bus). */
void stream_pause(struct stream *s, bool pause);

/* Accessors for the bus objects. */
const char *stream_name(const struct stream *s);
enum stream_state stream_state(const struct stream *s);
const char *stream_url(const struct stream *s);
const char *stream_last_error(const struct stream *s);
uint64_t stream_since(const struct stream *s);          /* CLOCK_REALTIME µs */
uint64_t stream_next_retry(const struct stream *s);     /* CLOCK_REALTIME µs, 0 none */
uint32_t stream_reconnects(const struct stream *s);
uint64_t stream_events_received(const struct stream *s);
