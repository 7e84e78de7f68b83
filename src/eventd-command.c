/* SPDX-License-Identifier: MIT */
/*
 * TokenCommand= as an asynchronous child. Why a process group: a helper
 * that runs a pipeline or a script leaves children of its own, and a hung
 * one must go entirely, so the timeout kills the group. The child gets
 * only PATH, HOME, LANG and CREDENTIALS_DIRECTORY, stdin from /dev/null, no
 * inherited descriptors and a default signal mask. What it prints on stdout
 * is a secret: it is never logged, and its buffer is wiped.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "eventd-codec.h"
#include "eventd-command.h"
#include "eventd-token.h"

#define STDERR_KEEP 1024

struct command {
        sd_event *event;
        command_done_fn done;
        void *userdata;
        pid_t pid;
        sd_event_source *child;
        sd_event_source *out_source;
        sd_event_source *err_source;
        sd_event_source *timer;
        int out_fd;
        int err_fd;
        char out[TOKEN_MAX + 2];
        size_t out_len;
        bool out_overflow;
        bool killed_for_output;
        char err[STDERR_KEEP + 1];
        size_t err_len;
        bool timed_out;
        uint64_t timeout_usec;
};

static void pipe_close(sd_event_source **source, int *fd) {
        *source = sd_event_source_disable_unref(*source);
        if (*fd >= 0)
                close(*fd);
        *fd = -1;
}

struct command *command_free(struct command *c) {
        if (!c)
                return NULL;
        if (c->child) {
                /* Still running: the whole group goes; sd-event reaps the
                 * leader when its source is freed (process_own). */
                (void) kill(-c->pid, SIGKILL);
                c->child = sd_event_source_disable_unref(c->child);
        }
        sd_event_source_disable_unref(c->timer);
        pipe_close(&c->out_source, &c->out_fd);
        pipe_close(&c->err_source, &c->err_fd);
        explicit_bzero(c->out, sizeof(c->out));
        sd_event_unref(c->event);
        free(c);
        return NULL;
}

/* Reads what is there; false at end of file or on an error. */
static bool pipe_drain(struct command *c, int fd) {
        char scratch[4096];

        for (;;) {
                bool is_out = fd == c->out_fd;
                char *into = is_out ? c->out + c->out_len : c->err + c->err_len;
                size_t room = is_out ? sizeof(c->out) - 1 - c->out_len
                                     : sizeof(c->err) - 1 - c->err_len;
                ssize_t n;

                if (room == 0) {
                        /* Keep reading so that the child does not block, but
                         * drop the rest. */
                        into = scratch;
                        room = sizeof(scratch);
                }
                n = read(fd, into, room);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return errno == EAGAIN;
                if (n == 0)
                        return false;
                if (into == scratch) {
                        if (is_out)
                                c->out_overflow = true;
                        explicit_bzero(scratch, sizeof(scratch));
                } else if (is_out)
                        c->out_len += (size_t) n;
                else
                        c->err_len += (size_t) n;
        }
}

static int on_pipe(sd_event_source *source, int fd, uint32_t revents, void *userdata) {
        struct command *c = userdata;

        if (!pipe_drain(c, fd)) {
                if (fd == c->out_fd)
                        pipe_close(&c->out_source, &c->out_fd);
                else
                        pipe_close(&c->err_source, &c->err_fd);
        }
        /* Whatever else it prints, this is no token: stop it now rather
         * than at the time limit (`yes` would run for all of it). */
        if (c->out_overflow && !c->killed_for_output && c->child) {
                c->killed_for_output = true;
                (void) kill(-c->pid, SIGKILL);
        }
        return 0;
}

static bool credential_char(char ch) {
        return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                (ch && strchr("-_.~+/=", ch));
}

static bool names_secret(const char *word, size_t len) {
        static const char *const names[] = {
                "token", "secret", "passw", "bearer", "apikey", "api_key", "api-key", "credential",
        };
        char copy[64];

        snprintf(copy, sizeof(copy), "%.*s", (int) len, word);
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
                if (strcasestr(copy, names[i]))
                        return true;
        return false;
}

/* Replaces line[from, to) with the marker (which may be longer: line has
 * room for size bytes); returns where the text after it starts now. Without
 * room, the line ends before what is withheld. */
static size_t withhold(char *line, size_t size, size_t from, size_t to) {
        static const char marker[] = "[withheld]";
        size_t n = strlen(line);

        if (n - (to - from) + strlen(marker) >= size) {
                explicit_bzero(line + from, n - from);
                return from;
        }
        memmove(line + from + strlen(marker), line + to, n - to + 1);
        memcpy(line + from, marker, strlen(marker));
        return from + strlen(marker);
}

/*
 * A helper that fails may still name a secret ("token eyJhb... expired",
 * "bad password for secret=..."). Withheld are: runs of 24 or more token
 * characters that mix letters and digits or upper and lower case; the value
 * after "=" in a run whose key names a secret (token, secret, password,
 * ...); and a run of 8 or more right after a word that names one, unless it
 * is lower-case letters only (an ordinary word). A run that starts with '/'
 * is a path and is kept.
 */
