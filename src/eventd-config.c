/* SPDX-License-Identifier: MIT */
/*
 * Configuration. One key list drives the defaults, config_set(), the INI
 * loader and the command-line twins. libinih splits the lines; our reader in
 * front of it counts them, enforces the length limit and reports the lines
 * libinih would only count as "the first error", so every problem gets its
 * own "file:line" and loading goes on to find the next one. The values
 * themselves are parsed in eventd-config-value.c; the parsers here add the
 * key's name and the value to what went wrong.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "eventd-config.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <ini.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "eventd-time.h"

/* Longest line accepted, not counting the line ending. */
#define LINE_LIMIT 4096
/* How much of a bad value an error message repeats, and the buffer for it
 * (room for one last escape and the "..."). */
#define SHOWN_MAX 80
#define SHOWN_SIZE (SHOWN_MAX + 8)

#define KIB UINT64_C(1024)
#define MIB (1024 * KIB)

#define _printf_(a, b) __attribute__((format(printf, a, b)))

static inline void freep(void *p) {
        free(*(void **) p);
}
#define _cleanup_free_ __attribute__((cleanup(freep)))

struct config_key;
typedef int (*config_parse_fn)(struct config *c, const struct config_key *key, const char *value,
                               char **ret_error);

struct config_key {
        const char *section;
        const char *name;
        config_parse_fn parse;
        size_t offset;
        uint64_t min, max;              /* for times (µs) and sizes (bytes) */
        const char *default_value;      /* NULL: unset */
};

#define FIELD(c, key, type) ((type *) (void *) ((char *) (c) + (key)->offset))

/* Always -EINVAL: the message is a courtesy, losing it to OOM changes nothing. */
_printf_(2, 3) static int set_error(char **ret_error, const char *format, ...) {
        va_list ap;

        if (!ret_error)
                return -EINVAL;

        va_start(ap, format);
        if (vasprintf(ret_error, format, ap) < 0)
                *ret_error = NULL;
        va_end(ap);
        return -EINVAL;
}

/* A bad value, cut short and with control characters escaped, so that an
 * error message stays one readable journal line. */
static const char *show(const char *value, char buf[static SHOWN_SIZE]) {
        size_t n = 0;

        for (const unsigned char *p = (const unsigned char *) value; *p; p++) {
                if (n >= SHOWN_MAX) {
                        strcpy(buf + n, "...");
                        return buf;
                }
                if (*p < 0x20 || *p == 0x7f)
                        n += (size_t) sprintf(buf + n, "\\x%02x", *p);
                else
                        buf[n++] = (char) *p;
        }
        buf[n] = '\0';
        return buf;
}

static int set_string(char **field, const char *value) {
        char *copy = NULL;

        if (value) {
                copy = strdup(value);
                if (!copy)
                        return -ENOMEM;
        }
        free(*field);
        *field = copy;
        return 0;
}

static int parse_url_into(char **field, const char *value, struct config_url *ret_parsed,
                          const char *key_name, bool http_only, char **ret_error) {
        _cleanup_free_ char *reason = NULL;
        char shown[SHOWN_SIZE];
        struct config_url url;
        int r;

        r = config_url_parse(value, &url, &reason);
        if (r == -ENOMEM)
                return r;
        /* A URL with user info may hold a password: never repeat it. */
        if (r < 0 && strchr(value, '@'))
                return set_error(ret_error, "%s= must be http%s://HOST[:PORT]: %s", key_name,
                                 http_only ? "" : "[s]", reason ? reason : "invalid URL");
        if (r < 0)
                return set_error(ret_error, "%s= must be http%s://HOST[:PORT], not '%s': %s",
                                 key_name, http_only ? "" : "[s]", show(value, shown),
                                 reason ? reason : "invalid URL");
        if (http_only && url.tls) {
                config_url_release(&url);
                return set_error(ret_error,
                                 "%s= must be http://HOST[:PORT], not '%s': only plain HTTP "
                                 "proxies are supported", key_name, show(value, shown));
        }

        r = set_string(field, value);
        if (r < 0 || !ret_parsed) {
                config_url_release(&url);
                return r;
        }
        config_url_release(ret_parsed);
        *ret_parsed = url;
        return 0;
}

