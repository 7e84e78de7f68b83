/* SPDX-License-Identifier: MIT */
/*
 * A Socket.IO client connection over libwebsockets. It owns one WebSocket
 * at a time; every lws callback checks that it comes from that WebSocket and
 * ignores the rest, so a superseded connection can never touch the state.
 * All connecting goes through the one retry timer, never from inside an lws
 * callback, so there is exactly one reconnect pending at any time. Liveness
 * deadlines run on CLOCK_BOOTTIME so a suspend counts as time passed. What
 * the frames mean, and when a deadline is due, the session decides
 * (eventd-session.c); the stream carries out what it answers.
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
#include "eventd-session.h"
#include "eventd-time.h"
#include "eventd-stream.h"

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

        /* Engine.IO and Socket.IO, and what the stream adds to them */
        struct session *session;
        bool ws_established;            /* the WebSocket upgrade succeeded */
        bool paused;

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
        bool was_connected = session_connected(s->session);
        const char *mismatch;

        if (s->ws_established && s->state == STREAM_CONNECTING &&
            (mismatch = session_explain_early_close(s->session))) {
                why = mismatch;
                s->slow_retry = true;
        }
        s->wsi = NULL;
        s->ws_established = false;
        session_end(s->session);
        s->paused = false;
        timer_disarm(s->alive_timer);
        frames_clear(s);

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
        uint64_t next = session_next_deadline(s->session);

        if (!next) {
                timer_disarm(s->alive_timer);
                return;
        }
        if (timer_arm(s, &s->alive_timer, next, on_alive_timer) < 0)
                drop_link(s, "cannot arm the liveness timer");
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

        session_format_path(s->session, s->path, path, sizeof(path));
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
        session_begin(s->session, now_usec(CLOCK_BOOTTIME));
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
        char *frame = NULL;
        int r;

        r = session_encode_connect(s->session, s->token, &frame);
        if (r == -ENOMEM) {
                drop_link(s, "out of memory");
                return;
        }
        if (frame)
                r = queue_frame(s, frame);
        if (frame) {
                explicit_bzero(frame, strlen(frame));
                free(frame);
        }
        if (r < 0)
                drop_link(s, "cannot send CONNECT");
}

/* What the session hands over goes to the owner, counted on the way. */
static void on_session_event(struct session *session, struct sio_packet *p, void *userdata) {
        struct stream *s = userdata;

        s->events_received++;
        if (s->ops->event)
                s->ops->event(s, p, s->userdata);
}

static int on_session_event_view(struct session *session, const struct sio_event_view *v,
                                 size_t n_args, void *userdata) {
        struct stream *s = userdata;
        int r;

        if (!s->ops->event_view)
                return -EAGAIN;
        r = s->ops->event_view(s, v, n_args, s->userdata);
        if (r < 0)
                return r;
        s->events_received++;
        return 0;
}

static void on_session_ack(struct session *session, int64_t ack_id, json_object *args,
                           void *userdata) {
        struct stream *s = userdata;

        if (s->ops->ack)
                s->ops->ack(s, ack_id, args, s->userdata);
}

static void on_session_dropped(struct session *session, enum session_drop why, void *userdata) {
        static const enum stream_drop reasons[] = {
                [SESSION_DROP_MALFORMED] = STREAM_DROP_MALFORMED,
                [SESSION_DROP_OVERSIZE] = STREAM_DROP_OVERSIZE,
                [SESSION_DROP_BINARY] = STREAM_DROP_BINARY,
        };
        struct stream *s = userdata;

        if (s->ops->dropped)
                s->ops->dropped(s, reasons[why], s->userdata);
}

static const struct session_ops session_ops = {
        .event = on_session_event,
        .event_view = on_session_event_view,
        .ack = on_session_ack,
        .dropped = on_session_dropped,
};

