/* SPDX-License-Identifier: MIT */
/*
 * The manager: configuration and token in force, the two streams
 * (activities, always; import, while some import is watched), browse calls
 * waiting for their answer, and the overall state told to systemd and the
 * bus. Stream callbacks arrive from inside lws; bus calls from sd-event.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <systemd/sd-daemon.h>
#include <libwebsockets.h>

#include "config.h"
#include "eventd-auth.h"
#include "eventd-browse.h"
#include "eventd-bus.h"
#include "eventd-event.h"
#include "eventd-log.h"
#include "eventd-time.h"
#include "eventd-loop.h"
#include "eventd-manager.h"
#include "eventd-settings.h"
#include "eventd-stream.h"

/* Pause reading from Samdock while this many signals wait for the bus. */
#define BUS_QUEUE_HIGH 512
#define BUS_QUEUE_LOW 128
#define MAX_WATCHED_IMPORTS 64

struct manager {
        sd_event *event;
        struct settings_source options;
        struct config *config;
        struct auth *auth;

        struct bus *bus;
        struct lws_context *lws;
        struct stream *activities;
        struct stream *import;

        struct browses *browses;        /* browse calls waiting for the server */
        char **watched;                 /* NULL-terminated, also the bus property */
        size_t n_watched;

        const char *state;
        bool started;                   /* READY=1 sent */
        bool paused;
        sd_event_source *drain;
        sd_event_source *drop_report;   /* the held-back count at a window's end */
        sd_event_source *exit_source;   /* answers waiting calls before the bus closes */
        struct ratelimit drop_log;
        uint64_t drops_by_reason[_STREAM_DROP_MAX];
};

static const char *const drop_reasons[] = {
        [STREAM_DROP_MALFORMED] = "malformed or unsupported packet",
        [STREAM_DROP_OVERSIZE] = "frame larger than MaxEventSize=",
        [STREAM_DROP_BINARY] = "binary data",
        [STREAM_DROP_INVALID] = "payload not valid for D-Bus",
        [STREAM_DROP_NO_ROOM] = "replayed before the CONNECT reply, beyond what is kept",
};

/* ---- overall state ---- */

static bool stream_wanted(struct manager *m, struct stream *s) {
        return s == m->activities || m->n_watched > 0;
}

static void update_state(struct manager *m) {
        struct stream *streams[] = { m->activities, m->import };
        unsigned wanted = 0, connected = 0, connecting = 0, auth_failed = 0;
        const char *state;

        for (size_t i = 0; i < 2; i++) {
                if (!streams[i] || !stream_wanted(m, streams[i]))
                        continue;
                wanted++;
                switch (stream_state(streams[i])) {
                case STREAM_CONNECTED:
                        connected++;
                        break;
                case STREAM_CONNECTING:
                        connecting++;
                        break;
                case STREAM_AUTH_FAILED:
                        auth_failed++;
                        break;
                case STREAM_BACKOFF:
                        /* Held for TokenCommand='s token: as good as connecting. */
                        if (stream_next_retry(streams[i]) == 0 && auth_fetching(m->auth))
                                connecting++;
                        break;
                default:
                        break;
                }
        }

        if (auth_failed)
                state = "auth-failed";
        else if (wanted && connected == wanted)
                state = "online";
        else if (connected)
                state = "degraded";
        else if (connecting == wanted)
                state = "connecting";
        else
                state = "offline";

        if (m->state == state)
                return;
        m->state = state;
        bus_state(m->bus)->state = state;
        bus_changed(m->bus, BUS_CHANGE_STATE);
        /* Before READY=1 systemd shows "activating"; a STATUS= then would
         * only say something stale. */
        if (m->started)
                (void) sd_notifyf(false, "STATUS=%s", state);
        log_debug("Overall state: %s", state);
}

/* ---- requests to the server ---- */

/* {"headers":{"authorization":"Bearer T"}} plus one id field, or NULL. */
static json_object *request_new(struct manager *m, const char *key, const char *id) {
        json_object *o = json_object_new_object(), *headers = json_object_new_object();
        const char *token = auth_token(m->auth);
        char *bearer = NULL;

        if (!o || !headers || asprintf(&bearer, "Bearer %s", token ? token : "") < 0) {
                json_object_put(o);
                json_object_put(headers);
                return NULL;
        }
        if (key)
                json_object_object_add(o, key, json_object_new_string(id));
        json_object_object_add(headers, "authorization", json_object_new_string(bearer));
        json_object_object_add(o, "headers", headers);
        explicit_bzero(bearer, strlen(bearer));
        free(bearer);
        return o;
}

