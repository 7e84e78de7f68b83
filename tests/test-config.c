/* SPDX-License-Identifier: MIT */
/*
 * Unit test of the configuration module: every key with good and bad values,
 * the defaults, the INI loader's "file:line" errors (several per file, long
 * lines, malformed lines), drop-in order and config_verify(). Files are
 * written to a private mkdtemp() directory that is removed at the end.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "eventd-config.h"
#include "test-util.h"

#define USEC_PER_SEC UINT64_C(1000000)

static char tmpdir[] = "/tmp/test-config.XXXXXX";

/* The problems one load reported, in order. */
#define ERRORS_MAX 64
struct errors {
        size_t n;
        char *where[ERRORS_MAX];
        char *what[ERRORS_MAX];
};

static void errors_collect(const char *where, const char *what, void *userdata) {
        struct errors *e = userdata;

        CHECK(e->n < ERRORS_MAX);
        e->where[e->n] = strdup(where);
        e->what[e->n] = strdup(what);
        CHECK(e->where[e->n] && e->what[e->n]);
        e->n++;
}

static void errors_clear(struct errors *e) {
        for (size_t i = 0; i < e->n; i++) {
                free(e->where[i]);
                free(e->what[i]);
        }
        e->n = 0;
}

/* Writes content (len bytes, or all of a string when len is -1) to
 * tmpdir/name and returns the path (caller frees). */
static char *write_file_len(const char *name, const char *content, ssize_t len) {
        char *path;
        FILE *f;

        CHECK(asprintf(&path, "%s/%s", tmpdir, name) > 0);
        f = fopen(path, "we");
        CHECK(f);
        if (len < 0)
                len = (ssize_t) strlen(content);
        CHECK(fwrite(content, 1, (size_t) len, f) == (size_t) len);
        CHECK(fclose(f) == 0);
        return path;
}

static char *write_file(const char *name, const char *content) {
        return write_file_len(name, content, -1);
}

static void make_dir(const char *name) {
        char *path;

        CHECK(asprintf(&path, "%s/%s", tmpdir, name) > 0);
        CHECK(mkdir(path, 0755) == 0);
        free(path);
}

/* Loads content as a file named name into a fresh config; returns the result. */
static int load_string(const char *name, const char *content, struct config **ret,
                       struct errors *e) {
        struct config *c;
        char *path;
        int r;

        CHECK(config_new(&c) == 0);
        path = write_file(name, content);
        r = config_load_file(c, path, errors_collect, e);
        free(path);
        *ret = c;
        return r;
}

/* "tmpdir/name:line", for comparing with an error's where. */
static char *where(const char *name, unsigned line) {
        static char buf[4][256];
        static unsigned next;
        char *b = buf[next++ % 4];

        snprintf(b, sizeof(buf[0]), "%s/%s:%u", tmpdir, name, line);
        return b;
}

/* Sets one key and expects success. */
static void set_ok(struct config *c, const char *section, const char *key, const char *value) {
        char *error = NULL;
        int r = config_set(c, section, key, value, &error);

        if (r != 0)
                fprintf(stderr, "[%s] %s=%s: %s\n", section, key, value, error ? error : "?");
        CHECK_INT(r, 0);
        CHECK(!error);
}

/* Sets one key, expects -EINVAL and, when message is not NULL, that text. */
static void set_bad(struct config *c, const char *section, const char *key, const char *value,
                    const char *message) {
        char *error = NULL;
        int r = config_set(c, section, key, value, &error);

        if (r != -EINVAL)
                fprintf(stderr, "[%s] %s=%s was accepted\n", section, key, value);
        CHECK_INT(r, -EINVAL);
        CHECK(error);
        if (message)
                CHECK_STR(error, message);
        free(error);
}

static void test_defaults(void) {
        struct config *c;

        CHECK_INT(config_new(&c), 0);
        CHECK_STR(c->url, "https://dev.samdock.app");
        CHECK(c->server.tls);
        CHECK_STR(c->server.host, "dev.samdock.app");
        CHECK_INT(c->server.port, 443);
        CHECK_STR(c->activities_path, "/api/activities/socket.io/");
        CHECK_STR(c->import_path, "/api/contacts/import/socket.io/");
        CHECK_INT(c->engine_io, 4);
        CHECK(!c->ca_file);
        CHECK(!c->proxy);
        CHECK(!c->token_file);
        CHECK(!c->token_command);
        CHECK(!c->refresh_token_file);
        CHECK_STR(c->auth_url, "https://dev.samdock.app");
        CHECK_INT(c->initial_delay_usec, 1 * USEC_PER_SEC);
        CHECK_INT(c->max_delay_usec, 60 * USEC_PER_SEC);
        CHECK_INT(c->max_event_size, 1024 * 1024);
        CHECK_INT(c->browse_timeout_usec, 10 * USEC_PER_SEC);
        CHECK_INT(c->bus, CONFIG_BUS_SYSTEM);
        CHECK_INT(c->log_level, LOG_INFO);
        CHECK_INT(config_verify(c, NULL, NULL), 0);
        config_free(c);
        config_free(NULL);
}

static void test_options_table(void) {
        static const char *const expected[] = {
                "url", "activities-path", "import-path", "engine-io", "ca-file", "proxy",
                "token-file", "token-command", "refresh-token-file", "auth-url",
                "initial-delay", "max-delay", "max-event-size", "browse-timeout", "log-level",
        };
        struct config *c;

        CHECK_INT(config_options_count, sizeof(expected) / sizeof(expected[0]));
        CHECK_INT(config_new(&c), 0);
        for (size_t i = 0; i < config_options_count; i++) {
                const struct config_option *o = &config_options[i];

                CHECK_STR(o->long_name, expected[i]);
                CHECK(o->help && o->help[0]);
                CHECK(strcmp(o->section, "Bus") != 0);
                /* Every twin names a real key: resetting it must work. */
                set_ok(c, o->section, o->key, "");
        }
        config_free(c);
}

