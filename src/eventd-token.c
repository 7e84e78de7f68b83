/* SPDX-License-Identifier: MIT */
/*
 * Token sources and the JWT expiry. Every buffer that held a token is wiped
 * before it is freed, so a core dump or a reused heap block shows nothing.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <json-c/json.h>

#include "eventd-token.h"

void token_erase(char *secret) {
        if (!secret)
                return;
        explicit_bzero(secret, strlen(secret));
        free(secret);
}

void token_release(struct token *t) {
        token_erase(t->value);
        free(t->source);
        *t = (struct token) {};
}

/* Sets *ret_error (%m in fmt means errno, which must still be set) and returns r. */
__attribute__((format(printf, 3, 4)))
static int error_set(char **ret_error, int r, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        if (vasprintf(ret_error, fmt, ap) < 0)
                *ret_error = NULL;
        va_end(ap);
        return r;
}

/* A NUL is no blank (strchr() would find it, as the string's end). */
static bool is_blank(char c) {
        return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

int token_clean(char *buffer, size_t *len) {
        size_t start = 0, end = *len;

        while (end > 0 && is_blank(buffer[end - 1]))
                end--;
        while (start < end && is_blank(buffer[start]))
                start++;
        if (start == end) {
                explicit_bzero(buffer, *len);
                *len = 0;
                buffer[0] = 0;
                return -ENODATA;
        }
        for (size_t i = start; i < end; i++)
                if ((unsigned char) buffer[i] < 0x21 || (unsigned char) buffer[i] > 0x7e)
                        return -EBADMSG;

        memmove(buffer, buffer + start, end - start);
        explicit_bzero(buffer + (end - start), *len - (end - start));
        *len = end - start;
        buffer[*len] = 0;
        return 0;
}

int token_read_file(const char *path, const char *what, bool check_mode, char **ret,
                    char **ret_error) {
        char buffer[TOKEN_MAX + 2];
        struct stat st;
        ssize_t n;
        size_t len;
        int fd, r = 0;

        *ret = NULL;
        *ret_error = NULL;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW | O_NONBLOCK);
        if (fd < 0 && errno == ELOOP)
                /* O_NOFOLLOW: a link could point anyone's file at us. */
                return error_set(ret_error, -ELOOP, "%s %s is a symbolic link, which is "
                                 "refused: name the file itself", what, path);
        if (fd < 0)
                return error_set(ret_error, -errno, "cannot open %s %s: %m", what, path);

        if (fstat(fd, &st) < 0) {
                r = error_set(ret_error, -errno, "cannot stat %s %s: %m", what, path);
                goto finish;
        }
        if (!S_ISREG(st.st_mode)) {
                r = error_set(ret_error, -EINVAL, "%s %s is not a regular file", what, path);
                goto finish;
        }
        if (check_mode && (st.st_mode & 077) != 0) {
                r = error_set(ret_error, -EPERM,
                              "%s %s may be read by group or others (mode %04o); "
                              "refusing it (chmod 600)", what, path,
                              (unsigned) (st.st_mode & 07777));
                goto finish;
        }
        if (check_mode && st.st_uid != 0 && st.st_uid != geteuid()) {
                r = error_set(ret_error, -EPERM,
                              "%s %s is owned by another user (uid %u); refusing it", what,
                              path, (unsigned) st.st_uid);
                goto finish;
        }

        /* Up to one byte more than allowed, to tell "too large" apart. */
        len = 0;
        while (len < sizeof(buffer) - 1) {
                n = read(fd, buffer + len, sizeof(buffer) - 1 - len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        r = error_set(ret_error, -errno, "cannot read %s %s: %m", what, path);
                        goto finish;
                }
                if (n == 0)
                        break;
                len += (size_t) n;
        }
        if (len > TOKEN_MAX) {
                r = error_set(ret_error, -EFBIG, "%s %s is larger than %d bytes", what, path,
                              TOKEN_MAX);
                goto finish;
        }
        buffer[len] = 0;

        r = token_clean(buffer, &len);
        if (r == -ENODATA) {
                r = error_set(ret_error, r, "%s %s is empty", what, path);
                goto finish;
        }
        if (r < 0) {
                r = error_set(ret_error, r, "%s %s holds more than one word of printable ASCII",
                              what, path);
                goto finish;
        }

        *ret = strdup(buffer);
        if (!*ret)
                r = -ENOMEM;
finish:
        explicit_bzero(buffer, sizeof(buffer));
        close(fd);
        return r;
}

char *token_credential_path(const char *name) {
        const char *dir = getenv("CREDENTIALS_DIRECTORY");
        char *path;

        if (!dir || dir[0] != '/')
                return NULL;
        if (asprintf(&path, "%s/%s", dir, name) < 0)
                return NULL;
        if (access(path, F_OK) < 0) {
                free(path);
                return NULL;
        }
        return path;
}

int token_load_static(const struct config *c, struct token *ret, char **ret_error) {
        char *path = token_credential_path(TOKEN_CREDENTIAL);
        int r;

        *ret = (struct token) {};
        *ret_error = NULL;

        if (path) {
                /* systemd made this file for us alone; its mode is its own. */
                r = token_read_file(path, "credential", false, &ret->value, ret_error);
                if (r >= 0 && asprintf(&ret->source, "credential %s", TOKEN_CREDENTIAL) < 0)
                        r = -ENOMEM;
                free(path);
        } else if (c->token_file) {
                r = token_read_file(c->token_file, "token file", true, &ret->value, ret_error);
                if (r >= 0 && asprintf(&ret->source, "file %s", c->token_file) < 0)
                        r = -ENOMEM;
        } else
                return -ENOKEY;

        if (r < 0) {
                token_release(ret);
                return r;
        }
        ret->expiry_usec = token_jwt_expiry(ret->value);
        return 0;
}

