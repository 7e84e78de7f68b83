/* SPDX-License-Identifier: MIT */
/*
 * The vtables below are the D-Bus API's table of contents; data/dbus/
 * app.samdock.Events.xml must say the same (a test compares them).
 * PropertiesChanged is coalesced: a burst of events marks counters dirty
 * many times and sends one signal a second, while state changes go out on
 * the next loop turn.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "eventd-bus.h"
#include "eventd-log.h"
#include "eventd-time.h"
#include "eventd-stream.h"

#define MAX_STREAMS 4
#define COUNTER_INTERVAL_USEC 1000000ULL

struct bus_stream {
        struct stream *stream;
        char *path;
        bool dirty_state, dirty_counters;
};

struct bus {
        struct bus_state state;         /* first: the vtable's offsets point here */
        sd_bus *bus;
        sd_bus *system_bus;             /* for logind, when we serve the session bus */
        sd_event *event;
        const struct bus_ops *ops;
        void *userdata;
        struct bus_stream streams[MAX_STREAMS];
        size_t n_streams;
        unsigned dirty;                 /* enum bus_change */
        sd_event_source *flush_defer;
        sd_event_source *counter_timer;
        uint64_t counters_sent_at;      /* CLOCK_MONOTONIC */
};

static int property_get_string(sd_bus *bus, const char *path, const char *interface,
                               const char *property, sd_bus_message *reply, void *userdata,
                               sd_bus_error *error) {
        const char *const *s = userdata;

        return sd_bus_message_append(reply, "s", *s ? *s : "");
}

static int property_get_version(sd_bus *bus, const char *path, const char *interface,
                                const char *property, sd_bus_message *reply, void *userdata,
                                sd_bus_error *error) {
        return sd_bus_message_append(reply, "s", PACKAGE_VERSION);
}

static int property_get_strv(sd_bus *bus, const char *path, const char *interface,
                             const char *property, sd_bus_message *reply, void *userdata,
                             sd_bus_error *error) {
        char **const *strv = userdata;

        return sd_bus_message_append_strv(reply, *strv);
}

static int method_browse(sd_bus_message *m, void *userdata, sd_bus_error *error,
                         enum bus_browse kind) {
        struct bus *b = userdata;
        const char *id;
        int r;

        r = sd_bus_message_read(m, "s", &id);
        if (r < 0)
                return r;
        if (!bus_id_is_valid(id))
                return sd_bus_error_setf(error, BUS_ERROR_INVALID_ARGUMENT,
                                         "Not a valid Samdock id: ids are 1 to 128 printable "
                                         "ASCII characters without blanks");

        r = b->ops->browse(b->userdata, kind, id, m, error);
        if (r < 0)
                return r;
        /* Answered later, when the server replies or the time is up. */
        return 1;
}

static int method_browse_person(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        return method_browse(m, userdata, error, BUS_BROWSE_PERSON);
}

static int method_browse_organization(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        return method_browse(m, userdata, error, BUS_BROWSE_ORGANIZATION);
}

static int method_import(sd_bus_message *m, void *userdata, sd_bus_error *error, bool watch) {
        struct bus *b = userdata;
        const char *id;
        int r;

        r = sd_bus_message_read(m, "s", &id);
        if (r < 0)
                return r;
        if (!bus_id_is_valid(id))
                return sd_bus_error_setf(error, BUS_ERROR_INVALID_ARGUMENT,
                                         "Not a valid import id: ids are 1 to 128 printable "
                                         "ASCII characters without blanks");

        r = watch ? b->ops->watch_import(b->userdata, id, error)
                  : b->ops->unwatch_import(b->userdata, id, error);
        if (r < 0)
                return r;
        return sd_bus_reply_method_return(m, NULL);
}

static int method_watch_import(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        return method_import(m, userdata, error, true);
}

static int method_unwatch_import(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        return method_import(m, userdata, error, false);
}

static int method_reconnect(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        struct bus *b = userdata;
        int r;

        r = b->ops->reconnect(b->userdata, error);
        if (r < 0)
                return r;
        return sd_bus_reply_method_return(m, NULL);
}

