/* SPDX-License-Identifier: MIT */
/*
 * stderr logging with <N> prefixes for the journal, and a small rate limit
 * for the lines that a misbehaving server could otherwise flood.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <systemd/sd-daemon.h>

#include "eventd-log.h"

int log_max_level = LOG_INFO;

void log_set_max_level(int level) {
        log_max_level = level;
}

int log_internal(int level, int error, const char *format, ...) {
        static const char *const prefixes[] = {
                SD_EMERG, SD_ALERT, SD_CRIT, SD_ERR,
                SD_WARNING, SD_NOTICE, SD_INFO, SD_DEBUG,
        };
        char buffer[2048];
        va_list ap;
        int saved_errno = errno;

        if (error < 0)
                error = -error;

        /* %m in the format means the error passed in, as in systemd. */
        errno = error;
        va_start(ap, format);
        vsnprintf(buffer, sizeof(buffer), format, ap);
        va_end(ap);

        fprintf(stderr, "%s%s\n", prefixes[level & 7], buffer);
        errno = saved_errno;
        return -error;
}

bool ratelimit_below(struct ratelimit *rl, uint64_t now_usec, unsigned *ret_suppressed) {
        if (rl->begin == 0 || now_usec - rl->begin >= rl->interval_usec) {
                *ret_suppressed = rl->suppressed;
                rl->begin = now_usec;
                rl->emitted = 1;
                rl->suppressed = 0;
                return true;
        }

        *ret_suppressed = 0;
        if (rl->emitted < rl->burst) {
                rl->emitted++;
                return true;
        }

        rl->suppressed++;
        return false;
}