/* Wipes the token out of a request before json-c frees it. */
static void request_free(json_object *o) {
        json_object *headers, *auth;

        if (json_object_object_get_ex(o, "headers", &headers) &&
            json_object_object_get_ex(headers, "authorization", &auth))
                explicit_bzero((char *) json_object_get_string(auth),
                               (size_t) json_object_get_string_len(auth));
        json_object_put(o);
}

static int emit_request(struct manager *m, struct stream *s, const char *name, const char *key,
                        const char *id, int64_t ack_id) {
        json_object *request = request_new(m, key, id);
        int r;

        if (!request)
                return -ENOMEM;
        r = stream_emit(s, name, request, ack_id);
        request_free(request);
        return r;
}

static int on_browse(void *userdata, enum bus_browse kind, const char *id, sd_bus_message *call,
                     sd_bus_error *error) {
        struct manager *m = userdata;
        int64_t ack_id;
        int r;

        if (stream_state(m->activities) != STREAM_CONNECTED)
                return sd_bus_error_setf(error, BUS_ERROR_NOT_CONNECTED,
                                         "The activities stream is not connected (state %s)",
                                         stream_state_to_string(stream_state(m->activities)));

        ack_id = stream_next_ack_id(m->activities);
        r = browses_add(m->browses, kind, id, ack_id, call, m->config->browse_timeout_usec);
        if (r == -EBUSY)
                return sd_bus_error_setf(error, BUS_ERROR_SERVER_ERROR,
                                         "Too many browse calls waiting for the server");
        if (r < 0)
                return r;

        r = emit_request(m, m->activities, browse_event_name(kind), browse_id_key(kind), id,
                         ack_id);
        if (r < 0) {
                browses_cancel(m->browses, ack_id);
                if (r == -ENOTCONN)
                        return sd_bus_error_setf(error, BUS_ERROR_NOT_CONNECTED,
                                                 "The activities stream is not connected");
                if (r == -ENOBUFS)      /* the stream drops that link now */
                        return sd_bus_error_setf(error, BUS_ERROR_NOT_CONNECTED,
                                                 "The server is not reading what is sent "
                                                 "to it; reconnecting");
                return r;
        }
        return 0;
}

/* ---- imports ---- */

static ssize_t watched_find(struct manager *m, const char *id) {
        for (size_t i = 0; i < m->n_watched; i++)
                if (strcmp(m->watched[i], id) == 0)
                        return (ssize_t) i;
        return -1;
}

static void watched_changed(struct manager *m) {
        bus_state(m->bus)->watched_imports = m->watched;
        bus_changed(m->bus, BUS_CHANGE_WATCHED_IMPORTS);
        if (m->n_watched == 0)
                stream_stop(m->import);
        else
                stream_start(m->import);
        update_state(m);
}

static void watched_remove(struct manager *m, size_t i) {
        free(m->watched[i]);
        memmove(m->watched + i, m->watched + i + 1, (m->n_watched - i) * sizeof(char *));
        m->n_watched--;
}

static int on_watch_import(void *userdata, const char *id, sd_bus_error *error) {
        struct manager *m = userdata;
        char **p, *copy;
        int r;

        if (watched_find(m, id) >= 0)
                return 0;
        if (m->n_watched >= MAX_WATCHED_IMPORTS)
                return sd_bus_error_setf(error, BUS_ERROR_INVALID_ARGUMENT,
                                         "Already watching %d imports", MAX_WATCHED_IMPORTS);

        copy = strdup(id);
        p = realloc(m->watched, (m->n_watched + 2) * sizeof(char *));
        if (!copy || !p) {
                free(copy);
                if (p)
                        m->watched = p;
                return -ENOMEM;
        }
        m->watched = p;
        m->watched[m->n_watched++] = copy;
        m->watched[m->n_watched] = NULL;
        log_info("Watching import %s", id);

        if (stream_state(m->import) == STREAM_CONNECTED) {
                r = emit_request(m, m->import, "connectImportID", "_importID", id,
                                 SIO_NO_ACK_ID);
                if (r < 0)
                        log_warning_errno(r, "import: cannot subscribe to %s now, will on "
                                          "reconnect: %m", id);
        }
        watched_changed(m);
        return 0;
}

