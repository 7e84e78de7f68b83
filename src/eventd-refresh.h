/* SPDX-License-Identifier: MIT */
/*
 * Samdock's token renewal: one POST /token/refresh to AuthURL= with the
 * refresh token, over libwebsockets' HTTP client in the daemon's own lws
 * context (so CAFile=, the system store and the proxy apply as for the
 * streams, and certificates are always verified), and the store that keeps
 * the renewed refresh token across restarts.
 */
#pragma once

#include <stddef.h>
#include <systemd/sd-event.h>

struct lws;
struct lws_context;
struct refresh_request;

#define REFRESH_LWS_PROTOCOL "samdock-eventd-refresh"
#define REFRESH_PATH "/token/refresh"

/* result: 0 with the new access token (and a new refresh token, or NULL
 * when the service kept the old one); -EACCES when the service refused the
 * refresh token (HTTP 401 or 403); another negative errno when it could not
 * be asked or answered nonsense (worth another try). The callee owns and
 * must wipe the tokens. The callback may free the request. */
typedef void (*refresh_done_fn)(struct refresh_request *r, int result, char *access_token,
                                char *refresh_token, const char *error, void *userdata);

/* Starts the request; the answer comes through done, never from inside
 * this call. */
int refresh_request_start(struct refresh_request **ret, sd_event *event,
                          struct lws_context *lws, const char *auth_url,
                          const char *refresh_token, refresh_done_fn done, void *userdata);
/* Abandons the request if it still runs. NULL is fine. */
struct refresh_request *refresh_request_free(struct refresh_request *r);

/* The lws protocol callback for REFRESH_LWS_PROTOCOL (eventd-loop.c's
 * protocol table points at it). */
int refresh_lws_callback(struct lws *wsi, int reason, void *user, void *in, size_t len);

/* Where the renewed refresh token is kept: $STATE_DIRECTORY (its first
 * entry), else /var/lib/samdock-eventd for root and
 * $XDG_STATE_HOME/samdock-eventd (~/.local/state/...) for others; the
 * fallback directory is created with mode 0700. ret is the file's path. */
int refresh_store_path(char **ret, char **ret_error);

/* The stored token when it descends from seed (the refresh token that the
 * configuration gives now); -ENOENT when there is none or it descends from
 * another one, so that a refresh token put in place by hand wins. */
int refresh_store_load(const char *path, const char *seed, char **ret_token);

/* Stores token (descended from seed): mode 0600, written to a temporary
 * file, flushed, renamed over the old one and the directory flushed, so
 * that a crash leaves the old or the new token, never neither. */
int refresh_store_save(const char *path, const char *seed, const char *token,
                       char **ret_error);