static void test_server_keys(void) {
        struct config *c;

        CHECK_INT(config_new(&c), 0);

        set_ok(c, "Server", "URL", "http://localhost:3000");
        CHECK_STR(c->url, "http://localhost:3000");
        CHECK(!c->server.tls);
        CHECK_STR(c->server.host, "localhost");
        CHECK_INT(c->server.port, 3000);
        set_ok(c, "Server", "URL", "  https://[::1]:8443/  ");
        CHECK_STR(c->url, "https://[::1]:8443/");
        CHECK_STR(c->server.host, "::1");
        CHECK_INT(c->server.port, 8443);
        set_bad(c, "Server", "URL", "https://example.com/api",
                "URL= must be http[s]://HOST[:PORT], not 'https://example.com/api': "
                "a path is not allowed");
        set_bad(c, "Server", "URL", "ftp://example.com",
                "URL= must be http[s]://HOST[:PORT], not 'ftp://example.com': "
                "it must start with http:// or https://");
        /* A password in a URL must not end up in a log. */
        set_bad(c, "Server", "URL", "https://me:secret@example.com",
                "URL= must be http[s]://HOST[:PORT]: user info (user@host) is not allowed");
        /* A rejected value leaves the previous one in place. */
        CHECK_STR(c->url, "https://[::1]:8443/");
        CHECK_STR(c->server.host, "::1");

        set_ok(c, "Server", "ActivitiesPath", "/socket.io");
        CHECK_STR(c->activities_path, "/socket.io/");
        set_ok(c, "Server", "ActivitiesPath", "/");
        CHECK_STR(c->activities_path, "/");
        set_ok(c, "Server", "ImportPath", "/a/b/c/");
        CHECK_STR(c->import_path, "/a/b/c/");
        set_bad(c, "Server", "ActivitiesPath", "api/socket.io",
                "ActivitiesPath= must be a URL path starting with '/', without spaces, '?' or "
                "'#', not 'api/socket.io'");
        set_bad(c, "Server", "ImportPath", "/a b", NULL);
        set_bad(c, "Server", "ImportPath", "/a?EIO=4", NULL);
        set_bad(c, "Server", "ImportPath", "/a#x", NULL);
        set_bad(c, "Server", "ImportPath", "/a\tb", NULL);
        set_bad(c, "Server", "ImportPath", "/caf\xc3\xa9", NULL);
        CHECK_STR(c->import_path, "/a/b/c/");

        set_ok(c, "Server", "EngineIO", "3");
        CHECK_INT(c->engine_io, 3);
        set_ok(c, "Server", "EngineIO", "4");
        CHECK_INT(c->engine_io, 4);
        set_bad(c, "Server", "EngineIO", "5", "EngineIO= must be 3 or 4, not '5'");
        set_bad(c, "Server", "EngineIO", "04", NULL);
        set_bad(c, "Server", "EngineIO", "v4", NULL);

        set_ok(c, "Server", "CAFile", "/etc/ssl/samdock.pem");
        CHECK_STR(c->ca_file, "/etc/ssl/samdock.pem");
        set_bad(c, "Server", "CAFile", "ca.pem", "CAFile= must be an absolute path, not 'ca.pem'");

        set_ok(c, "Server", "Proxy", "http://proxy.example:3128");
        CHECK_STR(c->proxy, "http://proxy.example:3128");
        set_bad(c, "Server", "Proxy", "https://proxy.example:3128",
                "Proxy= must be http://HOST[:PORT], not 'https://proxy.example:3128': only "
                "plain HTTP proxies are supported");
        set_bad(c, "Server", "Proxy", "http://user:pw@proxy:3128",
                "Proxy= must be http://HOST[:PORT]: user info (user@host) is not allowed");
        set_bad(c, "Server", "Proxy", "proxy:3128", NULL);
        CHECK_STR(c->proxy, "http://proxy.example:3128");
        config_free(c);
}

static void test_auth_keys(void) {
        struct config *c;

        CHECK_INT(config_new(&c), 0);
        set_ok(c, "Auth", "TokenFile", "/run/samdock/token");
        CHECK_STR(c->token_file, "/run/samdock/token");
        set_bad(c, "Auth", "TokenFile", "./token",
                "TokenFile= must be an absolute path, not './token'");

        /* ';' and '#' are plain characters in values. */
        set_ok(c, "Auth", "TokenCommand", "pass show samdock; echo # done");
        CHECK_STR(c->token_command, "pass show samdock; echo # done");

        set_ok(c, "Auth", "RefreshTokenFile", "/var/lib/samdock/refresh");
        CHECK_STR(c->refresh_token_file, "/var/lib/samdock/refresh");
        set_bad(c, "Auth", "RefreshTokenFile", "refresh", NULL);

        set_ok(c, "Auth", "AuthURL", "http://127.0.0.1:8080");
        CHECK_STR(c->auth_url, "http://127.0.0.1:8080");
        set_bad(c, "Auth", "AuthURL", "https://auth.example/login",
                "AuthURL= must be http[s]://HOST[:PORT], not 'https://auth.example/login': "
                "a path is not allowed");
        CHECK_STR(c->auth_url, "http://127.0.0.1:8080");
        config_free(c);
}

