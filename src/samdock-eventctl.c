/* SPDX-License-Identifier: MIT */
/*
 * samdock-eventctl: a command-line client of samdock-eventd that speaks only
 * D-Bus. It shows the daemon's state, prints its signals, browses, follows
 * an import to its end and asks for reconnects and reloads. Each kind of
 * failure has its own exit status, so scripts can tell "not running" from
 * "not allowed" from "the daemon said no".
 */
#include <errno.h>
#include <getopt.h>
#include <locale.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>
#include <wchar.h>
#include <json-c/json.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "config.h"

#define BUS_NAME "app.samdock.Events"
#define BUS_PATH "/app/samdock/Events"
#define BUS_INTERFACE "app.samdock.Events"
#define BUS_STREAM_INTERFACE "app.samdock.Events.Stream"
#define PROPERTIES_INTERFACE "org.freedesktop.DBus.Properties"

#define USEC_PER_SEC 1000000ULL
/* The daemon answers a browse within BrowseTimeoutSec=, at most 1h. */
#define BROWSE_CALL_USEC ((3600ULL + 10) * USEC_PER_SEC)
#define LINE_WIDTH_NOT_TTY 200
#define MAX_ARGS 8

/* The exit statuses; samdock-eventctl(1) documents them. */
enum {
        EXIT_OK = 0,
        EXIT_FAILED = 1,        /* the import failed, or anything not listed below */
        EXIT_USAGE = 2,
        EXIT_NOT_RUNNING = 3,
        EXIT_ACCESS_DENIED = 4,
        EXIT_DAEMON_ERROR = 5,
        EXIT_NO_BUS = 6,
};

static bool arg_session;
static bool arg_json;

#define _cleanup_(f) __attribute__((cleanup(f)))

static void strv_freep(char ***p) {
        if (*p)
                for (char **s = *p; *s; s++)
                        free(*s);
        free(*p);
}

static const char *bus_kind(void) {
        return arg_session ? "session" : "system";
}

/* ---- text from the bus ---- */

/*
 * What a terminal must not get as it is, besides the C0 controls and DEL: the
 * C1 controls (U+009B is CSI, as ESC [ is), the line and paragraph
 * separators, and the bidi embeddings, overrides and isolates, which can make
 * a line display in another order than it was sent ("Trojan Source").
 */
static bool code_point_is_unsafe(uint32_t c) {
        return (c >= 0x80 && c <= 0x9f) || c == 0x2028 || c == 0x2029 ||
               (c >= 0x202a && c <= 0x202e) || (c >= 0x2066 && c <= 0x2069);
}

/* Decodes the character at p, whatever the locale: text on the bus is UTF-8,
 * and a terminal shows it as UTF-8 even under LANG=C. Returns its length, or
 * 0 for a byte that starts no well-formed character (sd-bus lets none in). */
static size_t utf8_decode(const char *p, uint32_t *ret) {
        const unsigned char *s = (const unsigned char *) p;
        size_t len = s[0] < 0x80 ? 1 : s[0] < 0xc2 ? 0 : s[0] < 0xe0 ? 2 : s[0] < 0xf0 ? 3 :
                     s[0] < 0xf5 ? 4 : 0;
        uint32_t c = len == 1 ? s[0] : s[0] & (0x7f >> len);

        for (size_t i = 1; i < len; i++) {
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
                c = c << 6 | (s[i] & 0x3f);
        }
        /* Overlong forms, surrogates and what lies past U+10FFFF. */
        if (len == 0 || (len == 3 && c < 0x800) || (len == 4 && c < 0x10000) ||
            (c >= 0xd800 && c <= 0xdfff) || c > 0x10ffff)
                return 0;
        *ret = c;
        return len;
}

/* Prints s to f with control characters escaped (C0 and DEL as \xNN, the other
 * unsafe ones as \uXXXX), cut with an ellipsis so that it takes at most
 * *budget columns. */
