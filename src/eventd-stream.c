/* SPDX-License-Identifier: MIT */
/*
 * A Socket.IO client connection: the state the bus shows, the timers and the
 * backoff. It drives two parts below it: the link (eventd-link.c), one
 * WebSocket at a time, and the session (eventd-session.c), which decides
 * what the frames mean and when a deadline is due; the stream carries out
 * what the session answers on the link. All connecting goes through the one
 * retry timer, never from inside an lws callback, so there is exactly one
 * reconnect pending at any time. Liveness deadlines run on CLOCK_BOOTTIME
 * so a suspend counts as time passed.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/random.h>

#include "eventd-link.h"
#include "eventd-log.h"
#include "eventd-session.h"
#include "eventd-time.h"
#include "eventd-token.h"
#include "eventd-stream.h"

struct stream {
        char *name;
        sd_event *event;
        const struct stream_ops *ops;
        void *userdata;

        char *token;

        struct lws_context *lws;
        struct link *link;

        enum stream_state state;
        bool wanted;
        struct backoff backoff;
        sd_event_source *retry_timer;
        sd_event_source *alive_timer;

        /* Engine.IO and Socket.IO, and what the stream adds to them */
        struct session *session;

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
        bool send_stalled;              /* the link's queue is full: drop it */
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
 * The link is gone (or we let go of it); established: its WebSocket upgrade
 * had succeeded. Decides what comes next from the state: back off when the
 * stream is still wanted, else stay put.
 */
