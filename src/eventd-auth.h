/* SPDX-License-Identifier: MIT */
/*
 * The token's life cycle. Sources, first present wins: the systemd
 * credential samdock-token, TokenFile=, TokenCommand=. With a refresh token
 * (credential samdock-refresh-token or RefreshTokenFile=) the access token
 * is renewed at AuthURL= ahead of its exp; without one, TokenCommand= runs
 * again before each reconnect and ahead of exp, and a token that nothing
 * can renew is warned about before it runs out. The owner hears of a new
 * token or of having none through auth_ops and reads the rest through the
 * accessors; it never sees where a token came from beyond a log line.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "eventd-config.h"

struct auth;
struct lws_context;

struct auth_ops {
        /* A new token is in force: auth_token(), auth_expiry(). */
        void (*changed)(struct auth *a, void *userdata);
        /* No usable token; why is for LastError (it names the source, never
         * the token). The streams wait until changed() comes. */
        void (*failed)(struct auth *a, const char *why, void *userdata);
        /* A TokenCommand= run ended and handed out the token already in
         * force: connects held for it may go. */
        void (*settled)(struct auth *a, void *userdata);
};

/* Blocks SIGCHLD for the process (sd-event reaps TokenCommand='s child). */
int auth_new(struct auth **ret, sd_event *event, const struct auth_ops *ops, void *userdata);
/* Kills a running command, abandons a renewal. NULL is fine. */
struct auth *auth_free(struct auth *a);

/* Takes the [Auth] settings and (re)reads the sources, for start-up and
 * reloads. 1: a new token is in force (changed() ran); 0: the token stayed,
 * or one is on its way (a command or a renewal runs); negative: there is
 * none (failed() ran). */
int auth_load(struct auth *a, const struct config *c);

/* The lws context for renewals; call before the old one is destroyed. */
void auth_set_lws(struct auth *a, struct lws_context *lws);

const char *auth_token(const struct auth *a);           /* NULL: none */
uint64_t auth_expiry(const struct auth *a);             /* µs since the epoch, 0 unknown */
const char *auth_last_error(const struct auth *a);      /* NULL: none */

/* A stream is about to connect again: TokenCommand= runs again (at most
 * once a second, never twice at a time). NULL is fine. */
void auth_before_connect(struct auth *a);
/* A TokenCommand= is running: a connect now would use the token it is
 * about to replace. One of the ops comes when it ends. */
bool auth_fetching(const struct auth *a);
/* The server refused the token in force: renew it now if a refresh token
 * or TokenCommand= can (once per token, at most every 30 s). NULL is fine. */
void auth_refused(struct auth *a);
