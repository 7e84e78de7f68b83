/* SPDX-License-Identifier: MIT */
/*
 * samdock-eventd: parses the command line, builds the manager and runs the
 * loop. Every configuration key has a command-line twin, taken from the
 * configuration's key table so that the two can never disagree.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>

#include "config.h"
#include "eventd-config.h"
#include "eventd-log.h"
#include "eventd-loop.h"
#include "eventd-manager.h"

#define EXIT_CONFIG 78          /* EX_CONFIG from sysexits.h */

enum {
        OPT_SYSTEM = 0x100,
        OPT_SESSION,
        OPT_VERSION,
        OPT_TWIN,               /* + index into config_options[] */
};

static void help(void) {
        char option[64];

        printf("Usage: samdock-eventd [OPTIONS]\n\n"
               "Bridges Samdock's Socket.IO events to D-Bus signals on app.samdock.Events.\n\n"
               "  -h --help                  Show this help\n"
               "     --version               Show the version\n"
               "  -c --config=FILE           Read FILE instead of the default configuration\n"
               "     --system                Use the system bus (default)\n"
               "     --session               Use the session bus\n");
        for (size_t i = 0; i < config_options_count; i++) {
                snprintf(option, sizeof(option), "--%s=VALUE", config_options[i].long_name);
                printf("     %-23s %s (%s %s=)\n", option, config_options[i].help,
                       config_options[i].section, config_options[i].key);
        }
        printf("\nEvery option but --config, --system and --session sets the key named in\n"
               "brackets; see samdock-eventd.conf(5). The token is never given on the\n"
               "command line.\n");
}

static struct manager *manager;

static int on_exit_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        log_info("Stopping on %s", strsignal((int) si->ssi_signo));
        (void) sd_notify(false, "STOPPING=1");
        return sd_event_exit(sd_event_source_get_event(s), EXIT_SUCCESS);
}

static int on_reload_signal(sd_event_source *s, const struct signalfd_siginfo *si,
                            void *userdata) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        (void) sd_notifyf(false, "RELOADING=1\nMONOTONIC_USEC=%llu",
                          (unsigned long long) ts.tv_sec * 1000000ULL +
                          (unsigned long long) ts.tv_nsec / 1000);
        (void) manager_reload(manager, NULL);
        (void) sd_notify(false, "READY=1");
        return 0;
}

int main(int argc, char *argv[]) {
        struct option *long_options;
        struct settings_override *overrides;
        struct settings_source options = { .bus = CONFIG_BUS_SYSTEM };
        sd_event *event = NULL;
        sigset_t mask;
        size_t n = 0;
        int c, r;

        long_options = calloc(config_options_count + 6, sizeof(struct option));
        overrides = calloc((size_t) argc, sizeof(*overrides));
        if (!long_options || !overrides) {
                log_error("Out of memory");
                return EXIT_FAILURE;
        }
        long_options[n++] = (struct option) { "help", no_argument, NULL, 'h' };
        long_options[n++] = (struct option) { "version", no_argument, NULL, OPT_VERSION };
        long_options[n++] = (struct option) { "config", required_argument, NULL, 'c' };
        long_options[n++] = (struct option) { "system", no_argument, NULL, OPT_SYSTEM };
        long_options[n++] = (struct option) { "session", no_argument, NULL, OPT_SESSION };
        for (size_t i = 0; i < config_options_count; i++)
                long_options[n++] = (struct option) {
                        config_options[i].long_name, required_argument, NULL,
                        OPT_TWIN + (int) i,
                };

        /* getopt's messages start with argv[0]: the name, not the path. */
        argv[0] = program_invocation_short_name;
        while ((c = getopt_long(argc, argv, "hc:", long_options, NULL)) >= 0) {
                switch (c) {
                case 'h':
                        help();
                        r = EXIT_SUCCESS;
                        goto finish;
                case OPT_VERSION:
                        printf("samdock-eventd %s\n", PACKAGE_VERSION);
                        r = EXIT_SUCCESS;
                        goto finish;
                case 'c':
                        options.config_file = optarg;
                        break;
                case OPT_SYSTEM:
                case OPT_SESSION:
                        options.bus = c == OPT_SESSION ? CONFIG_BUS_SESSION : CONFIG_BUS_SYSTEM;
                        options.bus_from_command_line = true;
                        break;
                case '?':
                        fprintf(stderr, "Try 'samdock-eventd --help'.\n");
                        r = EXIT_CONFIG;
                        goto finish;
                default:
                        if (optarg[0] == 0 &&
                            strstr(config_options[c - OPT_TWIN].key, "URL")) {
                                /* Empty resets a key to its default, but for an
                                 * address that default is a server on the
                                 * internet: an unset shell variable must not
                                 * quietly mean that. */
                                log_error("--%s: empty value",
                                          config_options[c - OPT_TWIN].long_name);
                                r = EXIT_CONFIG;
                                goto finish;
                        }
                        overrides[options.n_overrides++] = (struct settings_override) {
                                .option = (size_t) (c - OPT_TWIN),
                                .value = optarg,
                        };
                }
        }
        if (optind < argc) {
                log_error("Unexpected argument '%s'; try 'samdock-eventd --help'.", argv[optind]);
                r = EXIT_CONFIG;
                goto finish;
        }
        options.overrides = overrides;

        /* Signals arrive through sd-event, so block them first. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);

        r = sd_event_default(&event);
        if (r < 0) {
                log_error_errno(r, "Cannot create the event loop: %m");
                return EXIT_FAILURE;
        }

        r = manager_new(&manager, event, &options);
        if (r == -EINVAL) {
                r = EXIT_CONFIG;
                goto finish;
        }
        if (r < 0) {
                r = EXIT_FAILURE;
                goto finish;
        }

        if (sd_event_add_signal(event, NULL, SIGTERM, on_exit_signal, NULL) < 0 ||
            sd_event_add_signal(event, NULL, SIGINT, on_exit_signal, NULL) < 0 ||
            sd_event_add_signal(event, NULL, SIGHUP, on_reload_signal, NULL) < 0 ||
            sd_event_set_watchdog(event, true) < 0) {
                log_error("Cannot set up signal handling");
                r = EXIT_FAILURE;
                goto finish;
        }

        r = manager_start(manager);
        if (r < 0) {
                r = EXIT_FAILURE;
                goto finish;
        }

        r = loop_run(event, manager_lws(manager));
        r = r < 0 ? EXIT_FAILURE : r;
finish:
        manager_free(manager);
        sd_event_unref(event);
        free(long_options);
        free(overrides);
        return r;
}
