/* SPDX-License-Identifier: MIT */
/*
 * The configuration in force, between the parser and the manager: where it
 * comes from (the files for the bus, or one file, then the command line),
 * the checks the parser cannot make (a CAFile= that holds certificates),
 * whether a reload must reconnect, and what the streams and the lws
 * context (with the proxy chosen) get from it.
 */
#pragma once

#include <stdbool.h>
#include <systemd/sd-event.h>

#include "eventd-config.h"
#include "eventd-stream.h"

struct lws_context;

/* Where the configuration comes from; kept for reloads. */
struct settings_source {
        const char *config_file;        /* NULL: the default files for the bus */
        bool bus_from_command_line;
        enum config_bus bus;
        /* Command-line settings, applied after the files: pairs of
         * config_options[] index and value. */
        size_t n_overrides;
        const struct settings_override {
                size_t option;
                const char *value;
        } *overrides;
};

/* Builds and checks the configuration, logging every problem; -EINVAL for
 * a bad one (the daemon exits with EX_CONFIG), -ENOMEM. */
int settings_load(const struct settings_source *source, struct config **ret);

/* True when going from a to b needs new connections. */
bool settings_need_reconnect(const struct config *a, const struct config *b);
/* True when it needs a new lws context too: another CA file or proxy.
 * (Debian's lws 4.1 does not free a context's TLS client state, about
 * 700 KiB, when it is destroyed; the other changes keep the context.) */
bool settings_need_new_lws(const struct config *a, const struct config *b);

/* What a stream connects with, for the Socket.IO path given. */
struct stream_settings settings_for_stream(const struct config *c, const char *path);

/* A new lws context with c's CA file and the proxy for c's server (Proxy=,
 * else the environment's; an unusable one from the environment is logged
 * and ignored). */
int settings_lws_new(const struct config *c, sd_event *event, struct lws_context **ret);
