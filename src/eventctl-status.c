/* SPDX-License-Identifier: MIT */
/*
 * The daemon's and its streams' properties as samdock-eventctl reads them
 * (GetAll, GetManagedObjects, PropertiesChanged) and as status shows them.
 * Names it does not know, or of another type, are skipped, so that a newer
 * daemon does not break an older client.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "eventctl-format.h"
#include "eventctl-status.h"

#define BUS_STREAM_INTERFACE "app.samdock.Events.Stream"

static void strv_freep(char ***p) {
        if (*p)
                for (char **s = *p; *s; s++)
                        free(*s);
        free(*p);
}

struct property {
        const char *name;
        const char *signature;          /* "s", "t", "u" or "as" */
        size_t offset;
};

static const struct property daemon_properties[] = {
        { "Version", "s", offsetof(struct daemon_status, version) },
        { "State", "s", offsetof(struct daemon_status, state) },
        { "WatchedImports", "as", offsetof(struct daemon_status, watched_imports) },
        { "TokenExpiry", "t", offsetof(struct daemon_status, token_expiry) },
        { "EventsEmitted", "t", offsetof(struct daemon_status, events_emitted) },
        { "EventsDropped", "t", offsetof(struct daemon_status, events_dropped) },
        {}
};

static const struct property stream_properties[] = {
        { "Name", "s", offsetof(struct stream_status, name) },
        { "Url", "s", offsetof(struct stream_status, url) },
        { "State", "s", offsetof(struct stream_status, state) },
        { "LastError", "s", offsetof(struct stream_status, last_error) },
        { "Since", "t", offsetof(struct stream_status, since) },
        { "NextRetry", "t", offsetof(struct stream_status, next_retry) },
        { "EventsReceived", "t", offsetof(struct stream_status, events_received) },
        { "Reconnects", "u", offsetof(struct stream_status, reconnects) },
        {}
};

static int property_read(sd_bus_message *m, const struct property *p, void *target) {
        void *field = (char *) target + p->offset;
        const char *s;
        int r;

        r = sd_bus_message_enter_container(m, 'v', p->signature);
        if (r < 0)
                return r;
        if (p->signature[0] == 's') {
                r = sd_bus_message_read_basic(m, 's', &s);
                if (r >= 0) {
                        free(*(char **) field);
                        *(char **) field = strdup(s);
                        r = *(char **) field ? 0 : -ENOMEM;
                }
        } else if (p->signature[0] == 'a') {
                strv_freep((char ***) field);
                r = sd_bus_message_read_strv(m, (char ***) field);
        } else
                r = sd_bus_message_read_basic(m, p->signature[0], field);
        if (r < 0)
                return r;
        return sd_bus_message_exit_container(m);
}

/* Reads an a{sv} into target, skipping what is not in the table. */
static int properties_read(sd_bus_message *m, const struct property *table, void *target) {
        int r;

        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                const struct property *p;
                const char *name, *contents;
                char type;

                r = sd_bus_message_read_basic(m, 's', &name);
                if (r < 0)
                        return r;
                r = sd_bus_message_peek_type(m, &type, &contents);
                if (r < 0)
                        return r;
                for (p = table; p->name; p++)
                        if (strcmp(p->name, name) == 0 && strcmp(p->signature, contents) == 0)
                                break;
                r = p->name ? property_read(m, p, target) : sd_bus_message_skip(m, "v");
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        return sd_bus_message_exit_container(m);
}

int daemon_status_read(sd_bus_message *m, struct daemon_status *d) {
        return properties_read(m, daemon_properties, d);
}

void daemon_status_release(struct daemon_status *d) {
        free(d->version);
        free(d->state);
        strv_freep(&d->watched_imports);
}

static void stream_status_release(struct stream_status *s) {
        free(s->name);
        free(s->url);
        free(s->state);
        free(s->last_error);
}

void stream_status_free_all(struct stream_status *streams, size_t n) {
        for (size_t i = 0; i < n; i++)
                stream_status_release(&streams[i]);
        free(streams);
}

