/* SPDX-License-Identifier: MIT */
/*
 * A Socket.IO client connection over libwebsockets. It owns one WebSocket
 * at a time; every lws callback checks that it comes from that WebSocket and
 * ignores the rest, so a superseded connection can never touch the state.
 * All connecting goes through the one retry timer, never from inside an lws
 * callback, so there is exactly one reconnect pending at any time. Liveness
 * deadlines run on CLOCK_BOOTTIME so a suspend counts as time passed.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/random.h>
#include <libwebsockets.h>

#include "eventd-log.h"
#include "eventd-time.h"
#include "eventd-stream.h"

/* Events that come before the CONNECT reply (a recovering server replays
 * missed packets first) wait for it; this many at most. */
#define EARLY_EVENTS_MAX 10000
/* From the first byte to the namespace's CONNECT reply. */
#define HANDSHAKE_TIMEOUT_USEC (20 * USEC_PER_SEC)

struct frame {
        struct frame *next;
        size_t len;
        unsigned char data[];   /* LWS_PRE bytes of room, then the frame */
};

struct stream {
        char *name;
        sd_event *event;
        const struct stream_ops *ops;
        void *userdata;

        /* settings */
        char *host;
        uint16_t port;
        bool tls;
        char *path;
        char *url;
        unsigned engine_io;
        size_t max_event_size;
        char *token;

        struct lws_context *lws;
        struct lws *wsi;                /* the one current connection, or NULL */
        bool in_connect;                /* inside lws_client_connect_via_info() */
        char *connect_error;            /* what lws said while we were inside it */

        enum stream_state state;
        bool wanted;
        struct backoff backoff;
        sd_event_source *retry_timer;
        sd_event_source *alive_timer;

        /* Engine.IO and Socket.IO session */
        bool ws_established;            /* the WebSocket upgrade succeeded */
        bool open_seen;
        bool namespace_connected;
        uint64_t ping_interval_usec, ping_timeout_usec;
        uint64_t handshake_deadline, watchdog_deadline, ping_due, pong_deadline;
        char pid[64];
        char offset[64];
        bool sent_pid;
        int64_t next_ack_id;
        unsigned skip_attachments;
        json_object **early;            /* events before the CONNECT reply */
        size_t n_early;
        bool paused;

        /* receive buffer for one message that may come in pieces */
        char *rx;
        size_t rx_len, rx_cap;
        bool rx_in_message, rx_binary, rx_oversize;

        struct frame *out_head, *out_tail;

        /* for the bus */
        char *last_error;
        uint64_t since;                 /* realtime */
        uint64_t next_retry;            /* realtime */
        uint64_t connected_at;          /* boottime */
        uint64_t offline_since;         /* boottime, 0 when never online */
        bool ever_connected;
        uint32_t reconnects;
        uint64_t events_received;
        bool slow_retry;                /* next delay is the longest one */
        bool retry_now;                 /* Reconnect(): no delay this once */
};

static const char *const state_names[_STREAM_STATE_MAX] = {
        [STREAM_IDLE] = "idle",
        [STREAM_CONNECTING] = "connecting",
        [STREAM_CONNECTED] = "connected",
        [STREAM_BACKOFF] = "backoff",
        [STREAM_AUTH_FAILED] = "auth-failed",
        [STREAM_STOPPED] = "stopped",
};

const char *stream_state_to_string(enum stream_state s) {
        return s < _STREAM_STATE_MAX ? state_names[s] : "unknown";
}

static void changed(struct stream *s) {
        if (s->ops->changed)
                s->ops->changed(s, s->userdata);
}

static void set_state(struct stream *s, enum stream_state state) {
        if (s->state == state)
                return;
        log_debug("%s: %s -> %s", s->name, state_names[s->state], state_names[state]);
        s->state = state;
        s->since = now_usec(CLOCK_REALTIME);
        changed(s);
}

static void set_last_error(struct stream *s, const char *why) {
        char *copy = why ? strdup(why) : NULL;

        utf8_scrub(copy);       /* it may quote the server or a library */
        free(s->last_error);
        s->last_error = copy;
}

static void frames_clear(struct stream *s) {
        while (s->out_head) {
                struct frame *f = s->out_head;

                s->out_head = f->next;
                free(f);
        }
        s->out_tail = NULL;
}

static void early_clear(struct stream *s) {
        for (size_t i = 0; i < s->n_early; i++)
                json_object_put(s->early[i]);
        free(s->early);
        s->early = NULL;
        s->n_early = 0;
}

static void rx_reset(struct stream *s) {
        free(s->rx);
        s->rx = NULL;
        s->rx_len = s->rx_cap = 0;
        s->rx_in_message = s->rx_oversize = s->rx_binary = false;
}