static void test_number_keys(void) {
        struct config *c;

        CHECK_INT(config_new(&c), 0);
        set_ok(c, "Reconnect", "InitialDelaySec", "2.5");
        CHECK_INT(c->initial_delay_usec, 2500000);
        set_ok(c, "Reconnect", "InitialDelaySec", "500ms");
        CHECK_INT(c->initial_delay_usec, 500000);
        set_ok(c, "Reconnect", "MaxDelaySec", "5min");
        CHECK_INT(c->max_delay_usec, 300 * USEC_PER_SEC);
        set_ok(c, "Reconnect", "MaxDelaySec", "1d");
        CHECK_INT(c->max_delay_usec, 86400 * USEC_PER_SEC);
        set_bad(c, "Reconnect", "InitialDelaySec", "10x",
                "InitialDelaySec= must be a time such as 10, 2.5, 500ms or 1min, not '10x'");
        set_bad(c, "Reconnect", "InitialDelaySec", "0",
                "InitialDelaySec= must be more than 0 and at most 1d, not '0'");
        set_bad(c, "Reconnect", "MaxDelaySec", "25h",
                "MaxDelaySec= must be more than 0 and at most 1d, not '25h'");
        set_bad(c, "Reconnect", "MaxDelaySec", "-1", NULL);
        set_bad(c, "Reconnect", "MaxDelaySec", "nan", NULL);
        set_bad(c, "Reconnect", "MaxDelaySec", "inf", NULL);
        set_bad(c, "Reconnect", "MaxDelaySec", "99999999999999999999", NULL);
        CHECK_INT(c->max_delay_usec, 86400 * USEC_PER_SEC);

        set_ok(c, "Limits", "MaxEventSize", "1K");
        CHECK_INT(c->max_event_size, 1024);
        set_ok(c, "Limits", "MaxEventSize", "64M");
        CHECK_INT(c->max_event_size, 64 * 1024 * 1024);
        set_ok(c, "Limits", "MaxEventSize", "65536");
        CHECK_INT(c->max_event_size, 65536);
        set_bad(c, "Limits", "MaxEventSize", "1023",
                "MaxEventSize= must be from 1K to 64M, not '1023'");
        set_bad(c, "Limits", "MaxEventSize", "65M",
                "MaxEventSize= must be from 1K to 64M, not '65M'");
        set_bad(c, "Limits", "MaxEventSize", "1X",
                "MaxEventSize= must be a size such as 65536, 512K or 1M, not '1X'");
        set_bad(c, "Limits", "MaxEventSize", "-1M", NULL);
        set_bad(c, "Limits", "MaxEventSize", "1.5M", NULL);
        set_bad(c, "Limits", "MaxEventSize", "99999999999999999999999", NULL);
        CHECK_INT(c->max_event_size, 65536);

        set_ok(c, "Limits", "BrowseTimeoutSec", "1h");
        CHECK_INT(c->browse_timeout_usec, 3600 * USEC_PER_SEC);
        set_ok(c, "Limits", "BrowseTimeoutSec", "1ms");
        CHECK_INT(c->browse_timeout_usec, 1000);
        set_bad(c, "Limits", "BrowseTimeoutSec", "0",
                "BrowseTimeoutSec= must be more than 0 and at most 1h, not '0'");
        set_bad(c, "Limits", "BrowseTimeoutSec", "3601", NULL);
        set_bad(c, "Limits", "BrowseTimeoutSec", "0.0000001", NULL);
        config_free(c);
}

static void test_bus_and_log_keys(void) {
        static const char *const levels[] = {
                "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
        };
        struct config *c;

        CHECK_INT(config_new(&c), 0);
        set_ok(c, "Bus", "Bus", "session");
        CHECK_INT(c->bus, CONFIG_BUS_SESSION);
        set_ok(c, "Bus", "Bus", "system");
        CHECK_INT(c->bus, CONFIG_BUS_SYSTEM);
        set_bad(c, "Bus", "Bus", "user", "Bus= must be system or session, not 'user'");
        set_bad(c, "Bus", "Bus", "System", NULL);

        for (int i = 0; i < 8; i++) {
                char digit[2] = { (char) ('0' + i), '\0' };

                set_ok(c, "Log", "Level", levels[i]);
                CHECK_INT(c->log_level, i);
                set_ok(c, "Log", "Level", "info");
                set_ok(c, "Log", "Level", digit);
                CHECK_INT(c->log_level, i);
        }
        CHECK_INT(LOG_DEBUG, 7);
        set_bad(c, "Log", "Level", "verbose",
                "Level= must be one of emerg, alert, crit, err, warning, notice, info, debug "
                "or 0-7, not 'verbose'");
        set_bad(c, "Log", "Level", "8", NULL);
        set_bad(c, "Log", "Level", "-1", NULL);
        config_free(c);
}

static void test_set_errors(void) {
        struct config *c;
        char *error = NULL;

        CHECK_INT(config_new(&c), 0);
        set_bad(c, "Foo", "URL", "x", "unknown section [Foo]");
        set_bad(c, "server", "URL", "x", "unknown section [server]");
        set_bad(c, "Server", "Foo", "x", "unknown key 'Foo' in section [Server]");
        set_bad(c, "Server", "url", "x",
                "unknown key 'url' in section [Server]; did you mean 'URL'?");
        set_bad(c, "Server", "Level", "debug",
                "unknown key 'Level' in section [Server]; it belongs in [Log]");
        /* Control characters are escaped, long values cut short. */
        set_bad(c, "Server", "EngineIO", "\x1b[31m", "EngineIO= must be 3 or 4, not '\\x1b[31m'");
        {
                char long_value[300], expected[200];

                memset(long_value, 'x', sizeof(long_value) - 1);
                long_value[sizeof(long_value) - 1] = '\0';
                snprintf(expected, sizeof(expected), "EngineIO= must be 3 or 4, not '%.80s...'",
                         long_value);
                set_bad(c, "Server", "EngineIO", long_value, expected);
        }
        /* A NULL ret_error is fine. */
        CHECK_INT(config_set(c, "Server", "EngineIO", "9", NULL), -EINVAL);
        CHECK_INT(config_set(c, "Server", "EngineIO", "3", &error), 0);
        CHECK(!error);
        config_free(c);
}

static void test_empty_resets(void) {
        struct config *c;

        CHECK_INT(config_new(&c), 0);
        set_ok(c, "Server", "URL", "http://other:1");
        set_ok(c, "Server", "ActivitiesPath", "/x");
        set_ok(c, "Server", "ImportPath", "/y");
        set_ok(c, "Server", "EngineIO", "3");
        set_ok(c, "Server", "CAFile", "/ca");
        set_ok(c, "Server", "Proxy", "http://p:8080");
        set_ok(c, "Auth", "TokenFile", "/t");
        set_ok(c, "Auth", "TokenCommand", "cmd");
        set_ok(c, "Auth", "RefreshTokenFile", "/r");
        set_ok(c, "Auth", "AuthURL", "http://auth");
        set_ok(c, "Reconnect", "InitialDelaySec", "5");
        set_ok(c, "Reconnect", "MaxDelaySec", "6");
        set_ok(c, "Limits", "MaxEventSize", "2M");
        set_ok(c, "Limits", "BrowseTimeoutSec", "20");
        set_ok(c, "Bus", "Bus", "session");
        set_ok(c, "Log", "Level", "debug");

        set_ok(c, "Server", "URL", "");
        set_ok(c, "Server", "ActivitiesPath", "   ");
        set_ok(c, "Server", "ImportPath", NULL);
        set_ok(c, "Server", "EngineIO", "");
        set_ok(c, "Server", "CAFile", "");
        set_ok(c, "Server", "Proxy", "");
        set_ok(c, "Auth", "TokenFile", "");
        set_ok(c, "Auth", "TokenCommand", "\t");
        set_ok(c, "Auth", "RefreshTokenFile", "");
        set_ok(c, "Auth", "AuthURL", "");
        set_ok(c, "Reconnect", "InitialDelaySec", "");
        set_ok(c, "Reconnect", "MaxDelaySec", "");
        set_ok(c, "Limits", "MaxEventSize", "");
        set_ok(c, "Limits", "BrowseTimeoutSec", "");
        set_ok(c, "Bus", "Bus", "");
        set_ok(c, "Log", "Level", "");

        CHECK_STR(c->url, "https://dev.samdock.app");
        CHECK_STR(c->server.host, "dev.samdock.app");
        CHECK_INT(c->server.port, 443);
        CHECK(c->server.tls);
        CHECK_STR(c->activities_path, "/api/activities/socket.io/");
        CHECK_STR(c->import_path, "/api/contacts/import/socket.io/");
        CHECK_INT(c->engine_io, 4);
        CHECK(!c->ca_file && !c->proxy && !c->token_file && !c->token_command);
        CHECK(!c->refresh_token_file);
        CHECK_STR(c->auth_url, "https://dev.samdock.app");
        CHECK_INT(c->initial_delay_usec, USEC_PER_SEC);
        CHECK_INT(c->max_delay_usec, 60 * USEC_PER_SEC);
        CHECK_INT(c->max_event_size, 1024 * 1024);
        CHECK_INT(c->browse_timeout_usec, 10 * USEC_PER_SEC);
        CHECK_INT(c->bus, CONFIG_BUS_SYSTEM);
        CHECK_INT(c->log_level, LOG_INFO);
        config_free(c);
}