static int parse_server_url(struct config *c, const struct config_key *key, const char *value,
                            char **ret_error) {
        return parse_url_into(&c->url, value, &c->server, key->name, false, ret_error);
}

static int parse_auth_url(struct config *c, const struct config_key *key, const char *value,
                          char **ret_error) {
        return parse_url_into(FIELD(c, key, char *), value, NULL, key->name, false, ret_error);
}

static int parse_proxy(struct config *c, const struct config_key *key, const char *value,
                       char **ret_error) {
        return parse_url_into(FIELD(c, key, char *), value, NULL, key->name, true, ret_error);
}

static int parse_url_path(struct config *c, const struct config_key *key, const char *value,
                          char **ret_error) {
        char shown[SHOWN_SIZE];
        char *path;
        int r;

        r = config_parse_url_path(value, &path);
        if (r == -EINVAL)
                return set_error(ret_error, "%s= must be a URL path starting with '/', without "
                                 "spaces, '?' or '#', not '%s'", key->name, show(value, shown));
        if (r < 0)
                return r;
        free(*FIELD(c, key, char *));
        *FIELD(c, key, char *) = path;
        return 0;
}

static int parse_file(struct config *c, const struct config_key *key, const char *value,
                      char **ret_error) {
        char shown[SHOWN_SIZE];

        if (value[0] != '/')
                return set_error(ret_error, "%s= must be an absolute path, not '%s'", key->name,
                                 show(value, shown));
        return set_string(FIELD(c, key, char *), value);
}

static int parse_string(struct config *c, const struct config_key *key, const char *value,
                        char **ret_error) {
        return set_string(FIELD(c, key, char *), value);
}

static int parse_engine_io(struct config *c, const struct config_key *key, const char *value,
                           char **ret_error) {
        char shown[SHOWN_SIZE];

        if (config_parse_engine_io(value, FIELD(c, key, unsigned)) < 0)
                return set_error(ret_error, "%s= must be 3 or 4, not '%s'", key->name,
                                 show(value, shown));
        return 0;
}

static int parse_time(struct config *c, const struct config_key *key, const char *value,
                      char **ret_error) {
        char shown[SHOWN_SIZE], max[32];
        usec_t usec;
        int r;

        r = config_parse_seconds(value, &usec);
        if (r == -EINVAL)
                return set_error(ret_error, "%s= must be a time such as 10, 2.5, 500ms or 1min, "
                                 "not '%s'", key->name, show(value, shown));
        if (r < 0 || usec < key->min || usec > key->max)
                return set_error(ret_error, "%s= must be more than 0 and at most %s, not '%s'",
                                 key->name, config_format_seconds(key->max, max),
                                 show(value, shown));
        *FIELD(c, key, usec_t) = usec;
        return 0;
}

static int parse_size_key(struct config *c, const struct config_key *key, const char *value,
                          char **ret_error) {
        char shown[SHOWN_SIZE];
        size_t size;
        int r;

        r = config_parse_size(value, &size);
        if (r == -EINVAL)
                return set_error(ret_error, "%s= must be a size such as 65536, 512K or 1M, "
                                 "not '%s'", key->name, show(value, shown));
        if (r < 0 || size < key->min || size > key->max)
                return set_error(ret_error, "%s= must be from %lluK to %lluM, not '%s'",
                                 key->name, (unsigned long long) (key->min / KIB),
                                 (unsigned long long) (key->max / MIB), show(value, shown));
        *FIELD(c, key, size_t) = size;
        return 0;
}

static int parse_bus(struct config *c, const struct config_key *key, const char *value,
                     char **ret_error) {
        char shown[SHOWN_SIZE];

        if (strcmp(value, "system") == 0)
                c->bus = CONFIG_BUS_SYSTEM;
        else if (strcmp(value, "session") == 0)
                c->bus = CONFIG_BUS_SESSION;
        else
                return set_error(ret_error, "%s= must be system or session, not '%s'",
                                 key->name, show(value, shown));
        return 0;
}