static void print_cut(FILE *f, const char *s, size_t *budget) {
        const char *ellipsis = MB_CUR_MAX > 1 ? "\u2026" : "...";
        size_t ellipsis_width = MB_CUR_MAX > 1 ? 1 : 3;

        for (const char *p = s; *p;) {
                char escape[16] = "";
                size_t len, width, need;
                uint32_t c = 0;

                len = utf8_decode(p, &c);
                if (len == 0) {
                        len = 1;
                        snprintf(escape, sizeof(escape), "\\x%02x", (unsigned char) *p);
                } else if (c < 0x20 || c == 0x7f)
                        snprintf(escape, sizeof(escape), "\\x%02x", (unsigned) c);
                else if (code_point_is_unsafe(c))
                        snprintf(escape, sizeof(escape), "\\u%04x", (unsigned) c);
                if (escape[0])
                        width = strlen(escape);
                else {
                        int w = wcwidth((wchar_t) c);

                        width = w < 0 ? 1 : (size_t) w;
                }
                /* Keep room for the ellipsis unless this is the end. */
                need = width + (p[len] ? ellipsis_width : 0);
                if (need > *budget) {
                        fputs(ellipsis, f);
                        *budget = 0;
                        return;
                }
                if (escape[0])
                        fputs(escape, f);
                else
                        fwrite(p, 1, len, f);
                *budget -= width;
                p += len;
        }
}

/* Prints s whole, escaped as print_cut() does. */
static void print_text(FILE *f, const char *s) {
        size_t unlimited = SIZE_MAX;

        print_cut(f, s, &unlimited);
}

/* Prints JSON text and a newline, with DEL and the unsafe characters
 * written as \uXXXX. Valid JSON holds them only inside strings, where the
 * escape stands for the same character: the value read back is the same.
 * (json-c escapes the C0 controls itself.) */
static void print_json(FILE *f, const char *json) {
        for (const char *p = json; *p;) {
                uint32_t c = 0;
                size_t len = utf8_decode(p, &c);

                if (len > 0 && (c == 0x7f || code_point_is_unsafe(c)))
                        fprintf(f, "\\u%04x", (unsigned) c);
                else
                        fwrite(p, 1, len ? len : 1, f);
                p += len ? len : 1;
        }
        fputc('\n', f);
}

/* ---- calls ---- */

/* The message of an error may quote the server (a browse's ServerError). */
static void error_print_message(const sd_bus_error *error) {
        print_text(stderr, error->message ? error->message : "");
        fputc('\n', stderr);
}

/* One place turns a failed call into a message and an exit status. */
static int fail_call(int r, const sd_bus_error *error, const char *what) {
        if (sd_bus_error_has_names(error, SD_BUS_ERROR_SERVICE_UNKNOWN,
                                   SD_BUS_ERROR_NAME_HAS_NO_OWNER)) {
                fprintf(stderr, "samdock-eventctl: samdock-eventd is not running "
                        "(nothing owns %s on the %s bus)\n", BUS_NAME, bus_kind());
                return EXIT_NOT_RUNNING;
        }
        if (sd_bus_error_has_name(error, SD_BUS_ERROR_ACCESS_DENIED)) {
                fprintf(stderr, "samdock-eventctl: %s: access denied: ", what);
                error_print_message(error);
                if (!arg_session)
                        fprintf(stderr, "On the system bus only root and members of the "
                                "group 'samdock' may use samdock-eventd.\n");
                return EXIT_ACCESS_DENIED;
        }
        if (r == -ECONNRESET || r == -ENOTCONN) {
                fprintf(stderr, "samdock-eventctl: %s: lost the connection to the %s bus\n",
                        what, bus_kind());
                return EXIT_NO_BUS;
        }
        if (sd_bus_error_is_set(error)) {
                fprintf(stderr, "samdock-eventctl: %s failed: %s: ", what, error->name);
                error_print_message(error);
                return EXIT_DAEMON_ERROR;
        }
        fprintf(stderr, "samdock-eventctl: %s failed: %s\n", what, strerror(-r));
        return EXIT_FAILED;
}

static int bus_connect(sd_bus **ret) {
        int r = arg_session ? sd_bus_open_user(ret) : sd_bus_open_system(ret);

        if (r < 0) {
                fprintf(stderr, "samdock-eventctl: cannot connect to the %s bus: %s\n",
                        bus_kind(), strerror(-r));
                return EXIT_NO_BUS;
        }
        return EXIT_OK;
}

/* ---- times ---- */

static uint64_t now_realtime(void) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