static int timer_arm(struct stream *s, sd_event_source **source, uint64_t when,
                     sd_event_time_handler_t handler) {
        int r;

        if (!*source) {
                /* 1 µs accuracy: the default of 250 ms would slow every step. */
                r = sd_event_add_time(s->event, source, CLOCK_BOOTTIME, when, 1, handler, s);
                if (r < 0)
                        return r;
                return sd_event_source_set_description(*source, s->name);
        }
        r = sd_event_source_set_time(*source, when);
        if (r < 0)
                return r;
        return sd_event_source_set_enabled(*source, SD_EVENT_ONESHOT);
}

static void timer_disarm(sd_event_source *source) {
        if (source)
                (void) sd_event_source_set_enabled(source, SD_EVENT_OFF);
}

static int on_retry_timer(sd_event_source *source, uint64_t usec, void *userdata);
static int on_alive_timer(sd_event_source *source, uint64_t usec, void *userdata);

static void schedule_retry(struct stream *s, uint64_t delay) {
        uint64_t now = now_usec(CLOCK_BOOTTIME);
        int r;

        r = timer_arm(s, &s->retry_timer, now + delay, on_retry_timer);
        if (r < 0) {
                /* Without a timer we can never come back: this is fatal. */
                log_error_errno(r, "%s: cannot arm the reconnect timer: %m", s->name);
                sd_event_exit(s->event, EXIT_FAILURE);
                return;
        }
        s->next_retry = delay ? now_usec(CLOCK_REALTIME) + delay : 0;
}

static void schedule_backoff(struct stream *s) {
        uint64_t random_value, delay;

        if (getrandom(&random_value, sizeof(random_value), GRND_NONBLOCK) != sizeof(random_value))
                random_value = now_usec(CLOCK_MONOTONIC) * 0x9e3779b97f4a7c15ULL;

        if (s->retry_now) {
                delay = 0;
                s->retry_now = false;
        } else if (s->slow_retry) {
                /* A mismatch does not heal by hammering: wait the longest. */
                delay = s->backoff.max_usec;
                s->slow_retry = false;
        } else
                delay = backoff_next(&s->backoff, random_value);

        schedule_retry(s, delay);
        set_state(s, STREAM_BACKOFF);
        if (delay == 0)
                log_info("%s: %s; reconnecting now", s->name,
                         s->last_error ? s->last_error : "disconnected");
        else
                log_info("%s: %s; reconnecting in %.1f s", s->name,
                         s->last_error ? s->last_error : "disconnected",
                         (double) delay / USEC_PER_SEC);
        changed(s);
}

/*
 * The link is gone (or we let go of it). Decides what comes next from the
 * state: back off when the stream is still wanted, else stay put.
 */
static void link_lost(struct stream *s, const char *why) {
        uint64_t now = now_usec(CLOCK_BOOTTIME);
        bool was_connected = s->namespace_connected;

        /* A WebSocket that closes before Engine.IO's open packet is a server
         * that does not speak our Engine.IO version (a Socket.IO 3/4 server
         * refusing EIO=3 writes an HTTP 400 into the WebSocket). */
        if (s->ws_established && !s->open_seen && !s->namespace_connected &&
            s->state == STREAM_CONNECTING) {
                why = s->engine_io == 3 ?
                        "the server closed the connection before the Engine.IO handshake; "
                        "a Socket.IO 3 or 4 server refuses EngineIO=3 this way" :
                        "the server closed the connection before the Engine.IO handshake";
                s->slow_retry = true;
        }
        s->wsi = NULL;
        s->ws_established = s->open_seen = s->namespace_connected = false;
        s->handshake_deadline = s->watchdog_deadline = s->ping_due = s->pong_deadline = 0;
        s->skip_attachments = 0;
        s->paused = false;
        timer_disarm(s->alive_timer);
        frames_clear(s);
        rx_reset(s);
        early_clear(s);

        if (was_connected) {
                s->offline_since = now;
                if (now - s->connected_at >= backoff_held_usec(&s->backoff))
                        backoff_reset(&s->backoff);
        }
        if (why)
                set_last_error(s, why);

        if (s->ops->disconnected)
                s->ops->disconnected(s, s->userdata);

        if (s->state == STREAM_AUTH_FAILED || s->state == STREAM_STOPPED || !s->wanted) {
                if (s->state == STREAM_CONNECTED || s->state == STREAM_CONNECTING)
                        set_state(s, s->wanted ? STREAM_BACKOFF : STREAM_IDLE);
                changed(s);
                return;
        }
        schedule_backoff(s);
}

/* Lets go of the current WebSocket; lws closes it on its next turn and its
 * remaining callbacks find s->wsi changed and are ignored. */
static void drop_link(struct stream *s, const char *why) {
        struct lws *wsi = s->wsi;

        if (!wsi)
                return;
        lws_set_opaque_user_data(wsi, NULL);
        lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
        link_lost(s, why);
}

