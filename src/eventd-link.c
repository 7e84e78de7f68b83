/* SPDX-License-Identifier: MIT */
/*
 * One WebSocket over libwebsockets. A link holds one connection at a time;
 * every lws callback checks that it comes from that connection and ignores
 * the rest, so a connection the owner let go of can never reach it again.
 * Why a connection failed is worded here, TLS refusals included: lws tells
 * those only in its log.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libwebsockets.h>

#include "eventd-log.h"
#include "eventd-link.h"

/* What waits to be written; a server that does not read gets no more. */
#define LINK_QUEUE_MAX (1024 * 1024)

struct frame {
        struct frame *next;
        size_t len;
        unsigned char data[];   /* LWS_PRE bytes of room, then the frame */
};

struct link {
        char *name;
        const struct link_ops *ops;
        void *userdata;

        char *host;
        uint16_t port;
        bool tls;
        char *path;
        char *url;

        struct lws *wsi;                /* the one current connection, or NULL */
        bool in_connect;                /* inside lws_client_connect_via_info() */
        char open_error[512];           /* what lws said while we were inside it */
        bool established;               /* the WebSocket upgrade succeeded */
        bool paused;

        struct frame *out_head, *out_tail;
        size_t out_bytes;
};

int link_new(struct link **ret, const char *name, const struct link_ops *ops, void *userdata) {
        struct link *link = calloc(1, sizeof(*link));

        if (!link)
                return -ENOMEM;
        link->name = strdup(name);
        if (!link->name) {
                free(link);
                return -ENOMEM;
        }
        link->ops = ops;
        link->userdata = userdata;
        *ret = link;
        return 0;
}

struct link *link_free(struct link *link) {
        if (!link)
                return NULL;
        link_close(link);
        free(link->host);
        free(link->path);
        free(link->url);
        free(link->name);
        free(link);
        return NULL;
}

static void frames_clear(struct link *link) {
        while (link->out_head) {
                struct frame *f = link->out_head;

                link->out_head = f->next;
                /* The CONNECT frame carries the token. */
                explicit_bzero(f->data, LWS_PRE + f->len);
                free(f);
        }
        link->out_tail = NULL;
        link->out_bytes = 0;
}

/* The connection is no longer ours: forget what belonged to it. */
static void forget(struct link *link) {
        link->wsi = NULL;
        link->established = false;
        link->paused = false;
        frames_clear(link);
}

/* lws has let go of the connection, or is about to: tell the owner. */
static void end_with(struct link *link, struct link_end *end) {
        end->established = link->established;
        forget(link);
        link->ops->closed(link, end, link->userdata);
}

int link_configure(struct link *link, const struct link_target *target) {
        char *host = strdup(target->host), *path = strdup(target->path), *url = NULL;
        bool ipv6 = strchr(target->host, ':') != NULL;

        if (!host || !path ||
            asprintf(&url, "%s://%s%s%s:%u%s", target->tls ? "wss" : "ws", ipv6 ? "[" : "",
                     target->host, ipv6 ? "]" : "", target->port, target->path) < 0) {
                free(host);
                free(path);
                return -ENOMEM;
        }

        free(link->host);
        free(link->path);
        free(link->url);
        link->host = host;
        link->path = path;
        link->url = url;
        link->port = target->port;
        link->tls = target->tls;
        return 0;
}

const char *link_url(const struct link *link) {
        return link->url;
}

int link_open(struct link *link, struct lws_context *context, const char *query,
              const char **ret_why) {
        struct lws_client_connect_info info = {};
        char path[1024], host_header[300];
        struct lws *wsi;

        if (link->wsi || !link->host) {
                *ret_why = link->wsi ? "already connected" : "not configured";
                return link->wsi ? -EBUSY : -EINVAL;
        }

        snprintf(path, sizeof(path), "%s?%s", link->path, query);
        if ((link->tls && link->port == 443) || (!link->tls && link->port == 80))
                snprintf(host_header, sizeof(host_header), "%s", link->host);
        else if (strchr(link->host, ':'))
                snprintf(host_header, sizeof(host_header), "[%s]:%u", link->host, link->port);
        else
                snprintf(host_header, sizeof(host_header), "%s:%u", link->host, link->port);

        info.context = context;
        info.address = link->host;
        info.port = link->port;
        /* Certificates and host names are always checked; nothing here may
         * ever set LCCSCF_ALLOW_SELFSIGNED or the SKIP_ flags. */
        info.ssl_connection = (link->tls ? LCCSCF_USE_SSL : 0) | LCCSCF_HTTP_NO_FOLLOW_REDIRECT;
        info.path = path;
        info.host = host_header;
        info.origin = host_header;
        info.alpn = "http/1.1";
        info.ietf_version_or_minus_one = -1;
        info.local_protocol_name = LINK_LWS_PROTOCOL;
        info.opaque_user_data = link;

        link->open_error[0] = 0;
        log_library_clear_error();
        link->in_connect = true;
        wsi = lws_client_connect_via_info(&info);
        link->in_connect = false;
        if (!wsi) {
                *ret_why = link->open_error[0] ? link->open_error : "cannot start the connection";
                return -EIO;
        }
        link->wsi = wsi;
        return 0;
}

