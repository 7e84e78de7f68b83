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

#include "eventd-codec.h"
#include "eventd-log.h"

int log_max_level = LOG_INFO;

void log_set_max_level(int level) {
        log_max_level = level;
}

/* Lines may quote the server (an event name, an error message): a newline
 * there must not start a line of its own, with a priority prefix of the
 * server's choosing, nor ESC, CSI or a bidi override reach a terminal or
 * the journal. Each byte of such a character, and each byte that is not
 * UTF-8, becomes '?'. */
static void scrub_controls(char *s) {
        for (char *p = s; *p;) {
                uint32_t c = 0;
                size_t n = utf8_decode(p, &c);

                if (n == 0)             /* not UTF-8 either */
                        *p++ = '?';
                else if (c < 0x20 || c == 0x7f || unicode_is_invisible_control(c))
                        for (size_t i = 0; i < n; i++)
                                *p++ = '?';
                else
                        p += n;
        }
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
        scrub_controls(buffer);

        fprintf(stderr, "%s%s\n", prefixes[level & 7], buffer);
        errno = saved_errno;
        return -error;
}

static char library_last_error[256];

void log_library_line(int level, const char *library, const char *line) {
        size_t len = strlen(line);

        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r' || line[len - 1] == ' '))
                len--;
        if (level <= LOG_WARNING)
                snprintf(library_last_error, sizeof(library_last_error), "%.*s", (int) len, line);
        /* Libraries are chatty about what we report ourselves, better worded. */
        log_debug("%s: %.*s", library, (int) len, line);
}

const char *log_library_last_error(void) {
        return library_last_error;
}

void log_library_clear_error(void) {
        library_last_error[0] = 0;
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

unsigned ratelimit_take_suppressed(struct ratelimit *rl) {
        unsigned n = rl->suppressed;

        rl->suppressed = 0;
        return n;
}