static int queue_frame(struct stream *s, const char *text) {
        size_t len = strlen(text);
        struct frame *f;

        if (!s->wsi)
                return -ENOTCONN;

        f = malloc(sizeof(*f) + LWS_PRE + len);
        if (!f)
                return -ENOMEM;
        f->next = NULL;
        f->len = len;
        memcpy(f->data + LWS_PRE, text, len);

        if (s->out_tail)
                s->out_tail->next = f;
        else
                s->out_head = f;
        s->out_tail = f;

        lws_callback_on_writable(s->wsi);
        return 0;
}

static void alive_rearm(struct stream *s) {
        uint64_t next = 0;
        const uint64_t deadlines[] = {
                s->handshake_deadline, s->watchdog_deadline, s->ping_due, s->pong_deadline,
        };

        for (size_t i = 0; i < sizeof(deadlines) / sizeof(deadlines[0]); i++)
                if (deadlines[i] && (!next || deadlines[i] < next))
                        next = deadlines[i];
        if (s->pong_deadline && s->ping_due && s->ping_due < s->pong_deadline &&
            next == s->ping_due)
                /* No second ping while one is unanswered. */
                next = s->pong_deadline;

        if (!next) {
                timer_disarm(s->alive_timer);
                return;
        }
        if (timer_arm(s, &s->alive_timer, next, on_alive_timer) < 0)
                drop_link(s, "cannot arm the liveness timer");
}

static int on_alive_timer(sd_event_source *source, uint64_t usec, void *userdata) {
        struct stream *s = userdata;
        uint64_t now = now_usec(CLOCK_BOOTTIME);
        char why[128];

        if (!s->wsi)
                return 0;

        if (s->handshake_deadline && now >= s->handshake_deadline) {
                drop_link(s, "the server did not complete the Socket.IO handshake in time");
                return 0;
        }
        if (s->watchdog_deadline && now >= s->watchdog_deadline) {
                snprintf(why, sizeof(why), "no ping from the server for %.1f s",
                         (double) (s->ping_interval_usec + s->ping_timeout_usec) / USEC_PER_SEC);
                drop_link(s, why);
                return 0;
        }
        if (s->pong_deadline && now >= s->pong_deadline) {
                snprintf(why, sizeof(why), "no pong from the server within %.1f s",
                         (double) s->ping_timeout_usec / USEC_PER_SEC);
                drop_link(s, why);
                return 0;
        }
        if (s->ping_due && now >= s->ping_due && !s->pong_deadline) {
                /* Engine.IO 3: the client pings. */
                if (queue_frame(s, "2") < 0) {
                        drop_link(s, "cannot send a ping");
                        return 0;
                }
                s->pong_deadline = now + s->ping_timeout_usec;
                s->ping_due = now + s->ping_interval_usec;
        }
        alive_rearm(s);
        return 0;
}

static void stream_connect(struct stream *s) {
        struct lws_client_connect_info info = {};
        char path[1024], host_header[300];
        struct lws *wsi;

        if (!s->lws || !s->host) {
                set_last_error(s, "not configured");
                schedule_backoff(s);
                return;
        }

        snprintf(path, sizeof(path), "%s?EIO=%u&transport=websocket", s->path, s->engine_io);
        if ((s->tls && s->port == 443) || (!s->tls && s->port == 80))
                snprintf(host_header, sizeof(host_header), "%s", s->host);
        else if (strchr(s->host, ':'))
                snprintf(host_header, sizeof(host_header), "[%s]:%u", s->host, s->port);
        else
                snprintf(host_header, sizeof(host_header), "%s:%u", s->host, s->port);

        info.context = s->lws;
        info.address = s->host;
        info.port = s->port;
        /* Certificates and host names are always checked; nothing here may
         * ever set LCCSCF_ALLOW_SELFSIGNED or the SKIP_ flags. */
        info.ssl_connection = s->tls ? LCCSCF_USE_SSL : 0;
        info.path = path;
        info.host = host_header;
        info.origin = host_header;
        info.alpn = "http/1.1";
        info.ietf_version_or_minus_one = -1;
        info.local_protocol_name = STREAM_LWS_PROTOCOL;
        info.opaque_user_data = s;

        free(s->connect_error);
        s->connect_error = NULL;
        log_library_clear_error();
        set_state(s, STREAM_CONNECTING);
        s->next_retry = 0;
        log_debug("%s: connecting to %s", s->name, s->url);

        s->in_connect = true;
        wsi = lws_client_connect_via_info(&info);
        s->in_connect = false;
        if (!wsi) {
                link_lost(s, s->connect_error ? s->connect_error : "cannot start the connection");
                return;
        }

        s->wsi = wsi;
        s->handshake_deadline = now_usec(CLOCK_BOOTTIME) + HANDSHAKE_TIMEOUT_USEC;
        alive_rearm(s);
}