static void withhold_credentials(char *line, size_t size) {
        bool after_secret = false;

        for (size_t i = 0; line[i];) {
                bool lower = false, upper = false, digit = false, other = false;
                const char *eq;
                size_t j = i, len;

                if (!credential_char(line[i])) {
                        /* Blanks, ':', quotes and opening brackets keep
                         * "password: 'x'", "token: \"x\"", "(x)" and JSON's
                         * "token":"x" together ('?' stands for a tab). */
                        if (!strchr(": \t\"'`([{<?", line[i]))
                                after_secret = false;
                        i++;
                        continue;
                }
                for (; line[j] && credential_char(line[j]); j++) {
                        lower |= line[j] >= 'a' && line[j] <= 'z';
                        upper |= line[j] >= 'A' && line[j] <= 'Z';
                        digit |= line[j] >= '0' && line[j] <= '9';
                        other |= !isalnum((unsigned char) line[j]);
                }
                len = j - i;
                eq = memchr(line + i, '=', len);

                if (line[i] == '/')
                        after_secret = false;
                else if (after_secret && len >= 8 && (upper || digit || other)) {
                        j = withhold(line, size, i, j);
                        after_secret = false;
                } else if (len >= 24 && (((lower || upper) && digit) || (lower && upper)))
                        j = withhold(line, size, i, j);
                else if (eq && eq > line + i && line + j - eq > 4 &&
                         names_secret(line + i, (size_t) (eq - (line + i))))
                        j = withhold(line, size, (size_t) (eq + 1 - line), j);
                else if (eq && eq == line + j - 1)
                        /* "token=" with the value after a quote or bracket */
                        after_secret = names_secret(line + i, len - 1);
                else
                        after_secret = names_secret(line + i, len) && !eq;
                i = j;
        }
}

/* The first line of stderr, printable UTF-8, at most 200 bytes; it must
 * not repeat what went to stdout, nor show what looks like a credential
 * (looked for in the whole line, before it is cut). */
static void first_error_line(struct command *c, char *line, size_t size) {
        char full[2 * STDERR_KEEP];     /* room for what withholding adds */
        size_t n = 0;

        for (size_t i = 0; i < c->err_len && c->err[i] != '\n'; i++) {
                unsigned char ch = (unsigned char) c->err[i];

                if (ch == '\r')
                        continue;
                full[n++] = ch < 0x20 || ch == 0x7f ? '?' : (char) ch;
        }
        full[n] = 0;
        withhold_credentials(full, sizeof(full));

        c->out[c->out_len] = 0;
        if (c->out_len >= 8) {
                char *copy = strndup(c->out, c->out_len);
                size_t len = copy ? strlen(copy) : 0;  /* shorter if the output has a NUL */

                if (copy && token_clean(copy, &len) == 0 && strstr(full, copy))
                        snprintf(full, sizeof(full), "(message withheld: it repeats the output)");
                if (copy) {
                        explicit_bzero(copy, strlen(copy));
                        free(copy);
                }
        }

        /* Cut at a character boundary; what is not UTF-8 cannot go on the
         * bus (LastError) at all. */
        n = strlen(full);
        if (n > 200)
                for (n = 200; n > 0 && ((unsigned char) full[n] & 0xc0) == 0x80; n--)
                        ;
        while (n > 0 && full[n - 1] == ' ')
                n--;
        full[n] = 0;
        utf8_scrub(full);
        snprintf(line, size, "%s", full);
        explicit_bzero(full, sizeof(full));
}

static void finish(struct command *c, const siginfo_t *si) {
        char line[256], error[400];
        char *token = NULL;
        int r;

        /* Whatever is still in the pipes was written before the exit. */
        if (c->out_fd >= 0)
                (void) pipe_drain(c, c->out_fd);
        if (c->err_fd >= 0)
                (void) pipe_drain(c, c->err_fd);
        first_error_line(c, line, sizeof(line));

        error[0] = 0;
        if (c->timed_out)
                snprintf(error, sizeof(error), "TokenCommand= did not finish within %llu s; "
                         "killed it", (unsigned long long) (c->timeout_usec / 1000000));
        else if (c->out_overflow || c->out_len > TOKEN_MAX)
                snprintf(error, sizeof(error), "TokenCommand= printed more than %d bytes%s",
                         TOKEN_MAX, c->killed_for_output ? "; killed it" : "");
        else if (si->si_code != CLD_EXITED)
                snprintf(error, sizeof(error), "TokenCommand= was killed by signal %s%s%s",
                         sigabbrev_np(si->si_status) ? sigabbrev_np(si->si_status) : "?",
                         line[0] ? ": " : "", line);
        else if (si->si_status != 0)
                snprintf(error, sizeof(error), "TokenCommand= failed with status %d: %s",
                         si->si_status, line[0] ? line : "(nothing on stderr)");
        else {
                size_t len = c->out_len;

                c->out[len] = 0;
                r = token_clean(c->out, &len);
                if (r == -ENODATA)
                        snprintf(error, sizeof(error), "TokenCommand= printed no token%s%s",
                                 line[0] ? ": " : "", line);
                else if (r < 0)
                        snprintf(error, sizeof(error), "TokenCommand= printed more than one "
                                 "word of printable ASCII");
                else if (!(token = strdup(c->out)))
                        snprintf(error, sizeof(error), "out of memory");
        }
        explicit_bzero(c->out, sizeof(c->out));
        c->done(c, token, token ? NULL : error, c->userdata);
}