static int parse_log_level(struct config *c, const struct config_key *key, const char *value,
                           char **ret_error) {
        char shown[SHOWN_SIZE];

        if (config_parse_log_level(value, &c->log_level) == 0)
                return 0;
        return set_error(ret_error, "%s= must be one of emerg, alert, crit, err, warning, "
                         "notice, info, debug or 0-7, not '%s'", key->name, show(value, shown));
}

/*
 * The key table. It is expanded twice, into the loader's table and into
 * config_options[], so a key and its command-line twin cannot drift apart.
 * TWIN(section, key, option, field, parser, min, max, default, help);
 * NO_TWIN is for Bus=, whose twins are --system and --session.
 */
#define CONFIG_KEYS(TWIN, NO_TWIN)                                                              \
        TWIN("Server", "URL", "url", url, parse_server_url, 0, 0,                               \
             "https://dev.samdock.app", "server address, http[s]://HOST[:PORT]")                \
        TWIN("Server", "ActivitiesPath", "activities-path", activities_path, parse_url_path,     \
             0, 0, "/api/activities/socket.io/", "Socket.IO path of the activities stream")     \
        TWIN("Server", "ImportPath", "import-path", import_path, parse_url_path, 0, 0,          \
             "/api/contacts/import/socket.io/", "Socket.IO path of the import stream")         \
        TWIN("Server", "EngineIO", "engine-io", engine_io, parse_engine_io, 0, 0, "4",          \
             "Engine.IO protocol version, 3 or 4")                                              \
        TWIN("Server", "CAFile", "ca-file", ca_file, parse_file, 0, 0, NULL,                    \
             "CA certificates to trust instead of the system store")                           \
        TWIN("Server", "Proxy", "proxy", proxy, parse_proxy, 0, 0, NULL,                        \
             "HTTP proxy, http://HOST:PORT")                                                    \
        TWIN("Auth", "TokenFile", "token-file", token_file, parse_file, 0, 0, NULL,             \
             "file holding the access token")                                                   \
        TWIN("Auth", "TokenCommand", "token-command", token_command, parse_string, 0, 0, NULL,  \
             "command printing the access token, run before each connect")                     \
        TWIN("Auth", "RefreshTokenFile", "refresh-token-file", refresh_token_file, parse_file,  \
             0, 0, NULL, "file holding the refresh token")                                      \
        TWIN("Auth", "AuthURL", "auth-url", auth_url, parse_auth_url, 0, 0,                     \
             "https://dev.samdock.app", "auth service address, http[s]://HOST[:PORT]")          \
        TWIN("Reconnect", "InitialDelaySec", "initial-delay", initial_delay_usec, parse_time,   \
             1, USEC_PER_DAY, "1", "first reconnect delay")                                     \
        TWIN("Reconnect", "MaxDelaySec", "max-delay", max_delay_usec, parse_time,               \
             1, USEC_PER_DAY, "60", "longest reconnect delay")                                  \
        TWIN("Limits", "MaxEventSize", "max-event-size", max_event_size, parse_size_key,        \
             KIB, 64 * MIB, "1M", "largest event accepted, in bytes (K, M suffixes)")           \
        TWIN("Limits", "BrowseTimeoutSec", "browse-timeout", browse_timeout_usec, parse_time,   \
             1, USEC_PER_HOUR, "10", "how long a Browse call waits for its reply")              \
        NO_TWIN("Bus", "Bus", bus, parse_bus, 0, 0, "system")                                   \
        TWIN("Log", "Level", "log-level", log_level, parse_log_level, 0, 0, "info",             \
             "lowest priority logged, emerg...debug or 0-7")

#define KEY_ENTRY(s_, k_, opt_, field_, parse_, min_, max_, default_, help_)                   \
        { s_, k_, parse_, offsetof(struct config, field_), min_, max_, default_ },
#define KEY_ENTRY_NO_TWIN(s_, k_, field_, parse_, min_, max_, default_)                         \
        KEY_ENTRY(s_, k_, NULL, field_, parse_, min_, max_, default_, NULL)
