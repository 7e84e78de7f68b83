/* SPDX-License-Identifier: MIT */
/*
 * The manager owns everything that runs: the configuration in force, the
 * token, the streams, the bus objects and the lws context, and turns stream
 * events into bus signals and bus calls into stream emits.
 */
#pragma once

#include <stdbool.h>
#include <systemd/sd-event.h>

#include "eventd-settings.h"

struct manager;
struct lws_context;

/* Loads configuration and token; a bad configuration is reported and
 * returns -EINVAL (the caller exits with EX_CONFIG). */
int manager_new(struct manager **ret, sd_event *event, const struct settings_source *options);
struct manager *manager_free(struct manager *m);

/* Publishes the bus objects, takes the name, tells systemd READY=1 and
 * starts connecting. */
int manager_start(struct manager *m);

/* Re-reads configuration and token; keeps the old ones on error. */
int manager_reload(struct manager *m, char **ret_error);

/* For the loop: the lws context, which a reload may replace. */
struct lws_context **manager_lws(struct manager *m);