static int on_unwatch_import(void *userdata, const char *id, sd_bus_error *error) {
        struct manager *m = userdata;
        ssize_t i = watched_find(m, id);

        if (i < 0)
                return sd_bus_error_setf(error, BUS_ERROR_INVALID_ARGUMENT,
                                         "Import %s is not watched", id);
        watched_remove(m, (size_t) i);
        log_info("No longer watching import %s", id);
        watched_changed(m);
        return 0;
}

/* ---- stream callbacks ---- */

static void subscribe(struct manager *m, struct stream *s) {
        int r = 0;

        if (s == m->activities)
                r = emit_request(m, s, "activities", NULL, NULL, SIO_NO_ACK_ID);
        else
                for (size_t i = 0; i < m->n_watched && r >= 0; i++)
                        r = emit_request(m, s, "connectImportID", "_importID", m->watched[i],
                                         SIO_NO_ACK_ID);
        if (r < 0)
                stream_fail(s, "cannot send the subscription");
}

static void on_stream_connected(struct stream *s, bool recovered, uint64_t offline_usec,
                                bool first, void *userdata) {
        struct manager *m = userdata;
        int r;

        subscribe(m, s);
        if (!first) {
                r = bus_emit_resumed(m->bus, stream_name(s), recovered, offline_usec);
                if (r < 0)
                        log_warning_errno(r, "Cannot send Resumed: %m");
        }
        update_state(m);
}

static bool is_unauthorized(json_object *payload) {
        static const char *const words[] = { "unauthori", "forbidden", "jwt", "token" };
        json_object *message;
        const char *text;

        if (json_object_is_type(payload, json_type_string))
                text = json_object_get_string(payload);
        else if (json_object_object_get_ex(payload, "message", &message))
                text = json_object_get_string(message);
        else
                return false;

        for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
                if (strcasestr(text, words[i]))
                        return true;
        return false;
}

/* The end of a rate-limit window in which drop lines were held back: say
 * how many, so that the log accounts for every drop without waiting for
 * the next one (which may never come). */
static int on_drop_report(sd_event_source *source, uint64_t usec, void *userdata) {
        struct manager *m = userdata;
        unsigned held = ratelimit_take_suppressed(&m->drop_log);

        if (held > 0)
                log_warning("Dropped %u more frames from the server in the last %u s without a "
                            "line each (%" PRIu64 " in all)", held,
                            (unsigned) (m->drop_log.interval_usec / USEC_PER_SEC),
                            bus_state(m->bus)->events_dropped);
        return 0;
}

static void drop_report_arm(struct manager *m) {
        uint64_t at = m->drop_log.begin + m->drop_log.interval_usec;
        int r;

        if (m->drop_report)
                r = sd_event_source_set_time(m->drop_report, at);
        else
                r = sd_event_add_time(m->event, &m->drop_report, CLOCK_MONOTONIC, at, 0,
                                      on_drop_report, m);
        if (r >= 0)
                r = sd_event_source_set_enabled(m->drop_report, SD_EVENT_ONESHOT);
        if (r < 0)      /* the count still comes with the next drop line */
                log_full_errno(LOG_DEBUG, r, "Cannot arm the drop report timer: %m");
}

static void count_dropped(struct manager *m, struct stream *s, enum stream_drop why) {
        unsigned suppressed;

        bus_state(m->bus)->events_dropped++;
        bus_changed(m->bus, BUS_CHANGE_COUNTERS);
        m->drops_by_reason[why]++;
        if (!ratelimit_below(&m->drop_log, now_usec(CLOCK_MONOTONIC), &suppressed)) {
                if (m->drop_log.suppressed == 1)
                        drop_report_arm(m);
                return;
        }
        if (suppressed)
                log_warning("%s: dropped a frame from the server: %s (%" PRIu64 " in all; "
                            "%u more since the last report)", stream_name(s),
                            drop_reasons[why], bus_state(m->bus)->events_dropped, suppressed);
        else
                log_warning("%s: dropped a frame from the server: %s (%" PRIu64 " in all)",
                            stream_name(s), drop_reasons[why],
                            bus_state(m->bus)->events_dropped);
}