#define OPTION_ENTRY(s_, k_, opt_, field_, parse_, min_, max_, default_, help_)                \
        { .long_name = opt_, .section = s_, .key = k_, .help = help_ },
#define OPTION_ENTRY_NO_TWIN(s_, k_, field_, parse_, min_, max_, default_)

static const struct config_key config_keys[] = {
        CONFIG_KEYS(KEY_ENTRY, KEY_ENTRY_NO_TWIN)
};

const struct config_option config_options[] = {
        CONFIG_KEYS(OPTION_ENTRY, OPTION_ENTRY_NO_TWIN)
};
const size_t config_options_count = sizeof(config_options) / sizeof(config_options[0]);

#define N_KEYS (sizeof(config_keys) / sizeof(config_keys[0]))

static int config_reset_key(struct config *c, const struct config_key *key) {
        if (!key->default_value)
                return set_string(FIELD(c, key, char *), NULL);
        return key->parse(c, key, key->default_value, NULL);
}

int config_new(struct config **ret) {
        struct config *c;
        int r;

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        for (size_t i = 0; i < N_KEYS; i++) {
                r = config_reset_key(c, &config_keys[i]);
                if (r < 0) {
                        config_free(c);
                        return r;
                }
        }
        *ret = c;
        return 0;
}

void config_free(struct config *c) {
        if (!c)
                return;
        free(c->url);
        config_url_release(&c->server);
        free(c->activities_path);
        free(c->import_path);
        free(c->ca_file);
        free(c->proxy);
        free(c->token_file);
        free(c->token_command);
        free(c->refresh_token_file);
        free(c->auth_url);
        free(c);
}

static const struct config_key *config_key_find(const char *section, const char *name) {
        for (size_t i = 0; i < N_KEYS; i++)
                if ((!section || strcmp(config_keys[i].section, section) == 0) &&
                    strcmp(config_keys[i].name, name) == 0)
                        return &config_keys[i];
        return NULL;
}

/* Returns the table's own copy of the name, so callers may keep it. */
static const char *config_section_find(const char *section) {
        for (size_t i = 0; i < N_KEYS; i++)
                if (strcmp(config_keys[i].section, section) == 0)
                        return config_keys[i].section;
        return NULL;
}

static int unknown_key_error(const char *section, const char *name, char **ret_error) {
        char shown[SHOWN_SIZE];
        const struct config_key *other = config_key_find(NULL, name);

        if (other)
                return set_error(ret_error, "unknown key '%s' in section [%s]; it belongs in [%s]",
                                 name, section, other->section);
        for (size_t i = 0; i < N_KEYS; i++)
                if (strcmp(config_keys[i].section, section) == 0 &&
                    strcasecmp(config_keys[i].name, name) == 0)
                        return set_error(ret_error, "unknown key '%s' in section [%s]; did you "
                                         "mean '%s'?", name, section, config_keys[i].name);
        return set_error(ret_error, "unknown key '%s' in section [%s]", show(name, shown),
                         section);
}

int config_set(struct config *c, const char *section, const char *key, const char *value,
               char **ret_error) {
        _cleanup_free_ char *trimmed = NULL;
        const struct config_key *k;
        char shown[SHOWN_SIZE];
        size_t start, len;

        if (ret_error)
                *ret_error = NULL;
        if (!c || !section || !key)
                return -EINVAL;

        if (!config_section_find(section))
                return set_error(ret_error, "unknown section [%s]", show(section, shown));
        k = config_key_find(section, key);
        if (!k)
                return unknown_key_error(section, key, ret_error);

        /* The command line hands values over untrimmed; the files' are trimmed. */
        value = value ? value : "";
        start = strspn(value, " \t\n\r\f\v");
        len = strlen(value + start);
        while (len > 0 && strchr(" \t\n\r\f\v", value[start + len - 1]))
                len--;
        if (len == 0)
                return config_reset_key(c, k);

        trimmed = strndup(value + start, len);
        if (!trimmed)
                return -ENOMEM;
        return k->parse(c, k, trimmed, ret_error);
}