/* "450ms", "3.2s", "5min 3s", "2h 10min", "3d 4h". */
static const char *format_span(char buf[static 32], uint64_t usec) {
        static const struct { const char *unit; uint64_t usec; } units[] = {
                { "d", 86400 * USEC_PER_SEC }, { "h", 3600 * USEC_PER_SEC },
                { "min", 60 * USEC_PER_SEC }, { "s", USEC_PER_SEC },
        };

        if (usec < USEC_PER_SEC) {
                snprintf(buf, 32, "%llums", (unsigned long long) (usec / 1000));
                return buf;
        }
        if (usec < 60 * USEC_PER_SEC) {
                snprintf(buf, 32, "%.1fs", (double) usec / USEC_PER_SEC);
                return buf;
        }
        for (size_t i = 0; i < 3; i++) {
                if (usec < units[i].usec)
                        continue;
                snprintf(buf, 32, "%llu%s %llu%s",
                         (unsigned long long) (usec / units[i].usec), units[i].unit,
                         (unsigned long long) (usec % units[i].usec / units[i + 1].usec),
                         units[i + 1].unit);
                return buf;
        }
        return buf;
}

/* "Tue 2024-05-07 12:00:00 CEST (5min ago)"; realtime µs. */
static const char *format_when(char buf[static 96], uint64_t usec) {
        char span[32], date[48] = "?";
        uint64_t now = now_realtime();
        time_t t = (time_t) (usec / USEC_PER_SEC);
        struct tm tm;

        if (localtime_r(&t, &tm))
                strftime(date, sizeof(date), "%a %Y-%m-%d %H:%M:%S %Z", &tm);
        if (usec > now)
                snprintf(buf, 96, "%s (in %s)", date, format_span(span, usec - now));
        else
                snprintf(buf, 96, "%s (%s ago)", date, format_span(span, now - usec));
        return buf;
}

/* ---- properties ---- */

struct property {
        const char *name;
        const char *signature;          /* "s", "t", "u" or "as" */
        size_t offset;
};

struct daemon_status {
        char *version, *state;
        char **watched_imports;
        uint64_t token_expiry, events_emitted, events_dropped;
};

struct stream_status {
        char *name, *url, *state, *last_error;
        uint64_t since, next_retry, events_received;
        uint32_t reconnects;
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

/* Reads an a{sv} into target; names not in the table, or of another type,
 * are skipped so that a newer daemon does not break an older client. */
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

static void stream_status_release(struct stream_status *s) {
        free(s->name);
        free(s->url);
        free(s->state);
        free(s->last_error);
}

/* GetManagedObjects: every object with app.samdock.Events.Stream. */
static int streams_read(sd_bus_message *m, struct stream_status **ret, size_t *ret_n) {
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
                for (size_t i = 0; i < n; i++)
                        stream_status_release(&streams[i]);
                free(streams);
                return r;
        }
        *ret = streams;
        *ret_n = n;
        return 0;
}

static int stream_compare(const void *a, const void *b) {
        const struct stream_status *x = a, *y = b;

        return strcmp(x->name ? x->name : "", y->name ? y->name : "");
}

/* ---- status ---- */

/* The strings come from the daemon, and the last error may quote the server:
 * each goes through print_text(). */
static void status_print(const struct daemon_status *d, const struct stream_status *streams,
                         size_t n) {
        char when[96];

        fputs("          State: ", stdout);
        print_text(stdout, d->state ? d->state : "?");
        fputs("\n        Version: ", stdout);
        print_text(stdout, d->version ? d->version : "?");
        printf("\n   Token expiry: %s\n",
               d->token_expiry ? format_when(when, d->token_expiry) : "unknown");
        printf(" Events emitted: %llu\n", (unsigned long long) d->events_emitted);
        printf(" Events dropped: %llu\n", (unsigned long long) d->events_dropped);
        fputs("Watched imports:", stdout);
        for (char **s = d->watched_imports; s && *s; s++) {
                fputc(' ', stdout);
                print_text(stdout, *s);
        }
        printf("%s\n", d->watched_imports && d->watched_imports[0] ? "" : " none");

        for (size_t i = 0; i < n; i++) {
                const struct stream_status *s = &streams[i];

                fputs("\nStream ", stdout);
                print_text(stdout, s->name ? s->name : "?");
                fputs("\n          State: ", stdout);
                print_text(stdout, s->state ? s->state : "?");
                if (s->since)
                        printf(" since %s", format_when(when, s->since));
                fputs("\n            URL: ", stdout);
                print_text(stdout, s->url && s->url[0] ? s->url : "-");
                fputs("\n     Last error: ", stdout);
                print_text(stdout, s->last_error && s->last_error[0] ? s->last_error : "none");
                printf("\n     Next retry: %s\n",
                       s->next_retry ? format_when(when, s->next_retry) : "none");
                printf("     Reconnects: %u\n", s->reconnects);
                printf("Events received: %llu\n", (unsigned long long) s->events_received);
        }
}

