/* SPDX-License-Identifier: MIT */
/*
 * The pure parts of token handling, kept apart from the event loop so that
 * they can be unit-tested: reading a credential or a token file (refused
 * when group or others may read it), checking what a TokenCommand= printed,
 * splitting the command line, and the JWT's exp claim. Nothing here logs;
 * error messages name the source, never the content.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "eventd-config.h"

#define TOKEN_CREDENTIAL "samdock-token"
#define TOKEN_REFRESH_CREDENTIAL "samdock-refresh-token"
#define TOKEN_MAX 16384

struct token {
        char *value;                    /* NULL when none could be had */
        char *source;                   /* "credential ...", "file ...", for logs */
        uint64_t expiry_usec;           /* JWT exp, µs since the epoch; 0 unknown */
};

/* The path of credential name in $CREDENTIALS_DIRECTORY when that file
 * exists; NULL otherwise (or out of memory). */
char *token_credential_path(const char *name);

/* Reads the access token from the first static source that is present:
 * the credential samdock-token, then TokenFile=. -ENOKEY when neither is
 * (the caller goes on to TokenCommand=); on other failures ret_error holds
 * a message for logs and LastError. */
int token_load_static(const struct config *c, struct token *ret, char **ret_error);

/* Reads and checks a token file: with check_mode, owner root or us and no
 * access for group or others; not empty, at most TOKEN_MAX bytes, one word.
 * what names the file in messages ("token file", "refresh token file"). */
int token_read_file(const char *path, const char *what, bool check_mode, char **ret,
                    char **ret_error);

/* Checks and trims a token in place: surrounding blanks and line ends go,
 * what is left must be one word of printable ASCII. -ENODATA when empty,
 * -EBADMSG otherwise. */
int token_clean(char *buffer, size_t *len);

/* Splits a TokenCommand= into words for execvp(). The quoting rules are a
 * subset of the shell's: blanks separate words; '...' keeps everything
 * literally; "..." keeps everything but \" and \\ (a backslash before any
 * other character stays); outside quotes a backslash keeps the next
 * character. A command that uses anything else the shell would act on
 * (| & ; < > ( ) $ ` * ? [ ] { } ~ ! #, or a first word with '=') is not
 * split: ret is { "/bin/sh", "-c", command } and 1 is returned, so that it
 * means what it would in a shell. 0 for a direct command, -EINVAL for an
 * empty command or an unterminated quote, -ENOMEM. Free with
 * token_argv_free(). */
int token_command_split(const char *command, char ***ret);
void token_argv_free(char **argv);

/* Wipes and frees the token's memory. NULL is fine. */
void token_release(struct token *t);
void token_erase(char *secret);

/* The exp claim of a JWT (no signature check), µs since the epoch; 0 when
 * it is not a JWT or has none. */
uint64_t token_jwt_expiry(const char *jwt);
