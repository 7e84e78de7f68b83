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

int token_read_file(const char *path, bool check_mode, char **ret, char **ret_error) {
        char buffer[TOKEN_MAX + 2];
        struct stat st;
        ssize_t n;
        size_t len;
        int fd, r = 0;

        *ret = NULL;
        *ret_error = NULL;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW);
        if (fd < 0)
                return error_set(ret_error, -errno, "cannot open token file %s: %m", path);

        if (fstat(fd, &st) < 0) {
                r = error_set(ret_error, -errno, "cannot stat token file %s: %m", path);
                goto finish;
        }
        if (!S_ISREG(st.st_mode)) {
                r = error_set(ret_error, -EINVAL, "token file %s is not a regular file", path);
                goto finish;
        }
        if (check_mode && (st.st_mode & 077) != 0) {
                r = error_set(ret_error, -EPERM,
                              "token file %s may be read by group or others; "
                              "refusing it (chmod 600)", path);
                goto finish;
        }
        if (check_mode && st.st_uid != 0 && st.st_uid != geteuid()) {
                r = error_set(ret_error, -EPERM,
                              "token file %s is owned by another user; refusing it", path);
                goto finish;
        }

        n = read(fd, buffer, sizeof(buffer) - 1);
        if (n < 0) {
                r = error_set(ret_error, -errno, "cannot read token file %s: %m", path);
                goto finish;
        }
        len = (size_t) n;
        if (len > TOKEN_MAX) {
                r = error_set(ret_error, -EFBIG, "token file %s is too large", path);
                goto finish;
        }

        /* One line; surrounding whitespace is not part of the token. */
        while (len > 0 && strchr(" \t\r\n", buffer[len - 1]))
                len--;
        buffer[len] = 0;
        if (len == 0) {
                r = error_set(ret_error, -ENODATA, "token file %s is empty", path);
                goto finish;
        }
        for (size_t i = 0; i < len; i++)
                if ((unsigned char) buffer[i] < 0x21 || (unsigned char) buffer[i] > 0x7e) {
                        r = error_set(ret_error, -EBADMSG,
                                      "token file %s holds more than one printable word",
                                      path);
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

int token_load_static(const struct config *c, struct token *ret, char **ret_error) {
        const char *dir = getenv("CREDENTIALS_DIRECTORY");
        char *path = NULL;
        int r;

        *ret = (struct token) {};
        *ret_error = NULL;

        if (dir && asprintf(&path, "%s/%s", dir, TOKEN_CREDENTIAL) >= 0 &&
            access(path, F_OK) == 0) {
                /* systemd made this file for us alone; its mode is its own. */
                r = token_read_file(path, false, &ret->value, ret_error);
                if (r >= 0 && asprintf(&ret->source, "credential %s", TOKEN_CREDENTIAL) < 0)
                        r = -ENOMEM;
        } else if (c->token_file) {
                r = token_read_file(c->token_file, true, &ret->value, ret_error);
                if (r >= 0 && asprintf(&ret->source, "file %s", c->token_file) < 0)
                        r = -ENOMEM;
        } else {
                r = -ENOKEY;
                *ret_error = strdup("no token configured (credential " TOKEN_CREDENTIAL
                                    ", TokenFile= or TokenCommand=)");
        }
        free(path);

        if (r < 0) {
                token_release(ret);
                return r;
        }
        ret->expiry_usec = token_jwt_expiry(ret->value);
        return 0;
}

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
        json_tokener_free(tokener);
        if (json_object_object_get_ex(claims, "exp", &exp) &&
            (json_object_is_type(exp, json_type_int) || json_object_is_type(exp, json_type_double))) {
                double seconds = json_object_get_double(exp);

                if (seconds > 0 && seconds < 1e11)
                        result = (uint64_t) (seconds * 1e6);
        }
        json_object_put(claims);
        explicit_bzero(decoded, sizeof(decoded));
        return result;
}