static int status_run(sd_bus *bus) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *props = NULL, *objects = NULL;
        struct daemon_status d = {};
        struct stream_status *streams = NULL;
        size_t n = 0;
        int r;

        r = sd_bus_call_method(bus, BUS_NAME, BUS_PATH, PROPERTIES_INTERFACE, "GetAll", &error,
                               &props, "s", BUS_INTERFACE);
        if (r < 0)
                return fail_call(r, &error, "reading the daemon's properties");
        r = sd_bus_call_method(bus, BUS_NAME, BUS_PATH, "org.freedesktop.DBus.ObjectManager",
                               "GetManagedObjects", &error, &objects, NULL);
        if (r < 0)
                return fail_call(r, &error, "listing the streams");

        r = properties_read(props, daemon_properties, &d);
        if (r >= 0)
                r = streams_read(objects, &streams, &n);
        if (r >= 0) {
                qsort(streams, n, sizeof(*streams), stream_compare);
                status_print(&d, streams, n);
        } else
                fprintf(stderr, "samdock-eventctl: cannot parse the daemon's answer: %s\n",
                        strerror(-r));

        for (size_t i = 0; i < n; i++)
                stream_status_release(&streams[i]);
        free(streams);
        free(d.version);
        free(d.state);
        strv_freep(&d.watched_imports);
        return r < 0 ? EXIT_FAILED : EXIT_OK;
}

/* ---- printing signals ---- */

struct signal_arg {
        char type;
        union {                         /* what sd_bus_message_read_basic() writes */
                const char *s;
                int b;
                uint8_t y;
                int16_t n;
                uint16_t q;
                int32_t i;
                uint32_t u;
                int64_t x;
                uint64_t t;
                double d;
        } value;
};

/* y, n, q, i, u and x all fit into an int64_t. */
static int64_t arg_integer(const struct signal_arg *a) {
        switch (a->type) {
        case 'y':
                return a->value.y;
        case 'n':
                return a->value.n;
        case 'q':
                return a->value.q;
        case 'i':
                return a->value.i;
        case 'u':
                return a->value.u;
        default:
                return a->value.x;
        }
}

/* The labels of a signal's leading arguments in the human format; the
 * trailing string (the payload) has none. */
static const char *arg_label(const char *member, size_t i) {
        static const struct { const char *member; const char *labels[3]; } table[] = {
                { "Event", { "stream", "name", NULL } },
                { "Resumed", { "stream", "recovered", "offline" } },
        };

        for (size_t k = 0; k < sizeof(table) / sizeof(table[0]); k++)
                if (strcmp(table[k].member, member) == 0)
                        return i < 3 ? table[k].labels[i] : NULL;
        return i == 0 ? "id" : NULL;
}

static int signal_args_read(sd_bus_message *m, struct signal_arg args[static MAX_ARGS],
                            size_t *ret_n) {
        size_t n = 0;
        int r;

        for (;;) {
                const char *contents;
                char type;

                r = sd_bus_message_peek_type(m, &type, &contents);
                if (r <= 0)
                        break;
                if (n == MAX_ARGS || !strchr("sogbynqiuxtd", type)) {
                        r = sd_bus_message_skip(m, NULL);
                        break;
                }
                args[n].type = type;
                r = sd_bus_message_read_basic(m, type, &args[n].value);
                if (r < 0)
                        break;
                n++;
        }
        *ret_n = n;
        return r;
}