static void url_ok(const char *url, bool tls, const char *host, unsigned port) {
        struct config_url u = { 0 };
        char *error = NULL;

        if (config_url_parse(url, &u, &error) != 0)
                fprintf(stderr, "'%s': %s\n", url, error ? error : "?");
        CHECK(!error);
        CHECK_INT(u.tls, tls);
        CHECK_STR(u.host, host);
        CHECK_INT(u.port, port);
        config_url_release(&u);
        CHECK(!u.host);
}

static void url_bad(const char *url, const char *reason) {
        struct config_url u = { .host = NULL };
        char *error = NULL;

        if (config_url_parse(url, &u, &error) != -EINVAL)
                fprintf(stderr, "'%s' was accepted\n", url);
        CHECK(!u.host);
        CHECK(error);
        if (reason)
                CHECK_STR(error, reason);
        free(error);
        /* No message wanted: still refused. */
        CHECK_INT(config_url_parse(url, &u, NULL), -EINVAL);
}

static void test_url_parse(void) {
        url_ok("https://dev.samdock.app", true, "dev.samdock.app", 443);
        url_ok("https://dev.samdock.app/", true, "dev.samdock.app", 443);
        url_ok("http://dev.samdock.app", false, "dev.samdock.app", 80);
        url_ok("HTTPS://Example.COM:1", true, "Example.COM", 1);
        url_ok("http://localhost:65535/", false, "localhost", 65535);
        url_ok("http://127.0.0.1:3000", false, "127.0.0.1", 3000);
        url_ok("https://[::1]", true, "::1", 443);
        url_ok("https://[2001:db8::1]:8443/", true, "2001:db8::1", 8443);
        url_ok("http://my_host-1.example", false, "my_host-1.example", 80);

        url_bad("", "it must start with http:// or https://");
        url_bad("dev.samdock.app", "it must start with http:// or https://");
        url_bad("wss://dev.samdock.app", "it must start with http:// or https://");
        url_bad("https:/dev.samdock.app", NULL);
        url_bad("https://", "the host is missing");
        url_bad("https:///", "the host is missing");
        url_bad("https://:443", "the host is missing");
        url_bad("https://host:0", "the port must be a number from 1 to 65535");
        url_bad("https://host:65536", "the port must be a number from 1 to 65535");
        url_bad("https://host:99999999999999999999999", NULL);
        url_bad("https://host:", "the port must be a number from 1 to 65535");
        url_bad("https://host:-1", NULL);
        url_bad("https://host:44x", NULL);
        url_bad("https://host/path", "a path is not allowed");
        url_bad("https://host//", "a path is not allowed");
        url_bad("https://host:443/socket.io/", "a path is not allowed");
        url_bad("https://host?x=1", "a query or fragment is not allowed");
        url_bad("https://host/?x=1", "a query or fragment is not allowed");
        url_bad("https://host#frag", "a query or fragment is not allowed");
        url_bad("https://user@host", "user info (user@host) is not allowed");
        url_bad("https://user:pw@host:443", "user info (user@host) is not allowed");
        url_bad("https://::1", "IPv6 addresses must be in brackets, like [::1]");
        url_bad("https://2001:db8::1:443", "IPv6 addresses must be in brackets, like [::1]");
        url_bad("https://[::1", "the IPv6 address lacks its closing ']'");
        url_bad("https://[nothost]", "invalid IPv6 address");
        url_bad("https://[]", "invalid IPv6 address");
        url_bad("https://[0000:0000:0000:0000:0000:0000:0000:0000:0000:0000]",
                "invalid IPv6 address");
        url_bad("https://[::1]x", "unexpected characters after the host");
        url_bad("https://[::1]:0", NULL);
        url_bad("https://ho st", "invalid host name");
        url_bad("https://host.", "invalid host name");
        url_bad("https://.host", "invalid host name");
        url_bad("https://a..b", "invalid host name");
        url_bad("https://-host", "invalid host name");
        url_bad("https://h\xc3\xb6st", "invalid host name");
        url_bad("https://host ", "invalid host name");
}

