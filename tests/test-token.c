/* SPDX-License-Identifier: MIT */
/* Tokens: the JWT exp claim, TokenCommand= splitting (and when it goes to
 * the shell instead), token file checks, and the order of the static
 * sources. Error messages must never quote the file's content. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "eventd-config.h"
#include "eventd-token.h"
#include "test-util.h"

static char dir[] = "/tmp/test-token-XXXXXX";

/* base64url without padding, as JWTs have it. */
static char *base64url(const char *in) {
        static const char alphabet[] =
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        size_t len = strlen(in), n = 0;
        char *out = malloc(len * 4 / 3 + 4);
        uint32_t bits = 0;
        int nbits = 0;

        CHECK(out);
        for (size_t i = 0; i < len; i++) {
                bits = (bits << 8) | (unsigned char) in[i];
                nbits += 8;
                while (nbits >= 6) {
                        nbits -= 6;
                        out[n++] = alphabet[(bits >> nbits) & 63];
                }
        }
        if (nbits > 0)
                out[n++] = alphabet[(bits << (6 - nbits)) & 63];
        out[n] = 0;
        return out;
}

static char *jwt(const char *claims) {
        char *payload = base64url(claims), *out = NULL;

        CHECK(asprintf(&out, "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.%s.c2lnbmF0dXJl", payload) > 0);
        free(payload);
        return out;
}

static uint64_t expiry_of(const char *claims) {
        char *t = jwt(claims);
        uint64_t r = token_jwt_expiry(t);

        free(t);
        return r;
}

static void test_jwt_expiry(void) {
        char *t, *padded = NULL;

        CHECK_INT(expiry_of("{\"sub\":\"u1\",\"exp\":1700000000}"), 1700000000ULL * 1000000ULL);
        CHECK_INT(expiry_of("{\"exp\":1700000000.25}"), 1700000000250000ULL);
        /* Every padding length of the base64 payload. */
        CHECK_INT(expiry_of("{\"exp\":1}"), 1000000);
        CHECK_INT(expiry_of("{\"exp\":12}"), 12000000);
        CHECK_INT(expiry_of("{\"exp\":123}"), 123000000);
        CHECK_INT(expiry_of("{\"a\":\"\\u00fc\",\"exp\":2000000000}"), 2000000000ULL * 1000000ULL);

        /* No usable exp: 0, "unknown". */
        CHECK_INT(expiry_of("{\"sub\":\"u1\"}"), 0);
        CHECK_INT(expiry_of("{\"exp\":\"1700000000\"}"), 0);
        CHECK_INT(expiry_of("{\"exp\":-5}"), 0);
        CHECK_INT(expiry_of("{\"exp\":0}"), 0);
        CHECK_INT(expiry_of("{\"exp\":1e300}"), 0);
        CHECK_INT(expiry_of("[1700000000]"), 0);
        CHECK_INT(expiry_of("{\"exp\":1700000000} trailing"), 0);
        CHECK_INT(expiry_of("not json"), 0);
        CHECK_INT(expiry_of(""), 0);

        CHECK_INT(token_jwt_expiry(NULL), 0);
        CHECK_INT(token_jwt_expiry("opaque-token-without-dots"), 0);
        CHECK_INT(token_jwt_expiry("a.b"), 0);
        CHECK_INT(token_jwt_expiry("a.!!!.c"), 0);

        /* '=' padding, which some encoders leave in, ends the payload. */
        t = base64url("{\"exp\":7}");
        CHECK(asprintf(&padded, "h.%s==.s", t) > 0);
        CHECK_INT(token_jwt_expiry(padded), 7000000);
        free(padded);
        free(t);

        /* A payload too long for the decoder is not read at all. */
        {
                size_t n = 8000;
                char *big = malloc(n + 8);

                CHECK(big);
                memset(big, 'A', n + 8);
                memcpy(big, "h.", 2);
                memcpy(big + n, ".s", 3);
                CHECK_INT(token_jwt_expiry(big), 0);
                free(big);
        }
}