static int on_retry_timer(sd_event_source *source, uint64_t usec, void *userdata) {
        struct stream *s = userdata;

        if (s->wsi || !s->wanted || s->state == STREAM_AUTH_FAILED || s->state == STREAM_STOPPED)
                return 0;
        if (s->ops->may_connect && !s->ops->may_connect(s, s->userdata)) {
                /* Held in backoff with no retry time; stream_start() ends it. */
                log_debug("%s: waiting for the token before connecting", s->name);
                if (s->next_retry) {
                        s->next_retry = 0;
                        changed(s);
                }
                return 0;
        }
        stream_connect(s);
        return 0;
}

static void send_connect(struct stream *s) {
        json_object *auth = NULL;
        char *frame = NULL;
        int r;

        if (s->engine_io == 3) {
                /* Socket.IO 2 servers join the main namespace by themselves and
                 * send `40`; a CONNECT from us would be a second one. */
                return;
        }

        auth = json_object_new_object();
        if (!auth) {
                drop_link(s, "out of memory");
                return;
        }
        if (s->token)
                json_object_object_add(auth, "token", json_object_new_string(s->token));
        s->sent_pid = s->pid[0] != 0;
        if (s->sent_pid) {
                json_object_object_add(auth, "pid", json_object_new_string(s->pid));
                json_object_object_add(auth, "offset", json_object_new_string(s->offset));
        }

        r = sio_encode_connect(NULL, auth, &frame);
        json_object_put(auth);
        if (r >= 0)
                r = queue_frame(s, frame);
        if (frame) {
                explicit_bzero(frame, strlen(frame));
                free(frame);
        }
        if (r < 0)
                drop_link(s, "cannot send CONNECT");
}

static void handle_open(struct stream *s, const char *data, size_t len) {
        struct eio_open open;

        if (s->open_seen || eio_open_parse(data, len, &open) < 0) {
                drop_link(s, "malformed Engine.IO handshake from the server");
                return;
        }
        s->open_seen = true;
        s->ping_interval_usec = open.ping_interval_ms * USEC_PER_MSEC;
        s->ping_timeout_usec = open.ping_timeout_ms * USEC_PER_MSEC;

        if (s->engine_io == 4)
                s->watchdog_deadline = now_usec(CLOCK_BOOTTIME) + s->ping_interval_usec +
                                       s->ping_timeout_usec;
        else
                s->ping_due = now_usec(CLOCK_BOOTTIME) + s->ping_interval_usec;
        alive_rearm(s);

        log_debug("%s: Engine.IO open, ping every %" PRIu64 " ms, timeout %" PRIu64 " ms",
                  s->name, open.ping_interval_ms, open.ping_timeout_ms);
        send_connect(s);
}

static void dropped(struct stream *s, enum stream_drop why);

/* One EVENT to the owner, with the recovery offset taken off first. */
static void deliver_event(struct stream *s, struct sio_packet *p) {
        /* While a session is recoverable the server appends the offset to
         * every event it sends (acks excepted), as its last argument. */
        if (s->pid[0] && json_object_array_length(p->data) >= 2) {
                json_object *last = json_object_array_get_idx(p->data,
                                        json_object_array_length(p->data) - 1);

                if (json_object_is_type(last, json_type_string) &&
                    sio_event_take_offset(p, s->offset, sizeof(s->offset)) < 0) {
                        dropped(s, STREAM_DROP_MALFORMED);
                        return;
                }
        }
        s->events_received++;
        if (s->ops->event)
                s->ops->event(s, p, s->userdata);
}

/* The fast path: -EAGAIN when the packet has to go the slow way. */
static int deliver_event_view(struct stream *s, const struct sio_event_view *v) {
        size_t n_args = v->n_args;
        const char *offset = NULL;
        size_t offset_len = 0;
        int r;

        if (s->pid[0] && n_args >= 2 && v->arg[n_args - 1][0] == '"') {
                offset = v->arg[n_args - 1] + 1;
                offset_len = v->arg_len[n_args - 1] - 2;
                if (!json_view_is_plain_string(v->arg[n_args - 1], v->arg_len[n_args - 1]) ||
                    offset_len == 0 || offset_len >= sizeof(s->offset))
                        return -EAGAIN;
                n_args--;
        }

        r = s->ops->event_view(s, v, n_args, s->userdata);
        if (r < 0)
                return r;
        if (offset) {
                memcpy(s->offset, offset, offset_len);
                s->offset[offset_len] = 0;
        }
        s->events_received++;
        return 0;
}

static void deliver_early_events(struct stream *s) {
        struct lws *wsi = s->wsi;

        for (size_t i = 0; i < s->n_early; i++) {
                struct sio_packet p = { .type = SIO_EVENT, .nsp = "/", .ack_id = SIO_NO_ACK_ID };

                p.data = s->early[i];
                s->early[i] = NULL;
                if (s->wsi == wsi)
                        deliver_event(s, &p);
                sio_packet_release(&p);
        }
        free(s->early);
        s->early = NULL;
        s->n_early = 0;
}

