/* SPDX-License-Identifier: MIT */
/*
 * One WebSocket over libwebsockets, at most one at a time: it connects,
 * hands over what it receives piece by piece, writes queued text frames and
 * says why the WebSocket closed. It knows HTTP and TLS, not Engine.IO; what
 * the frames mean, and when to give up on them, its owner decides.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct lws_context;
struct lws;
struct link;

/* How a WebSocket ended without its owner asking. */
struct link_end {
        const char *why;                /* for LastError; may quote the server or a library */
        unsigned http_status;           /* the answer to the upgrade; 0 when none came */
        bool auth_refused;              /* HTTP 401 or 403: the credentials were refused */
        bool established;               /* the WebSocket upgrade had succeeded */
};

struct link_ops {
        /* A piece of a WebSocket message, as lws reads it: binary tells the
         * kind of message, final marks its last piece. */
        void (*receive)(struct link *link, const char *data, size_t len, bool binary,
                        bool final, void *userdata);
        /* The WebSocket is gone; not called after link_close(). */
        void (*closed)(struct link *link, const struct link_end *end, void *userdata);
};

struct link_target {
        const char *host;
        uint16_t port;
        bool tls;
        const char *path;               /* with its trailing '/' */
};

/* name labels the log lines; it is copied. */
int link_new(struct link **ret, const char *name, const struct link_ops *ops, void *userdata);
struct link *link_free(struct link *link);

/* Where to connect; copied, it takes effect at the next link_open(). */
int link_configure(struct link *link, const struct link_target *target);
/* ws:// or wss://, host, port and path; NULL until configured. */
const char *link_url(const struct link *link);

/* Starts connecting to the path with query through the lws context. Failing
 * before any I/O it returns a negative errno and *ret_why says why (until
 * the next link_open()); closed() then does not come. Certificates and host
 * names are always checked. */
int link_open(struct link *link, struct lws_context *context, const char *query,
              const char **ret_why);
/* Lets go of the WebSocket; lws closes it on its next turn. */
void link_close(struct link *link);
bool link_is_open(const struct link *link);
/* Whether the WebSocket upgrade succeeded. */
bool link_established(const struct link *link);

/* Queues one text frame; -ENOTCONN without a WebSocket, -ENOBUFS when 1 MiB
 * already waits (the server is not reading). */
int link_send(struct link *link, const char *text);
/* Stop or resume reading from the socket. */
void link_pause(struct link *link, bool pause);

/* The lws protocol table entry that carries every link's callbacks. It
 * must be the vhost's first protocol: lws sends WSI_DESTROY there. */
int link_lws_callback(struct lws *wsi, int reason, void *user, void *in, size_t len);
#define LINK_LWS_PROTOCOL "samdock-eventd-stream"
