/* SPDX-License-Identifier: MIT */
/*
 * The configuration in force: assembled from files and command line,
 * checked beyond what the parser can see, compared for reloads, and handed
 * to the streams and the lws context.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "eventd-log.h"
#include "eventd-loop.h"
#include "eventd-proxy.h"
#include "eventd-settings.h"
#include "eventd-token.h"

static void config_error(const char *where, const char *what, void *userdata) {
        log_error("%s: %s", where, what);
}

/* lws only logs, at debug level, that it could not load the CA file, and
 * every connection then fails with a misleading certificate error: check
 * it here, where a bad file is a configuration error. */
static int check_ca_file(const char *path) {
        char line[256];
        struct stat st;
        FILE *f;
        bool found = false;

        int fd;

        /* O_NONBLOCK: a FIFO must not stop the daemon (a reload) until
         * someone writes to it; it is refused below like any non-file. */
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0 || fstat(fd, &st) < 0) {
                log_error_errno(errno, "CAFile=%s: %m", path);
                if (fd >= 0)
                        close(fd);
                return -EINVAL;
        }
        if (!S_ISREG(st.st_mode)) {
                close(fd);
                log_error("CAFile=%s: not a regular file", path);
                return -EINVAL;
        }
        f = fdopen(fd, "re");
        if (!f) {
                log_error_errno(errno, "CAFile=%s: %m", path);
                close(fd);
                return -EINVAL;
        }
        while (!found && fgets(line, sizeof(line), f))
                found = strncmp(line, "-----BEGIN CERTIFICATE-----", 27) == 0;
        fclose(f);
        if (!found) {
                log_error("CAFile=%s: not a file of PEM certificates "
                          "(no -----BEGIN CERTIFICATE----- line)", path);
                return -EINVAL;
        }
        return 0;
}

/* A command that can never run is a configuration error, not a token
 * that fails at every connect. */
static int check_token_command(const char *command) {
        char **argv = NULL;
        int r = token_command_split(command, &argv);

        token_argv_free(argv);
        if (r == -EINVAL) {
                log_error("TokenCommand=%s: a quote is not closed, or there is no command",
                          command);
                return r;
        }
        return r < 0 ? log_error_errno(r, "Out of memory") : 0;
}

int settings_load(const struct settings_source *source, struct config **ret) {
        struct config *c = NULL;
        bool failed = false;
        int r;

        r = config_new(&c);
        if (r < 0)
                return log_error_errno(r, "Out of memory");

        /* The bus picks the files; Bus= in them cannot move us to the other
         * bus's files, but it does choose the bus unless the command line did. */
        if (source->config_file)
                r = config_load_file(c, source->config_file, config_error, NULL);
        else
                r = config_load_defaults(c, source->bus, NULL, config_error, NULL);
        if (r < 0)
                failed = true;

        for (size_t i = 0; i < source->n_overrides; i++) {
                const struct config_option *o = &config_options[source->overrides[i].option];
                char *error = NULL;

                if (config_set(c, o->section, o->key, source->overrides[i].value, &error) < 0) {
                        log_error("--%s: %s", o->long_name, error ? error : "invalid value");
                        failed = true;
                }
                free(error);
        }
        if (source->bus_from_command_line)
                c->bus = source->bus;

        if (!failed && config_verify(c, config_error, NULL) < 0)
                failed = true;
        if (!failed && c->ca_file && check_ca_file(c->ca_file) < 0)
                failed = true;
        if (!failed && c->token_command && check_token_command(c->token_command) < 0)
                failed = true;
        if (failed) {
                config_free(c);
                return -EINVAL;
        }
        *ret = c;
        return 0;
}

static bool text_differs(const char *a, const char *b) {
        return (a == NULL) != (b == NULL) || (a && strcmp(a, b) != 0);
}

bool settings_need_reconnect(const struct config *a, const struct config *b) {
        const char *pairs[][2] = {
                { a->url, b->url },
                { a->activities_path, b->activities_path },
                { a->import_path, b->import_path },
                { a->ca_file, b->ca_file },
                { a->proxy, b->proxy },
        };

        for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++)
                if (text_differs(pairs[i][0], pairs[i][1]))
                        return true;
        return a->engine_io != b->engine_io || a->max_event_size != b->max_event_size;
}

bool settings_need_new_lws(const struct config *a, const struct config *b) {
        const char *source;

        return text_differs(a->ca_file, b->ca_file) ||
               text_differs(proxy_choose(a->proxy, a->server.tls, a->server.host, getenv,
                                         &source),
                            proxy_choose(b->proxy, b->server.tls, b->server.host, getenv,
                                         &source));
}

struct stream_settings settings_for_stream(const struct config *c, const char *path) {
        return (struct stream_settings) {
                .host = c->server.host,
                .port = c->server.port,
                .tls = c->server.tls,
                .path = path,
                .engine_io = c->engine_io,
                .max_event_size = c->max_event_size,
                .initial_delay_usec = c->initial_delay_usec,
                .max_delay_usec = c->max_delay_usec,
        };
}

int settings_lws_new(const struct config *c, sd_event *event, struct lws_context **ret) {
        struct loop_settings settings = {
                .ca_file = c->ca_file,
        };
        struct config_url proxy = {};
        const char *proxy_url, *source = NULL;
        char *error = NULL;
        int r;

        proxy_url = proxy_choose(c->proxy, c->server.tls,
                                 c->server.host, getenv, &source);
        if (proxy_url) {
                r = config_url_parse(proxy_url, &proxy, &error);
                if (r >= 0 && proxy.tls) {
                        config_url_release(&proxy);
                        r = -EINVAL;
                        free(error);
                        error = strdup("only http:// proxies are supported");
                }
                if (r < 0) {
                        /* Proxy= was checked when read; this is the environment. */
                        log_error("Ignoring %s: %s", source, error ? error : "not a valid URL");
                        free(error);
                        proxy_url = NULL;
                } else {
                        settings.proxy_host = proxy.host;
                        settings.proxy_port = proxy.port;
                        log_info("Connecting through the proxy %s:%u (from %s)", proxy.host,
                                 proxy.port, source);
                }
        }
        r = loop_lws_new(ret, event, &settings);
        config_url_release(&proxy);
        return r;
}