/* ---- TokenCommand= splitting ---- */

void token_argv_free(char **argv) {
        if (!argv)
                return;
        for (char **p = argv; *p; p++)
                free(*p);
        free(argv);
}

static int argv_push(char ***argv, size_t *n, const char *word, size_t len) {
        char **p = realloc(*argv, (*n + 2) * sizeof(char *));

        if (!p)
                return -ENOMEM;
        *argv = p;
        p[*n] = strndup(word, len);
        if (!p[*n])
                return -ENOMEM;
        p[++*n] = NULL;
        return 0;
}

static int shell_argv(const char *command, char ***ret) {
        char **argv = calloc(4, sizeof(char *));

        if (!argv)
                return -ENOMEM;
        argv[0] = strdup("/bin/sh");
        argv[1] = strdup("-c");
        argv[2] = strdup(command);
        if (!argv[0] || !argv[1] || !argv[2]) {
                token_argv_free(argv);
                return -ENOMEM;
        }
        *ret = argv;
        return 1;
}

int token_command_split(const char *command, char ***ret) {
        static const char shell_chars[] = "|&;<>()$`*?[]{}~!#";
        size_t n = 0, len = 0, size = strlen(command) + 1;
        char **argv = NULL, *word;
        bool in_word = false, first_has_equals = false;
        char quote = 0;
        int r = 0;

        *ret = NULL;
        word = malloc(size);
        if (!word)
                return -ENOMEM;

        for (const char *p = command; ; p++) {
                char c = *p;

                if (quote == '\'') {
                        if (c == 0) {
                                r = -EINVAL;
                                break;
                        }
                        if (c == '\'')
                                quote = 0;
                        else
                                word[len++] = c;
                        continue;
                }
                if (quote == '"') {
                        if (c == 0) {
                                r = -EINVAL;
                                break;
                        }
                        if (c == '"')
                                quote = 0;
                        else if (c == '$' || c == '`') {
                                /* Expansion inside double quotes: the shell's job. */
                                r = 1;
                                break;
                        } else if (c == '\\' && (p[1] == '"' || p[1] == '\\'))
                                word[len++] = *++p;
                        else if (c == '\\' && p[1] == '\n')
                                p++;
                        else
                                word[len++] = c;
                        continue;
                }

                if (c == 0 || c == ' ' || c == '\t' || c == '\n') {
                        if (in_word) {
                                if (n == 0 && first_has_equals) {
                                        r = 1;
                                        break;
                                }
                                r = argv_push(&argv, &n, word, len);
                                if (r < 0)
                                        break;
                                len = 0;
                                in_word = false;
                        }
                        if (c == 0)
                                break;
                        continue;
                }

                if (strchr(shell_chars, c)) {
                        r = 1;
                        break;
                }
                if (c == '\\' && p[1] == '\n') {
                        p++;
                        continue;
                }
                in_word = true;
                if (c == '\'' || c == '"')
                        quote = c;
                else if (c == '\\') {
                        if (p[1] == 0) {
                                r = -EINVAL;
                                break;
                        }
                        word[len++] = *++p;
                } else {
                        if (c == '=' && n == 0)
                                first_has_equals = true;
                        word[len++] = c;
                }
        }
        free(word);

        if (r == 0 && n == 0)
                r = -EINVAL;
        if (r != 0) {
                token_argv_free(argv);
                return r == 1 ? shell_argv(command, ret) : r;
        }
        *ret = argv;
        return 0;
}

/* ---- JWT ---- */

static int base64url_value(char c) {
        if (c >= 'A' && c <= 'Z')
                return c - 'A';
        if (c >= 'a' && c <= 'z')
                return c - 'a' + 26;
        if (c >= '0' && c <= '9')
                return c - '0' + 52;
        if (c == '-' || c == '+')
                return 62;
        if (c == '_' || c == '/')
                return 63;
        return -1;
}

uint64_t token_jwt_expiry(const char *jwt) {
        const char *start, *end;
        unsigned char decoded[4096];
        size_t n = 0;
        uint32_t bits = 0;
        int nbits = 0;
        json_tokener *tokener;
        json_object *claims, *exp;
        uint64_t result = 0;

        if (!jwt)
                return 0;
        start = strchr(jwt, '.');
        if (!start)
                return 0;
        start++;
        end = strchr(start, '.');
        if (!end || (size_t) (end - start) > sizeof(decoded) * 4 / 3)
                return 0;

        for (const char *p = start; p < end && *p != '='; p++) {
                int v = base64url_value(*p);

                if (v < 0)
                        return 0;
                bits = (bits << 6) | (uint32_t) v;
                nbits += 6;
                if (nbits >= 8) {
                        nbits -= 8;
                        decoded[n++] = (unsigned char) (bits >> nbits);
                }
        }

        tokener = json_tokener_new();
        if (!tokener)
                return 0;
        claims = json_tokener_parse_ex(tokener, (const char *) decoded, (int) n);
        /* Trailing bytes after the object mean it is not a JWT payload. */
        if (claims && json_tokener_get_parse_end(tokener) != n) {
                json_object_put(claims);
                claims = NULL;
        }
        json_tokener_free(tokener);
        if (json_object_object_get_ex(claims, "exp", &exp) &&
            (json_object_is_type(exp, json_type_int) ||
             json_object_is_type(exp, json_type_double))) {
                double seconds = json_object_get_double(exp);

                if (seconds > 0 && seconds < 1e11)
                        result = (uint64_t) (seconds * 1e6);
        }
        json_object_put(claims);
        explicit_bzero(decoded, sizeof(decoded));
        return result;
}