static int stream_compare(const void *a, const void *b) {
        const struct stream_status *x = a, *y = b;

        return strcmp(x->name ? x->name : "", y->name ? y->name : "");
}

int stream_status_read_all(sd_bus_message *m, struct stream_status **ret, size_t *ret_n) {
        struct stream_status *streams = NULL, *grown;
        size_t n = 0;
        int r;

        r = sd_bus_message_enter_container(m, 'a', "{oa{sa{sv}}}");
        while (r >= 0 && (r = sd_bus_message_enter_container(m, 'e', "oa{sa{sv}}")) > 0) {
                const char *path, *interface;

                r = sd_bus_message_read_basic(m, 'o', &path);
                if (r >= 0)
                        r = sd_bus_message_enter_container(m, 'a', "{sa{sv}}");
                while (r >= 0 && (r = sd_bus_message_enter_container(m, 'e', "sa{sv}")) > 0) {
                        r = sd_bus_message_read_basic(m, 's', &interface);
                        if (r >= 0 && strcmp(interface, BUS_STREAM_INTERFACE) == 0) {
                                grown = realloc(streams, (n + 1) * sizeof(*streams));
                                if (!grown) {
                                        r = -ENOMEM;
                                        break;
                                }
                                streams = grown;
                                streams[n] = (struct stream_status) {};
                                r = properties_read(m, stream_properties, &streams[n++]);
                        } else if (r >= 0)
                                r = sd_bus_message_skip(m, "a{sv}");
                        if (r >= 0)
                                r = sd_bus_message_exit_container(m);
                }
                if (r >= 0)
                        r = sd_bus_message_exit_container(m);
                if (r >= 0)
                        r = sd_bus_message_exit_container(m);
        }
        if (r >= 0)
                r = sd_bus_message_exit_container(m);
        if (r < 0) {
                stream_status_free_all(streams, n);
                return r;
        }
        qsort(streams, n, sizeof(*streams), stream_compare);
        *ret = streams;
        *ret_n = n;
        return 0;
}

/* The strings come from the daemon, and the last error may quote the server:
 * each goes through format_text(). */
void status_print(FILE *f, const struct daemon_status *d, const struct stream_status *streams,
                  size_t n, uint64_t now) {
        char when[96];

        fputs("          State: ", f);
        format_text(f, d->state ? d->state : "?");
        fputs("\n        Version: ", f);
        format_text(f, d->version ? d->version : "?");
        fprintf(f, "\n   Token expiry: %s\n",
                d->token_expiry ? format_when(when, d->token_expiry, now) : "unknown");
        fprintf(f, " Events emitted: %llu\n", (unsigned long long) d->events_emitted);
        fprintf(f, " Events dropped: %llu\n", (unsigned long long) d->events_dropped);
        fputs("Watched imports:", f);
        for (char **s = d->watched_imports; s && *s; s++) {
                fputc(' ', f);
                format_text(f, *s);
        }
        fprintf(f, "%s\n", d->watched_imports && d->watched_imports[0] ? "" : " none");

        for (size_t i = 0; i < n; i++) {
                const struct stream_status *s = &streams[i];

                fputs("\nStream ", f);
                format_text(f, s->name ? s->name : "?");
                fputs("\n          State: ", f);
                format_text(f, s->state ? s->state : "?");
                if (s->since)
                        fprintf(f, " since %s", format_when(when, s->since, now));
                fputs("\n            URL: ", f);
                format_text(f, s->url && s->url[0] ? s->url : "-");
                fputs("\n     Last error: ", f);
                format_text(f, s->last_error && s->last_error[0] ? s->last_error : "none");
                fprintf(f, "\n     Next retry: %s\n",
                        s->next_retry ? format_when(when, s->next_retry, now) : "none");
                fprintf(f, "     Reconnects: %u\n", s->reconnects);
                fprintf(f, "Events received: %llu\n", (unsigned long long) s->events_received);
        }
}