_printf_(4, 0) static void report_va(config_error_fn error_fn, void *userdata,
                                     const char *where, const char *format, va_list ap) {
        _cleanup_free_ char *what = NULL;

        if (!error_fn)
                return;
        if (vasprintf(&what, format, ap) < 0)
                what = NULL;
        error_fn(where, what ? what : "out of memory", userdata);
}

_printf_(4, 5) static void report(config_error_fn error_fn, void *userdata,
                                  const char *where, const char *format, ...) {
        va_list ap;

        va_start(ap, format);
        report_va(error_fn, userdata, where, format, ap);
        va_end(ap);
}

/* Where the loader stands in the section structure of a file. */
enum section_state {
        SECTION_NONE,           /* before the first header: keys are errors */
        SECTION_KNOWN,
        SECTION_IGNORED,        /* unknown or malformed header, already reported */
};

struct loader {
        struct config *config;
        FILE *file;
        const char *path;
        unsigned line;
        enum section_state state;
        const char *section;    /* the table's name of the current known section */
        config_error_fn error_fn;
        void *userdata;
        int result;
        int io_error;
};

_printf_(2, 3) static void loader_report(struct loader *l, const char *format, ...) {
        _cleanup_free_ char *where = NULL;
        va_list ap;

        if (l->result == 0)
                l->result = -EINVAL;
        if (asprintf(&where, "%s:%u", l->path, l->line) < 0)
                where = NULL;

        va_start(ap, format);
        report_va(l->error_fn, l->userdata, where ? where : l->path, format, ap);
        va_end(ap);
}

/* Where libinih starts looking at a line: after a BOM and blanks. */
static char *line_start(const struct loader *l, char *line) {
        if (l->line == 1 && strncmp(line, "\xef\xbb\xbf", 3) == 0)
                line += 3;
        while (isspace((unsigned char) *line))
                line++;
        return line;
}

/*
 * Finds what libinih would merely count as an error (or, for "Key: value",
 * accept), and reports it here where the line number is known. Returns false
 * when the line must not reach libinih.
 */
static bool loader_check_line(struct loader *l, char *line) {
        char *p = line_start(l, line);
        size_t len = strlen(p);
        const char *equals, *colon;

        while (len > 0 && isspace((unsigned char) p[len - 1]))
                len--;
        if (len == 0 || *p == '#' || *p == ';')
                return true;

        if (*p == '[') {
                char name[SHOWN_MAX + 2], shown[SHOWN_SIZE];

                if (len < 3 || memchr(p, ']', len) != p + len - 1) {
                        loader_report(l, "expected a section header like [Server]");
                        l->state = SECTION_IGNORED;
                        return false;
                }
                /* A name too long for the buffer is too long to be ours. */
                snprintf(name, sizeof(name), "%.*s", (int) (len - 2), p + 1);
                l->section = len - 2 < sizeof(name) - 1 ? config_section_find(name) : NULL;
                l->state = l->section ? SECTION_KNOWN : SECTION_IGNORED;
                if (!l->section)
                        loader_report(l, "unknown section [%s]", show(name, shown));
                return true;
        }

        equals = memchr(p, '=', len);
        colon = memchr(p, ':', len);
        /* libinih takes "Key: value" too; systemd's files do not. */
        if (colon && (!equals || colon < equals)) {
                loader_report(l, "expected Key=value; ':' does not separate key and value");
                return false;
        }
        if (!equals) {
                loader_report(l, "expected Key=value or a [Section] header");
                return false;
        }
        if (equals == p) {
                loader_report(l, "the key name before '=' is missing");
                return false;
        }
        return true;
}

/*
 * The ini_reader: reads one whole line whatever its length, so that the line
 * count stays true and a long line is one error rather than several pieces.
 * Lines libinih must not see are handed over empty.
 */