static int method_reload(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        struct bus *b = userdata;
        int r;

        r = b->ops->reload(b->userdata, error);
        if (r < 0)
                return r;
        return sd_bus_reply_method_return(m, NULL);
}

/* Who may call is the bus policy's business (root and group samdock on the
 * system bus); UNPRIVILEGED keeps sd-bus from refusing everyone but our own
 * uid on top of it. */
static const sd_bus_vtable events_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Version", "s", property_get_version, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("State", "s", property_get_string, offsetof(struct bus_state, state),
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("WatchedImports", "as", property_get_strv,
                        offsetof(struct bus_state, watched_imports),
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("TokenExpiry", "t", NULL, offsetof(struct bus_state, token_expiry),
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("EventsEmitted", "t", NULL, offsetof(struct bus_state, events_emitted),
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("EventsDropped", "t", NULL, offsetof(struct bus_state, events_dropped),
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),

        SD_BUS_METHOD_WITH_NAMES("BrowseActivitiesByPerson",
                                 "s", SD_BUS_PARAM(person_id),
                                 "s", SD_BUS_PARAM(activities),
                                 method_browse_person, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("BrowseActivitiesByOrganization",
                                 "s", SD_BUS_PARAM(organization_id),
                                 "s", SD_BUS_PARAM(activities),
                                 method_browse_organization, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("WatchImport", "s", SD_BUS_PARAM(import_id), "", ,
                                 method_watch_import, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("UnwatchImport", "s", SD_BUS_PARAM(import_id), "", ,
                                 method_unwatch_import, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("Reconnect", "", "", method_reconnect, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("Reload", "", "", method_reload, SD_BUS_VTABLE_UNPRIVILEGED),

        SD_BUS_SIGNAL_WITH_NAMES("ActivityAdded", "ss",
                                 SD_BUS_PARAM(activity_id) SD_BUS_PARAM(payload), 0),
        SD_BUS_SIGNAL_WITH_NAMES("ActivityEdited", "ss",
                                 SD_BUS_PARAM(activity_id) SD_BUS_PARAM(payload), 0),
        SD_BUS_SIGNAL_WITH_NAMES("ActivityDeleted", "ss",
                                 SD_BUS_PARAM(activity_id) SD_BUS_PARAM(payload), 0),
        SD_BUS_SIGNAL_WITH_NAMES("PersonDeleted", "ss",
                                 SD_BUS_PARAM(person_id) SD_BUS_PARAM(payload), 0),
        SD_BUS_SIGNAL_WITH_NAMES("OrganizationDeleted", "ss",
                                 SD_BUS_PARAM(organization_id) SD_BUS_PARAM(payload), 0),
        SD_BUS_SIGNAL_WITH_NAMES("DealDeleted", "ss",
                                 SD_BUS_PARAM(deal_id) SD_BUS_PARAM(payload), 0),
        SD_BUS_SIGNAL_WITH_NAMES("TaskDeleted", "ss",
                                 SD_BUS_PARAM(task_id) SD_BUS_PARAM(payload), 0),
        SD_BUS_SIGNAL_WITH_NAMES("ImportProgress", "ss",
                                 SD_BUS_PARAM(import_id) SD_BUS_PARAM(payload), 0),
        SD_BUS_SIGNAL_WITH_NAMES("ImportError", "ss",
                                 SD_BUS_PARAM(import_id) SD_BUS_PARAM(payload), 0),
        SD_BUS_SIGNAL_WITH_NAMES("ImportFinished", "ss",
                                 SD_BUS_PARAM(import_id) SD_BUS_PARAM(payload), 0),
        SD_BUS_SIGNAL_WITH_NAMES("Event", "sss",
                                 SD_BUS_PARAM(stream) SD_BUS_PARAM(name) SD_BUS_PARAM(payload),
                                 0),
        SD_BUS_SIGNAL_WITH_NAMES("Resumed", "sbt",
                                 SD_BUS_PARAM(stream) SD_BUS_PARAM(recovered)
                                 SD_BUS_PARAM(offline_usec), 0),
        SD_BUS_VTABLE_END
};

#define STREAM_GETTER(fn, type, sig, expr)                                              \
        static int fn(sd_bus *bus, const char *path, const char *interface,            \
                      const char *property, sd_bus_message *reply, void *userdata,      \
                      sd_bus_error *error) {                                            \
                const struct stream *s = userdata;                                      \
                type value = (expr);                                                    \
                return sd_bus_message_append(reply, sig, value);                        \
        }

STREAM_GETTER(stream_get_name, const char *, "s", stream_name(s))
STREAM_GETTER(stream_get_url, const char *, "s", stream_url(s))
STREAM_GETTER(stream_get_state, const char *, "s", stream_state_to_string(stream_state(s)))
STREAM_GETTER(stream_get_since, uint64_t, "t", stream_since(s))
STREAM_GETTER(stream_get_next_retry, uint64_t, "t", stream_next_retry(s))
STREAM_GETTER(stream_get_reconnects, uint32_t, "u", stream_reconnects(s))
STREAM_GETTER(stream_get_last_error, const char *, "s", stream_last_error(s))
STREAM_GETTER(stream_get_events_received, uint64_t, "t", stream_events_received(s))

static const sd_bus_vtable stream_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Name", "s", stream_get_name, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Url", "s", stream_get_url, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("State", "s", stream_get_state, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Since", "t", stream_get_since, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("NextRetry", "t", stream_get_next_retry, 0,
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Reconnects", "u", stream_get_reconnects, 0,
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("LastError", "s", stream_get_last_error, 0,
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("EventsReceived", "t", stream_get_events_received, 0,
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_VTABLE_END
};

bool bus_id_is_valid(const char *id) {
        size_t len = strlen(id);

        if (len == 0 || len > 128)
                return false;
        for (size_t i = 0; i < len; i++)
                if ((unsigned char) id[i] <= 0x20 || (unsigned char) id[i] >= 0x7f)
                        return false;
        return true;
}

static void emit_changed(struct bus *b, const char *path, const char *interface,
                         const char *const *names) {
        int r;

        if (!names[0])
                return;
        r = sd_bus_emit_properties_changed_strv(b->bus, path, interface, (char **) names);
        if (r == -ENOTCONN || r == -ECONNRESET)
                return;         /* the bus is gone; on_disconnected() says so */
        if (r < 0)
                log_warning_errno(r, "Cannot send PropertiesChanged for %s: %m", path);
}

static void flush(struct bus *b, bool counters) {
        const char *names[8];
        size_t n = 0;

        if (b->dirty & BUS_CHANGE_STATE)
                names[n++] = "State";
        if (b->dirty & BUS_CHANGE_WATCHED_IMPORTS)
                names[n++] = "WatchedImports";
        if (b->dirty & BUS_CHANGE_TOKEN_EXPIRY)
                names[n++] = "TokenExpiry";
        if (counters && (b->dirty & BUS_CHANGE_COUNTERS)) {
                names[n++] = "EventsEmitted";
                names[n++] = "EventsDropped";
        }
        names[n] = NULL;
        b->dirty &= counters ? 0 : BUS_CHANGE_COUNTERS;
        emit_changed(b, BUS_PATH, BUS_INTERFACE, names);

        for (size_t i = 0; i < b->n_streams; i++) {
                struct bus_stream *bs = &b->streams[i];

                n = 0;
                if (bs->dirty_state) {
                        names[n++] = "Url";
                        names[n++] = "State";
                        names[n++] = "Since";
                        names[n++] = "NextRetry";
                        names[n++] = "Reconnects";
                        names[n++] = "LastError";
                }
                if (counters && bs->dirty_counters)
                        names[n++] = "EventsReceived";
                names[n] = NULL;
                bs->dirty_state = false;
                if (counters)
                        bs->dirty_counters = false;
                emit_changed(b, bs->path, BUS_STREAM_INTERFACE, names);
        }
        if (counters)
                b->counters_sent_at = now_usec(CLOCK_MONOTONIC);
}

static int on_flush_defer(sd_event_source *s, void *userdata) {
        flush(userdata, false);
        return 0;
}

static int on_counter_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        flush(userdata, true);
        return 0;
}

static void schedule_flush(struct bus *b, bool counters) {
        int r;

        /* While the loop winds down, sources can no longer be armed. */
        r = sd_event_get_state(b->event);
        if (r == SD_EVENT_EXITING || r == SD_EVENT_FINISHED)
                return;

        if (counters) {
                if (sd_event_source_get_enabled(b->counter_timer, NULL) > 0)
                        return;
                r = sd_event_source_set_time(b->counter_timer,
                                             b->counters_sent_at + COUNTER_INTERVAL_USEC);
                if (r >= 0)
                        r = sd_event_source_set_enabled(b->counter_timer, SD_EVENT_ONESHOT);
        } else
                r = sd_event_source_set_enabled(b->flush_defer, SD_EVENT_ONESHOT);
        if (r < 0)
                log_warning_errno(r, "Cannot schedule PropertiesChanged: %m");
}

void bus_changed(struct bus *b, enum bus_change what) {
        if (!b)
                return;
        b->dirty |= what;
        schedule_flush(b, what == BUS_CHANGE_COUNTERS);
}

void bus_stream_changed(struct bus *b, struct stream *s, bool counters_only) {
        if (!b)
                return;
        for (size_t i = 0; i < b->n_streams; i++) {
                if (b->streams[i].stream != s)
                        continue;
                if (counters_only)
                        b->streams[i].dirty_counters = true;
                else
                        b->streams[i].dirty_state = true;
                schedule_flush(b, counters_only);
        }
}

static int on_prepare_for_sleep(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        struct bus *b = userdata;
        int sleeping, r;

        r = sd_bus_message_read(m, "b", &sleeping);
        if (r < 0) {
                log_debug("Malformed PrepareForSleep signal: %s", strerror(-r));
                return 0;
        }
        if (sleeping)
                log_debug("The machine is going to sleep");
        else {
                log_info("The machine woke up; reconnecting");
                if (b->ops->resumed)
                        b->ops->resumed(b->userdata);
        }
        return 0;
}

static int on_disconnected(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        struct bus *b = userdata;

        log_error("Lost the connection to the bus; exiting");
        return sd_event_exit(b->event, EXIT_FAILURE);
}

/* Follows logind's PrepareForSleep on the system bus. Best effort: a
 * session daemon on a machine without a system bus still works, and
 * CLOCK_BOOTTIME deadlines notice a dead link after resume anyway. */
static void watch_sleep(struct bus *b, enum config_bus kind) {
        sd_bus *system_bus = b->bus;
        int r;

        if (kind == CONFIG_BUS_SESSION) {
                r = sd_bus_open_system(&b->system_bus);
                if (r >= 0)
                        r = sd_bus_attach_event(b->system_bus, b->event, SD_EVENT_PRIORITY_NORMAL);
                if (r < 0) {
                        log_debug("No system bus to follow suspend and resume: %s", strerror(-r));
                        b->system_bus = sd_bus_flush_close_unref(b->system_bus);
                        return;
                }
                system_bus = b->system_bus;
        }
        r = sd_bus_match_signal_async(system_bus, NULL, "org.freedesktop.login1",
                                      "/org/freedesktop/login1", "org.freedesktop.login1.Manager",
                                      "PrepareForSleep", on_prepare_for_sleep, NULL, b);
        if (r < 0)
                log_debug("Cannot follow logind's PrepareForSleep: %s", strerror(-r));
}

int bus_new(struct bus **ret, sd_event *event, enum config_bus kind,
            const struct bus_ops *ops, void *userdata) {
        struct bus *b;
        int r;

        b = calloc(1, sizeof(*b));
        if (!b)
                return -ENOMEM;
        b->event = sd_event_ref(event);
        b->ops = ops;
        b->userdata = userdata;

        r = kind == CONFIG_BUS_SESSION ? sd_bus_open_user(&b->bus) : sd_bus_open_system(&b->bus);
        if (r < 0) {
                log_error_errno(r, "Cannot connect to the %s bus: %m",
                                kind == CONFIG_BUS_SESSION ? "session" : "system");
                goto fail;
        }
        /* Without the bus there is nothing to do; systemd restarts us. */
        r = sd_bus_match_signal(b->bus, NULL, NULL, "/org/freedesktop/DBus/Local",
                                "org.freedesktop.DBus.Local", "Disconnected", on_disconnected, b);
        if (r >= 0)
                r = sd_bus_attach_event(b->bus, event, SD_EVENT_PRIORITY_NORMAL);
        if (r >= 0)
                r = sd_bus_add_object_vtable(b->bus, NULL, BUS_PATH, BUS_INTERFACE,
                                             events_vtable, b);
        if (r >= 0)
                r = sd_bus_add_object_manager(b->bus, NULL, BUS_PATH);
        if (r >= 0)
                r = sd_event_add_defer(event, &b->flush_defer, on_flush_defer, b);
        if (r >= 0)
                r = sd_event_source_set_enabled(b->flush_defer, SD_EVENT_OFF);
        if (r >= 0)
                r = sd_event_add_time(event, &b->counter_timer, CLOCK_MONOTONIC, 0, 1000,
                                      on_counter_timer, b);
        if (r >= 0)
                r = sd_event_source_set_enabled(b->counter_timer, SD_EVENT_OFF);
        if (r < 0) {
                log_error_errno(r, "Cannot set up the bus objects: %m");
                goto fail;
        }
        watch_sleep(b, kind);

        *ret = b;
        return 0;
fail:
        bus_free(b);
        return r;
}

struct bus *bus_free(struct bus *b) {
        if (!b)
                return NULL;
        for (size_t i = 0; i < b->n_streams; i++)
                free(b->streams[i].path);
        sd_event_source_disable_unref(b->flush_defer);
        sd_event_source_disable_unref(b->counter_timer);
        if (b->bus) {
                sd_bus_flush(b->bus);
                sd_bus_flush_close_unref(b->bus);
        }
        sd_bus_flush_close_unref(b->system_bus);
        sd_event_unref(b->event);
        free(b);
        return NULL;
}

int bus_add_stream(struct bus *b, struct stream *s) {
        struct bus_stream *bs;
        int r;

        if (b->n_streams >= MAX_STREAMS)
                return -E2BIG;
        bs = &b->streams[b->n_streams];
        r = sd_bus_path_encode(BUS_STREAMS_PATH, stream_name(s), &bs->path);
        if (r < 0)
                return r;
        r = sd_bus_add_object_vtable(b->bus, NULL, bs->path, BUS_STREAM_INTERFACE,
                                     stream_vtable, s);
        if (r < 0) {
                free(bs->path);
                return log_error_errno(r, "Cannot publish stream %s: %m", stream_name(s));
        }
        bs->stream = s;
        b->n_streams++;
        return 0;
}

int bus_acquire_name(struct bus *b) {
        int r;

        r = sd_bus_request_name(b->bus, BUS_NAME, 0);
        if (r == -EEXIST)
                return log_error_errno(r, "Cannot take the name %s: another process owns it "
                                       "(is samdock-eventd already running?)", BUS_NAME);
        if (r == -EACCES || r == -EPERM)
                return log_error_errno(r, "Cannot take the name %s: the bus policy does not "
                                       "allow this user to own it", BUS_NAME);
        if (r < 0)
                return log_error_errno(r, "Cannot take the name %s: %m", BUS_NAME);
        return 0;
}

int bus_emit_event(struct bus *b, const char *stream, const struct event_signal *sig) {
        if (sig->kind)
                return sd_bus_emit_signal(b->bus, BUS_PATH, BUS_INTERFACE, sig->kind->member,
                                          "ss", sig->id, sig->payload);
        return sd_bus_emit_signal(b->bus, BUS_PATH, BUS_INTERFACE, "Event", "sss", stream,
                                  sig->name, sig->payload);
}

int bus_emit_resumed(struct bus *b, const char *stream, bool recovered, uint64_t offline_usec) {
        return sd_bus_emit_signal(b->bus, BUS_PATH, BUS_INTERFACE, "Resumed", "sbt", stream,
                                  (int) recovered, offline_usec);
}

uint64_t bus_queued(struct bus *b) {
        uint64_t n = 0;

        if (sd_bus_get_n_queued_write(b->bus, &n) < 0)
                return 0;
        return n;
}

struct bus_state *bus_state(struct bus *b) {
        return &b->state;
}

sd_bus *bus_get(struct bus *b) {
        return b->bus;
}