static void test_parse_size(void) {
        size_t size = 0;

        CHECK_INT(config_parse_size("0", &size), 0);
        CHECK_INT(size, 0);
        CHECK_INT(config_parse_size("65536", &size), 0);
        CHECK_INT(size, 65536);
        CHECK_INT(config_parse_size("512K", &size), 0);
        CHECK_INT(size, 512 * 1024);
        CHECK_INT(config_parse_size("1M", &size), 0);
        CHECK_INT(size, 1024 * 1024);
        CHECK_INT(config_parse_size("2G", &size), 0);
        CHECK_INT(size, 2048LL * 1024 * 1024);
        CHECK_INT(config_parse_size("3T", &size), 0);
        CHECK_INT(size, 3LL << 40);
        CHECK_INT(config_parse_size("18446744073709551615", &size), 0);
        CHECK(size == SIZE_MAX);

        size = 42;
        CHECK_INT(config_parse_size("", &size), -EINVAL);
        CHECK_INT(config_parse_size("K", &size), -EINVAL);
        CHECK_INT(config_parse_size("1k", &size), -EINVAL);
        CHECK_INT(config_parse_size("1KB", &size), -EINVAL);
        CHECK_INT(config_parse_size("1 K", &size), -EINVAL);
        CHECK_INT(config_parse_size(" 1", &size), -EINVAL);
        CHECK_INT(config_parse_size("1 ", &size), -EINVAL);
        CHECK_INT(config_parse_size("-1", &size), -EINVAL);
        CHECK_INT(config_parse_size("+1", &size), -EINVAL);
        CHECK_INT(config_parse_size("1.5M", &size), -EINVAL);
        CHECK_INT(config_parse_size("0x10", &size), -EINVAL);
        CHECK_INT(config_parse_size("10x", &size), -EINVAL);
        CHECK_INT(config_parse_size("1P", &size), -EINVAL);
        CHECK_INT(config_parse_size("18446744073709551616", &size), -ERANGE);
        CHECK_INT(config_parse_size("16777216T", &size), -ERANGE);
        CHECK_INT(config_parse_size(NULL, &size), -EINVAL);
        CHECK_INT(size, 42);
}

static void test_parse_seconds(void) {
        static const struct { const char *text; usec_t usec; } good[] = {
                { "0", 0 }, { "10", 10 * USEC_PER_SEC }, { "2.5", 2500000 },
                { "0.001", 1000 }, { "1.0000009", 1000000 }, { "500ms", 500000 },
                { "500 ms", 500000 }, { "1.5ms", 1500 }, { "7us", 7 }, { "7usec", 7 },
                { "3msec", 3000 }, { "4s", 4 * USEC_PER_SEC }, { "4sec", 4 * USEC_PER_SEC },
                { "1min", 60 * USEC_PER_SEC }, { "2m", 120 * USEC_PER_SEC },
                { "1.5min", 90 * USEC_PER_SEC }, { "1h", 3600 * USEC_PER_SEC },
                { "2hour", 7200 * USEC_PER_SEC }, { "1d", 86400 * USEC_PER_SEC },
                { "1day", 86400 * USEC_PER_SEC }, { "007", 7 * USEC_PER_SEC },
                { "18446744073709.551615", UINT64_MAX },
        };
        static const char *const bad[] = {
                "", "s", ".5", "5.", "-1", "+1", "nan", "NaN", "inf", "1e3", "0x10", "10x",
                "10 ", " 10", "1 0", "10S", "10 minutes", "1min30s", "1..5", "1.5.5", "10ms ",
        };
        usec_t usec;

        for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
                usec = 42;
                if (config_parse_seconds(good[i].text, &usec) != 0)
                        fprintf(stderr, "'%s' was refused\n", good[i].text);
                CHECK_INT(config_parse_seconds(good[i].text, &usec), 0);
                CHECK(usec == good[i].usec);
        }
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                usec = 42;
                if (config_parse_seconds(bad[i], &usec) != -EINVAL)
                        fprintf(stderr, "'%s' was accepted\n", bad[i]);
                CHECK_INT(config_parse_seconds(bad[i], &usec), -EINVAL);
                CHECK_INT(usec, 42);
        }
        CHECK_INT(config_parse_seconds("18446744073710", &usec), -ERANGE);
        CHECK_INT(config_parse_seconds("99999999999999999999", &usec), -ERANGE);
        CHECK_INT(config_parse_seconds("213503982336d", &usec), -ERANGE);
        CHECK_INT(config_parse_seconds("18446744073709.551616", &usec), -ERANGE);
        CHECK_INT(config_parse_seconds(NULL, &usec), -EINVAL);
}

static void test_load_good_file(void) {
        struct errors e = { 0 };
        struct config *c;

        CHECK_INT(load_string("good.conf",
                              "\xef\xbb\xbf# samdock-eventd configuration\n"
                              "; another comment style\n"
                              "\n"
                              "[Server]\n"
                              "URL = http://localhost:3000\r\n"
                              "   ActivitiesPath=/a\n"
                              "ImportPath=/i/\n"
                              "EngineIO=3\n"
                              "  # indented comment\n"
                              "CAFile=/etc/ca.pem\n"
                              "Proxy=http://proxy:3128\n"
                              "\t\n"
                              "[Auth]\n"
                              "TokenCommand=  pass show x;y # not a comment  \n"
                              "RefreshTokenFile=/var/lib/samdock/refresh\n"
                              "AuthURL=https://auth.example\n"
                              "[Reconnect]\n"
                              "InitialDelaySec=250ms\n"
                              "MaxDelaySec=2min\n"
                              "[Limits]\n"
                              "MaxEventSize=4M\n"
                              "BrowseTimeoutSec=30\n"
                              "[Bus]\n"
                              "Bus=session\n"
                              "[Log]\n"
                              "Level=debug",
                              &c, &e), 0);
        CHECK_INT(e.n, 0);
        CHECK_STR(c->url, "http://localhost:3000");
        CHECK_INT(c->server.port, 3000);
        CHECK_STR(c->activities_path, "/a/");
        CHECK_STR(c->import_path, "/i/");
        CHECK_INT(c->engine_io, 3);
        CHECK_STR(c->ca_file, "/etc/ca.pem");
        CHECK_STR(c->proxy, "http://proxy:3128");
        CHECK(!c->token_file);
        CHECK_STR(c->token_command, "pass show x;y # not a comment");
        CHECK_STR(c->refresh_token_file, "/var/lib/samdock/refresh");
        CHECK_STR(c->auth_url, "https://auth.example");
        CHECK_INT(c->initial_delay_usec, 250000);
        CHECK_INT(c->max_delay_usec, 120 * USEC_PER_SEC);
        CHECK_INT(c->max_event_size, 4 * 1024 * 1024);
        CHECK_INT(c->browse_timeout_usec, 30 * USEC_PER_SEC);
        CHECK_INT(c->bus, CONFIG_BUS_SESSION);
        CHECK_INT(c->log_level, LOG_DEBUG);
        CHECK_INT(config_verify(c, errors_collect, &e), 0);
        CHECK_INT(e.n, 0);
        config_free(c);

        /* Empty files and comment-only files are fine too. */
        CHECK_INT(load_string("empty.conf", "", &c, &e), 0);
        config_free(c);
        CHECK_INT(load_string("comments.conf", "#[Server]\n;URL=x\n#\n\n", &c, &e), 0);
        CHECK_STR(c->url, "https://dev.samdock.app");
        config_free(c);
        CHECK_INT(e.n, 0);
}