static void handle_connect_reply(struct stream *s, const struct sio_packet *p) {
        struct sio_connect_reply reply = {};
        uint64_t now = now_usec(CLOCK_BOOTTIME), offline = 0;
        bool recovered, first;
        int r;

        if (s->namespace_connected)
                return;

        r = sio_connect_reply_parse(p, &reply);
        if (r == -EPROTO && s->engine_io == 3)
                r = 0;  /* Socket.IO 2 sends no sid with CONNECT. */
        if (r == -EPROTO) {
                s->slow_retry = true;
                drop_link(s, "the server answered CONNECT without a sid, as Socket.IO 2 "
                             "servers do; set EngineIO=3 for such a server");
                return;
        }
        if (r < 0) {
                drop_link(s, "malformed CONNECT reply from the server");
                return;
        }

        recovered = s->sent_pid && reply.pid[0] && strcmp(reply.pid, s->pid) == 0;
        if (reply.pid[0]) {
                if (!recovered)
                        s->offset[0] = 0;
                snprintf(s->pid, sizeof(s->pid), "%s", reply.pid);
        } else
                s->pid[0] = s->offset[0] = 0;

        first = !s->ever_connected;
        if (!first)
                s->reconnects++;
        if (s->offline_since)
                offline = now - s->offline_since;
        s->ever_connected = true;
        s->namespace_connected = true;
        s->connected_at = now;
        s->handshake_deadline = 0;
        alive_rearm(s);
        set_last_error(s, NULL);
        set_state(s, STREAM_CONNECTED);
        log_info("%s: connected to %s%s", s->name, s->url,
                 recovered ? " (missed events replayed)" : "");

        /* The replayed events first: Resumed promises they were sent. */
        deliver_early_events(s);
        if (s->wsi && s->ops->connected)
                s->ops->connected(s, recovered, offline, first, s->userdata);
}

static void dropped(struct stream *s, enum stream_drop why) {
        if (s->ops->dropped)
                s->ops->dropped(s, why, s->userdata);
}

/* Does the server's text speak of credentials? */
static bool mentions_auth(const char *message) {
        static const char *const words[] = {
                "unauthori", "forbidden", "jwt", "token", "auth", "credential", "denied",
        };

        for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
                if (strcasestr(message, words[i]))
                        return true;
        return false;
}

/*
 * CONNECT_ERROR answers our CONNECT. Socket.IO middleware sends it to
 * refuse credentials, which no retry with the same token will change; any
 * other reason (or one after we are connected, where it makes no sense) is
 * not worth stopping for: back off slowly, or drop the packet.
 */
static void handle_connect_error(struct stream *s, const struct sio_packet *p) {
        const char *message = NULL;
        json_object *m;
        char why[256];

        if (s->namespace_connected) {
                dropped(s, STREAM_DROP_MALFORMED);
                return;
        }
        if (json_object_is_type(p->data, json_type_string))
                message = json_object_get_string(p->data);
        else if (json_object_object_get_ex(p->data, "message", &m) &&
                 json_object_is_type(m, json_type_string))
                message = json_object_get_string(m);

        snprintf(why, sizeof(why), "the server refused CONNECT: %.200s",
                 message && *message ? message : "no reason given");
        if (!message || !*message || mentions_auth(message)) {
                stream_auth_failed(s, why);
                return;
        }
        s->slow_retry = true;
        drop_link(s, why);
}

static void handle_message(struct stream *s, const char *data, size_t len) {
        struct sio_packet p = {};
        struct sio_event_view view;

        /* Most packets are events in the usual shape: no JSON objects for them. */
        if (s->namespace_connected && s->ops->event_view && len > 0 && data[0] == '2' &&
            sio_event_view(data, len, &view) == 0 && deliver_event_view(s, &view) == 0)
                return;

        if (sio_decode(data, len, &p) < 0) {
                dropped(s, STREAM_DROP_MALFORMED);
                return;
        }
        if (strcmp(p.nsp, "/") != 0) {
                /* We only ever join the main namespace. */
                dropped(s, STREAM_DROP_MALFORMED);
                goto finish;
        }

        switch (p.type) {
        case SIO_CONNECT:
                handle_connect_reply(s, &p);
                break;
        case SIO_DISCONNECT:
                drop_link(s, "the server disconnected this client");
                break;
        case SIO_CONNECT_ERROR:
                handle_connect_error(s, &p);
                break;
        case SIO_EVENT:
                if (s->namespace_connected) {
                        deliver_event(s, &p);
                        break;
                }
                if (s->n_early >= EARLY_EVENTS_MAX) {
                        dropped(s, STREAM_DROP_MALFORMED);
                        break;
                }
                if (s->n_early % 64 == 0) {
                        json_object **e = realloc(s->early,
                                                  (s->n_early + 64) * sizeof(json_object *));

                        if (!e) {
                                drop_link(s, "out of memory");
                                break;
                        }
                        s->early = e;
                }
                s->early[s->n_early++] = p.data;
                p.data = NULL;
                break;
        case SIO_ACK:
                if (s->ops->ack)
                        s->ops->ack(s, p.ack_id, p.data, s->userdata);
                break;
        case SIO_BINARY_EVENT:
        case SIO_BINARY_ACK:
                /* Well-formed but with no JSON-only form: skip its attachments. */
                s->skip_attachments = p.attachments;
                dropped(s, STREAM_DROP_BINARY);
                break;
        }
finish:
        sio_packet_release(&p);
}

