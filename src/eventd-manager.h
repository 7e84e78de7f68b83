/* SPDX-License-Identifier: MIT */
/*
 * The manager owns everything that runs: the configuration in force, the
 * token, the streams, the bus objects and the lws context, and turns stream
 * events into bus signals and bus calls into stream emits.
 */
#pragma once

#include <stdbool.h>
#include <systemd/sd-event.h>

#include "eventd-config.h"

struct manager;
struct lws_context;

/* Where the configuration comes from; kept for reloads. */
struct manager_options {
        const char *config_file;        /* NULL: the default files for the bus */
        bool bus_from_command_line;
        enum config_bus bus;
        /* Command-line settings, applied after the files: pairs of
         * config_options[] index and value. */
        size_t n_overrides;
        const struct manager_override {
                size_t option;
                const char *value;
        } *overrides;
};

/* Loads configuration and token; a bad configuration is reported and
 * returns -EINVAL (the caller exits with EX_CONFIG). */
int manager_new(struct manager **ret, sd_event *event, const struct manager_options *options);
struct manager *manager_free(struct manager *m);

/* Publishes the bus objects, takes the name, tells systemd READY=1 and
 * starts connecting. */
int manager_start(struct manager *m);

/* Re-reads configuration and token; keeps the old ones on error. */
int manager_reload(struct manager *m, char **ret_error);

/* For the loop: the lws context, which a reload may replace. */
struct lws_context **manager_lws(struct manager *m);

/* Builds the configuration as manager_new() would, reporting every problem;
 * for --check-config style use and the tests. */
int manager_load_config(const struct manager_options *options, struct config **ret);
