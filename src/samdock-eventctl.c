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
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "config.h"
#include "eventctl-format.h"
#include "eventctl-status.h"
#include "eventd-time.h"

#define BUS_NAME "app.samdock.Events"
#define BUS_PATH "/app/samdock/Events"
#define BUS_INTERFACE "app.samdock.Events"
#define PROPERTIES_INTERFACE "org.freedesktop.DBus.Properties"

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

static const char *bus_kind(void) {
        return arg_session ? "session" : "system";
}

/* ---- calls ---- */

/* The message of an error may quote the server (a browse's ServerError). */
static void error_print_message(const sd_bus_error *error) {
        format_text(stderr, error->message ? error->message : "");
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

/* ---- status ---- */

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

        r = daemon_status_read(props, &d);
        if (r >= 0)
                r = stream_status_read_all(objects, &streams, &n);
        if (r >= 0)
                status_print(stdout, &d, streams, n, now_usec(CLOCK_REALTIME));
        else
                fprintf(stderr, "samdock-eventctl: cannot parse the daemon's answer: %s\n",
                        strerror(-r));

        stream_status_free_all(streams, n);
        daemon_status_release(&d);
        return r < 0 ? EXIT_FAILED : EXIT_OK;
}

/* ---- printing signals ---- */

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

static void signal_print(sd_bus_message *m) {
        struct signal_arg args[MAX_ARGS];
        const char *member = sd_bus_message_get_member(m);
        struct timespec now;
        size_t n;

        clock_gettime(CLOCK_REALTIME, &now);
        (void) signal_args_read(m, args, &n);
        if (arg_json)
                format_signal_json(stdout, &now, member, args, n);
        else
                format_signal_line(stdout, &now, member, args, n, terminal_width());
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
            daemon_status_read(m, &d) < 0 || !d.watched_imports) {
                daemon_status_release(&d);
                return 0;
        }
        for (char **s = d.watched_imports; *s; s++)
                if (strcmp(*s, f->import_id) == 0)
                        gone = false;
        daemon_status_release(&d);
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
        format_json(stdout, activities);
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
        /* getopt's messages start with argv[0]: the name, not the path. */
        argv[0] = program_invocation_short_name;
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
