/* SPDX-License-Identifier: MIT */
/*
 * The renewal request and the refresh token store. The request is a plain
 * HTTP/1.1 POST through lws' client: headers appended in
 * CLIENT_APPEND_HANDSHAKE_HEADER, the JSON body written when lws offers
 * CLIENT_HTTP_WRITEABLE, the answer collected from RECEIVE_CLIENT_HTTP_READ.
 * lws sends every connection's WSI_DESTROY to protocols[0] (the streams' links),
 * so this request is found through lws' per-connection user pointer, never
 * through the opaque pointer that the links look at. Redirects are not
 * followed: the refresh token goes to AuthURL= and nowhere else.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <libwebsockets.h>
#include <json-c/json.h>
#include <openssl/evp.h>

#include "eventd-config-value.h"
#include "eventd-log.h"
#include "eventd-refresh.h"
#include "eventd-token.h"

#define REQUEST_TIMEOUT_USEC (30ULL * 1000000ULL)
#define REPLY_MAX (64 * 1024)
#define STORE_MAX (2 * TOKEN_MAX + 256)

struct refresh_request {
        sd_event *event;
        refresh_done_fn done;
        void *userdata;
        struct lws *wsi;
        bool in_connect;
        bool body_sent;
        bool completed;
        char *url;                      /* for messages */
        unsigned char *body;            /* LWS_PRE bytes, then the JSON */
        size_t body_len;
        char *reply;
        size_t reply_len;
        bool reply_too_large;
        unsigned status;
        sd_event_source *timer;
        sd_event_source *deliver;       /* reports from the loop, not from lws */
        int result;
        char *error;
        char *access_token;
        char *refresh_token;
};

static void secret_free(char **p, size_t len) {
        if (*p) {
                explicit_bzero(*p, len ? len : strlen(*p));
                free(*p);
        }
        *p = NULL;
}

/* Lets go of the connection; lws closes it on its next turn and its
 * remaining callbacks find no request. */