static size_t terminal_width(void) {
        const char *columns = getenv("COLUMNS");
        struct winsize ws;

        if (columns && atoi(columns) > 0)
                return (size_t) atoi(columns);
        if (isatty(STDOUT_FILENO) && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col)
                return ws.ws_col;
        return LINE_WIDTH_NOT_TTY;
}

static void signal_print_human(const char *member, const struct signal_arg *args, size_t n) {
        size_t budget = terminal_width();
        char stamp[32], span[32], value[64];
        struct timespec ts;
        struct tm tm;

        clock_gettime(CLOCK_REALTIME, &ts);
        localtime_r(&ts.tv_sec, &tm);
        strftime(stamp, sizeof(stamp), "%H:%M:%S", &tm);
        printf("%s.%03ld ", stamp, ts.tv_nsec / 1000000);
        budget -= budget > 13 ? 13 : budget;
        print_cut(stdout, member, &budget);

        for (size_t i = 0; i < n && budget > 1; i++) {
                const char *label = arg_label(member, i);
                bool payload = i == n - 1 && args[i].type == 's';
                const char *text = value;

                fputc(' ', stdout);
                budget--;
                if (label && !payload) {
                        printf("%s=", label);
                        budget -= strlen(label) + 1 < budget ? strlen(label) + 1 : budget;
                }
                switch (args[i].type) {
                case 's': case 'o': case 'g':
                        text = args[i].value.s;
                        break;
                case 'b':
                        text = args[i].value.b ? "yes" : "no";
                        break;
                case 't':
                        if (label && strcmp(label, "offline") == 0)
                                text = format_span(span, args[i].value.t);
                        else
                                snprintf(value, sizeof(value), "%llu",
                                         (unsigned long long) args[i].value.t);
                        break;
                case 'd':
                        snprintf(value, sizeof(value), "%g", args[i].value.d);
                        break;
                default:
                        snprintf(value, sizeof(value), "%lld",
                                 (long long) arg_integer(&args[i]));
                }
                print_cut(stdout, text, &budget);
        }
        fputc('\n', stdout);
}

static json_object *payload_parse(const char *text) {
        struct json_tokener *tok = json_tokener_new_ex(1000);
        json_object *o = NULL;

        if (!tok)
                return NULL;
        o = json_tokener_parse_ex(tok, text, (int) strlen(text));
        if (json_tokener_get_error(tok) != json_tokener_success) {
                json_object_put(o);
                o = NULL;
        }
        json_tokener_free(tok);
        return o;
}