/* The namespace answered CONNECT. */
static void connected(struct stream *s, bool recovered) {
        uint64_t now = now_usec(CLOCK_BOOTTIME), offline = 0;
        bool first = !s->ever_connected;

        if (!first)
                s->reconnects++;
        if (s->offline_since)
                offline = now - s->offline_since;
        s->ever_connected = true;
        s->connected_at = now;
        alive_rearm(s);
        set_last_error(s, NULL);
        set_state(s, STREAM_CONNECTED);
        log_info("%s: connected to %s%s", s->name, s->url,
                 recovered ? " (missed events replayed)" : "");

        /* The replayed events first: Resumed promises they were sent. */
        session_release_early(s->session);
        if (s->wsi && s->ops->connected)
                s->ops->connected(s, recovered, offline, first, s->userdata);
}

/* Carries out what the session decided about the link. */
static void apply_action(struct stream *s, enum session_action action,
                         const struct session_result *result) {
        switch (action) {
        case SESSION_CONTINUE:
                break;
        case SESSION_SEND:
                if (queue_frame(s, result->frame) < 0) {
                        drop_link(s, result->why);
                        return;
                }
                break;
        case SESSION_OPENED:
                alive_rearm(s);
                log_debug("%s: Engine.IO open, ping every %" PRIu64 " ms, timeout %" PRIu64 " ms",
                          s->name, session_ping_interval_usec(s->session) / USEC_PER_MSEC,
                          session_ping_timeout_usec(s->session) / USEC_PER_MSEC);
                send_connect(s);
                return;
        case SESSION_CONNECTED:
                connected(s, result->recovered);
                return;
        case SESSION_CLOSE:
                if (result->slow_retry)
                        s->slow_retry = true;
                drop_link(s, result->why);
                return;
        case SESSION_AUTH_FAILED:
                stream_auth_failed(s, result->why);
                return;
        }
        if (result->rearm)
                alive_rearm(s);
}

static int on_alive_timer(sd_event_source *source, uint64_t usec, void *userdata) {
        struct stream *s = userdata;
        struct session_result result;
        enum session_action action;

        if (!s->wsi)
                return 0;
        action = session_tick(s->session, now_usec(CLOCK_BOOTTIME), &result);
        apply_action(s, action, &result);
        return 0;
}

/* A message may arrive in several callbacks (WebSocket fragments, or one
 * large frame read in parts); the session puts it together. */
static void receive(struct stream *s, struct lws *wsi, const char *in, size_t len) {
        bool final = lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0;
        struct session_result result;
        enum session_action action;

        action = session_receive(s->session, in, len, lws_frame_is_binary(wsi), final,
                                 now_usec(CLOCK_BOOTTIME), &result);
        apply_action(s, action, &result);
}

static void connection_error(struct stream *s, struct lws *wsi, const char *in) {
        unsigned status = lws_http_client_http_response(wsi);
        bool auth = status == 401 || status == 403;
        const char *certificate, *mismatch;
        char why[512];

        if (auth)
                snprintf(why, sizeof(why), "the server refused the WebSocket upgrade "
                         "with HTTP %u", status);
        else if ((mismatch = session_explain_refusal(s->session, status))) {
                snprintf(why, sizeof(why), "%s", mismatch);
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
        if (session_new(&s->session, &session_ops, s) < 0) {
                free(s->name);
                free(s);
                return -ENOMEM;
        }
        s->event = sd_event_ref(event);
        s->ops = ops;
        s->userdata = userdata;
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
        session_free(s->session);
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
        session_configure(s->session, settings->engine_io, settings->max_event_size);
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
        session_forget_recovery(s->session);
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

        if (!s->wsi)
                return -ENOTCONN;

        r = session_encode_emit(s->session, name, arg, ack_id, &frame);
        if (r < 0)
                return r;
        r = queue_frame(s, frame);
        /* The frame may carry the token in its headers. */
        explicit_bzero(frame, strlen(frame));
        free(frame);
        return r;
}

int64_t stream_next_ack_id(struct stream *s) {
        return session_next_ack_id(s->session);
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