static void handle_text(struct stream *s, const char *frame, size_t len) {
        struct eio_packet packet;
        char reply[160];

        if (eio_decode(frame, len, &packet) < 0) {
                dropped(s, STREAM_DROP_MALFORMED);
                return;
        }

        switch (packet.type) {
        case EIO_OPEN:
                handle_open(s, packet.data, packet.len);
                break;
        case EIO_PING:
                if (s->engine_io != 4 || packet.len > sizeof(reply) - 2) {
                        /* Engine.IO 3 servers do not ping; answering would be
                         * a ping in the wrong direction. */
                        dropped(s, STREAM_DROP_MALFORMED);
                        break;
                }
                snprintf(reply, sizeof(reply), "3%.*s", (int) packet.len, packet.data);
                if (queue_frame(s, reply) < 0) {
                        drop_link(s, "cannot answer a ping");
                        break;
                }
                s->watchdog_deadline = now_usec(CLOCK_BOOTTIME) + s->ping_interval_usec +
                                       s->ping_timeout_usec;
                alive_rearm(s);
                break;
        case EIO_PONG:
                if (s->engine_io == 3) {
                        s->pong_deadline = 0;
                        alive_rearm(s);
                }
                break;
        case EIO_CLOSE:
                drop_link(s, "the server closed the Engine.IO session");
                break;
        case EIO_MESSAGE:
                if (!s->open_seen) {
                        dropped(s, STREAM_DROP_MALFORMED);
                        break;
                }
                handle_message(s, packet.data, packet.len);
                break;
        case EIO_UPGRADE:
        case EIO_NOOP:
                break;
        }
}

/* A message may arrive in several callbacks (WebSocket fragments, or one
 * large frame read in parts); it is handled once, when complete. */
static void receive(struct stream *s, struct lws *wsi, const char *in, size_t len) {
        bool final = lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0;

        if (!s->rx_in_message) {
                s->rx_in_message = true;
                s->rx_binary = lws_frame_is_binary(wsi);
                s->rx_oversize = false;
                s->rx_len = 0;
        }

        if (!s->rx_oversize) {
                if (len > s->max_event_size - s->rx_len) {
                        s->rx_oversize = true;
                        free(s->rx);
                        s->rx = NULL;
                        s->rx_len = s->rx_cap = 0;
                } else if (len > 0) {
                        if (s->rx_len + len > s->rx_cap) {
                                size_t cap = s->rx_cap ? s->rx_cap : 4096;
                                char *p;

                                while (cap < s->rx_len + len)
                                        cap *= 2;
                                if (cap > s->max_event_size)
                                        cap = s->max_event_size;
                                p = realloc(s->rx, cap);
                                if (!p) {
                                        drop_link(s, "out of memory");
                                        return;
                                }
                                s->rx = p;
                                s->rx_cap = cap;
                        }
                        memcpy(s->rx + s->rx_len, in, len);
                        s->rx_len += len;
                }
        }

        if (!final)
                return;
        s->rx_in_message = false;

        if (s->rx_binary && s->skip_attachments > 0) {
                s->skip_attachments--;
                return;
        }
        if (s->rx_oversize) {
                dropped(s, STREAM_DROP_OVERSIZE);
                return;
        }
        if (s->rx_binary) {
                dropped(s, STREAM_DROP_BINARY);
                return;
        }
        if (s->skip_attachments > 0) {
                /* A text frame where an attachment was due: the binary packet
                 * was a lie; stop waiting for the rest. */
                s->skip_attachments = 0;
        }
        handle_text(s, s->rx, s->rx_len);

        /* Large buffers are not kept between messages. */
        if (s->rx_cap > 65536 && s->wsi == wsi) {
                free(s->rx);
                s->rx = NULL;
                s->rx_cap = 0;
        }
        s->rx_len = 0;
}