static void test_load_last_wins_and_reset(void) {
        struct errors e = { 0 };
        struct config *c;

        CHECK_INT(load_string("dup.conf",
                              "[Server]\n"
                              "EngineIO=3\n"
                              "CAFile=/one\n"
                              "[Limits]\n"
                              "MaxEventSize=2M\n"
                              "[Server]\n"
                              "EngineIO=4\n"
                              "EngineIO=3\n"
                              "CAFile=\n"
                              "URL=http://a\n"
                              "URL=http://b:81\n",
                              &c, &e), 0);
        CHECK_INT(e.n, 0);
        CHECK_INT(c->engine_io, 3);
        CHECK(!c->ca_file);
        CHECK_INT(c->max_event_size, 2 * 1024 * 1024);
        CHECK_STR(c->url, "http://b:81");
        CHECK_STR(c->server.host, "b");
        CHECK_INT(c->server.port, 81);
        config_free(c);
}

static void test_load_errors(void) {
        struct errors e = { 0 };
        struct config *c;

        CHECK_INT(load_string("bad.conf",
                              "URL=https://x\n"                         /* 1 */
                              "[Server]\n"                              /* 2 */
                              "EngineIO=5\n"                            /* 3 */
                              "Foo=bar\n"                               /* 4 */
                              "URL=https://x/api\n"                     /* 5 */
                              "just some words\n"                       /* 6 */
                              "URL: https://y\n"                        /* 7 */
                              "=value\n"                                /* 8 */
                              "[Frobnicate]\n"                          /* 9 */
                              "Whatever=1\n"                            /* 10 */
                              "[Limits\n"                               /* 11 */
                              "MaxEventSize=1\n"                        /* 12 */
                              "[Limits] # trailing\n"                   /* 13 */
                              "[]\n"                                    /* 14 */
                              "[Limits]\n"                              /* 15 */
                              "MaxEventSize=12Q\n"                      /* 16 */
                              "BrowseTimeoutSec=0\n"                    /* 17 */
                              "  ; fine\n"                              /* 18 */
                              "[Log]\n"                                 /* 19 */
                              "Level=loud\n"                            /* 20 */
                              "level=debug\n"                           /* 21 */
                              "EngineIO=3\n"                            /* 22 */
                              "[Reconnect]\n"                           /* 23 */
                              "MaxDelaySec=2\n",                        /* 24 */
                              &c, &e), -EINVAL);

        static const struct { unsigned line; const char *what; } expected[] = {
                { 1, "key 'URL' comes before any [Section] header" },
                { 3, "EngineIO= must be 3 or 4, not '5'" },
                { 4, "unknown key 'Foo' in section [Server]" },
                { 5, "URL= must be http[s]://HOST[:PORT], not 'https://x/api': "
                     "a path is not allowed" },
                { 6, "expected Key=value or a [Section] header" },
                { 7, "expected Key=value; ':' does not separate key and value" },
                { 8, "the key name before '=' is missing" },
                { 9, "unknown section [Frobnicate]" },
                { 11, "expected a section header like [Server]" },
                { 13, "expected a section header like [Server]" },
                { 14, "expected a section header like [Server]" },
                { 16, "MaxEventSize= must be a size such as 65536, 512K or 1M, not '12Q'" },
                { 17, "BrowseTimeoutSec= must be more than 0 and at most 1h, not '0'" },
                { 20, "Level= must be one of emerg, alert, crit, err, warning, notice, info, "
                      "debug or 0-7, not 'loud'" },
                { 21, "unknown key 'level' in section [Log]; did you mean 'Level'?" },
                { 22, "unknown key 'EngineIO' in section [Log]; it belongs in [Server]" },
        };
        size_t n = sizeof(expected) / sizeof(expected[0]);

        for (size_t i = 0; i < e.n && i < n; i++) {
                CHECK_STR(e.where[i], where("bad.conf", expected[i].line));
                CHECK_STR(e.what[i], expected[i].what);
        }
        CHECK_INT(e.n, n);
        /* The good lines around the bad ones still count. */
        CHECK_INT(c->max_delay_usec, 2 * USEC_PER_SEC);
        CHECK_INT(c->engine_io, 4);
        CHECK_STR(c->url, "https://dev.samdock.app");
        CHECK_INT(c->max_event_size, 1024 * 1024);
        errors_clear(&e);
        config_free(c);
}

static void test_load_long_lines(void) {
        struct errors e = { 0 };
        struct config *c;
        char *content, *p, *path;
        const char *key = "TokenCommand=";
        size_t key_len = strlen(key);

        /* Line 2: exactly 4096 bytes; line 3: 4097; line 4: 5000; line 5:
         * 4096 plus "\r\n"; then a bad line to prove the count held. */
        content = malloc(32 * 1024);
        CHECK(content);
        p = stpcpy(content, "[Auth]\n");
        p = stpcpy(p, key);
        memset(p, 'a', 4096 - key_len);
        p += 4096 - key_len;
        p = stpcpy(p, "\n");
        p = stpcpy(p, key);
        memset(p, 'b', 4097 - key_len);
        p += 4097 - key_len;
        p = stpcpy(p, "\n");
        p = stpcpy(p, key);
        memset(p, 'c', 5000 - key_len);
        p += 5000 - key_len;
        p = stpcpy(p, "\n");
        p = stpcpy(p, key);
        memset(p, 'd', 4096 - key_len);
        p += 4096 - key_len;
        p = stpcpy(p, "\r\n");
        p = stpcpy(p, "Nope=1\n");
        memset(p, ' ', 6000);
        p += 6000;
        p = stpcpy(p, "[Server]\n");
        p = stpcpy(p, "EngineIO=3\n");

        CHECK_INT(config_new(&c), 0);
        path = write_file("long.conf", content);
        CHECK_INT(config_load_file(c, path, errors_collect, &e), -EINVAL);
        CHECK_INT(e.n, 4);
        CHECK_STR(e.where[0], where("long.conf", 3));
        CHECK_STR(e.what[0], "line is longer than 4096 bytes");
        CHECK_STR(e.where[1], where("long.conf", 4));
        CHECK_STR(e.what[1], "line is longer than 4096 bytes");
        CHECK_STR(e.where[2], where("long.conf", 6));
        CHECK_STR(e.what[2], "unknown key 'Nope' in section [Auth]");
        /* 6000 blanks followed by a header: too long, and the section lost. */
        CHECK_STR(e.where[3], where("long.conf", 7));
        CHECK_STR(e.what[3], "line is longer than 4096 bytes");
        CHECK_INT(c->engine_io, 4);
        CHECK(c->token_command);
        CHECK_INT(strlen(c->token_command), 4096 - key_len);
        CHECK(c->token_command[0] == 'd');
        errors_clear(&e);
        config_free(c);
        free(path);
        free(content);
}