static void request_detach(struct refresh_request *r) {
        if (!r->wsi)
                return;
        lws_set_wsi_user(r->wsi, NULL);
        lws_set_timeout(r->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
        r->wsi = NULL;
}

struct refresh_request *refresh_request_free(struct refresh_request *r) {
        if (!r)
                return NULL;
        request_detach(r);
        sd_event_source_disable_unref(r->timer);
        sd_event_source_disable_unref(r->deliver);
        if (r->body)
                secret_free((char **) &r->body, LWS_PRE + r->body_len);
        secret_free(&r->reply, r->reply_len);
        secret_free(&r->access_token, 0);
        secret_free(&r->refresh_token, 0);
        free(r->error);
        free(r->url);
        sd_event_unref(r->event);
        free(r);
        return NULL;
}

static int on_deliver(sd_event_source *source, void *userdata) {
        struct refresh_request *r = userdata;
        char *access = r->access_token, *refresh = r->refresh_token;

        r->access_token = r->refresh_token = NULL;
        r->done(r, r->result, access, refresh, r->error, r->userdata);
        return 0;
}

/* Reads {accessToken, refreshToken} out of a 2xx answer. */
static int reply_parse(struct refresh_request *r) {
        json_tokener *tokener = json_tokener_new();
        json_object *o = NULL, *v;
        size_t len;
        int res = -EBADMSG;

        if (!tokener)
                return -ENOMEM;
        o = json_tokener_parse_ex(tokener, r->reply ? r->reply : "", (int) r->reply_len);
        json_tokener_free(tokener);

        if (json_object_object_get_ex(o, "accessToken", &v) &&
            json_object_is_type(v, json_type_string)) {
                r->access_token = strdup(json_object_get_string(v));
                len = r->access_token ? strlen(r->access_token) : 0;
                if (r->access_token && token_clean(r->access_token, &len) == 0)
                        res = 0;
        }
        if (res == 0 && json_object_object_get_ex(o, "refreshToken", &v) &&
            json_object_is_type(v, json_type_string)) {
                r->refresh_token = strdup(json_object_get_string(v));
                len = r->refresh_token ? strlen(r->refresh_token) : 0;
                if (!r->refresh_token || token_clean(r->refresh_token, &len) < 0)
                        res = -EBADMSG;
        }

        /* json-c's copies of the strings go the way of the reply. */
        if (json_object_object_get_ex(o, "accessToken", &v) &&
            json_object_is_type(v, json_type_string))
                explicit_bzero((char *) json_object_get_string(v),
                               (size_t) json_object_get_string_len(v));
        if (json_object_object_get_ex(o, "refreshToken", &v) &&
            json_object_is_type(v, json_type_string))
                explicit_bzero((char *) json_object_get_string(v),
                               (size_t) json_object_get_string_len(v));
        json_object_put(o);

        if (res < 0) {
                secret_free(&r->access_token, 0);
                secret_free(&r->refresh_token, 0);
        }
        return res;
}

/* The request is over (error is NULL for an answer): work out the result
 * and report it from the loop. */
static void request_complete(struct refresh_request *r, const char *error) {
        char text[400];

        if (r->completed)
                return;
        r->completed = true;
        request_detach(r);
        r->timer = sd_event_source_disable_unref(r->timer);

        if (error) {
                r->result = -EIO;
                snprintf(text, sizeof(text), "cannot reach the auth service at %s: %s", r->url,
                         error);
        } else if (r->status == 401 || r->status == 403) {
                r->result = -EACCES;
                snprintf(text, sizeof(text), "the auth service at %s refused the refresh "
                         "token (HTTP %u)", r->url, r->status);
        } else if (r->status < 200 || r->status > 299) {
                r->result = -EIO;
                snprintf(text, sizeof(text), "the auth service at %s answered HTTP %u", r->url,
                         r->status);
        } else if (r->reply_too_large) {
                r->result = -EBADMSG;
                snprintf(text, sizeof(text), "the auth service at %s answered with more than "
                         "%d bytes", r->url, REPLY_MAX);
        } else {
                r->result = reply_parse(r);
                snprintf(text, sizeof(text), "the auth service at %s answered without a "
                         "usable accessToken", r->url);
        }
        secret_free(&r->reply, r->reply_len);
        r->reply_len = 0;

        if (r->result < 0)
                r->error = strdup(text);
        (void) sd_event_source_set_enabled(r->deliver, SD_EVENT_ONESHOT);
}

static int on_timeout(sd_event_source *source, uint64_t usec, void *userdata) {
        request_complete(userdata, "no answer within 30 s");
        return 0;
}

static int append_headers(struct refresh_request *r, char **p, size_t room) {
        int n = snprintf(*p, room, "Content-Type: application/json\r\n"
                         "Accept: application/json\r\n"
                         "Content-Length: %zu\r\n", r->body_len);

        if (n < 0 || (size_t) n >= room)
                return -1;
        *p += n;
        return 0;
}

int refresh_lws_callback(struct lws *wsi, int reason, void *user, void *in, size_t len) {
        struct refresh_request *r = user;
        char buffer[LWS_PRE + 4096], *p;
        int n;

        switch (reason) {
        case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
                if (!r)
                        return 0;
                if (r->in_connect) {
                        /* lws_client_connect_via_info() fails; start reports. */
                        free(r->error);
                        r->error = strdup(in && *(char *) in ? (char *) in : "connection failed");
                        return 0;
                }
                /* TLS refusals are explained only in lws' own log. */
                request_complete(r, in && *(char *) in ? (const char *) in
                                    : log_library_last_error()[0] ? log_library_last_error()
                                    : "connection failed");
                return 0;

        case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER:
                if (!r)
                        return -1;
                if (append_headers(r, (char **) in, len) < 0)
                        return -1;
                lws_client_http_body_pending(wsi, 1);
                lws_callback_on_writable(wsi);
                return 0;

        case LWS_CALLBACK_CLIENT_HTTP_WRITEABLE:
                if (!r)
                        return -1;
                if (r->body_sent)
                        return 0;
                r->body_sent = true;
                n = lws_write(wsi, r->body + LWS_PRE, r->body_len, LWS_WRITE_HTTP_FINAL);
                lws_client_http_body_pending(wsi, 0);
                secret_free((char **) &r->body, LWS_PRE + r->body_len);
                if (n < 0) {
                        request_complete(r, "cannot send the request");
                        return -1;
                }
                return 0;

        case LWS_CALLBACK_ESTABLISHED_CLIENT_HTTP:
                if (!r)
                        return -1;
                r->status = lws_http_client_http_response(wsi);
                return 0;

        case LWS_CALLBACK_RECEIVE_CLIENT_HTTP:
                if (!r)
                        return -1;
                p = buffer + LWS_PRE;
                n = (int) (sizeof(buffer) - LWS_PRE);
                n = lws_http_client_read(wsi, &p, &n);
                explicit_bzero(buffer, sizeof(buffer));
                return n < 0 ? -1 : 0;

        case LWS_CALLBACK_RECEIVE_CLIENT_HTTP_READ:
                if (!r)
                        return -1;
                if (r->reply_len + len > REPLY_MAX) {
                        r->reply_too_large = true;
                        return 0;
                }
                p = realloc(r->reply, r->reply_len + len + 1);
                if (!p) {
                        request_complete(r, "out of memory");
                        return -1;
                }
                r->reply = p;
                memcpy(r->reply + r->reply_len, in, len);
                r->reply_len += len;
                r->reply[r->reply_len] = 0;
                return 0;

        case LWS_CALLBACK_COMPLETED_CLIENT_HTTP:
                if (!r)
                        return -1;
                request_complete(r, NULL);
                return -1;      /* one request per connection */

        case LWS_CALLBACK_WSI_DESTROY:
                /* Forwarded from protocols[0]: the connection is gone
                 * without a word to us before. */
                if (r) {
                        r->wsi = NULL;
                        request_complete(r, r->status ? NULL : "the connection was lost");
                }
                return 0;

        case LWS_CALLBACK_CLOSED_CLIENT_HTTP:
                if (r)
                        request_complete(r, r->status ? NULL
                                            : "the connection closed before the answer");
                return 0;

        default:
                return lws_callback_http_dummy(wsi, (enum lws_callback_reasons) reason, user,
                                               in, len);
        }
}

static int body_new(struct refresh_request *r, const char *refresh_token) {
        json_object *o = json_object_new_object(), *v;
        const char *text;
        int res = -ENOMEM;

        if (!o)
                return -ENOMEM;
        v = json_object_new_string(refresh_token);
        if (v && json_object_object_add(o, "refreshToken", v) == 0) {
                text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                      JSON_C_TO_STRING_NOSLASHESCAPE);
                r->body_len = strlen(text);
                r->body = malloc(LWS_PRE + r->body_len + 1);
                if (r->body) {
                        memcpy(r->body + LWS_PRE, text, r->body_len + 1);
                        res = 0;
                }
                explicit_bzero((char *) text, strlen(text));
                explicit_bzero((char *) json_object_get_string(v),
                               (size_t) json_object_get_string_len(v));
        } else
                json_object_put(v);
        json_object_put(o);
        return res;
}

