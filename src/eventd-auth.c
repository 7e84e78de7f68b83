/* SPDX-License-Identifier: MIT */
/*
 * The token in force and how it is kept fresh. Why the split of duties:
 * eventd-token.c reads and checks, eventd-command.c runs TokenCommand=,
 * eventd-refresh.c talks to the auth service; this file decides which of
 * them to use and when. Renewal is due at 80% of the token's lifetime or
 * 60 s before exp, whichever is earlier, but never before half of the
 * lifetime has passed, so that an auth service handing out very short
 * tokens cannot make us ask again and again. Timers about exp run on
 * CLOCK_REALTIME, as exp is a wall-clock time; the rest on CLOCK_BOOTTIME.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/inotify.h>

#include "eventd-auth.h"
#include "eventd-command.h"
#include "eventd-log.h"
#include "eventd-time.h"
#include "eventd-refresh.h"
#include "eventd-token.h"

#define COMMAND_TIMEOUT_USEC (30 * USEC_PER_SEC)
#define COMMAND_MIN_INTERVAL_USEC (1 * USEC_PER_SEC)
#define RENEW_AHEAD_USEC (60 * USEC_PER_SEC)
#define WARN_AHEAD_USEC (10 * 60 * USEC_PER_SEC)
#define RETRY_FIRST_USEC (5 * USEC_PER_SEC)
#define RETRY_MAX_USEC (5 * 60 * USEC_PER_SEC)
#define REFUSED_MIN_INTERVAL_USEC (30 * USEC_PER_SEC)

enum auth_kind {
        AUTH_NONE,
        AUTH_CREDENTIAL,
        AUTH_FILE,
        AUTH_COMMAND,
};

struct auth {
        sd_event *event;
        const struct auth_ops *ops;
        void *userdata;
        struct lws_context *lws;

        /* Settings from the configuration in force. */
        enum auth_kind kind;
        char *token_file;
        char *token_command;
        char *auth_url;

        /* The token in force. */
        char *token;
        char *source;                   /* for logs: where it came from */
        uint64_t expiry;                /* µs since the epoch, 0 unknown */
        uint64_t obtained;              /* µs since the epoch */
        uint64_t generation;            /* counts tokens, for "once per token" */
        char *static_value;             /* what the credential or file said last */
        char *last_error;
        bool failed;
        bool renewal_useless;           /* renewing gave this same token back */

        /* Renewal with a refresh token. */
        char *refresh;                  /* NULL: none configured */
        char *refresh_seed;             /* the one the configuration gives */
        char *store_path;
        bool refresh_refused;
        struct refresh_request *request;

        struct command *command;
        bool command_renews;            /* this run is a renewal, not a reconnect */
        uint64_t command_started;       /* CLOCK_BOOTTIME */

        sd_event_source *renew_timer;
        sd_event_source *warn_timer;
        sd_event_source *retry_timer;
        uint64_t retry_delay;
        sd_event_source *watch;
        sd_event_source *recheck;
        uint64_t refused_generation;
        uint64_t refused_at;
};

static void secret_replace(char **p, char *value) {
        token_erase(*p);
        *p = value;
}