static void test_load_long_section_name(void) {
        struct errors e = { 0 };
        struct config *c;
        char content[300], expected[200];

        /* libinih keeps only 49 bytes of a section name; ours must not match
         * a known section by its first bytes, and the message is cut short. */
        snprintf(content, sizeof(content), "[Server%0200d]\nEngineIO=3\n", 0);
        CHECK_INT(load_string("section.conf", content, &c, &e), -EINVAL);
        CHECK_INT(e.n, 1);
        CHECK_STR(e.where[0], where("section.conf", 1));
        snprintf(expected, sizeof(expected), "unknown section [Server%074d...]", 0);
        CHECK_STR(e.what[0], expected);
        CHECK_INT(c->engine_io, 4);
        errors_clear(&e);
        config_free(c);
}

static void test_load_nul_byte(void) {
        static const char content[] = "[Server]\nEngineIO=3\0junk\nCAFile=/x\n";
        struct errors e = { 0 };
        struct config *c;
        char *path;

        CHECK_INT(config_new(&c), 0);
        path = write_file_len("nul.conf", content, sizeof(content) - 1);
        CHECK_INT(config_load_file(c, path, errors_collect, &e), -EINVAL);
        CHECK_INT(e.n, 1);
        CHECK_STR(e.where[0], where("nul.conf", 2));
        CHECK_STR(e.what[0], "line contains a NUL byte");
        CHECK_INT(c->engine_io, 4);
        CHECK_STR(c->ca_file, "/x");
        errors_clear(&e);
        config_free(c);
        free(path);
}

static void test_load_missing_and_unreadable(void) {
        struct errors e = { 0 };
        struct config *c;
        char *path;

        CHECK_INT(config_new(&c), 0);
        CHECK(asprintf(&path, "%s/does-not-exist.conf", tmpdir) > 0);
        CHECK_INT(config_load_file(c, path, errors_collect, &e), -ENOENT);
        CHECK_INT(e.n, 1);
        CHECK_STR(e.where[0], path);
        CHECK_STR(e.what[0], "cannot open: No such file or directory");
        errors_clear(&e);
        /* Without a callback, quietly. */
        CHECK_INT(config_load_file(c, path, NULL, NULL), -ENOENT);
        free(path);

        /* A directory opens but does not read. */
        CHECK_INT(config_load_file(c, tmpdir, errors_collect, &e), -EISDIR);
        CHECK_INT(e.n, 1);
        CHECK_STR(e.where[0], tmpdir);
        CHECK_STR(e.what[0], "cannot read: Is a directory");
        errors_clear(&e);
        config_free(c);
}