static void import_finished(struct manager *m, const struct event_signal *sig) {
        ssize_t i = sig->id[0] ? watched_find(m, sig->id) : -1;

        /* Without an id in the payload, a lone watched import is the one. */
        if (i < 0 && !sig->id[0] && m->n_watched == 1)
                i = 0;
        if (i < 0)
                return;
        log_info("Import %s %s", m->watched[i],
                 strcmp(sig->kind->event, "importFinished") == 0 ? "finished" : "failed");
        watched_remove(m, (size_t) i);
        watched_changed(m);
}

static void pause_streams(struct manager *m, bool pause) {
        m->paused = pause;
        stream_pause(m->activities, pause);
        stream_pause(m->import, pause);
        (void) sd_event_source_set_enabled(m->drain, pause ? SD_EVENT_ON : SD_EVENT_OFF);
        log_debug("%s reading from the server (bus queue %" PRIu64 ")",
                  pause ? "Paused" : "Resumed", bus_queued(m->bus));
}

static int on_drain(sd_event_source *source, void *userdata) {
        struct manager *m = userdata;

        if (m->paused && bus_queued(m->bus) <= BUS_QUEUE_LOW)
                pause_streams(m, false);
        return 0;
}

/* Sends the signal, counts it, and takes the consequences (a finished
 * import is forgotten; a long bus queue pauses reading). */
static void forward_event(struct manager *m, struct stream *s, struct event_signal *sig) {
        int r;

        r = bus_emit_event(m->bus, stream_name(s), sig);
        if (r < 0) {
                log_warning_errno(r, "Cannot send a signal for %s: %m", sig->name);
                count_dropped(m, s, STREAM_DROP_INVALID);
        } else {
                bus_state(m->bus)->events_emitted++;
                bus_changed(m->bus, BUS_CHANGE_COUNTERS);
                log_debug("%s: %s %s", stream_name(s), sig->kind ? sig->kind->member : "Event",
                          sig->name);
        }

        if (s == m->import && sig->kind &&
            (strcmp(sig->kind->event, "importFinished") == 0 ||
             strcmp(sig->kind->event, "importError") == 0))
                import_finished(m, sig);
        event_signal_release(sig);

        if (!m->paused && bus_queued(m->bus) >= BUS_QUEUE_HIGH)
                pause_streams(m, true);
}

static void on_stream_event(struct stream *s, struct sio_packet *p, void *userdata) {
        struct manager *m = userdata;
        struct event_signal sig;
        const char *name = sio_event_name(p);
        int r;

        bus_stream_changed(m->bus, s, true);

        if (s == m->activities && browses_take_event(m->browses, name, p->data))
                return;

        if (strcmp(name, "exception") == 0 && json_object_array_length(p->data) >= 2) {
                json_object *payload = json_object_array_get_idx(p->data, 1);

                if (is_unauthorized(payload)) {
                        stream_auth_failed(s, "the server answered the subscription with "
                                              "'unauthorized'");
                        update_state(m);
                        return;
                }
                /* Another NestJS exception most likely answers our last emit. */
                if (s == m->activities)
                        browses_fail_oldest(m->browses, BUS_ERROR_SERVER_ERROR,
                                            json_object_to_json_string_ext(payload,
                                                                   JSON_C_TO_STRING_PLAIN));
        }

        r = event_map(p->data, &sig);
        if (r < 0) {
                count_dropped(m, s, STREAM_DROP_INVALID);
                return;
        }
        forward_event(m, s, &sig);
}

/* The fast path. Events that need a look inside their JSON (NestJS
 * exceptions, browse answers while calls wait) take the slow one. */
static int on_stream_event_view(struct stream *s, const struct sio_event_view *v, size_t n_args,
                                void *userdata) {
        struct manager *m = userdata;
        struct event_signal sig;
        int r;

        if ((v->name_len == 9 && memcmp(v->name, "exception", 9) == 0) ||
            (s == m->activities && browses_waiting(m->browses) > 0 &&
             v->name_len > 14 && memcmp(v->name, "activities-by-", 14) == 0))
                return -EAGAIN;

        r = event_map_view(v, n_args, &sig);
        if (r == -EAGAIN)
                return r;
        bus_stream_changed(m->bus, s, true);
        if (r < 0) {
                count_dropped(m, s, STREAM_DROP_INVALID);
                return 0;
        }
        forward_event(m, s, &sig);
        return 0;
}