static void signal_print_json(const char *member, const struct signal_arg *args, size_t n) {
        json_object *o = json_object_new_object(), *list = json_object_new_array();
        char stamp[64], date[32];
        struct timespec ts;
        struct tm tm;

        if (!o || !list) {
                json_object_put(o);
                json_object_put(list);
                return;
        }
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(stamp, sizeof(stamp), "%s.%06uZ", date, (unsigned) (ts.tv_nsec / 1000 % 1000000));

        for (size_t i = 0; i < n; i++) {
                const struct signal_arg *a = &args[i];
                json_object *v;

                switch (a->type) {
                case 's': case 'o': case 'g':
                        v = json_object_new_string(a->value.s);
                        break;
                case 'b':
                        v = json_object_new_boolean(a->value.b);
                        break;
                case 't':
                        v = json_object_new_uint64(a->value.t);
                        break;
                case 'd':
                        v = json_object_new_double(a->value.d);
                        break;
                default:
                        v = json_object_new_int64(arg_integer(a));
                }
                json_object_array_add(list, v);
        }
        json_object_object_add(o, "time", json_object_new_string(stamp));
        json_object_object_add(o, "member", json_object_new_string(member));
        json_object_object_add(o, "args", list);
        /* Every signal but Resumed ends with the payload. */
        if (n > 0 && args[n - 1].type == 's')
                json_object_object_add(o, "payload", payload_parse(args[n - 1].value.s));
        print_json(stdout, json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                  JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(o);
}

static void signal_print(sd_bus_message *m) {
        struct signal_arg args[MAX_ARGS];
        const char *member = sd_bus_message_get_member(m);
        size_t n;

        (void) signal_args_read(m, args, &n);
        if (arg_json)
                signal_print_json(member, args, n);
        else
                signal_print_human(member, args, n);
        fflush(stdout);
}

/* ---- the loop for monitor and watch-import ---- */

struct follow {
        sd_event *event;
        const char *import_id;          /* watch-import; NULL for monitor */
        uint64_t reply_cookie;          /* the daemon's answer to WatchImport */
};

static int on_owner_changed(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        struct follow *f = userdata;
        const char *name, *old_owner, *new_owner;

        if (sd_bus_message_read(m, "sss", &name, &old_owner, &new_owner) < 0)
                return 0;
        if (f->import_id && !new_owner[0]) {
                fprintf(stderr, "samdock-eventctl: samdock-eventd stopped before import %s "
                        "ended\n", f->import_id);
                return sd_event_exit(f->event, EXIT_NOT_RUNNING);
        }
        if (!f->import_id)
                fprintf(stderr, new_owner[0] ? "samdock-eventctl: samdock-eventd is back\n"
                                             : "samdock-eventctl: samdock-eventd went away; "
                                               "waiting for it to come back\n");
        return 0;
}

static int on_disconnected(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        struct follow *f = userdata;

        fprintf(stderr, "samdock-eventctl: lost the connection to the %s bus\n", bus_kind());
        return sd_event_exit(f->event, EXIT_NO_BUS);
}

static int on_monitor_signal(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        signal_print(m);
        return 0;
}

static int on_import_signal(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        struct follow *f = userdata;
        const char *member = sd_bus_message_get_member(m);
        const char *id;

        if (sd_bus_message_read_basic(m, 's', &id) < 0 || strcmp(id, f->import_id) != 0)
                return 0;
        (void) sd_bus_message_rewind(m, true);
        signal_print(m);
        if (strcmp(member, "ImportFinished") == 0)
                return sd_event_exit(f->event, EXIT_OK);
        if (strcmp(member, "ImportError") == 0)
                return sd_event_exit(f->event, EXIT_FAILED);
        return 0;
}

/* Someone unwatched the import: no end will ever be reported. The daemon
 * sends ImportFinished/ImportError before it drops the id, so when the id
 * goes without one, it went for another reason. */
static int on_properties_changed(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        static const struct property watched[] = {
                { "WatchedImports", "as", offsetof(struct daemon_status, watched_imports) },
                {}
        };
        struct follow *f = userdata;
        struct daemon_status d = {};
        const char *interface;
        uint64_t cookie = 0;
        bool gone = true;

        /* A list sent before the daemon took our WatchImport cannot hold it. */
        if (sd_bus_message_get_cookie(m, &cookie) < 0 || cookie < f->reply_cookie)
                return 0;
        if (sd_bus_message_read_basic(m, 's', &interface) < 0 ||
            strcmp(interface, BUS_INTERFACE) != 0 ||
            properties_read(m, watched, &d) < 0 || !d.watched_imports) {
                strv_freep(&d.watched_imports);
                return 0;
        }
        for (char **s = d.watched_imports; *s; s++)
                if (strcmp(*s, f->import_id) == 0)
                        gone = false;
        strv_freep(&d.watched_imports);
        if (!gone)
                return 0;
        fprintf(stderr, "samdock-eventctl: import %s is no longer watched (UnwatchImport was "
                "called); its end will not be seen\n", f->import_id);
        return sd_event_exit(f->event, EXIT_FAILED);
}

static void sigpipe_default(void) {
        /* Printing into a closed pipe (monitor | head) ends us quietly. */
        signal(SIGPIPE, SIG_DFL);
}

static int on_stop_signal(sd_event_source *s, const struct signalfd_siginfo *si,
                          void *userdata) {
        return sd_event_exit(sd_event_source_get_event(s), EXIT_OK);
}

static int follow_run(sd_bus *bus, const char *import_id) {
        static const char *const import_members[] = {
                "ImportProgress", "ImportFinished", "ImportError",
        };
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(sd_event_unrefp) sd_event *event = NULL;
        struct follow f = { .import_id = import_id };
        const char *what;
        sigset_t mask;
        int r;

        r = sd_event_new(&event);
        if (r >= 0)
                r = sd_bus_attach_event(bus, event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0) {
                fprintf(stderr, "samdock-eventctl: cannot set up the event loop: %s\n",
                        strerror(-r));
                return EXIT_FAILED;
        }
        f.event = event;
        sigpipe_default();
        if (!import_id) {
                /* Stopping a monitor is its normal end. */
                sigemptyset(&mask);
                sigaddset(&mask, SIGINT);
                sigaddset(&mask, SIGTERM);
                sigprocmask(SIG_BLOCK, &mask, NULL);
                (void) sd_event_add_signal(event, NULL, SIGINT, on_stop_signal, NULL);
                (void) sd_event_add_signal(event, NULL, SIGTERM, on_stop_signal, NULL);
        }

        /* Every match is in place (sd_bus_add_match waits for the bus to
         * confirm) before the first call, so nothing sent after it is missed. */
        r = sd_bus_match_signal(bus, NULL, NULL, "/org/freedesktop/DBus/Local",
                                "org.freedesktop.DBus.Local", "Disconnected", on_disconnected,
                                &f);
        if (r >= 0)
                r = sd_bus_add_match(bus, NULL,
                                     "type='signal',sender='org.freedesktop.DBus',"
                                     "path='/org/freedesktop/DBus',"
                                     "interface='org.freedesktop.DBus',"
                                     "member='NameOwnerChanged',arg0='" BUS_NAME "'",
                                     on_owner_changed, &f);
        if (!import_id && r >= 0)
                r = sd_bus_match_signal(bus, NULL, BUS_NAME, BUS_PATH, BUS_INTERFACE, NULL,
                                        on_monitor_signal, &f);
        for (size_t i = 0; import_id && r >= 0 && i < 3; i++)
                r = sd_bus_match_signal(bus, NULL, BUS_NAME, BUS_PATH, BUS_INTERFACE,
                                        import_members[i], on_import_signal, &f);
        if (import_id && r >= 0)
                r = sd_bus_match_signal(bus, NULL, BUS_NAME, BUS_PATH, PROPERTIES_INTERFACE,
                                        "PropertiesChanged", on_properties_changed, &f);
        if (r < 0)
                return fail_call(r, &error, "subscribing to the daemon's signals");

        /* Also starts the daemon where the bus can activate it. */
        if (import_id) {
                what = "WatchImport";
                r = sd_bus_call_method(bus, BUS_NAME, BUS_PATH, BUS_INTERFACE, "WatchImport",
                                       &error, &reply, "s", import_id);
                if (r >= 0)
                        r = sd_bus_message_get_cookie(reply, &f.reply_cookie);
        } else {
                what = "reaching the daemon";
                r = sd_bus_call_method(bus, BUS_NAME, BUS_PATH, "org.freedesktop.DBus.Peer",
                                       "Ping", &error, NULL, NULL);
        }
        if (r < 0)
                return fail_call(r, &error, what);

        r = sd_event_loop(event);
        if (r < 0) {
                fprintf(stderr, "samdock-eventctl: %s\n", strerror(-r));
                return EXIT_FAILED;
        }
        return r;
}

/* ---- the rest of the commands ---- */

static int browse_run(sd_bus *bus, const char *kind, const char *id) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL, *reply = NULL;
        const char *method, *activities;
        int r;

        if (strcmp(kind, "person") == 0)
                method = "BrowseActivitiesByPerson";
        else if (strcmp(kind, "organization") == 0)
                method = "BrowseActivitiesByOrganization";
        else {
                fprintf(stderr, "samdock-eventctl: browse takes 'person' or 'organization', "
                        "not '%s'\n", kind);
                return EXIT_USAGE;
        }

        r = sd_bus_message_new_method_call(bus, &call, BUS_NAME, BUS_PATH, BUS_INTERFACE,
                                           method);
        if (r >= 0)
                r = sd_bus_message_append(call, "s", id);
        if (r >= 0)
                r = sd_bus_call(bus, call, BROWSE_CALL_USEC, &error, &reply);
        if (r >= 0)
                r = sd_bus_message_read(reply, "s", &activities);
        if (r < 0)
                return fail_call(r, &error, method);
        print_json(stdout, activities);
        return EXIT_OK;
}

