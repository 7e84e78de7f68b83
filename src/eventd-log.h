/* SPDX-License-Identifier: MIT */
/*
 * Logging to stderr with sd-daemon <N> priority prefixes, so the journal
 * keeps the levels. Info is for state changes; per-packet detail is debug.
 * Nothing that may hold a token or a payload is logged above debug, and a
 * token is never logged at all.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <syslog.h>

extern int log_max_level;

void log_set_max_level(int level);
/* Returns -abs(error) so that callers can `return log_error_errno(r, ...)`. */
int log_internal(int level, int error, const char *format, ...)
        __attribute__((format(printf, 3, 4)));

#define log_full_errno(level, error, ...)                                       \
        ({                                                                      \
                int _l = (level), _e = (error);                                 \
                (_l <= log_max_level) ? log_internal(_l, _e, __VA_ARGS__)       \
                                      : -(_e < 0 ? -_e : _e);                   \
        })

#define log_debug(...)   log_full_errno(LOG_DEBUG, 0, __VA_ARGS__)
#define log_info(...)    log_full_errno(LOG_INFO, 0, __VA_ARGS__)
#define log_notice(...)  log_full_errno(LOG_NOTICE, 0, __VA_ARGS__)
#define log_warning(...) log_full_errno(LOG_WARNING, 0, __VA_ARGS__)
#define log_error(...)   log_full_errno(LOG_ERR, 0, __VA_ARGS__)
#define log_warning_errno(e, ...) log_full_errno(LOG_WARNING, (e), __VA_ARGS__)
#define log_error_errno(e, ...)   log_full_errno(LOG_ERR, (e), __VA_ARGS__)

/* The last warning or error a library logged through log_library_line(): lws
 * says why it refused a certificate only there, and LastError needs it. */
void log_library_line(int level, const char *library, const char *line);
const char *log_library_last_error(void);
void log_library_clear_error(void);

/*
 * A rate limit for log lines about bad input: at most burst lines per
 * interval; the first line after a quiet spell says how many were held back.
 */
struct ratelimit {
        uint64_t interval_usec;
        unsigned burst;
        uint64_t begin;
        unsigned emitted;
        unsigned suppressed;
};

/* True when a line may be logged now; *ret_suppressed is how many lines were
 * held back since the last one that went out. */
bool ratelimit_below(struct ratelimit *rl, uint64_t now_usec, unsigned *ret_suppressed);
/* How many lines were held back since the last one that went out; they
 * count as reported from now on. */
unsigned ratelimit_take_suppressed(struct ratelimit *rl);