static void on_stream_ack(struct stream *s, int64_t ack_id, json_object *args, void *userdata) {
        struct manager *m = userdata;

        if (!browses_take_ack(m->browses, ack_id, args))
                log_debug("%s: ack %" PRId64 " for no call waiting (timed out?)", stream_name(s),
                          ack_id);
}

static void on_stream_disconnected(struct stream *s, void *userdata) {
        struct manager *m = userdata;

        if (s == m->activities)
                browses_fail_all(m->browses, BUS_ERROR_NOT_CONNECTED,
                                 "The connection to the server was lost");
}

static void on_stream_changed(struct stream *s, void *userdata) {
        struct manager *m = userdata;

        bus_stream_changed(m->bus, s, false);
        /* A TokenCommand= runs again before each reconnect; a refused token
         * is renewed if its source can. */
        if (stream_state(s) == STREAM_BACKOFF)
                auth_before_connect(m->auth);
        else if (stream_state(s) == STREAM_AUTH_FAILED)
                auth_refused(m->auth);
        update_state(m);
}

static void on_stream_dropped(struct stream *s, enum stream_drop why, void *userdata) {
        count_dropped(userdata, s, why);
}

/* TokenCommand= runs before each connect: a backoff that ends while it
 * still runs waits for its token rather than offering the old one. */
static bool on_stream_may_connect(struct stream *s, void *userdata) {
        struct manager *m = userdata;

        return !auth_fetching(m->auth);
}

static const struct stream_ops stream_ops = {
        .connected = on_stream_connected,
        .event = on_stream_event,
        .event_view = on_stream_event_view,
        .ack = on_stream_ack,
        .disconnected = on_stream_disconnected,
        .changed = on_stream_changed,
        .dropped = on_stream_dropped,
        .may_connect = on_stream_may_connect,
};

/* ---- configuration in force ---- */

/* A new token: streams that were refused try again; connected ones send
 * their subscriptions again with it, on the same connection, so that
 * nothing is missed in between. */
static void token_changed(struct manager *m) {
        struct stream *streams[] = { m->activities, m->import };

        for (size_t i = 0; i < 2; i++) {
                if (!stream_wanted(m, streams[i]))
                        continue;
                if (stream_state(streams[i]) == STREAM_CONNECTED)
                        subscribe(m, streams[i]);
                else
                        stream_start(streams[i]);
        }
        update_state(m);
}

static void on_auth_changed(struct auth *a, void *userdata) {
        struct manager *m = userdata;

        if (stream_set_token(m->activities, auth_token(a)) < 0 ||
            stream_set_token(m->import, auth_token(a)) < 0) {
                log_error_errno(ENOMEM, "Out of memory");
                return;
        }
        bus_state(m->bus)->token_expiry = auth_expiry(a);
        bus_changed(m->bus, BUS_CHANGE_TOKEN_EXPIRY);
        token_changed(m);
}

static void on_auth_failed(struct auth *a, const char *why, void *userdata) {
        struct manager *m = userdata;

        stream_set_token(m->activities, NULL);
        stream_set_token(m->import, NULL);
        bus_state(m->bus)->token_expiry = 0;
        bus_changed(m->bus, BUS_CHANGE_TOKEN_EXPIRY);
        stream_auth_failed(m->activities, why);
        if (m->n_watched > 0)
                stream_auth_failed(m->import, why);
        update_state(m);
}

/* The command gave the same token: held connects go with it. */
static void on_auth_settled(struct auth *a, void *userdata) {
        struct manager *m = userdata;
        struct stream *streams[] = { m->activities, m->import };

        for (size_t i = 0; i < 2; i++)
                if (stream_wanted(m, streams[i]) && stream_state(streams[i]) == STREAM_BACKOFF)
                        stream_start(streams[i]);
}

static const struct auth_ops auth_ops = {
        .changed = on_auth_changed,
        .failed = on_auth_failed,
        .settled = on_auth_settled,
};