static int simple_call(sd_bus *bus, const char *method) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        r = sd_bus_call_method(bus, BUS_NAME, BUS_PATH, BUS_INTERFACE, method, &error, NULL,
                               NULL);
        if (r < 0)
                return fail_call(r, &error, method);
        return EXIT_OK;
}

static void help(void) {
        printf("Usage: samdock-eventctl [OPTIONS] COMMAND\n\n"
               "Talks to samdock-eventd, the Samdock event bridge, over D-Bus.\n\n"
               "Commands:\n"
               "  status                         Show the daemon's state and its streams\n"
               "  monitor                        Print every signal, one line each\n"
               "  browse person|organization ID  Print the activities of a person or an\n"
               "                                 organization as JSON\n"
               "  watch-import ID                Follow an import to its end\n"
               "  reconnect                      Drop every connection and reconnect now\n"
               "  reload                         Re-read configuration and token\n\n"
               "Options:\n"
               "  -h --help                      Show this help\n"
               "     --version                   Show the version\n"
               "     --system                    Talk to the daemon on the system bus "
               "(default)\n"
               "     --session, --user           Talk to the daemon on the session bus\n"
               "  -j --json                      monitor, watch-import: one JSON object "
               "per line\n\n"
               "Exit status: 0 success (watch-import: the import finished), 1 the import\n"
               "failed or another failure, 2 usage, 3 daemon not running, 4 access denied,\n"
               "5 the daemon returned an error, 6 no connection to the bus.\n"
               "See samdock-eventctl(1).\n");
}