static void connection_error(struct stream *s, struct lws *wsi, const char *in) {
        unsigned status = lws_http_client_http_response(wsi);
        bool auth = status == 401 || status == 403;
        const char *certificate;
        char why[512];

        if (auth)
                snprintf(why, sizeof(why), "the server refused the WebSocket upgrade "
                         "with HTTP %u", status);
        else if (status == 400 && s->engine_io == 3) {
                snprintf(why, sizeof(why), "the server refused Engine.IO 3 (HTTP 400); "
                         "set EngineIO=4 for a Socket.IO 3 or 4 server");
                s->slow_retry = true;
        } else if (status && status != 101)
                snprintf(why, sizeof(why), "the server answered the WebSocket upgrade "
                         "with HTTP %u", status);
        else if ((certificate = strstr(log_library_last_error(), "SSL error: "))) {
                /* lws tells why it refused a certificate only in its log:
                 * "SSL error: hostname mismatch (preverify_ok=0;err=62;...)". */
                size_t len = strcspn(certificate + 11, "(");

                while (len > 0 && certificate[11 + len - 1] == ' ')
                        len--;
                snprintf(why, sizeof(why), "TLS: the server's certificate was refused: %.*s",
                         (int) len, certificate + 11);
        } else if (log_library_last_error()[0])
                snprintf(why, sizeof(why), "connection failed: %.100s (%.180s)",
                         in && *in ? in : "unknown error", log_library_last_error());
        else
                snprintf(why, sizeof(why), "connection failed: %.200s",
                         in && *in ? in : "unknown error");

        if (s->in_connect) {
                /* Failed before any I/O; stream_connect() reports it. */
                free(s->connect_error);
                s->connect_error = strdup(why);
                return;
        }

        /* lws frees this wsi after the callback: let go without killing it. */
        s->wsi = NULL;
        if (auth) {
                log_error("%s: authentication failed: %s; waiting for a new token",
                          s->name, why);
                set_state(s, STREAM_AUTH_FAILED);
        }
        link_lost(s, why);
}

static int write_one(struct stream *s, struct lws *wsi) {
        struct frame *f = s->out_head;
        int n;

        if (!f)
                return 0;

        n = lws_write(wsi, f->data + LWS_PRE, f->len, LWS_WRITE_TEXT);
        s->out_head = f->next;
        if (!s->out_head)
                s->out_tail = NULL;
        explicit_bzero(f->data + LWS_PRE, f->len);
        free(f);

        if (n < 0) {
                drop_link(s, "write to the server failed");
                return -1;
        }
        if (s->out_head)
                lws_callback_on_writable(wsi);
        return 0;
}

int stream_lws_callback(struct lws *wsi, int reason, void *user, void *in, size_t len) {
        struct stream *s = wsi ? lws_get_opaque_user_data(wsi) : NULL;
        bool current = s && s->wsi == wsi;

        switch (reason) {
        case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
                if (current || (s && s->in_connect))
                        connection_error(s, wsi, in);
                return 0;

        case LWS_CALLBACK_CLIENT_ESTABLISHED:
                if (!current)
                        return -1;
                s->ws_established = true;
                log_debug("%s: WebSocket open", s->name);
                return 0;

        case LWS_CALLBACK_CLIENT_RECEIVE:
                if (!current)
                        return -1;
                receive(s, wsi, in, len);
                return s->wsi == wsi ? 0 : -1;

        case LWS_CALLBACK_CLIENT_WRITEABLE:
                if (!current)
                        return -1;
                return write_one(s, wsi);

        case LWS_CALLBACK_CLIENT_CLOSED:
                if (current)
                        link_lost(s, "the connection was closed");
                return 0;

        case LWS_CALLBACK_WSI_DESTROY:
                /* The last word about every connection, whatever came before. */
                if (current)
                        link_lost(s, "the connection was lost");
                return 0;

        default:
                return lws_callback_http_dummy(wsi, reason, user, in, len);
        }
}

int stream_new(struct stream **ret, const char *name, sd_event *event,
               const struct stream_ops *ops, void *userdata) {
        struct stream *s;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->name = strdup(name);
        if (!s->name) {
                free(s);
                return -ENOMEM;
        }
        s->event = sd_event_ref(event);
        s->ops = ops;
        s->userdata = userdata;
        s->engine_io = 4;
        s->max_event_size = 1024 * 1024;
        s->since = now_usec(CLOCK_REALTIME);
        backoff_init(&s->backoff, USEC_PER_SEC, 60 * USEC_PER_SEC);
        *ret = s;
        return 0;
}

struct stream *stream_free(struct stream *s) {
        if (!s)
                return NULL;
        s->wanted = false;
        s->state = STREAM_STOPPED;
        if (s->wsi) {
                lws_set_opaque_user_data(s->wsi, NULL);
                lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
                s->wsi = NULL;
        }
        sd_event_source_disable_unref(s->retry_timer);
        sd_event_source_disable_unref(s->alive_timer);
        sd_event_unref(s->event);
        frames_clear(s);
        rx_reset(s);
        early_clear(s);
        if (s->token) {
                explicit_bzero(s->token, strlen(s->token));
                free(s->token);
        }
        free(s->connect_error);
        free(s->last_error);
        free(s->host);
        free(s->path);
        free(s->url);
        free(s->name);
        free(s);
        return NULL;
}

