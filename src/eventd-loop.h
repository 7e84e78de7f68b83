/* SPDX-License-Identifier: MIT */
/*
 * The one event loop: libwebsockets' own poll() loop on the outside, with
 * the whole sd-event loop adopted into it as one file descriptor.
 */
#pragma once

#include <systemd/sd-event.h>

struct lws_context;

struct loop_settings {
        const char *ca_file;            /* extra trust anchors, NULL: system store only */
        const char *proxy_host;         /* HTTP proxy for every connection, or NULL */
        unsigned proxy_port;
};

/* Creates the lws context for the streams, with sd-event's fd adopted. */
int loop_lws_new(struct lws_context **ret, sd_event *event, const struct loop_settings *settings);
void loop_lws_free(struct lws_context *lws);

/* Runs until sd_event_exit(); *lws may be replaced by a callback (reload).
 * Returns the exit code given to sd_event_exit() or a negative errno. */
int loop_run(sd_event *event, struct lws_context **lws);