int refresh_request_start(struct refresh_request **ret, sd_event *event,
                          struct lws_context *lws, const char *auth_url,
                          const char *refresh_token, refresh_done_fn done, void *userdata) {
        struct lws_client_connect_info info = {};
        struct config_url url = {};
        struct refresh_request *r;
        char host_header[300], *error = NULL;
        int res;

        if (!lws)
                return -ENOTCONN;
        res = config_url_parse(auth_url, &url, &error);
        free(error);
        if (res < 0)
                return res;

        r = calloc(1, sizeof(*r));
        if (!r) {
                config_url_release(&url);
                return -ENOMEM;
        }
        r->event = sd_event_ref(event);
        r->done = done;
        r->userdata = userdata;
        if (asprintf(&r->url, "%s" REFRESH_PATH, auth_url) < 0)
                r->url = NULL;
        if (r->url && strstr(r->url, "/" REFRESH_PATH))
                /* AuthURL= may end in '/'. */
                memmove(strstr(r->url, "/" REFRESH_PATH), strstr(r->url, REFRESH_PATH),
                        strlen(REFRESH_PATH) + 1);

        res = r->url ? body_new(r, refresh_token) : -ENOMEM;
        if (res >= 0)
                res = sd_event_add_defer(event, &r->deliver, on_deliver, r);
        if (res >= 0)
                res = sd_event_source_set_enabled(r->deliver, SD_EVENT_OFF);
        if (res >= 0)
                res = sd_event_add_time_relative(event, &r->timer, CLOCK_BOOTTIME,
                                                 REQUEST_TIMEOUT_USEC, 10000, on_timeout, r);
        if (res < 0)
                goto fail;

        if ((url.tls && url.port == 443) || (!url.tls && url.port == 80))
                snprintf(host_header, sizeof(host_header), "%s", url.host);
        else if (strchr(url.host, ':'))
                snprintf(host_header, sizeof(host_header), "[%s]:%u", url.host, url.port);
        else
                snprintf(host_header, sizeof(host_header), "%s:%u", url.host, url.port);

        info.context = lws;
        info.address = url.host;
        info.port = url.port;
        /* Certificates and host names are always checked; never add
         * LCCSCF_ALLOW_SELFSIGNED or a SKIP_ flag here. */
        info.ssl_connection = (url.tls ? LCCSCF_USE_SSL : 0) | LCCSCF_HTTP_NO_FOLLOW_REDIRECT;
        info.path = REFRESH_PATH;
        info.host = host_header;
        info.origin = host_header;
        info.method = "POST";
        info.alpn = "http/1.1";
        info.ietf_version_or_minus_one = -1;
        info.local_protocol_name = REFRESH_LWS_PROTOCOL;
        info.userdata = r;

        log_library_clear_error();
        r->in_connect = true;
        r->wsi = lws_client_connect_via_info(&info);
        r->in_connect = false;
        if (!r->wsi) {
                /* Reported like any other failure: from the loop. */
                char why[300];

                snprintf(why, sizeof(why), "%s", r->error ? r->error : "cannot connect");
                free(r->error);
                r->error = NULL;
                request_complete(r, why);
        }
        config_url_release(&url);
        *ret = r;
        return 0;

fail:
        config_url_release(&url);
        refresh_request_free(r);
        return res;
}