static char *loader_read_line(char *buf, int size, void *userdata) {
        static const char bom[] = "\xef\xbb\xbf";
        struct loader *l = userdata;
        bool too_long = false, has_nul = false, in_bom = l->line == 0;
        size_t len = 0;
        int ch, first = 0;

        /* ini_setup() sized the buffer for LINE_LIMIT bytes, a '\r' and a NUL. */
        if (size < LINE_LIMIT + 2) {
                l->io_error = -ENOBUFS;
                return NULL;
        }

        while ((ch = getc_unlocked(l->file)) != EOF && ch != '\n') {
                /* What libinih would look at first, even past the buffer. */
                in_bom = in_bom && len < 3 && ch == (unsigned char) bom[len];
                if (!first && !in_bom && !isspace(ch))
                        first = ch;
                if (ch == '\0')
                        has_nul = true;
                if (len <= LINE_LIMIT)
                        buf[len++] = (char) ch;
                else
                        too_long = true;
        }
        if (ferror(l->file)) {
                l->io_error = errno > 0 ? -errno : -EIO;
                return NULL;
        }
        if (ch == EOF && len == 0)
                return NULL;

        l->line++;
        if (len > 0 && buf[len - 1] == '\r')
                len--;
        buf[len] = '\0';

        if (too_long || len > LINE_LIMIT || has_nul) {
                if (has_nul)
                        loader_report(l, "line contains a NUL byte");
                else
                        loader_report(l, "line is longer than %d bytes", LINE_LIMIT);
                /* A broken header leaves us not knowing the section. */
                if (first == '[')
                        l->state = SECTION_IGNORED;
                buf[0] = '\0';
        } else if (!loader_check_line(l, buf))
                buf[0] = '\0';
        return buf;
}

static int loader_handle(void *userdata, const char *section, const char *name,
                         const char *value) {
        _cleanup_free_ char *error = NULL;
        struct loader *l = userdata;
        char shown[SHOWN_SIZE];
        int r;

        if (l->state == SECTION_IGNORED)
                return 1;
        if (l->state == SECTION_NONE) {
                loader_report(l, "key '%s' comes before any [Section] header",
                              show(name, shown));
                return 1;
        }

        r = config_set(l->config, l->section, name, value, &error);
        if (r < 0) {
                loader_report(l, "%s", error ? error : strerror(-r));
                if (r == -ENOMEM)
                        l->result = r;
        }
        /* Always "success": the errors are ours to report, line by line. */
        return 1;
}

/* libinih's options are process-wide globals: set them before every parse
 * rather than trust whoever parsed last. */
static void ini_setup(void) {
        static char comment_prefixes[] = "#;";

        ini_allow_multiline = false;            /* systemd has no continuation lines */
        ini_allow_bom = true;
        ini_start_comment_prefixes = comment_prefixes;
        ini_allow_inline_comments = false;      /* values may hold ';' and '#' */
        ini_use_stack = true;
        ini_max_line = LINE_LIMIT + 3;          /* the line, '\r', one spare and NUL */
        ini_allow_realloc = false;
        ini_stop_on_first_error = false;
        ini_allow_no_value = false;
}

static int load_file(struct config *c, const char *path, bool missing_ok,
                     config_error_fn error_fn, void *userdata) {
        struct loader l = {
                .config = c,
                .path = path,
                .error_fn = error_fn,
                .userdata = userdata,
        };
        int r;

        l.file = fopen(path, "re");
        if (!l.file) {
                r = -errno;
                if (r == -ENOENT && missing_ok)
                        return 0;
                report(error_fn, userdata, path, "cannot open: %s", strerror(-r));
                return r;
        }

        ini_setup();
        r = ini_parse_stream(loader_read_line, &l, loader_handle, &l);
        fclose(l.file);

        if (l.io_error < 0) {
                report(error_fn, userdata, path, "cannot read: %s", strerror(-l.io_error));
                return l.io_error;
        }
        if (r == -2)
                return -ENOMEM;
        if (r > 0) {
                /* Should not happen: loader_check_line() knows libinih's errors. */
                l.line = (unsigned) r;
                loader_report(&l, "syntax error");
        }
        return l.result;
}

int config_load_file(struct config *c, const char *path, config_error_fn error_fn,
                     void *userdata) {
        if (!c || !path)
                return -EINVAL;
        return load_file(c, path, false, error_fn, userdata);
}

