/* SPDX-License-Identifier: MIT */
/*
 * The configuration's values, parsed and checked one at a time, without the
 * keys they belong to. Each parser returns 0, -EINVAL for a value it does
 * not take, -ERANGE where a number does not fit, or -ENOMEM.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef uint64_t usec_t;

/* A parsed server address: http:// or https://, host, optional port. */
struct config_url {
        bool tls;
        char *host;             /* without brackets for IPv6 literals */
        uint16_t port;          /* 443 or 80 when not given */
};

/* Parses "http[s]://HOST[:PORT][/]" (no path, user info, query). On
 * -EINVAL, *ret_error (when given) says why, without repeating the URL. */
int config_url_parse(const char *url, struct config_url *ret, char **ret_error);
void config_url_release(struct config_url *u);

/* Parses sizes like "1M", "512K", "65536" (base 1024) and seconds like
 * "10", "2.5", "500ms", "1min". */
int config_parse_size(const char *s, size_t *ret);
int config_parse_seconds(const char *s, usec_t *ret);
/* "1h", "90s", "1500ms": the shortest exact form, for messages. */
const char *config_format_seconds(usec_t usec, char buf[static 32]);

/* A Socket.IO path: starts with '/', printable ASCII without '?' or '#'.
 * *ret is a copy that ends in '/' (caller frees). */
int config_parse_url_path(const char *s, char **ret);
/* "3" or "4". */
int config_parse_engine_io(const char *s, unsigned *ret);
/* A syslog priority: emerg, alert, crit, err, warning, notice, info, debug
 * or 0-7. */
int config_parse_log_level(const char *s, int *ret);