static void check_split(const char *command, int expect_r, const char *const *expect) {
        char **argv = NULL;
        int r = token_command_split(command, &argv);
        size_t i;

        if (r != expect_r)
                fprintf(stderr, "command: %s\n", command);
        CHECK_INT(r, expect_r);
        if (r < 0) {
                CHECK(!argv);
                return;
        }
        for (i = 0; expect[i]; i++)
                CHECK_STR(argv[i], expect[i]);
        CHECK(argv[i] == NULL);
        token_argv_free(argv);
}

#define WORDS(...) ((const char *const[]) { __VA_ARGS__, NULL })
#define SHELL(cmd) check_split(cmd, 1, WORDS("/bin/sh", "-c", cmd))

static void test_command_split(void) {
        /* Plain words and the quoting subset. */
        check_split("pass show samdock/token", 0, WORDS("pass", "show", "samdock/token"));
        check_split("  a\tb  ", 0, WORDS("a", "b"));
        check_split("/usr/bin/get-token --name 'my token' \"other one\"", 0,
                    WORDS("/usr/bin/get-token", "--name", "my token", "other one"));
        check_split("echo 'it''s'", 0, WORDS("echo", "its"));
        check_split("echo \"a\\\"b\\\\c\\d\"", 0, WORDS("echo", "a\"b\\c\\d"));
        check_split("echo a\\ b", 0, WORDS("echo", "a b"));
        check_split("echo '' x", 0, WORDS("echo", "", "x"));
        check_split("echo '$HOME *'", 0, WORDS("echo", "$HOME *"));
        check_split("echo '|;&'", 0, WORDS("echo", "|;&"));
        check_split("echo \\$HOME", 0, WORDS("echo", "$HOME"));
        check_split("tool key=value", 0, WORDS("tool", "key=value"));
        check_split("a\"b c\"d", 0, WORDS("ab cd"));

        /* Anything a shell would act on goes to the shell, whole. */
        SHELL("pass show samdock/token | head -n1");
        SHELL("pass show x; echo # y");
        SHELL("cat $HOME/token");
        SHELL("echo \"$HOME\"");
        SHELL("echo \"`id`\"");
        SHELL("cat ~/token");
        SHELL("cat /tmp/*.token");
        SHELL("cmd > /dev/null");
        SHELL("cmd && other");
        SHELL("(cmd)");
        SHELL("FOO=bar get-token");
        SHELL("echo {a,b}");
        SHELL("cmd #comment");

        /* Nothing to run, or a quote left open. */
        check_split("", -EINVAL, NULL);
        check_split("   ", -EINVAL, NULL);
        check_split("echo 'open", -EINVAL, NULL);
        check_split("echo \"open", -EINVAL, NULL);
        check_split("echo trailing\\", -EINVAL, NULL);
}

static char *write_file(const char *name, const char *content, size_t len, mode_t mode) {
        char *path = NULL;
        int fd;

        CHECK(asprintf(&path, "%s/%s", dir, name) > 0);
        (void) unlink(path);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        CHECK(fd >= 0);
        CHECK(write(fd, content, len) == (ssize_t) len);
        CHECK(fchmod(fd, mode) == 0);
        close(fd);
        return path;
}

static int read_token(const char *path, bool check_mode, char **ret, char **ret_error) {
        return token_read_file(path, "token file", check_mode, ret, ret_error);
}