/* "2025-03-01 12:00:00 UTC", or "an unknown time" for 0. */
static const char *time_text(uint64_t usec, char buffer[64]) {
        time_t t = (time_t) (usec / USEC_PER_SEC);
        struct tm tm;

        if (usec == 0 || !gmtime_r(&t, &tm) ||
            strftime(buffer, 64, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
                return "an unknown time";
        return buffer;
}

static bool can_renew(const struct auth *a) {
        if (a->refresh)
                return !a->refresh_refused;
        return a->kind == AUTH_COMMAND;
}

static void renew_start(struct auth *a, bool renewal);

/* ---- timers ---- */

static int timer_arm(struct auth *a, sd_event_source **source, clockid_t clock, uint64_t at,
                     sd_event_time_handler_t handler) {
        int r;

        if (*source) {
                r = sd_event_source_set_time(*source, at);
                if (r >= 0)
                        r = sd_event_source_set_enabled(*source, SD_EVENT_ONESHOT);
        } else
                r = sd_event_add_time(a->event, source, clock, at, 1000, handler, a);
        if (r < 0)
                log_warning_errno(r, "Cannot set a token timer: %m");
        return r;
}

static void timer_off(sd_event_source *source) {
        if (source)
                (void) sd_event_source_set_enabled(source, SD_EVENT_OFF);
}

/* When renewal is due for the token in force. */
static uint64_t renew_at(const struct auth *a) {
        uint64_t lifetime = a->expiry > a->obtained ? a->expiry - a->obtained : 0;
        uint64_t at = a->obtained + lifetime / 10 * 8;

        if (a->expiry > RENEW_AHEAD_USEC && a->expiry - RENEW_AHEAD_USEC < at)
                at = a->expiry - RENEW_AHEAD_USEC;
        if (at < a->obtained + lifetime / 2)
                at = a->obtained + lifetime / 2;
        return at;
}

static int on_warn_timer(sd_event_source *source, uint64_t usec, void *userdata) {
        struct auth *a = userdata;
        char when[64];

        if (!a->token || a->expiry == 0)
                return 0;
        if (now_usec(CLOCK_REALTIME) >= a->expiry) {
                log_error("The token from %s expired at %s%s", a->source,
                          time_text(a->expiry, when),
                          can_renew(a) ? "; renewing it has not worked yet"
                                       : " and nothing can renew it; the server will refuse it");
                return 0;
        }
        if (can_renew(a) && !a->renewal_useless)
                log_warning("The token from %s expires at %s and renewing it has not worked "
                            "yet%s%s", a->source, time_text(a->expiry, when),
                            a->last_error ? ": " : "", a->last_error ? a->last_error : "");
        else
                log_warning("The token from %s expires at %s and nothing can renew it; "
                            "put a new one in place", a->source, time_text(a->expiry, when));
        /* Once more, when it has run out. */
        (void) timer_arm(a, &a->warn_timer, CLOCK_REALTIME, a->expiry, on_warn_timer);
        return 0;
}

static int on_renew_timer(sd_event_source *source, uint64_t usec, void *userdata) {
        renew_start(userdata, true);
        return 0;
}

static int on_retry_timer(sd_event_source *source, uint64_t usec, void *userdata) {
        renew_start(userdata, false);
        return 0;
}

static void retry_later(struct auth *a) {
        a->retry_delay = a->retry_delay ? a->retry_delay * 2 : RETRY_FIRST_USEC;
        if (a->retry_delay > RETRY_MAX_USEC)
                a->retry_delay = RETRY_MAX_USEC;
        (void) timer_arm(a, &a->retry_timer, CLOCK_BOOTTIME,
                         now_usec(CLOCK_BOOTTIME) + a->retry_delay, on_retry_timer);
}

/* Plans renewal and warnings for the token in force. */
static void schedule(struct auth *a) {
        uint64_t now = now_usec(CLOCK_REALTIME), renew, warn;

        timer_off(a->renew_timer);
        timer_off(a->warn_timer);
        if (!a->token || a->expiry == 0)
                return;

        warn = a->expiry > WARN_AHEAD_USEC ? a->expiry - WARN_AHEAD_USEC : 0;
        if (can_renew(a) && !a->renewal_useless) {
                renew = renew_at(a);
                (void) timer_arm(a, &a->renew_timer, CLOCK_REALTIME, renew > now ? renew : now,
                                 on_renew_timer);
                /* Only when renewal has not worked by then. */
                if (renew < a->expiry && warn < renew + (a->expiry - renew) / 2)
                        warn = renew + (a->expiry - renew) / 2;
        }
        (void) timer_arm(a, &a->warn_timer, CLOCK_REALTIME, warn > now ? warn : now,
                         on_warn_timer);
}

/* ---- the token in force ---- */

/* Takes value (owned). 1 when it is new (the owner is told), 0 when it is
 * the token already in force. */
static int token_set(struct auth *a, char *value, const char *source) {
        char when[64];
        char *copy;

        if (a->token && strcmp(a->token, value) == 0) {
                token_erase(value);
                return 0;
        }
        copy = strdup(source);
        if (!copy) {
                token_erase(value);
                return -ENOMEM;
        }

        secret_replace(&a->token, value);
        free(a->source);
        a->source = copy;
        a->expiry = token_jwt_expiry(a->token);
        a->obtained = now_usec(CLOCK_REALTIME);
        a->generation++;
        a->failed = false;
        a->renewal_useless = false;
        free(a->last_error);
        a->last_error = NULL;
        timer_off(a->retry_timer);
        a->retry_delay = 0;

        if (a->expiry)
                log_info("Token from %s in force; it expires at %s", a->source,
                         time_text(a->expiry, when));
        else
                log_info("Token from %s in force; its expiry is unknown (not a JWT with exp)",
                         a->source);
        schedule(a);
        a->ops->changed(a, a->userdata);
        return 1;
}

/* No usable token: the owner is told why (which goes to the log there). */
static int token_fail(struct auth *a, int error, const char *why) {
        char *copy = strdup(why ? why : "no token");

        free(a->last_error);
        a->last_error = copy;
        secret_replace(&a->token, NULL);
        a->expiry = 0;
        a->failed = true;
        timer_off(a->renew_timer);
        timer_off(a->warn_timer);
        a->ops->failed(a, a->last_error ? a->last_error : "no token", a->userdata);
        return error < 0 ? error : -EPERM;
}

/* ---- TokenCommand= ---- */

static void on_command_done(struct command *c, char *token, const char *error,
                            void *userdata) {
        struct auth *a = userdata;
        bool renewal = a->command_renews;
        int r;

        a->command = command_free(c);
        a->command_renews = false;

        if (!token) {
                /* Another try later: the helper may work again (a keyring
                 * unlocked, a network back). */
                token_fail(a, -EPERM, error);
                retry_later(a);
                return;
        }
        r = token_set(a, token, "TokenCommand=");
        if (r == 0 && renewal) {
                /* Same token again: it cannot be renewed this way. */
                a->renewal_useless = true;
                schedule(a);
        }
        if (r == 0)
                a->ops->settled(a, a->userdata);
        else if (r < 0)
                token_fail(a, r, "out of memory");
}

static void command_run(struct auth *a) {
        int r;

        if (a->command || !a->token_command)
                return;
        a->command_started = now_usec(CLOCK_BOOTTIME);
        r = command_start(&a->command, a->event, a->token_command, COMMAND_TIMEOUT_USEC,
                          on_command_done, a);
        if (r < 0) {
                char why[200];

                snprintf(why, sizeof(why), "cannot run TokenCommand=: %s",
                         r == -EINVAL ? "empty, or a quote is not closed" : strerror(-r));
                token_fail(a, r, why);
        }
}

/* ---- renewal with a refresh token ---- */

static void refresh_failed(struct auth *a, int result, const char *why) {
        if (result == -EACCES) {
                /* Final: the refresh token is revoked or expired. */
                a->refresh_refused = true;
                token_fail(a, result, why);
                return;
        }
        free(a->last_error);
        a->last_error = strdup(why);
        retry_later(a);
        log_warning("Cannot renew the token: %s; trying again in %llu s", why,
                    (unsigned long long) (a->retry_delay / USEC_PER_SEC));
        if (!a->token)
                /* Nothing to connect with meanwhile. */
                token_fail(a, result, why);
}

static void on_refresh_done(struct refresh_request *request, int result, char *access_token,
                            char *refresh_token, const char *error, void *userdata) {
        struct auth *a = userdata;
        char *store_error = NULL, *source = NULL;
        int r;

        /* error lives in the request: done with it before the request goes. */
        if (result < 0) {
                char why[400];

                snprintf(why, sizeof(why), "%s", error ? error : "renewal failed");
                token_erase(access_token);
                token_erase(refresh_token);
                a->request = refresh_request_free(request);
                refresh_failed(a, result, why);
                return;
        }
        a->request = refresh_request_free(request);

        if (refresh_token && strcmp(refresh_token, a->refresh) != 0) {
                secret_replace(&a->refresh, refresh_token);
                if (a->store_path &&
                    refresh_store_save(a->store_path, a->refresh_seed, a->refresh,
                                       &store_error) < 0)
                        log_error("%s; the renewed refresh token is lost on restart",
                                  store_error ? store_error : "cannot store the refresh token");
                free(store_error);
        } else
                token_erase(refresh_token);

        if (asprintf(&source, "renewal at %s", a->auth_url) < 0)
                source = NULL;
        r = token_set(a, access_token, source ? source : "renewal");
        free(source);
        if (r == 0) {
                a->renewal_useless = true;
                schedule(a);
        }
}

static void refresh_run(struct auth *a) {
        int r;

        if (a->request)
                return;
        r = refresh_request_start(&a->request, a->event, a->lws, a->auth_url, a->refresh,
                                  on_refresh_done, a);
        if (r < 0) {
                log_warning_errno(r, "Cannot start renewing the token: %m");
                retry_later(a);
        }
}

/* renewal: ahead of exp or after a refusal, as opposed to a retry after
 * a failure; a renewal that brings back the same token shows that the
 * source cannot renew. */
static void renew_start(struct auth *a, bool renewal) {
        if (a->refresh) {
                if (!a->refresh_refused)
                        refresh_run(a);
        } else if (a->kind == AUTH_COMMAND && !a->command) {
                command_run(a);
                a->command_renews = renewal && a->command;
        }
}

/* Loads the refresh token: the stored, renewed one when it descends from
 * what the configuration gives now, else that. */
static int refresh_load(struct auth *a, const struct config *c) {
        char *path = token_credential_path(TOKEN_REFRESH_CREDENTIAL), *seed = NULL;
        char *error = NULL, *stored = NULL;
        int r;

        if (path)
                r = token_read_file(path, "credential", false, &seed, &error);
        else if (c->refresh_token_file)
                r = token_read_file(c->refresh_token_file, "refresh token file", true, &seed,
                                    &error);
        else {
                a->request = refresh_request_free(a->request);
                secret_replace(&a->refresh, NULL);
                secret_replace(&a->refresh_seed, NULL);
                return 0;
        }
        free(path);
        if (r < 0) {
                r = token_fail(a, r, error);
                free(error);
                return r;
        }

        if (a->refresh_seed && strcmp(a->refresh_seed, seed) == 0 && a->refresh) {
                /* The same as before: what we renewed it to stays. */
                token_erase(seed);
                return 0;
        }

        if (!a->store_path && refresh_store_path(&a->store_path, &error) < 0) {
                log_warning("%s; a renewed refresh token will not survive a restart",
                            error ? error : "no state directory");
                free(error);
                error = NULL;
        }
        /* A renewal under way asks with the old one. */
        a->request = refresh_request_free(a->request);
        if (a->store_path && refresh_store_load(a->store_path, seed, &stored) >= 0)
                log_info("Using the renewed refresh token kept in %s", a->store_path);
        secret_replace(&a->refresh, stored ? stored : strdup(seed));
        secret_replace(&a->refresh_seed, seed);
        return a->refresh ? 0 : -ENOMEM;
}

/* ---- the static sources ---- */

/* Reads the credential or TokenFile=; with keep, a source that cannot be
 * read right now (a file half-written) leaves a working token be. */
static int static_load(struct auth *a, const struct config *c, bool keep) {
        struct token t;
        char *error = NULL, *copy;
        int r;

        r = token_load_static(c, &t, &error);
        if (r < 0 && keep && a->token) {
                log_warning("Cannot read the new token (%s); keeping the current one",
                            error ? error : strerror(-r));
                free(error);
                return 0;
        }
        if (r < 0) {
                r = token_fail(a, r, error);
                free(error);
                return r;
        }

        if (a->token && a->static_value && strcmp(a->static_value, t.value) == 0) {
                /* Unchanged; a renewed token stays in force. */
                token_release(&t);
                return 0;
        }
        copy = strdup(t.value);
        if (!copy) {
                token_release(&t);
                return -ENOMEM;
        }
        secret_replace(&a->static_value, copy);
        r = token_set(a, t.value, t.source);
        t.value = NULL;
        token_release(&t);
        return r;
}

static int on_recheck(sd_event_source *source, void *userdata) {
        struct auth *a = userdata;
        struct config c = { .token_file = a->token_file };

        if (a->kind == AUTH_FILE)
                (void) static_load(a, &c, true);
        return 0;
}

static int on_inotify(sd_event_source *source, const struct inotify_event *event,
                      void *userdata) {
        struct auth *a = userdata;
        const char *base;

        if (!a->token_file)
                return 0;
        base = strrchr(a->token_file, '/');
        base = base ? base + 1 : a->token_file;
        if (event->len == 0 || strcmp(event->name, base) != 0)
                return 0;
        /* An editor's write, chmod and rename come as several events. */
        return sd_event_source_set_enabled(a->recheck, SD_EVENT_ONESHOT);
}

static void watch_token_file(struct auth *a) {
        char *dir, *slash;
        int r;

        a->watch = sd_event_source_disable_unref(a->watch);
        if (a->kind != AUTH_FILE)
                return;
        dir = strdup(a->token_file);
        if (!dir)
                return;
        slash = strrchr(dir, '/');
        if (slash)
                *(slash == dir ? slash + 1 : slash) = 0;
        /* The directory, not the file: a file replaced by rename is a new
         * inode that a watch on the old one would never see. */
        r = sd_event_add_inotify(a->event, &a->watch, dir,
                                 IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_ATTRIB |
                                 IN_DELETE | IN_ONLYDIR, on_inotify, a);
        if (r < 0)
                log_warning_errno(r, "Cannot watch %s for token changes; Reload() or "
                                  "SIGHUP picks them up: %m", dir);
        free(dir);
}

/* ---- the interface ---- */

static int settings_copy(struct auth *a, const struct config *c) {
        char *file = c->token_file ? strdup(c->token_file) : NULL;
        char *command = c->token_command ? strdup(c->token_command) : NULL;
        char *url = strdup(c->auth_url ? c->auth_url : "https://dev.samdock.app");

        if ((c->token_file && !file) || (c->token_command && !command) || !url) {
                free(file);
                free(command);
                free(url);
                return -ENOMEM;
        }
        free(a->token_file);
        free(a->token_command);
        free(a->auth_url);
        a->token_file = file;
        a->token_command = command;
        a->auth_url = url;
        return 0;
}

int auth_load(struct auth *a, const struct config *c) {
        char *credential = token_credential_path(TOKEN_CREDENTIAL);
        enum auth_kind kind;
        int r;

        r = settings_copy(a, c);
        if (r < 0) {
                free(credential);
                return log_error_errno(r, "Out of memory");
        }
        kind = credential ? AUTH_CREDENTIAL : c->token_file ? AUTH_FILE :
               c->token_command ? AUTH_COMMAND : AUTH_NONE;
        free(credential);
        if (kind != a->kind)
                secret_replace(&a->static_value, NULL);
        a->kind = kind;
        a->refresh_refused = false;
        a->renewal_useless = false;
        watch_token_file(a);

        r = refresh_load(a, c);
        if (r < 0)
                return r;

        switch (a->kind) {
        case AUTH_CREDENTIAL:
        case AUTH_FILE:
                r = static_load(a, c, false);
                break;
        case AUTH_COMMAND:
                /* Reloading means asking again; the token in force stays
                 * until the answer. */
                a->command = command_free(a->command);
                a->command_renews = false;
                schedule(a);
                command_run(a);
                return a->command ? 0 : -EPERM;
        case AUTH_NONE:
                if (!a->refresh)
                        return token_fail(a, -ENOKEY,
                                          "no token configured (credential " TOKEN_CREDENTIAL
                                          ", TokenFile=, TokenCommand= or RefreshTokenFile=)");
                r = 0;
                if (!a->token)
                        refresh_run(a);
                break;
        }
        if (r == 0)
                /* A refresh token that came or went changes the plan. */
                schedule(a);
        return r;
}

void auth_set_lws(struct auth *a, struct lws_context *lws) {
        if (a->lws == lws)
                return;
        a->lws = lws;
        if (a->request) {
                /* It ran on the context that is going away: ask again. */
                a->request = refresh_request_free(a->request);
                refresh_run(a);
        }
}

const char *auth_token(const struct auth *a) {
        return a->token;
}

uint64_t auth_expiry(const struct auth *a) {
        return a->token ? a->expiry : 0;
}

const char *auth_last_error(const struct auth *a) {
        return a->last_error;
}

void auth_before_connect(struct auth *a) {
        if (!a || a->kind != AUTH_COMMAND || a->refresh || a->failed || a->command)
                return;
        if (now_usec(CLOCK_BOOTTIME) - a->command_started < COMMAND_MIN_INTERVAL_USEC)
                return;
        command_run(a);
}

bool auth_fetching(const struct auth *a) {
        return a && a->command;
}

void auth_refused(struct auth *a) {
        uint64_t now;

        if (!a || !a->token || a->failed || a->refused_generation == a->generation ||
            !can_renew(a))
                return;
        now = now_usec(CLOCK_BOOTTIME);
        if (a->refused_at && now - a->refused_at < REFUSED_MIN_INTERVAL_USEC)
                return;
        a->refused_generation = a->generation;
        a->refused_at = now;
        log_info("The server refused the token from %s; asking for a new one", a->source);
        renew_start(a, true);
}

int auth_new(struct auth **ret, sd_event *event, const struct auth_ops *ops, void *userdata) {
        struct auth *a;
        sigset_t mask;
        int r;

        /* sd-event can only watch children with SIGCHLD blocked. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return -errno;

        a = calloc(1, sizeof(*a));
        if (!a)
                return -ENOMEM;
        a->event = sd_event_ref(event);
        a->ops = ops;
        a->userdata = userdata;

        r = sd_event_add_defer(event, &a->recheck, on_recheck, a);
        if (r >= 0)
                r = sd_event_source_set_enabled(a->recheck, SD_EVENT_OFF);
        if (r < 0) {
                auth_free(a);
                return r;
        }
        *ret = a;
        return 0;
}

struct auth *auth_free(struct auth *a) {
        if (!a)
                return NULL;
        command_free(a->command);
        refresh_request_free(a->request);
        sd_event_source_disable_unref(a->renew_timer);
        sd_event_source_disable_unref(a->warn_timer);
        sd_event_source_disable_unref(a->retry_timer);
        sd_event_source_disable_unref(a->watch);
        sd_event_source_disable_unref(a->recheck);
        token_erase(a->token);
        token_erase(a->static_value);
        token_erase(a->refresh);
        token_erase(a->refresh_seed);
        free(a->source);
        free(a->last_error);
        free(a->store_path);
        free(a->token_file);
        free(a->token_command);
        free(a->auth_url);
        sd_event_unref(a->event);
        free(a);
        return NULL;
}