static int compare_names(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

static bool is_drop_in_name(const char *name) {
        size_t len = strlen(name);

        /* Hidden files are editor and package manager leftovers. */
        return name[0] != '.' && len > 5 && strcmp(name + len - 5, ".conf") == 0;
}

static int load_drop_ins(struct config *c, const char *dir, config_error_fn error_fn,
                         void *userdata) {
        char **names = NULL;
        size_t n = 0;
        struct dirent *de;
        DIR *d;
        int r = 0;

        d = opendir(dir);
        if (!d) {
                if (errno == ENOENT)
                        return 0;
                r = -errno;
                report(error_fn, userdata, dir, "cannot open directory: %s", strerror(-r));
                return r;
        }

        for (errno = 0; (de = readdir(d)); errno = 0) {
                char **grown;

                if (!is_drop_in_name(de->d_name))
                        continue;
                grown = reallocarray(names, n + 1, sizeof(*names));
                if (!grown || !(grown[n] = strdup(de->d_name))) {
                        names = grown ? grown : names;
                        r = -ENOMEM;
                        break;
                }
                names = grown;
                n++;
        }
        if (r == 0 && errno > 0) {
                r = -errno;
                report(error_fn, userdata, dir, "cannot read directory: %s", strerror(-r));
        }
        closedir(d);

        if (r == 0)
                qsort(names, n, sizeof(*names), compare_names);
        for (size_t i = 0; i < n && r != -ENOMEM; i++) {
                _cleanup_free_ char *path = NULL;
                struct stat st;
                int k;

                if (asprintf(&path, "%s/%s", dir, names[i]) < 0) {
                        r = -ENOMEM;
                        break;
                }
                /* A directory or a dangling link named *.conf is no drop-in. */
                if (stat(path, &st) < 0 || !S_ISREG(st.st_mode))
                        continue;
                k = load_file(c, path, true, error_fn, userdata);
                if (k < 0 && r == 0)
                        r = k;
        }

        for (size_t i = 0; i < n; i++)
                free(names[i]);
        free(names);
        return r;
}

/* $XDG_CONFIG_HOME, else ~/.config; NULL when there is no home to speak of. */
static int user_config_home(char **ret) {
        const char *e = getenv("XDG_CONFIG_HOME");
        const struct passwd *pw;

        *ret = NULL;
        /* The XDG spec says relative paths there are to be ignored. */
        if (e && e[0] == '/')
                return (*ret = strdup(e)) ? 0 : -ENOMEM;

        e = getenv("HOME");
        if (!e || e[0] != '/') {
                pw = getpwuid(getuid());
                e = pw ? pw->pw_dir : NULL;
        }
        if (!e || e[0] != '/')
                return 0;
        return asprintf(ret, "%s/.config", e) < 0 ? -ENOMEM : 0;
}

int config_load_defaults(struct config *c, enum config_bus bus, const char *root,
                         config_error_fn error_fn, void *userdata) {
        _cleanup_free_ char *home = NULL, *file = NULL, *drop_ins = NULL;
        int r, k;

        if (!c)
                return -EINVAL;
        if (!root && bus == CONFIG_BUS_SYSTEM)
                root = "/etc";
        if (!root) {
                r = user_config_home(&home);
                if (r < 0 || !home)
                        return r;
                root = home;
        }

        if (asprintf(&file, "%s/samdock/eventd.conf", root) < 0)
                return -ENOMEM;
        if (asprintf(&drop_ins, "%s.d", file) < 0)
                return -ENOMEM;

        r = load_file(c, file, true, error_fn, userdata);
        k = load_drop_ins(c, drop_ins, error_fn, userdata);
        return r < 0 ? r : k;
}

int config_verify(const struct config *c, config_error_fn error_fn, void *userdata) {
        char initial[32], max[32];
        int r = 0;

        if (!c)
                return -EINVAL;
        if (c->initial_delay_usec > c->max_delay_usec) {
                report(error_fn, userdata, "configuration",
                       "InitialDelaySec= (%s) must not be greater than MaxDelaySec= (%s)",
                       config_format_seconds(c->initial_delay_usec, initial),
                       config_format_seconds(c->max_delay_usec, max));
                r = -EINVAL;
        }
        return r;
}