int stream_configure(struct stream *s, const struct stream_settings *settings) {
        char *host = strdup(settings->host), *path = strdup(settings->path), *url = NULL;
        bool ipv6 = strchr(settings->host, ':') != NULL;

        if (!host || !path ||
            asprintf(&url, "%s://%s%s%s:%u%s", settings->tls ? "wss" : "ws", ipv6 ? "[" : "",
                     settings->host, ipv6 ? "]" : "", settings->port, settings->path) < 0) {
                free(host);
                free(path);
                return -ENOMEM;
        }

        free(s->host);
        free(s->path);
        free(s->url);
        s->host = host;
        s->path = path;
        s->url = url;
        s->port = settings->port;
        s->tls = settings->tls;
        s->engine_io = settings->engine_io;
        s->max_event_size = settings->max_event_size;
        backoff_init(&s->backoff, settings->initial_delay_usec, settings->max_delay_usec);
        changed(s);
        return 0;
}

void stream_set_lws(struct stream *s, struct lws_context *lws) {
        if (s->lws == lws)
                return;
        if (s->wsi)
                drop_link(s, "the connection settings changed");
        s->lws = lws;
}

int stream_set_token(struct stream *s, const char *token) {
        char *copy = NULL;

        if (token) {
                copy = strdup(token);
                if (!copy)
                        return -ENOMEM;
        }
        if (s->token) {
                explicit_bzero(s->token, strlen(s->token));
                free(s->token);
        }
        s->token = copy;
        return 0;
}

int stream_start(struct stream *s) {
        s->wanted = true;
        if (s->wsi || (s->state == STREAM_BACKOFF && s->next_retry))
                return 0;
        if (s->state == STREAM_AUTH_FAILED || s->state == STREAM_STOPPED || s->state == STREAM_IDLE)
                set_state(s, STREAM_BACKOFF);
        /* Connect from the timer, never from inside a caller that may be an
         * lws callback. */
        schedule_retry(s, 0);
        return 0;
}

void stream_stop(struct stream *s) {
        s->wanted = false;
        timer_disarm(s->retry_timer);
        s->next_retry = 0;
        drop_link(s, NULL);
        s->pid[0] = s->offset[0] = 0;
        s->offline_since = 0;
        /* Opened again later, it starts afresh: no Resumed, no reconnect. */
        s->ever_connected = false;
        set_state(s, STREAM_IDLE);
}

int stream_reconnect(struct stream *s) {
        backoff_reset(&s->backoff);
        if (!s->wanted)
                return 0;
        s->retry_now = true;
        if (s->wsi) {
                drop_link(s, "reconnect requested");
                return 0;
        }
        s->retry_now = false;
        timer_disarm(s->retry_timer);
        set_state(s, STREAM_BACKOFF);
        schedule_retry(s, 0);
        return 0;
}

void stream_auth_failed(struct stream *s, const char *why) {
        log_error("%s: authentication failed: %s; waiting for a new token", s->name, why);
        set_last_error(s, why);
        set_state(s, STREAM_AUTH_FAILED);
        timer_disarm(s->retry_timer);
        s->next_retry = 0;
        drop_link(s, NULL);
        changed(s);
}

void stream_fail(struct stream *s, const char *why) {
        drop_link(s, why);
}

int stream_emit(struct stream *s, const char *name, json_object *arg, int64_t ack_id) {
        char *frame = NULL;
        int r;

        if (!s->wsi || !s->namespace_connected)
                return -ENOTCONN;

        r = sio_encode_event(NULL, ack_id, name, arg, &frame);
        if (r < 0)
                return r;
        r = queue_frame(s, frame);
        /* The frame may carry the token in its headers. */
        explicit_bzero(frame, strlen(frame));
        free(frame);
        return r;
}

int64_t stream_next_ack_id(struct stream *s) {
        if (s->next_ack_id >= 999999999999999LL)
                s->next_ack_id = 0;
        return s->next_ack_id++;
}

void stream_pause(struct stream *s, bool pause) {
        if (!s->wsi || s->paused == pause)
                return;
        s->paused = pause;
        lws_rx_flow_control(s->wsi, pause ? 0 : 1);
}

const char *stream_name(const struct stream *s) {
        return s->name;
}

enum stream_state stream_state(const struct stream *s) {
        return s->state;
}

const char *stream_url(const struct stream *s) {
        return s->url ? s->url : "";
}

const char *stream_last_error(const struct stream *s) {
        return s->last_error ? s->last_error : "";
}

uint64_t stream_since(const struct stream *s) {
        return s->since;
}

uint64_t stream_next_retry(const struct stream *s) {
        return s->next_retry;
}

uint32_t stream_reconnects(const struct stream *s) {
        return s->reconnects;
}

uint64_t stream_events_received(const struct stream *s) {
        return s->events_received;
}