static void test_read_file(void) {
        char *path, *value, *error, *big, *link_path = NULL;
        int r;

        path = write_file("ok", "secret-token-1\n", 15, 0600);
        CHECK_INT(read_token(path, true, &value, &error), 0);
        CHECK_STR(value, "secret-token-1");
        CHECK(!error);
        token_erase(value);
        free(path);

        path = write_file("blanks", "  secret-token-2 \r\n\n", 20, 0400);
        CHECK_INT(read_token(path, true, &value, &error), 0);
        CHECK_STR(value, "secret-token-2");
        token_erase(value);
        free(path);

        /* Readable by group or others: refused, with the fix named. */
        path = write_file("open", "secret-token-3\n", 15, 0644);
        r = read_token(path, true, &value, &error);
        CHECK_INT(r, -EPERM);
        CHECK(!value);
        CHECK(error && strstr(error, "may be read by group or others") && strstr(error, "0644") &&
              strstr(error, "chmod 600") && strstr(error, path));
        CHECK(!strstr(error, "secret-token-3"));
        free(error);
        /* A credential's mode is systemd's business. */
        CHECK_INT(read_token(path, false, &value, &error), 0);
        CHECK_STR(value, "secret-token-3");
        token_erase(value);
        free(path);

        path = write_file("group", "secret-token-4\n", 15, 0640);
        CHECK_INT(read_token(path, true, &value, &error), -EPERM);
        free(error);
        free(path);
        path = write_file("other-write", "secret-token-4\n", 15, 0602);
        CHECK_INT(read_token(path, true, &value, &error), -EPERM);
        free(error);
        free(path);

        /* Owned by someone else (root can hand it over to check this). */
        path = write_file("foreign", "secret-token-5\n", 15, 0600);
        if (geteuid() == 0 && chown(path, 65534, 65534) == 0) {
                CHECK_INT(read_token(path, true, &value, &error), -EPERM);
                CHECK(error && strstr(error, "owned by another user"));
                free(error);
        }
        free(path);

        path = write_file("empty", "\n  \n", 4, 0600);
        CHECK_INT(read_token(path, true, &value, &error), -ENODATA);
        CHECK(error && strstr(error, "is empty"));
        free(error);
        free(path);

        path = write_file("two-words", "secret-part-a secret-part-b\n", 28, 0600);
        CHECK_INT(read_token(path, true, &value, &error), -EBADMSG);
        CHECK(error && !strstr(error, "secret-part"));
        free(error);
        free(path);

        path = write_file("two-lines", "secret-line-a\nsecret-line-b\n", 28, 0600);
        CHECK_INT(read_token(path, true, &value, &error), -EBADMSG);
        CHECK(!strstr(error, "secret-line"));
        free(error);
        free(path);

        path = write_file("not-ascii", "t\xc3\xbcken\n", 8, 0600);
        CHECK_INT(read_token(path, true, &value, &error), -EBADMSG);
        free(error);
        free(path);

        /* The largest allowed, and one byte more. */
        big = malloc(TOKEN_MAX + 2);
        CHECK(big);
        memset(big, 'x', TOKEN_MAX + 1);
        path = write_file("max", big, TOKEN_MAX, 0600);
        CHECK_INT(read_token(path, true, &value, &error), 0);
        CHECK_INT(strlen(value), TOKEN_MAX);
        token_erase(value);
        free(path);
        path = write_file("too-big", big, TOKEN_MAX + 1, 0600);
        CHECK_INT(read_token(path, true, &value, &error), -EFBIG);
        free(error);
        free(big);

        /* Not followed through a symbolic link, not a directory. */
        CHECK(asprintf(&link_path, "%s/link", dir) > 0);
        CHECK(symlink(path, link_path) == 0);
        CHECK(read_token(link_path, true, &value, &error) == -ELOOP);
        CHECK(error && strstr(error, link_path) && strstr(error, "symbolic link"));
        free(error);
        unlink(link_path);
        free(link_path);
        free(path);

        CHECK_INT(read_token(dir, true, &value, &error), -EINVAL);
        free(error);

        CHECK_INT(read_token("/nonexistent/token", true, &value, &error), -ENOENT);
        CHECK(error && strstr(error, "/nonexistent/token"));
        free(error);
}

