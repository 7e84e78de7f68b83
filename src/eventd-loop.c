/* SPDX-License-Identifier: MIT */
/*
 * Why this shape: Debian 12's libwebsockets 4.1 has neither external-poll
 * callbacks nor an sd-event backend, so sd-event cannot drive lws. The
 * other way round works: lws' poll() is the outer wait, and sd-event's
 * epoll fd is adopted into it as a raw file descriptor, so one poll() wakes
 * for either side. sd-event keeps what it is good at: signals, the
 * watchdog, CLOCK_BOOTTIME timers, inotify, child processes and sd-bus.
 * Each turn: sd_event_prepare(); if nothing is pending, block in
 * lws_service() (which returns after one poll() and its dispatch), then
 * sd_event_wait(0) and sd_event_dispatch(). lws computes its own poll
 * timeout from its internal timers; our timers live in sd-event and wake
 * the poll through the adopted fd. No busy loop: poll() is level-triggered
 * and sd_event_wait(0) drains what made the fd readable.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <libwebsockets.h>

#include "eventd-link.h"
#include "eventd-log.h"
#include "eventd-loop.h"
#include "eventd-refresh.h"

#define LOOP_LWS_PROTOCOL "samdock-eventd-loop"

static int loop_lws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                             void *in, size_t len) {
        /* The adopted sd-event fd only has to wake poll(); sd-event itself
         * reads it after lws_service() returns. */
        return 0;
}

static int link_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                         void *in, size_t len) {
        const struct lws_protocols *protocol = wsi ? lws_get_protocol(wsi) : NULL;

        /* lws gives every connection's WSI_DESTROY to protocols[0]; a token
         * renewal's goes on to its own protocol. */
        if (reason == LWS_CALLBACK_WSI_DESTROY && user && protocol &&
            strcmp(protocol->name, REFRESH_LWS_PROTOCOL) == 0)
                return refresh_lws_callback(wsi, (int) reason, user, in, len);
        return link_lws_callback(wsi, (int) reason, user, in, len);
}

static int refresh_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                            void *in, size_t len) {
        return refresh_lws_callback(wsi, (int) reason, user, in, len);
}

static const struct lws_protocols protocols[] = {
        /* First: lws sends every connection's WSI_DESTROY to protocols[0]. */
        { LINK_LWS_PROTOCOL, link_callback, 0, 65536, 0, NULL, 0 },
        { LOOP_LWS_PROTOCOL, loop_lws_callback, 0, 0, 0, NULL, 0 },
        /* Token renewal requests (HTTP POST to AuthURL=). */
        { REFRESH_LWS_PROTOCOL, refresh_callback, 0, 0, 0, NULL, 0 },
        { NULL, NULL, 0, 0, 0, NULL, 0 },
};

static void lws_log(int level, const char *line) {
        log_library_line(level & (LLL_ERR | LLL_WARN) ? LOG_WARNING : LOG_DEBUG, "lws", line);
}

int loop_lws_new(struct lws_context **ret, sd_event *event, const struct loop_settings *settings) {
        struct lws_context_creation_info info = {};
        struct lws_context *lws;
        lws_sock_file_fd_type fd;
        char proxy[300] = "";
        int event_fd;

        lws_set_log_level(LLL_ERR | LLL_WARN | (log_max_level >= LOG_DEBUG ? LLL_NOTICE : 0),
                          lws_log);

        info.port = CONTEXT_PORT_NO_LISTEN;
        info.protocols = protocols;
        info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        info.client_ssl_ca_filepath = settings->ca_file;
        /* CAFile= replaces the system store (lws would otherwise add both). */
        if (settings->ca_file)
                info.options |= LWS_SERVER_OPTION_DISABLE_OS_CA_CERTS;
        info.gid = (gid_t) -1;
        info.uid = (uid_t) -1;
        info.fd_limit_per_thread = 64;
        /* An empty proxy keeps lws from reading http_proxy on its own: the
         * manager decides (Proxy=, HTTPS_PROXY, NO_PROXY). lws wants
         * "host:port", with brackets around an IPv6 literal. */
        if (settings->proxy_host)
                snprintf(proxy, sizeof(proxy), "%s%s%s:%u",
                         strchr(settings->proxy_host, ':') ? "[" : "", settings->proxy_host,
                         strchr(settings->proxy_host, ':') ? "]" : "", settings->proxy_port);
        info.http_proxy_address = proxy;
        info.http_proxy_port = settings->proxy_host ? settings->proxy_port : 0;

        lws = lws_create_context(&info);
        if (!lws)
                return log_error_errno(EIO, "Cannot create the libwebsockets context: %s",
                                       log_library_last_error()[0] ? log_library_last_error()
                                                                   : "unknown error");

        /* A duplicate, because lws closes what it adopts when it lets go. */
        event_fd = fcntl(sd_event_get_fd(event), F_DUPFD_CLOEXEC, 3);
        if (event_fd < 0) {
                lws_context_destroy(lws);
                return log_error_errno(errno, "Cannot duplicate the event fd: %m");
        }
        fd.filefd = event_fd;
        if (!lws_adopt_descriptor_vhost(lws_get_vhost_by_name(lws, "default"),
                                        LWS_ADOPT_RAW_FILE_DESC, fd, LOOP_LWS_PROTOCOL, NULL)) {
                close(event_fd);
                lws_context_destroy(lws);
                return log_error_errno(EIO, "Cannot adopt the event fd into libwebsockets");
        }

        *ret = lws;
        return 0;
}

void loop_lws_free(struct lws_context *lws) {
        if (lws)
                lws_context_destroy(lws);
}

int loop_run(sd_event *event, struct lws_context **lws) {
        int r, code;

        for (;;) {
                if (sd_event_get_state(event) == SD_EVENT_FINISHED)
                        break;

                r = sd_event_prepare(event);
                if (r < 0)
                        return log_error_errno(r, "sd_event_prepare() failed: %m");
                if (r == 0) {
                        /* Nothing pending on our side: sleep in lws' poll(). */
                        if (lws_service(*lws, 0) < 0)
                                return log_error_errno(EIO, "lws_service() failed");
                        r = sd_event_wait(event, 0);
                        if (r < 0)
                                return log_error_errno(r, "sd_event_wait() failed: %m");
                } else if (lws_service(*lws, -1) < 0)
                        /* Ours is ready now; give lws a turn that does not wait. */
                        return log_error_errno(EIO, "lws_service() failed");

                if (r > 0) {
                        r = sd_event_dispatch(event);
                        if (r < 0)
                                return log_error_errno(r, "sd_event_dispatch() failed: %m");
                }
        }

        r = sd_event_get_exit_code(event, &code);
        return r < 0 ? r : code;
}