/* ---- the store ---- */

int refresh_store_path(char **ret, char **ret_error) {
        const char *state = getenv("STATE_DIRECTORY"), *home;
        char *dir = NULL, *path = NULL;

        *ret = NULL;
        *ret_error = NULL;
        if (state && state[0] == '/') {
                /* systemd made it; with several StateDirectory= entries the
                 * variable lists them all, separated by ':'. */
                dir = strndup(state, strcspn(state, ":"));
        } else if (geteuid() == 0)
                dir = strdup("/var/lib/samdock-eventd");
        else if ((home = getenv("XDG_STATE_HOME")) && home[0] == '/') {
                if (asprintf(&dir, "%s/samdock-eventd", home) < 0)
                        dir = NULL;
        } else if ((home = getenv("HOME")) && home[0] == '/') {
                if (asprintf(&dir, "%s/.local/state/samdock-eventd", home) < 0)
                        dir = NULL;
        } else {
                *ret_error = strdup("no state directory: neither STATE_DIRECTORY nor HOME is "
                                    "set");
                return -ENOENT;
        }
        if (!dir)
                return -ENOMEM;

        /* Each missing level in turn, as mkdir -p would. */
        for (char *slash = dir + 1; ; slash++) {
                if (*slash != '/' && *slash != 0)
                        continue;
                char saved = *slash;

                *slash = 0;
                if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
                        int r = -errno;

                        if (asprintf(ret_error, "cannot create the state directory %s: %s", dir,
                                     strerror(errno)) < 0)
                                *ret_error = NULL;
                        free(dir);
                        return r;
                }
                *slash = saved;
                if (saved == 0)
                        break;
        }

        if (asprintf(&path, "%s/refresh-token", dir) < 0)
                path = NULL;
        free(dir);
        if (!path)
                return -ENOMEM;
        *ret = path;
        return 0;
}