static void test_clean(void) {
        char a[] = " \tabc\r\n", b[] = "a\x01" "b", c[] = "\n";
        size_t len;

        len = strlen(a);
        CHECK_INT(token_clean(a, &len), 0);
        CHECK_STR(a, "abc");
        CHECK_INT(len, 3);
        len = strlen(b);
        CHECK_INT(token_clean(b, &len), -EBADMSG);
        len = strlen(c);
        CHECK_INT(token_clean(c, &len), -ENODATA);

        /* A NUL is not a blank: anywhere in the text, it is refused. */
        {
                char tail[] = "abcdefgh\0\0\n", inner[] = "ab\0cd", head[] = "\0abc";

                len = sizeof(tail) - 1;
                CHECK_INT(token_clean(tail, &len), -EBADMSG);
                len = sizeof(inner) - 1;
                CHECK_INT(token_clean(inner, &len), -EBADMSG);
                len = sizeof(head) - 1;
                CHECK_INT(token_clean(head, &len), -EBADMSG);
        }
}

static void test_static_order(void) {
        struct config c = {};
        struct token t;
        char *error = NULL, *cred_dir = NULL, *file, *cred;

        file = write_file("token-file", "from-token-file\n", 16, 0600);
        c.token_file = file;

        /* No credentials directory: TokenFile=. */
        unsetenv("CREDENTIALS_DIRECTORY");
        CHECK_INT(token_load_static(&c, &t, &error), 0);
        CHECK_STR(t.value, "from-token-file");
        CHECK(strstr(t.source, "file "));
        token_release(&t);

        /* A directory without our credential: still TokenFile=. */
        CHECK(asprintf(&cred_dir, "%s/credentials", dir) > 0);
        CHECK(mkdir(cred_dir, 0700) == 0);
        setenv("CREDENTIALS_DIRECTORY", cred_dir, 1);
        CHECK_INT(token_load_static(&c, &t, &error), 0);
        CHECK_STR(t.value, "from-token-file");
        token_release(&t);

        /* The credential wins, whatever its mode. */
        CHECK(asprintf(&cred, "%s/" TOKEN_CREDENTIAL, cred_dir) > 0);
        {
                int fd = open(cred, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0444);

                CHECK(fd >= 0);
                CHECK(write(fd, "from-credential\n", 16) == 16);
                close(fd);
        }
        CHECK_INT(token_load_static(&c, &t, &error), 0);
        CHECK_STR(t.value, "from-credential");
        CHECK_STR(t.source, "credential " TOKEN_CREDENTIAL);
        token_release(&t);
        {
                char *path = token_credential_path(TOKEN_CREDENTIAL);

                CHECK_STR(path, cred);
                free(path);
                CHECK(!token_credential_path(TOKEN_REFRESH_CREDENTIAL));
        }

        /* A relative CREDENTIALS_DIRECTORY is ignored. */
        setenv("CREDENTIALS_DIRECTORY", "relative/dir", 1);
        CHECK(!token_credential_path(TOKEN_CREDENTIAL));

        /* Neither: -ENOKEY, so that TokenCommand= gets its turn. */
        unsetenv("CREDENTIALS_DIRECTORY");
        c.token_file = NULL;
        CHECK_INT(token_load_static(&c, &t, &error), -ENOKEY);
        CHECK(!t.value);

        /* A refused file is an error, not a reason to go on. */
        free(file);
        file = write_file("token-file", "from-token-file\n", 16, 0644);
        c.token_file = file;
        CHECK_INT(token_load_static(&c, &t, &error), -EPERM);
        CHECK(error && !strstr(error, "from-token-file"));
        free(error);

        unlink(cred);
        rmdir(cred_dir);
        free(cred);
        free(cred_dir);
        free(file);
}

int main(void) {
        char command[64];

        CHECK(mkdtemp(dir));
        test_jwt_expiry();
        test_command_split();
        test_clean();
        test_read_file();
        test_static_order();

        snprintf(command, sizeof(command), "rm -rf %s", dir);
        CHECK(system(command) == 0);
        printf("test-token: ok\n");
        return 0;
}