static void test_load_defaults(void) {
        struct errors e = { 0 };
        struct config *c;
        char *root, *old_xdg;

        CHECK(asprintf(&root, "%s/etc", tmpdir) > 0);

        /* Nothing there at all: fine, defaults stay. */
        CHECK_INT(config_new(&c), 0);
        CHECK_INT(config_load_defaults(c, CONFIG_BUS_SYSTEM, root, errors_collect, &e), 0);
        CHECK_INT(e.n, 0);
        CHECK_INT(c->engine_io, 4);
        config_free(c);

        make_dir("etc");
        make_dir("etc/samdock");
        free(write_file("etc/samdock/eventd.conf",
                        "[Server]\nEngineIO=3\nCAFile=/main\n[Log]\nLevel=err\n"));
        /* No drop-in directory yet: fine. */
        CHECK_INT(config_new(&c), 0);
        CHECK_INT(config_load_defaults(c, CONFIG_BUS_SYSTEM, root, errors_collect, &e), 0);
        CHECK_INT(c->engine_io, 3);
        CHECK_INT(c->log_level, LOG_ERR);
        config_free(c);

        make_dir("etc/samdock/eventd.conf.d");
        free(write_file("etc/samdock/eventd.conf.d/20-b.conf", "[Server]\nCAFile=/b\n"));
        free(write_file("etc/samdock/eventd.conf.d/10-a.conf",
                        "[Server]\nCAFile=/a\nProxy=http://a:1\n"));
        free(write_file("etc/samdock/eventd.conf.d/30-c.conf", "[Server]\nProxy=\n"));
        /* strcmp order: "B" sorts before "a". */
        free(write_file("etc/samdock/eventd.conf.d/B.conf", "[Log]\nLevel=crit\n"));
        free(write_file("etc/samdock/eventd.conf.d/a.conf", "[Log]\nLevel=notice\n"));
        /* Not drop-ins: wrong suffix, hidden, a directory. */
        free(write_file("etc/samdock/eventd.conf.d/99-z.conf.bak", "[Server]\nCAFile=/bak\n"));
        free(write_file("etc/samdock/eventd.conf.d/.99-hidden.conf", "[Server]\nCAFile=/h\n"));
        free(write_file("etc/samdock/eventd.conf.d/conf", "[Server]\nCAFile=/conf\n"));
        make_dir("etc/samdock/eventd.conf.d/98-dir.conf");

        CHECK_INT(config_new(&c), 0);
        CHECK_INT(config_load_defaults(c, CONFIG_BUS_SYSTEM, root, errors_collect, &e), 0);
        CHECK_INT(e.n, 0);
        CHECK_INT(c->engine_io, 3);
        CHECK_STR(c->ca_file, "/b");
        CHECK(!c->proxy);
        CHECK_INT(c->log_level, LOG_NOTICE);
        config_free(c);

        /* A drop-in "directory" that is a file is reported, the main file
         * still read. */
        make_dir("etc2");
        make_dir("etc2/samdock");
        free(write_file("etc2/samdock/eventd.conf", "[Server]\nEngineIO=3\n"));
        free(write_file("etc2/samdock/eventd.conf.d", "[Server]\nEngineIO=4\n"));
        {
                char *root2, *dir2;

                CHECK(asprintf(&root2, "%s/etc2", tmpdir) > 0);
                CHECK(asprintf(&dir2, "%s/samdock/eventd.conf.d", root2) > 0);
                CHECK_INT(config_new(&c), 0);
                CHECK_INT(config_load_defaults(c, CONFIG_BUS_SYSTEM, root2, errors_collect, &e),
                          -ENOTDIR);
                CHECK_INT(e.n, 1);
                CHECK_STR(e.where[0], dir2);
                CHECK_STR(e.what[0], "cannot open directory: Not a directory");
                CHECK_INT(c->engine_io, 3);
                errors_clear(&e);
                config_free(c);
                free(root2);
                free(dir2);
        }

        /* Errors in two files: both reported, each with its own path. */
        free(write_file("etc/samdock/eventd.conf.d/40-bad.conf", "[Server]\n\nEngineIO=2\n"));
        free(write_file("etc/samdock/eventd.conf",
                        "[Server]\nFoo=1\n[Log]\nLevel=warning\n"));
        CHECK_INT(config_new(&c), 0);
        CHECK_INT(config_load_defaults(c, CONFIG_BUS_SYSTEM, root, errors_collect, &e),
                  -EINVAL);
        CHECK_INT(e.n, 2);
        CHECK_STR(e.where[0], where("etc/samdock/eventd.conf", 2));
        CHECK_STR(e.where[1], where("etc/samdock/eventd.conf.d/40-bad.conf", 3));
        CHECK_STR(e.what[1], "EngineIO= must be 3 or 4, not '2'");
        /* The drop-ins still ran. */
        CHECK_INT(c->log_level, LOG_NOTICE);
        errors_clear(&e);
        config_free(c);

        /* The session bus reads the same layout under XDG_CONFIG_HOME. */
        old_xdg = getenv("XDG_CONFIG_HOME") ? strdup(getenv("XDG_CONFIG_HOME")) : NULL;
        make_dir("xdg");
        make_dir("xdg/samdock");
        free(write_file("xdg/samdock/eventd.conf", "[Limits]\nBrowseTimeoutSec=42\n"));
        {
                char *xdg;

                CHECK(asprintf(&xdg, "%s/xdg", tmpdir) > 0);
                CHECK(setenv("XDG_CONFIG_HOME", xdg, 1) == 0);
                CHECK_INT(config_new(&c), 0);
                CHECK_INT(config_load_defaults(c, CONFIG_BUS_SESSION, NULL, errors_collect, &e),
                          0);
                CHECK_INT(c->browse_timeout_usec, 42 * USEC_PER_SEC);
                config_free(c);

                /* root replaces XDG_CONFIG_HOME. */
                CHECK_INT(config_new(&c), 0);
                CHECK_INT(config_load_defaults(c, CONFIG_BUS_SESSION, xdg, errors_collect, &e),
                          0);
                CHECK_INT(c->browse_timeout_usec, 42 * USEC_PER_SEC);
                config_free(c);
                free(xdg);

                /* A relative XDG_CONFIG_HOME is ignored, as the spec says:
                 * HOME=tmpdir/home has nothing, so defaults. */
                CHECK(setenv("XDG_CONFIG_HOME", "xdg", 1) == 0);
                CHECK(asprintf(&xdg, "%s/home", tmpdir) > 0);
                CHECK(setenv("HOME", xdg, 1) == 0);
                CHECK_INT(config_new(&c), 0);
                CHECK_INT(config_load_defaults(c, CONFIG_BUS_SESSION, NULL, errors_collect, &e),
                          0);
                CHECK_INT(c->browse_timeout_usec, 10 * USEC_PER_SEC);
                config_free(c);
                free(xdg);
        }
        if (old_xdg)
                setenv("XDG_CONFIG_HOME", old_xdg, 1);
        else
                unsetenv("XDG_CONFIG_HOME");
        free(old_xdg);
        CHECK_INT(e.n, 0);
        free(root);
}

static void test_verify(void) {
        struct errors e = { 0 };
        struct config *c;

        CHECK_INT(config_new(&c), 0);
        set_ok(c, "Reconnect", "InitialDelaySec", "60");
        CHECK_INT(config_verify(c, errors_collect, &e), 0);
        set_ok(c, "Reconnect", "InitialDelaySec", "90");
        CHECK_INT(config_verify(c, errors_collect, &e), -EINVAL);
        CHECK_INT(e.n, 1);
        CHECK_STR(e.where[0], "configuration");
        CHECK_STR(e.what[0],
                  "InitialDelaySec= (90s) must not be greater than MaxDelaySec= (1min)");
        errors_clear(&e);
        set_ok(c, "Reconnect", "MaxDelaySec", "1.5min");
        CHECK_INT(config_verify(c, errors_collect, &e), 0);

        /* Both token sources may be set: TokenFile= comes first (the
         * order is the token code's business, not an error). */
        set_ok(c, "Auth", "TokenFile", "/t");
        set_ok(c, "Auth", "TokenCommand", "cat /t");
        CHECK_INT(config_verify(c, NULL, NULL), 0);
        set_ok(c, "Reconnect", "InitialDelaySec", "1500ms");
        set_ok(c, "Reconnect", "MaxDelaySec", "1");
        CHECK_INT(config_verify(c, errors_collect, &e), -EINVAL);
        CHECK_INT(e.n, 1);
        CHECK_STR(e.what[0],
                  "InitialDelaySec= (1500ms) must not be greater than MaxDelaySec= (1s)");
        errors_clear(&e);
        config_free(c);
}

static int remove_one(const char *path, const struct stat *st, int type, struct FTW *ftw) {
        return remove(path);
}

int main(void) {
        CHECK(mkdtemp(tmpdir));

        test_defaults();
        test_options_table();
        test_server_keys();
        test_auth_keys();
        test_number_keys();
        test_bus_and_log_keys();
        test_set_errors();
        test_empty_resets();
        test_url_parse();
        test_parse_size();
        test_parse_seconds();
        test_load_good_file();
        test_load_last_wins_and_reset();
        test_load_errors();
        test_load_long_lines();
        test_load_long_section_name();
        test_load_nul_byte();
        test_load_missing_and_unreadable();
        test_load_defaults();
        test_verify();

        CHECK(nftw(tmpdir, remove_one, 16, FTW_DEPTH | FTW_PHYS) == 0);
        printf("test-config: all passed\n");
        return 0;
}