/* "sha256:HEX" of the seed, so that the store knows what it descends from
 * without holding the old token itself. */
static int origin_of(const char *seed, char out[8 + 64 + 1]) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int n = 0;

        if (!EVP_Digest(seed, strlen(seed), md, &n, EVP_sha256(), NULL) || n != 32)
                return -EIO;
        strcpy(out, "sha256:");
        for (unsigned i = 0; i < n; i++)
                snprintf(out + 7 + 2 * i, 3, "%02x", md[i]);
        return 0;
}

int refresh_store_load(const char *path, const char *seed, char **ret_token) {
        char buffer[STORE_MAX + 1], origin[80], *line2, *token;
        struct stat st;
        size_t len = 0, token_len;
        ssize_t n;
        int fd, r = -ENOENT;

        *ret_token = NULL;
        if (origin_of(seed, origin) < 0)
                return -EIO;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (st.st_mode & 077) ||
            st.st_uid != geteuid()) {
                close(fd);
                return -EPERM;
        }
        while (len < sizeof(buffer) - 1) {
                n = read(fd, buffer + len, sizeof(buffer) - 1 - len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                len += (size_t) n;
        }
        close(fd);
        buffer[len] = 0;

        /* "origin=sha256:HEX\nTOKEN\n" */
        line2 = strchr(buffer, '\n');
        if (line2 && strncmp(buffer, "origin=", 7) == 0 &&
            (size_t) (line2 - buffer) == 7 + strlen(origin) &&
            memcmp(buffer + 7, origin, strlen(origin)) == 0) {
                token_len = len - (size_t) (line2 + 1 - buffer);
                token = line2 + 1;
                if (token_clean(token, &token_len) == 0) {
                        *ret_token = strdup(token);
                        r = *ret_token ? 0 : -ENOMEM;
                }
        }
        explicit_bzero(buffer, sizeof(buffer));
        return r;
}

int refresh_store_save(const char *path, const char *seed, const char *token,
                       char **ret_error) {
        char origin[80], *temp = NULL, *dir = NULL, *text = NULL;
        int fd = -1, dir_fd, r = 0;
        size_t len;

        *ret_error = NULL;
        if (origin_of(seed, origin) < 0)
                return -EIO;
        dir = strdup(path);
        if (!dir || asprintf(&temp, "%s.XXXXXX", path) < 0 ||
            asprintf(&text, "origin=%s\n%s\n", origin, token) < 0) {
                free(dir);
                free(temp);
                return -ENOMEM;
        }
        *strrchr(dir, '/') = 0;
        len = strlen(text);

        /* mkostemp() creates it with mode 0600. */
        fd = mkostemp(temp, O_CLOEXEC);
        if (fd < 0) {
                r = -errno;
                goto finish;
        }
        for (size_t done = 0; done < len; ) {
                ssize_t n = write(fd, text + done, len - done);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        r = -errno;
                        goto finish;
                }
                done += (size_t) n;
        }
        if (fchmod(fd, 0600) < 0 || fsync(fd) < 0) {
                r = -errno;
                goto finish;
        }
        if (close(fd) < 0) {
                fd = -1;
                r = -errno;
                goto finish;
        }
        fd = -1;
        if (rename(temp, path) < 0) {
                r = -errno;
                goto finish;
        }
        /* The rename itself must reach the disk too. */
        dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dir_fd >= 0) {
                if (fsync(dir_fd) < 0)
                        r = -errno;
                close(dir_fd);
        } else
                r = -errno;

finish:
        if (fd >= 0)
                close(fd);
        if (r < 0) {
                if (asprintf(ret_error, "cannot store the renewed refresh token in %s: %s",
                             path, strerror(-r)) < 0)
                        *ret_error = NULL;
                (void) unlink(temp);
        }
        explicit_bzero(text, len);
        free(text);
        free(temp);
        free(dir);
        return r;
}