static int on_child(sd_event_source *source, const siginfo_t *si, void *userdata) {
        struct command *c = userdata;

        /* The source is done (ONESHOT) and sd-event reaps the child right
         * after this returns; forget it so that command_free() kills
         * nothing. */
        c->child = sd_event_source_unref(c->child);
        c->timer = sd_event_source_disable_unref(c->timer);
        finish(c, si);
        return 0;
}

static int on_timeout(sd_event_source *source, uint64_t usec, void *userdata) {
        struct command *c = userdata;

        c->timed_out = true;
        /* The child handler reports once the leader is gone. */
        (void) kill(-c->pid, SIGKILL);
        return 0;
}

/* Runs in the child: never returns. */
static void child_exec(char **argv, char **envp, int null_fd, int out_fd, int err_fd) {
        extern char **environ;
        sigset_t none;

        (void) setsid();
        sigemptyset(&none);
        (void) sigprocmask(SIG_SETMASK, &none, NULL);
        (void) signal(SIGPIPE, SIG_DFL);

        if (dup2(null_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0)
                _exit(126);
        (void) close_range(3, ~0U, 0);

        environ = envp;
        execvp(argv[0], argv);
        dprintf(2, "cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
}

static int env_add(char **envp, size_t *n, const char *name, const char *fallback) {
        const char *value = getenv(name);

        if (!value)
                value = fallback;
        if (!value)
                return 0;
        if (asprintf(&envp[*n], "%s=%s", name, value) < 0)
                return -ENOMEM;
        (*n)++;
        return 0;
}

int command_start(struct command **ret, sd_event *event, const char *command_line,
                  uint64_t timeout_usec, command_done_fn done, void *userdata) {
        char **argv = NULL, *envp[5] = {};
        int out[2] = { -1, -1 }, err[2] = { -1, -1 }, null_fd = -1, r;
        struct command *c;
        size_t n = 0;
        pid_t pid;

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->event = sd_event_ref(event);
        c->done = done;
        c->userdata = userdata;
        c->out_fd = c->err_fd = -1;
        c->timeout_usec = timeout_usec;

        r = token_command_split(command_line, &argv);
        if (r < 0)
                goto fail;

        /* What a helper needs to find its programs and its keys, no more. */
        if (env_add(envp, &n, "PATH", "/usr/local/bin:/usr/bin:/bin") < 0 ||
            env_add(envp, &n, "HOME", NULL) < 0 || env_add(envp, &n, "LANG", NULL) < 0 ||
            env_add(envp, &n, "CREDENTIALS_DIRECTORY", NULL) < 0) {
                r = -ENOMEM;
                goto fail;
        }

        if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0) {
                r = -errno;
                goto fail;
        }
        null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (null_fd < 0) {
                r = -errno;
                goto fail;
        }

        pid = fork();
        if (pid < 0) {
                r = -errno;
                goto fail;
        }
        if (pid == 0)
                child_exec(argv, envp, null_fd, out[1], err[1]);

        c->pid = pid;
        /* Our own group id too, so that the timeout's kill(-pid) cannot
         * miss even before the child's setsid() ran. */
        (void) setpgid(pid, pid);
        close(out[1]);
        close(err[1]);
        out[1] = err[1] = -1;
        c->out_fd = out[0];
        c->err_fd = err[0];
        out[0] = err[0] = -1;
        (void) fcntl(c->out_fd, F_SETFL, O_NONBLOCK);
        (void) fcntl(c->err_fd, F_SETFL, O_NONBLOCK);

        r = sd_event_add_child(event, &c->child, pid, WEXITED, on_child, c);
        if (r < 0) {
                (void) kill(-pid, SIGKILL);
                (void) waitpid(pid, NULL, 0);
                goto fail;
        }
        (void) sd_event_source_set_child_process_own(c->child, true);
        r = sd_event_add_io(event, &c->out_source, c->out_fd, EPOLLIN, on_pipe, c);
        if (r >= 0)
                r = sd_event_add_io(event, &c->err_source, c->err_fd, EPOLLIN, on_pipe, c);
        if (r >= 0)
                r = sd_event_add_time_relative(event, &c->timer, CLOCK_BOOTTIME, timeout_usec,
                                               10000, on_timeout, c);
        if (r < 0)
                goto fail;

        token_argv_free(argv);
        for (size_t i = 0; i < n; i++)
                free(envp[i]);
        close(null_fd);
        *ret = c;
        return 0;

fail:
        token_argv_free(argv);
        for (size_t i = 0; i < n; i++)
                free(envp[i]);
        for (size_t i = 0; i < 2; i++) {
                if (out[i] >= 0)
                        close(out[i]);
                if (err[i] >= 0)
                        close(err[i]);
        }
        if (null_fd >= 0)
                close(null_fd);
        command_free(c);
        return r;
}
