/* SPDX-License-Identifier: MIT */
/*
 * The values the configuration is made of, parsed and checked on their own:
 * server addresses, times, sizes, URL paths, the Engine.IO version and log
 * levels. Nothing here knows a key, a file or the config struct; the key
 * table in eventd-config.c wraps these with the key's name in its messages.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "eventd-config-value.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>

#include "eventd-time.h"

static const char *const log_level_names[] = {
        "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
};

/* Always -EINVAL: the reason is a courtesy, losing it to OOM changes nothing. */
static int url_error(char **ret_error, const char *reason) {
        if (ret_error)
                *ret_error = strdup(reason);
        return -EINVAL;
}

static bool host_name_is_valid(const char *host, size_t len) {
        if (len == 0 || len > 253 || host[0] == '-')
                return false;

        for (size_t i = 0; i < len; i++) {
                char ch = host[i];

                if (ch == '.') {
                        /* No empty labels: not first, not last, not doubled. */
                        if (i == 0 || i == len - 1 || host[i - 1] == '.')
                                return false;
                } else if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                             (ch >= '0' && ch <= '9') || ch == '-' || ch == '_'))
                        return false;
        }
        return true;
}

int config_url_parse(const char *url, struct config_url *ret, char **ret_error) {
        const char *p, *host, *end;
        size_t host_len, authority_len;
        unsigned long port;
        bool tls;

        if (ret_error)
                *ret_error = NULL;
        if (!url || !ret)
                return -EINVAL;

        if (strncasecmp(url, "https://", 8) == 0) {
                tls = true;
                p = url + 8;
        } else if (strncasecmp(url, "http://", 7) == 0) {
                tls = false;
                p = url + 7;
        } else
                return url_error(ret_error, "it must start with http:// or https://");

        authority_len = strcspn(p, "/?#");
        if (memchr(p, '@', authority_len))
                return url_error(ret_error, "user info (user@host) is not allowed");

        if (*p == '[') {
                char address[INET6_ADDRSTRLEN];
                struct in6_addr in6;

                end = memchr(p, ']', authority_len);
                if (!end)
                        return url_error(ret_error, "the IPv6 address lacks its closing ']'");
                host = p + 1;
                host_len = (size_t) (end - host);
                if (host_len >= sizeof(address))
                        return url_error(ret_error, "invalid IPv6 address");
                memcpy(address, host, host_len);
                address[host_len] = '\0';
                if (inet_pton(AF_INET6, address, &in6) != 1)
                        return url_error(ret_error, "invalid IPv6 address");
                p = end + 1;
        } else {
                host = p;
                host_len = strcspn(p, ":/?#");
                p += host_len;
                if (*p == ':' && memchr(p + 1, ':', authority_len - host_len - 1))
                        return url_error(ret_error,
                                         "IPv6 addresses must be in brackets, like [::1]");
                if (host_len == 0)
                        return url_error(ret_error, "the host is missing");
                if (!host_name_is_valid(host, host_len))
                        return url_error(ret_error, "invalid host name");
        }

        port = tls ? 443 : 80;
        if (*p == ':') {
                size_t digits = strspn(p + 1, "0123456789");

                p++;
                port = 0;
                for (size_t i = 0; i < digits && port <= 65535; i++)
                        port = port * 10 + (unsigned long) (p[i] - '0');
                if (digits == 0 || !strchr("/?#", p[digits]) || port == 0 || port > 65535)
                        return url_error(ret_error, "the port must be a number from 1 to 65535");
                p += digits;
        } else if (*p != '\0' && !strchr("/?#", *p))
                return url_error(ret_error, "unexpected characters after the host");

        if (*p == '/')
                p++;
        if (*p == '?' || *p == '#')
                return url_error(ret_error, "a query or fragment is not allowed");
        if (*p != '\0')
                return url_error(ret_error, "a path is not allowed");

        host = strndup(host, host_len);
        if (!host)
                return -ENOMEM;
        *ret = (struct config_url) {
                .tls = tls,
                .host = (char *) host,
                .port = (uint16_t) port,
        };
        return 0;
}

void config_url_release(struct config_url *u) {
        if (!u)
                return;
        free(u->host);
        u->host = NULL;
}

/* Digits, at least one; returns -ERANGE on overflow. */
static int parse_digits(const char **p, uint64_t *ret) {
        uint64_t v = 0;

        if (**p < '0' || **p > '9')
                return -EINVAL;
        for (; **p >= '0' && **p <= '9'; (*p)++) {
                unsigned d = (unsigned) (**p - '0');

                if (v > (UINT64_MAX - d) / 10)
                        return -ERANGE;
                v = v * 10 + d;
        }
        *ret = v;
        return 0;
}