static void connection_lost(struct stream *s, bool established, const char *why) {
        uint64_t now = now_usec(CLOCK_BOOTTIME);
        bool was_connected = session_connected(s->session);
        const char *mismatch;

        if (established && s->state == STREAM_CONNECTING &&
            (mismatch = session_explain_early_close(s->session))) {
                why = mismatch;
                s->slow_retry = true;
        }
        session_end(s->session);
        timer_disarm(s->alive_timer);

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

/* Lets go of the current WebSocket on purpose. */
static void drop_link(struct stream *s, const char *why) {
        bool established = link_established(s->link);

        if (!link_is_open(s->link))
                return;
        link_close(s->link);
        connection_lost(s, established, why);
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
        const char *why;
        char query[64];

        if (!s->lws || !link_url(s->link)) {
                set_last_error(s, "not configured");
                schedule_backoff(s);
                return;
        }

        s->send_stalled = false;
        session_format_query(s->session, query, sizeof(query));
        set_state(s, STREAM_CONNECTING);
        s->next_retry = 0;
        log_debug("%s: connecting to %s", s->name, stream_url(s));

        if (link_open(s->link, s->lws, query, &why) < 0) {
                connection_lost(s, false, why);
                return;
        }
        session_begin(s->session, now_usec(CLOCK_BOOTTIME));
        alive_rearm(s);
}

static int on_retry_timer(sd_event_source *source, uint64_t usec, void *userdata) {
        struct stream *s = userdata;

        if (link_is_open(s->link) || !s->wanted || s->state == STREAM_AUTH_FAILED ||
            s->state == STREAM_STOPPED)
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
                r = link_send(s->link, frame);
        token_erase(frame);     /* it carries the token */
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
                [SESSION_DROP_NO_ROOM] = STREAM_DROP_NO_ROOM,
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
        log_info("%s: connected to %s%s", s->name, stream_url(s),
                 recovered ? " (missed events replayed)" : "");

        /* The replayed events first: Resumed promises they were sent. */
        session_release_early(s->session);
        if (link_is_open(s->link) && s->ops->connected)
                s->ops->connected(s, recovered, offline, first, s->userdata);
}

/* Carries out what the session decided about the link. */
static void apply_action(struct stream *s, enum session_action action,
                         const struct session_result *result) {
        switch (action) {
        case SESSION_CONTINUE:
                break;
        case SESSION_SEND:
                if (link_send(s->link, result->frame) < 0) {
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
                if (result->early_lost > 0)
                        log_warning("%s: %u of the events the server replayed did not fit in "
                                    "what is kept until its CONNECT reply; reporting the "
                                    "recovery as incomplete", s->name, result->early_lost);
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

        if (!link_is_open(s->link))
                return 0;
        if (s->send_stalled) {
                s->send_stalled = false;
                drop_link(s, "the server has not read the last 1 MiB sent to it");
                return 0;
        }
        action = session_tick(s->session, now_usec(CLOCK_BOOTTIME), &result);
        apply_action(s, action, &result);
        return 0;
}

/* A piece of a message from the link; the session puts it together. */
static void on_link_receive(struct link *link, const char *data, size_t len, bool binary,
                            bool final, void *userdata) {
        struct stream *s = userdata;
        struct session_result result;
        enum session_action action;

        action = session_receive(s->session, data, len, binary, final, now_usec(CLOCK_BOOTTIME),
                                 &result);
        apply_action(s, action, &result);
}

/* The link ended without being asked: refused, closed or lost. */
static void on_link_closed(struct link *link, const struct link_end *end, void *userdata) {
        struct stream *s = userdata;
        const char *why = end->why, *mismatch;

        if (end->auth_refused) {
                log_error("%s: authentication failed: %s; waiting for a new token", s->name, why);
                set_state(s, STREAM_AUTH_FAILED);
        } else if ((mismatch = session_explain_refusal(s->session, end->http_status))) {
                why = mismatch;
                s->slow_retry = true;
        } else if (end->http_status >= 300 && end->http_status < 400)
                s->slow_retry = true;   /* a redirect will not go away soon */
        connection_lost(s, end->established, why);
}

static const struct link_ops link_ops = {
        .receive = on_link_receive,
        .closed = on_link_closed,
};

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
        if (session_new(&s->session, &session_ops, s) < 0 ||
            link_new(&s->link, name, &link_ops, s) < 0) {
                session_free(s->session);
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
        link_free(s->link);
        sd_event_source_disable_unref(s->retry_timer);
        sd_event_source_disable_unref(s->alive_timer);
        sd_event_unref(s->event);
        session_free(s->session);
        token_erase(s->token);
        free(s->last_error);
        free(s->name);
        free(s);
        return NULL;
}

int stream_configure(struct stream *s, const struct stream_settings *settings) {
        struct link_target target = {
                .host = settings->host,
                .port = settings->port,
                .tls = settings->tls,
                .path = settings->path,
        };
        int r;

        r = link_configure(s->link, &target);
        if (r < 0)
                return r;
        session_configure(s->session, settings->engine_io, settings->max_event_size);
        backoff_init(&s->backoff, settings->initial_delay_usec, settings->max_delay_usec);
        changed(s);
        return 0;
}

void stream_set_lws(struct stream *s, struct lws_context *lws) {
        if (s->lws == lws)
                return;
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
        token_erase(s->token);
        s->token = copy;
        return 0;
}

int stream_start(struct stream *s) {
        s->wanted = true;
        if (link_is_open(s->link) || (s->state == STREAM_BACKOFF && s->next_retry))
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
        if (link_is_open(s->link)) {
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

        if (!link_is_open(s->link))
                return -ENOTCONN;

        r = session_encode_emit(s->session, name, arg, ack_id, &frame);
        if (r < 0)
                return r;
        r = link_send(s->link, frame);
        token_erase(frame);     /* it may carry the token in its headers */
        if (r == -ENOBUFS && !s->send_stalled) {
                /* Drop the link from the timer, not from inside the caller. */
                s->send_stalled = true;
                if (timer_arm(s, &s->alive_timer, now_usec(CLOCK_BOOTTIME), on_alive_timer) < 0)
                        log_warning("%s: cannot arm the liveness timer", s->name);
        }
        return r;
}

int64_t stream_next_ack_id(struct stream *s) {
        return session_next_ack_id(s->session);
}

void stream_pause(struct stream *s, bool pause) {
        link_pause(s->link, pause);
}

const char *stream_name(const struct stream *s) {
        return s->name;
}

enum stream_state stream_state(const struct stream *s) {
        return s->state;
}

const char *stream_url(const struct stream *s) {
        return link_url(s->link) ? link_url(s->link) : "";
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