static int apply_settings(struct manager *m) {
        struct stream_settings a = settings_for_stream(m->config, m->config->activities_path);
        struct stream_settings i = settings_for_stream(m->config, m->config->import_path);
        int r;

        r = stream_configure(m->activities, &a);
        if (r >= 0)
                r = stream_configure(m->import, &i);
        return r;
}

static int on_reconnect(void *userdata, sd_bus_error *error) {
        struct manager *m = userdata;

        log_info("Reconnecting every stream, as asked");
        if (stream_state(m->activities) == STREAM_AUTH_FAILED && !auth_token(m->auth))
                return sd_bus_error_setf(error, BUS_ERROR_AUTH_FAILED, "%s",
                                         auth_last_error(m->auth) ? auth_last_error(m->auth)
                                                                  : "No token");
        stream_start(m->activities);
        stream_reconnect(m->activities);
        if (m->n_watched > 0) {
                stream_start(m->import);
                stream_reconnect(m->import);
        }
        return 0;
}

static int on_reload(void *userdata, sd_bus_error *error) {
        struct manager *m = userdata;
        char *message = NULL;
        int r;

        r = manager_reload(m, &message);
        if (r < 0) {
                r = sd_bus_error_setf(error, BUS_ERROR_INVALID_ARGUMENT, "%s",
                                      message ? message : "Reload failed");
                free(message);
                return r;
        }
        return 0;
}

static void on_resumed(void *userdata) {
        struct manager *m = userdata;

        if (stream_state(m->activities) != STREAM_AUTH_FAILED)
                stream_reconnect(m->activities);
        if (m->n_watched > 0 && stream_state(m->import) != STREAM_AUTH_FAILED)
                stream_reconnect(m->import);
}

/* Runs when the loop exits, before sd-bus closes its connection (its own
 * exit source has a lower priority), so that waiting callers get a proper
 * answer rather than NoReply. */
static int on_loop_exit(sd_event_source *source, void *userdata) {
        struct manager *m = userdata;

        browses_fail_all(m->browses, BUS_ERROR_NOT_CONNECTED, "The daemon is stopping");
        stream_stop(m->activities);
        stream_stop(m->import);
        sd_bus_flush(bus_get(m->bus));
        return 0;
}

static const struct bus_ops bus_ops = {
        .browse = on_browse,
        .watch_import = on_watch_import,
        .unwatch_import = on_unwatch_import,
        .reconnect = on_reconnect,
        .reload = on_reload,
        .resumed = on_resumed,
};

int manager_new(struct manager **ret, sd_event *event, const struct settings_source *options) {
        struct manager *m;
        int r;

        m = calloc(1, sizeof(*m));
        if (!m)
                return log_error_errno(ENOMEM, "Out of memory");
        m->event = sd_event_ref(event);
        m->options = *options;
        m->drop_log = (struct ratelimit) { .interval_usec = 10 * USEC_PER_SEC, .burst = 10 };

        r = settings_load(options, &m->config);
        if (r < 0)
                goto fail;
        log_set_max_level(m->config->log_level);

        r = bus_new(&m->bus, event, m->config->bus, &bus_ops, m);
        if (r < 0)
                goto fail;
        bus_state(m->bus)->state = m->state = "connecting";

        r = stream_new(&m->activities, "activities", event, &stream_ops, m);
        if (r >= 0)
                r = stream_new(&m->import, "import", event, &stream_ops, m);
        if (r >= 0)
                r = apply_settings(m);
        if (r >= 0)
                r = browses_new(&m->browses, event);
        if (r >= 0)
                r = sd_event_add_post(event, &m->drain, on_drain, m);
        if (r >= 0)
                r = sd_event_add_exit(event, &m->exit_source, on_loop_exit, m);
        if (r >= 0)
                r = sd_event_source_set_priority(m->exit_source, SD_EVENT_PRIORITY_IMPORTANT);
        if (r >= 0)
                r = auth_new(&m->auth, event, &auth_ops, m);
        if (r >= 0)
                r = sd_event_source_set_enabled(m->drain, SD_EVENT_OFF);
        if (r < 0) {
                log_error_errno(r, "Cannot set up the streams: %m");
                goto fail;
        }

        r = settings_lws_new(m->config, m->event, &m->lws);
        if (r < 0)
                goto fail;
        stream_set_lws(m->activities, m->lws);
        stream_set_lws(m->import, m->lws);
        auth_set_lws(m->auth, m->lws);

        *ret = m;
        return 0;
fail:
        manager_free(m);
        return r;
}