void link_close(struct link *link) {
        if (!link->wsi)
                return;
        /* Its remaining callbacks find no link and are ignored. */
        lws_set_opaque_user_data(link->wsi, NULL);
        lws_set_timeout(link->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
        forget(link);
}

bool link_is_open(const struct link *link) {
        return link->wsi != NULL;
}

bool link_established(const struct link *link) {
        return link->established;
}

int link_send(struct link *link, const char *text) {
        size_t len = strlen(text);
        struct frame *f;

        if (!link->wsi)
                return -ENOTCONN;
        if (link->out_bytes + len > LINK_QUEUE_MAX)
                return -ENOBUFS;

        f = malloc(sizeof(*f) + LWS_PRE + len);
        if (!f)
                return -ENOMEM;
        f->next = NULL;
        f->len = len;
        memcpy(f->data + LWS_PRE, text, len);

        if (link->out_tail)
                link->out_tail->next = f;
        else
                link->out_head = f;
        link->out_tail = f;
        link->out_bytes += len;

        lws_callback_on_writable(link->wsi);
        return 0;
}

void link_pause(struct link *link, bool pause) {
        if (!link->wsi || link->paused == pause)
                return;
        link->paused = pause;
        lws_rx_flow_control(link->wsi, pause ? 0 : 1);
}

static void connection_error(struct link *link, struct lws *wsi, const char *in) {
        unsigned status = lws_http_client_http_response(wsi);
        bool auth = status == 401 || status == 403;
        const char *certificate;
        char why[512];

        if (auth)
                snprintf(why, sizeof(why), "the server refused the WebSocket upgrade "
                         "with HTTP %u", status);
        else if (status >= 300 && status < 400)
                /* Following it would hand the token to wherever it points. */
                snprintf(why, sizeof(why), "the server answered the WebSocket upgrade "
                         "with HTTP %u, a redirect, which is never followed; set URL= to "
                         "the server it points to if that is the right one", status);
        else if (status && status != 101)
                snprintf(why, sizeof(why), "the server answered the WebSocket upgrade "
                         "with HTTP %u", status);
        else if ((certificate = strstr(log_library_last_error(), "SSL error: "))) {
                /* lws tells why it refused a certificate only in its log:
                 * "SSL error: hostname mismatch (preverify_ok=0;err=62;...)". */
                size_t len = strcspn(certificate + 11, "(");

                while (len > 0 && certificate[11 + len - 1] == ' ')
                        len--;
                snprintf(why, sizeof(why), "TLS: the server's certificate was refused: %.*s",
                         (int) len, certificate + 11);
        } else if (log_library_last_error()[0])
                snprintf(why, sizeof(why), "connection failed: %.100s (%.180s)",
                         in && *in ? in : "unknown error", log_library_last_error());
        else
                snprintf(why, sizeof(why), "connection failed: %.200s",
                         in && *in ? in : "unknown error");

        if (link->in_connect) {
                /* Failed before any I/O; link_open() reports it. */
                snprintf(link->open_error, sizeof(link->open_error), "%s", why);
                return;
        }

        /* lws frees this wsi after the callback: let go without killing it. */
        end_with(link, &(struct link_end) {
                .why = why,
                .http_status = status,
                .auth_refused = auth,
        });
}

/* A message may arrive in several callbacks (WebSocket fragments, or one
 * large frame read in parts); the owner puts it together. */
static void receive(struct link *link, struct lws *wsi, const char *in, size_t len) {
        bool final = lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0;

        link->ops->receive(link, in, len, lws_frame_is_binary(wsi), final, link->userdata);
}

static int write_one(struct link *link, struct lws *wsi) {
        struct frame *f = link->out_head;
        int n;

        if (!f)
                return 0;

        n = lws_write(wsi, f->data + LWS_PRE, f->len, LWS_WRITE_TEXT);
        link->out_head = f->next;
        if (!link->out_head)
                link->out_tail = NULL;
        link->out_bytes -= f->len;
        explicit_bzero(f->data + LWS_PRE, f->len);
        free(f);

        if (n < 0) {
                struct link_end end = {
                        .why = "write to the server failed",
                        .established = link->established,
                };

                link_close(link);
                link->ops->closed(link, &end, link->userdata);
                return -1;
        }
        if (link->out_head)
                lws_callback_on_writable(wsi);
        return 0;
}

int link_lws_callback(struct lws *wsi, int reason, void *user, void *in, size_t len) {
        struct link *link = wsi ? lws_get_opaque_user_data(wsi) : NULL;
        bool current = link && link->wsi == wsi;

        switch (reason) {
        case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
                if (current || (link && link->in_connect))
                        connection_error(link, wsi, in);
                return 0;

        case LWS_CALLBACK_CLIENT_ESTABLISHED:
                if (!current)
                        return -1;
                link->established = true;
                log_debug("%s: WebSocket open", link->name);
                return 0;

        case LWS_CALLBACK_CLIENT_RECEIVE:
                if (!current)
                        return -1;
                receive(link, wsi, in, len);
                return link->wsi == wsi ? 0 : -1;

        case LWS_CALLBACK_CLIENT_WRITEABLE:
                if (!current)
                        return -1;
                return write_one(link, wsi);

        case LWS_CALLBACK_CLIENT_CLOSED:
                if (current)
                        end_with(link, &(struct link_end) { .why = "the connection was closed" });
                return 0;

        case LWS_CALLBACK_WSI_DESTROY:
                /* The last word about every connection, whatever came before. */
                if (current)
                        end_with(link, &(struct link_end) { .why = "the connection was lost" });
                return 0;

        default:
                return lws_callback_http_dummy(wsi, reason, user, in, len);
        }
}