int config_parse_size(const char *s, size_t *ret) {
        static const char suffixes[] = "KMGT";
        uint64_t v, factor = 1;
        const char *p = s;
        int r;

        if (!s || !ret)
                return -EINVAL;
        r = parse_digits(&p, &v);
        if (r < 0)
                return r;
        if (*p != '\0') {
                const char *suffix = strchr(suffixes, *p);

                if (!suffix || p[1] != '\0')
                        return -EINVAL;
                for (const char *q = suffixes; q <= suffix; q++)
                        factor *= 1024;
        }
        if (v > SIZE_MAX / factor)
                return -ERANGE;
        *ret = (size_t) (v * factor);
        return 0;
}

int config_parse_seconds(const char *s, usec_t *ret) {
        static const struct { const char *name; usec_t usec; } units[] = {
                { "us", 1 }, { "usec", 1 }, { "ms", USEC_PER_MSEC }, { "msec", USEC_PER_MSEC },
                { "", USEC_PER_SEC }, { "s", USEC_PER_SEC }, { "sec", USEC_PER_SEC },
                { "m", USEC_PER_MIN }, { "min", USEC_PER_MIN },
                { "h", USEC_PER_HOUR }, { "hour", USEC_PER_HOUR },
                { "d", USEC_PER_DAY }, { "day", USEC_PER_DAY },
        };
        const char *p = s, *fraction = NULL, *unit;
        uint64_t whole, total, scale = 0;
        int r;

        if (!s || !ret)
                return -EINVAL;
        /* Hand-parsed rather than strtod(): no NaN, no exponents, no locale. */
        r = parse_digits(&p, &whole);
        if (r < 0)
                return r;
        if (*p == '.') {
                fraction = ++p;
                p += strspn(p, "0123456789");
                if (p == fraction)
                        return -EINVAL;
        }
        /* Blanks may part number and unit, as in "500 ms", but not trail. */
        unit = p + strspn(p, " ");
        if (unit > p && *unit == '\0')
                return -EINVAL;

        for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
                if (strcmp(unit, units[i].name) == 0) {
                        scale = units[i].usec;
                        break;
                }
        if (scale == 0)
                return -EINVAL;
        if (whole > UINT64_MAX / scale)
                return -ERANGE;
        total = whole * scale;

        /* Each decimal is worth a tenth of the one before; below 1µs is cut. */
        for (const char *q = fraction; q && q < p && scale >= 10; q++) {
                scale /= 10;
                if (total > UINT64_MAX - (uint64_t) (*q - '0') * scale)
                        return -ERANGE;
                total += (uint64_t) (*q - '0') * scale;
        }
        *ret = total;
        return 0;
}

const char *config_format_seconds(usec_t usec, char buf[static 32]) {
        static const struct { const char *unit; usec_t usec; } units[] = {
                { "d", USEC_PER_DAY }, { "h", USEC_PER_HOUR }, { "min", USEC_PER_MIN },
                { "s", USEC_PER_SEC }, { "ms", USEC_PER_MSEC }, { "us", 1 },
        };

        for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
                if ((usec > 0 && usec % units[i].usec == 0) || units[i].usec == 1) {
                        snprintf(buf, 32, "%llu%s", (unsigned long long) (usec / units[i].usec),
                                 units[i].unit);
                        break;
                }
        return buf;
}

int config_parse_url_path(const char *s, char **ret) {
        size_t len;

        if (!s || !ret || s[0] != '/')
                return -EINVAL;
        /* It goes into the HTTP request line as is, so only printable ASCII;
         * the query is ours to write, so no '?' or '#'. */
        for (const unsigned char *p = (const unsigned char *) s; *p; p++)
                if (*p <= ' ' || *p >= 0x7f || *p == '?' || *p == '#')
                        return -EINVAL;

        /* Socket.IO servers answer on PATH/ only: add the slash people forget. */
        len = strlen(s);
        if (asprintf(ret, "%s%s", s, s[len - 1] == '/' ? "" : "/") < 0)
                return -ENOMEM;
        return 0;
}

int config_parse_engine_io(const char *s, unsigned *ret) {
        if (!s || !ret || (strcmp(s, "3") != 0 && strcmp(s, "4") != 0))
                return -EINVAL;
        *ret = (unsigned) (s[0] - '0');
        return 0;
}

int config_parse_log_level(const char *s, int *ret) {
        if (!s || !ret)
                return -EINVAL;
        for (int i = LOG_EMERG; i <= LOG_DEBUG; i++)
                if (strcmp(s, log_level_names[i]) == 0 || (s[0] == '0' + i && s[1] == '\0')) {
                        *ret = i;
                        return 0;
                }
        return -EINVAL;
}