struct manager *manager_free(struct manager *m) {
        if (!m)
                return NULL;

        m->browses = browses_free(m->browses);
        /* Kills a running TokenCommand=, lets go of a renewal while lws is
         * still there. */
        m->auth = auth_free(m->auth);
        /* Streams let go of their connections before lws goes, so that the
         * WSI_DESTROY callbacks during lws_context_destroy() find nothing. */
        if (m->activities)
                stream_stop(m->activities);
        if (m->import)
                stream_stop(m->import);
        loop_lws_free(m->lws);
        stream_free(m->activities);
        stream_free(m->import);
        bus_free(m->bus);

        for (size_t i = 0; i < m->n_watched; i++)
                free(m->watched[i]);
        free(m->watched);
        sd_event_source_disable_unref(m->drain);
        sd_event_source_disable_unref(m->drop_report);
        sd_event_source_disable_unref(m->exit_source);
        config_free(m->config);
        sd_event_unref(m->event);
        free(m);
        return NULL;
}

int manager_start(struct manager *m) {
        int r;

        r = bus_add_stream(m->bus, m->activities);
        if (r >= 0)
                r = bus_add_stream(m->bus, m->import);
        if (r < 0)
                return r;

        r = bus_acquire_name(m->bus);
        if (r < 0)
                return r;

        log_info("samdock-eventd " PACKAGE_VERSION " on the %s bus, server %s",
                 m->config->bus == CONFIG_BUS_SESSION ? "session" : "system", m->config->url);
        m->started = true;
        (void) sd_notifyf(false, "READY=1\nSTATUS=%s", m->state);

        /* A token, now or later, starts the streams (on_auth_changed). While
         * TokenCommand= fetches the first one, the activities stream is
         * wanted already and waits in backoff for it. */
        (void) auth_load(m->auth, m->config);
        if (!auth_token(m->auth) && auth_fetching(m->auth))
                stream_start(m->activities);
        update_state(m);
        return 0;
}

/* Did anything change that needs new connections? */
int manager_reload(struct manager *m, char **ret_error) {
        struct config *c = NULL, *old;
        struct lws_context *lws = NULL;
        bool reconnect, new_lws;
        int r;

        log_info("Reloading configuration and token");
        r = settings_load(&m->options, &c);
        if (r < 0) {
                if (ret_error)
                        *ret_error = strdup("The configuration has errors (see the log); "
                                            "keeping the old one");
                log_error("The configuration has errors; keeping the old one");
                return r;
        }
        if (c->bus != m->config->bus)
                log_warning("Bus= changed; that takes a restart, staying on this bus");

        reconnect = settings_need_reconnect(m->config, c);
        new_lws = settings_need_new_lws(m->config, c);
        old = m->config;
        m->config = c;
        if (new_lws) {
                r = settings_lws_new(m->config, m->event, &lws);
                if (r < 0) {
                        m->config = old;
                        config_free(c);
                        if (ret_error)
                                *ret_error = strdup("Cannot set up TLS or the proxy with the "
                                                    "new settings; keeping the old ones");
                        return r;
                }
        }
        config_free(old);
        log_set_max_level(m->config->log_level);

        r = apply_settings(m);
        if (r < 0)
                return r;
        if (new_lws) {
                /* Detach every connection before the old context goes. */
                stream_set_lws(m->activities, lws);
                stream_set_lws(m->import, lws);
                auth_set_lws(m->auth, lws);
                loop_lws_free(m->lws);
                m->lws = lws;
        }

        r = auth_load(m->auth, m->config);
        if (r < 0)
                return 0;       /* reported; the streams wait for a token */
        if (reconnect) {
                stream_start(m->activities);
                stream_reconnect(m->activities);
                if (m->n_watched > 0) {
                        stream_start(m->import);
                        stream_reconnect(m->import);
                }
        } else if (r == 0 && auth_token(m->auth) &&
                   stream_state(m->activities) == STREAM_AUTH_FAILED)
                /* Reload() retries a refused token (a new one already
                 * went to the streams in on_auth_changed). */
                token_changed(m);
        update_state(m);
        return 0;
}

struct lws_context **manager_lws(struct manager *m) {
        return &m->lws;
}