static int usage_error(const char *message) {
        fprintf(stderr, "samdock-eventctl: %s\nTry 'samdock-eventctl --help'.\n", message);
        return EXIT_USAGE;
}

int main(int argc, char *argv[]) {
        enum { OPT_VERSION = 0x100, OPT_SYSTEM, OPT_SESSION };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, OPT_VERSION },
                { "system", no_argument, NULL, OPT_SYSTEM },
                { "session", no_argument, NULL, OPT_SESSION },
                { "user", no_argument, NULL, OPT_SESSION },
                { "json", no_argument, NULL, 'j' },
                {}
        };
        static const struct { const char *name; int args; } commands[] = {
                { "status", 0 }, { "monitor", 0 }, { "browse", 2 }, { "watch-import", 1 },
                { "reconnect", 0 }, { "reload", 0 },
        };
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        const char *command;
        int c, r, nargs = -1;

        setlocale(LC_ALL, "");
        while ((c = getopt_long(argc, argv, "hj", options, NULL)) >= 0) {
                switch (c) {
                case 'h':
                        help();
                        return EXIT_OK;
                case OPT_VERSION:
                        printf("samdock-eventctl %s\n", PACKAGE_VERSION);
                        return EXIT_OK;
                case OPT_SYSTEM:
                case OPT_SESSION:
                        arg_session = c == OPT_SESSION;
                        break;
                case 'j':
                        arg_json = true;
                        break;
                default:
                        fprintf(stderr, "Try 'samdock-eventctl --help'.\n");
                        return EXIT_USAGE;
                }
        }

        if (optind >= argc)
                return usage_error("no command given");
        command = argv[optind++];
        for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
                if (strcmp(commands[i].name, command) == 0)
                        nargs = commands[i].args;
        if (nargs < 0) {
                fprintf(stderr, "samdock-eventctl: unknown command '%s'\n"
                        "Try 'samdock-eventctl --help'.\n", command);
                return EXIT_USAGE;
        }
        if (argc - optind != nargs) {
                fprintf(stderr, "samdock-eventctl: %s takes %d argument%s\n"
                        "Try 'samdock-eventctl --help'.\n", command, nargs,
                        nargs == 1 ? "" : "s");
                return EXIT_USAGE;
        }
        if (arg_json && strcmp(command, "monitor") != 0 && strcmp(command, "watch-import") != 0)
                return usage_error("--json goes with monitor and watch-import only");

        r = bus_connect(&bus);
        if (r != EXIT_OK)
                return r;

        if (strcmp(command, "status") == 0)
                return status_run(bus);
        if (strcmp(command, "monitor") == 0)
                return follow_run(bus, NULL);
        if (strcmp(command, "watch-import") == 0)
                return follow_run(bus, argv[optind]);
        if (strcmp(command, "browse") == 0)
                return browse_run(bus, argv[optind], argv[optind + 1]);
        return simple_call(bus, strcmp(command, "reconnect") == 0 ? "Reconnect" : "Reload");
}
