/* SPDX-License-Identifier: MIT */
/*
 * Where the bearer token comes from, in order: the systemd credential
 * "samdock-token" in $CREDENTIALS_DIRECTORY, TokenFile= (refused when group
 * or others may read it), TokenCommand=. The token is never logged; error
 * messages name the source, never the content.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "eventd-config.h"

#define TOKEN_CREDENTIAL "samdock-token"
#define TOKEN_MAX 16384

struct token {
        char *value;                    /* NULL when none could be had */
        char *source;                   /* "credential ...", "file ...", for logs */
        uint64_t expiry_usec;           /* JWT exp, µs since the epoch; 0 unknown */
};

/* Reads a token from the first configured source that is present. On
 * failure ret_error holds a message for logs and LastError. */
int token_load_static(const struct config *c, struct token *ret, char **ret_error);

/* Reads and checks a token file: owner root or us, no access for group or
 * others, not empty, at most TOKEN_MAX bytes, one line. */
int token_read_file(const char *path, bool check_mode, char **ret, char **ret_error);

/* Wipes and frees the token's memory. NULL is fine. */
void token_release(struct token *t);
void token_erase(char *secret);

/* The exp claim of a JWT (no signature check), µs since the epoch; 0 when
 * it is not a JWT or has none. */
uint64_t token_jwt_expiry(const char *jwt);
