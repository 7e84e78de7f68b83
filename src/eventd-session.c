/* SPDX-License-Identifier: MIT */
/*
 * The Engine.IO / Socket.IO session of one stream: every decision about the
 * server's text frames and the heartbeat, none of the I/O. The stream feeds
 * it frames and the time and carries out what it answers, so the protocol
 * can be driven frame by frame in a unit test and a fuzzer.
 */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eventd-time.h"
#include "eventd-session.h"

/* Events that come before the CONNECT reply (a recovering server replays
 * missed packets first) wait for it; this many, and this much text, at
 * most. What does not fit is dropped, and the recovery is then reported as
 * incomplete, so that subscribers refresh. */
#define EARLY_EVENTS_MAX 10000
#define EARLY_BYTES_MAX (16 * 1024 * 1024)
/* From the first byte to the namespace's CONNECT reply. */
#define HANDSHAKE_TIMEOUT_USEC (20 * USEC_PER_SEC)

struct session {
        unsigned engine_io;
        size_t max_event_size;
        const struct session_ops *ops;
        void *userdata;

        /* one message that may come in pieces */
        char *rx;
        size_t rx_len, rx_cap;
        bool rx_in_message, rx_binary, rx_oversize;

        /* this link */
        bool open_seen;
        bool namespace_connected;
        uint64_t ping_interval_usec, ping_timeout_usec;
        uint64_t handshake_deadline, watchdog_deadline, ping_due, pong_deadline;
        bool sent_pid;
        unsigned skip_attachments;
        json_object **early;            /* events before the CONNECT reply */
        size_t n_early;
        size_t early_bytes;             /* their text */
        unsigned early_lost;            /* dropped for want of room */

        /* across links */
        char pid[64];
        char offset[64];
        int64_t next_ack_id;
};

int session_new(struct session **ret, const struct session_ops *ops, void *userdata) {
        struct session *session = calloc(1, sizeof(*session));

        if (!session)
                return -ENOMEM;
        session->engine_io = 4;
        session->max_event_size = 1024 * 1024;
        session->ops = ops;
        session->userdata = userdata;
        *ret = session;
        return 0;
}

static void early_clear(struct session *session) {
        bool big = session->early_bytes > 1024 * 1024;

        for (size_t i = 0; i < session->n_early; i++)
                json_object_put(session->early[i]);
        free(session->early);
        session->early = NULL;
        session->n_early = 0;
        session->early_bytes = 0;
        /* Many small objects leave the heap in pieces that free() keeps. */
        if (big)
                malloc_trim(0);
}

static void rx_reset(struct session *session) {
        free(session->rx);
        session->rx = NULL;
        session->rx_len = session->rx_cap = 0;
        session->rx_in_message = session->rx_oversize = session->rx_binary = false;
}

struct session *session_free(struct session *session) {
        if (!session)
                return NULL;
        rx_reset(session);
        early_clear(session);
        free(session);
        return NULL;
}

void session_configure(struct session *session, unsigned engine_io, size_t max_event_size) {
        session->engine_io = engine_io;
        session->max_event_size = max_event_size;
}

unsigned session_engine_io(const struct session *session) {
        return session->engine_io;
}

void session_begin(struct session *session, uint64_t now) {
        session->handshake_deadline = now + HANDSHAKE_TIMEOUT_USEC;
        session->early_lost = 0;
}

void session_end(struct session *session) {
        session->open_seen = session->namespace_connected = false;
        session->handshake_deadline = session->watchdog_deadline = 0;
        session->ping_due = session->pong_deadline = 0;
        session->skip_attachments = 0;
        rx_reset(session);
        early_clear(session);
}

void session_forget_recovery(struct session *session) {
        session->pid[0] = session->offset[0] = 0;
}

static void dropped(struct session *session, enum session_drop why) {
        if (session->ops->dropped)
                session->ops->dropped(session, why, session->userdata);
}

static enum session_action close_for(struct session_result *ret, const char *why) {
        snprintf(ret->why, sizeof(ret->why), "%s", why);
        return SESSION_CLOSE;
}

static enum session_action handle_open(struct session *session, const char *data, size_t len,
                                       uint64_t now, struct session_result *ret) {
        struct eio_open open;

        if (session->open_seen || eio_open_parse(data, len, &open) < 0)
                return close_for(ret, "malformed Engine.IO handshake from the server");
        session->open_seen = true;
        session->ping_interval_usec = open.ping_interval_ms * USEC_PER_MSEC;
        session->ping_timeout_usec = open.ping_timeout_ms * USEC_PER_MSEC;

        /* Engine.IO 4: the server pings and we watch; 3: we ping. */
        if (session->engine_io == 4)
                session->watchdog_deadline = now + session->ping_interval_usec +
                                             session->ping_timeout_usec;
        else
                session->ping_due = now + session->ping_interval_usec;
        ret->rearm = true;
        return SESSION_OPENED;
}

/* One EVENT to the owner, with the recovery offset taken off first. */
static void deliver_event(struct session *session, struct sio_packet *p) {
        /* While a session is recoverable the server appends the offset to
         * every event it sends (acks excepted), as its last argument. */
        if (session->pid[0] && json_object_array_length(p->data) >= 2) {
                json_object *last = json_object_array_get_idx(p->data,
                                        json_object_array_length(p->data) - 1);

                if (json_object_is_type(last, json_type_string) &&
                    sio_event_take_offset(p, session->offset, sizeof(session->offset)) < 0) {
                        dropped(session, SESSION_DROP_MALFORMED);
                        return;
                }
        }
        if (session->ops->event)
                session->ops->event(session, p, session->userdata);
}

/* The fast path: -EAGAIN when the packet has to go the slow way. */
static int deliver_event_view(struct session *session, const struct sio_event_view *v) {
        size_t n_args = v->n_args;
        const char *offset = NULL;
        size_t offset_len = 0;
        int r;

        if (session->pid[0] && n_args >= 2 && v->arg[n_args - 1][0] == '"') {
                offset = v->arg[n_args - 1] + 1;
                offset_len = v->arg_len[n_args - 1] - 2;
                if (!json_view_is_plain_string(v->arg[n_args - 1], v->arg_len[n_args - 1]) ||
                    offset_len == 0 || offset_len >= sizeof(session->offset))
                        return -EAGAIN;
                n_args--;
        }

        r = session->ops->event_view(session, v, n_args, session->userdata);
        if (r < 0)
                return r;
        if (offset) {
                memcpy(session->offset, offset, offset_len);
                session->offset[offset_len] = 0;
        }
        return 0;
}

void session_release_early(struct session *session) {
        /* An event handler that ends the link empties the list (session_end()),
         * which ends this loop too. */
        for (size_t i = 0; i < session->n_early; i++) {
                struct sio_packet p = { .type = SIO_EVENT, .nsp = "/", .ack_id = SIO_NO_ACK_ID };

                p.data = session->early[i];
                session->early[i] = NULL;
                if (session->namespace_connected)
                        deliver_event(session, &p);
                sio_packet_release(&p);
        }
        free(session->early);
        session->early = NULL;
        session->n_early = 0;
}

static enum session_action handle_connect_reply(struct session *session,
                                                const struct sio_packet *p,
                                                struct session_result *ret) {
        struct sio_connect_reply reply = {};
        int r;

        if (session->namespace_connected)
                return SESSION_CONTINUE;

        r = sio_connect_reply_parse(p, &reply);
        if (r == -EPROTO && session->engine_io == 3)
                r = 0;  /* Socket.IO 2 sends no sid with CONNECT. */
        if (r == -EPROTO) {
                ret->slow_retry = true;
                return close_for(ret, "the server answered CONNECT without a sid, as "
                                 "Socket.IO 2 servers do; set EngineIO=3 for such a server");
        }
        if (r < 0)
                return close_for(ret, "malformed CONNECT reply from the server");

        ret->recovered = session->sent_pid && reply.pid[0] &&
                         strcmp(reply.pid, session->pid) == 0;
        /* Replayed, but not all of it kept: that is no recovery. */
        ret->early_lost = session->early_lost;
        if (session->early_lost > 0)
                ret->recovered = false;
        if (reply.pid[0]) {
                if (!ret->recovered)
                        session->offset[0] = 0;
                snprintf(session->pid, sizeof(session->pid), "%s", reply.pid);
        } else
                session->pid[0] = session->offset[0] = 0;

        session->namespace_connected = true;
        session->handshake_deadline = 0;
        ret->rearm = true;
        return SESSION_CONNECTED;
}

/* Does the server's text speak of credentials? */
static bool mentions_auth(const char *message) {
        static const char *const words[] = {
                "unauthori", "forbidden", "jwt", "token", "auth", "credential", "denied",
        };

        for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
                if (strcasestr(message, words[i]))
                        return true;
        return false;
}

/*
 * CONNECT_ERROR answers our CONNECT. Socket.IO middleware sends it to
 * refuse credentials, which no retry with the same token will change; any
 * other reason (or one after we are connected, where it makes no sense) is
 * not worth stopping for: back off slowly, or drop the packet.
 */
static enum session_action handle_connect_error(struct session *session,
                                                const struct sio_packet *p,
                                                struct session_result *ret) {
        const char *message = NULL;
        json_object *m;

        if (session->namespace_connected) {
                dropped(session, SESSION_DROP_MALFORMED);
                return SESSION_CONTINUE;
        }
        if (json_object_is_type(p->data, json_type_string))
                message = json_object_get_string(p->data);
        else if (json_object_object_get_ex(p->data, "message", &m) &&
                 json_object_is_type(m, json_type_string))
                message = json_object_get_string(m);

        snprintf(ret->why, sizeof(ret->why), "the server refused CONNECT: %.200s",
                 message && *message ? message : "no reason given");
        if (!message || !*message || mentions_auth(message))
                return SESSION_AUTH_FAILED;
        ret->slow_retry = true;
        return SESSION_CLOSE;
}

/* Keeps an EVENT (len bytes of text) that came before the CONNECT reply;
 * it owns p->data then. */
static enum session_action keep_early(struct session *session, struct sio_packet *p,
                                      size_t len, struct session_result *ret) {
        if (session->n_early >= EARLY_EVENTS_MAX ||
            session->early_bytes + len > EARLY_BYTES_MAX) {
                session->early_lost++;
                dropped(session, SESSION_DROP_NO_ROOM);
                return SESSION_CONTINUE;
        }
        if (session->n_early % 64 == 0) {
                json_object **e = realloc(session->early,
                                          (session->n_early + 64) * sizeof(json_object *));

                if (!e)
                        return close_for(ret, "out of memory");
                session->early = e;
        }
        session->early[session->n_early++] = p->data;
        session->early_bytes += len;
        p->data = NULL;
        return SESSION_CONTINUE;
}

static enum session_action handle_message(struct session *session, const char *data, size_t len,
                                          struct session_result *ret) {
        enum session_action action = SESSION_CONTINUE;
        struct sio_packet p = {};
        struct sio_event_view view;

        /* Most packets are events in the usual shape: no JSON objects for them. */
        if (session->namespace_connected && session->ops->event_view && len > 0 &&
            data[0] == '2' && sio_event_view(data, len, &view) == 0 &&
            deliver_event_view(session, &view) == 0)
                return SESSION_CONTINUE;

        if (sio_decode(data, len, &p) < 0) {
                dropped(session, SESSION_DROP_MALFORMED);
                return SESSION_CONTINUE;
        }
        if (strcmp(p.nsp, "/") != 0) {
                /* We only ever join the main namespace. */
                dropped(session, SESSION_DROP_MALFORMED);
                goto finish;
        }

        switch (p.type) {
        case SIO_CONNECT:
                action = handle_connect_reply(session, &p, ret);
                break;
        case SIO_DISCONNECT:
                action = close_for(ret, "the server disconnected this client");
                break;
        case SIO_CONNECT_ERROR:
                action = handle_connect_error(session, &p, ret);
                break;
        case SIO_EVENT:
                if (session->namespace_connected)
                        deliver_event(session, &p);
                else
                        action = keep_early(session, &p, len, ret);
                break;
        case SIO_ACK:
                if (session->ops->ack)
                        session->ops->ack(session, p.ack_id, p.data, session->userdata);
                break;
        case SIO_BINARY_EVENT:
        case SIO_BINARY_ACK:
                /* Well-formed but with no JSON-only form: skip its attachments. */
                session->skip_attachments = p.attachments;
                dropped(session, SESSION_DROP_BINARY);
                break;
        }
finish:
        sio_packet_release(&p);
        return action;
}

static enum session_action handle_text(struct session *session, const char *frame, size_t len,
                                       uint64_t now, struct session_result *ret) {
        struct eio_packet packet;

        if (eio_decode(frame, len, &packet) < 0) {
                dropped(session, SESSION_DROP_MALFORMED);
                return SESSION_CONTINUE;
        }

        switch (packet.type) {
        case EIO_OPEN:
                return handle_open(session, packet.data, packet.len, now, ret);
        case EIO_PING:
                if (session->engine_io != 4 || packet.len > sizeof(ret->frame) - 2) {
                        /* Engine.IO 3 servers do not ping; answering would be
                         * a ping in the wrong direction. */
                        dropped(session, SESSION_DROP_MALFORMED);
                        return SESSION_CONTINUE;
                }
                snprintf(ret->frame, sizeof(ret->frame), "3%.*s", (int) packet.len, packet.data);
                snprintf(ret->why, sizeof(ret->why), "cannot answer a ping");
                session->watchdog_deadline = now + session->ping_interval_usec +
                                             session->ping_timeout_usec;
                ret->rearm = true;
                return SESSION_SEND;
        case EIO_PONG:
                if (session->engine_io == 3) {
                        session->pong_deadline = 0;
                        ret->rearm = true;
                }
                return SESSION_CONTINUE;
        case EIO_CLOSE:
                return close_for(ret, "the server closed the Engine.IO session");
        case EIO_MESSAGE:
                if (!session->open_seen) {
                        dropped(session, SESSION_DROP_MALFORMED);
                        return SESSION_CONTINUE;
                }
                return handle_message(session, packet.data, packet.len, ret);
        case EIO_UPGRADE:
        case EIO_NOOP:
                break;
        }
        return SESSION_CONTINUE;
}

/* Appends a piece of the current message; false when out of memory. */
static bool rx_append(struct session *session, const char *data, size_t len) {
        if (session->rx_oversize)
                return true;
        if (len > session->max_event_size - session->rx_len) {
                session->rx_oversize = true;
                free(session->rx);
                session->rx = NULL;
                session->rx_len = session->rx_cap = 0;
                return true;
        }
        if (len == 0)
                return true;
        if (session->rx_len + len > session->rx_cap) {
                size_t cap = session->rx_cap ? session->rx_cap : 4096;
                char *p;

                while (cap < session->rx_len + len)
                        cap *= 2;
                if (cap > session->max_event_size)
                        cap = session->max_event_size;
                p = realloc(session->rx, cap);
                if (!p)
                        return false;
                session->rx = p;
                session->rx_cap = cap;
        }
        memcpy(session->rx + session->rx_len, data, len);
        session->rx_len += len;
        return true;
}

enum session_action session_receive(struct session *session, const char *data, size_t len,
                                    bool binary, bool final, uint64_t now,
                                    struct session_result *ret) {
        enum session_action action;

        *ret = (struct session_result) {};

        if (!session->rx_in_message) {
                session->rx_in_message = true;
                session->rx_binary = binary;
                session->rx_oversize = false;
                session->rx_len = 0;
        }
        if (!rx_append(session, data, len))
                return close_for(ret, "out of memory");
        if (!final)
                return SESSION_CONTINUE;
        session->rx_in_message = false;

        if (session->rx_binary && session->skip_attachments > 0) {
                session->skip_attachments--;
                return SESSION_CONTINUE;
        }
        if (session->rx_oversize) {
                dropped(session, SESSION_DROP_OVERSIZE);
                return SESSION_CONTINUE;
        }
        if (session->rx_binary) {
                dropped(session, SESSION_DROP_BINARY);
                return SESSION_CONTINUE;
        }
        /* A text frame where an attachment was due: the binary packet was a
         * lie; stop waiting for the rest. */
        session->skip_attachments = 0;

        action = handle_text(session, session->rx, session->rx_len, now, ret);

        /* Large buffers are not kept between messages. (When a handler ended
         * the link, session_end() has already let go of it.) */
        if (session->rx_cap > 65536) {
                free(session->rx);
                session->rx = NULL;
                session->rx_cap = 0;
        }
        session->rx_len = 0;
        return action;
}

enum session_action session_tick(struct session *session, uint64_t now,
                                 struct session_result *ret) {
        *ret = (struct session_result) {};

        if (session->handshake_deadline && now >= session->handshake_deadline)
                return close_for(ret, "the server did not complete the Socket.IO handshake "
                                 "in time");
        if (session->watchdog_deadline && now >= session->watchdog_deadline) {
                snprintf(ret->why, sizeof(ret->why), "no ping from the server for %.1f s",
                         (double) (session->ping_interval_usec + session->ping_timeout_usec) /
                         USEC_PER_SEC);
                return SESSION_CLOSE;
        }
        if (session->pong_deadline && now >= session->pong_deadline) {
                snprintf(ret->why, sizeof(ret->why), "no pong from the server within %.1f s",
                         (double) session->ping_timeout_usec / USEC_PER_SEC);
                return SESSION_CLOSE;
        }

        ret->rearm = true;
        if (session->ping_due && now >= session->ping_due && !session->pong_deadline) {
                /* Engine.IO 3: the client pings. */
                snprintf(ret->frame, sizeof(ret->frame), "2");
                snprintf(ret->why, sizeof(ret->why), "cannot send a ping");
                session->pong_deadline = now + session->ping_timeout_usec;
                session->ping_due = now + session->ping_interval_usec;
                return SESSION_SEND;
        }
        return SESSION_CONTINUE;
}

uint64_t session_next_deadline(const struct session *session) {
        uint64_t next = 0;
        const uint64_t deadlines[] = {
                session->handshake_deadline, session->watchdog_deadline,
                session->ping_due, session->pong_deadline,
        };

        for (size_t i = 0; i < sizeof(deadlines) / sizeof(deadlines[0]); i++)
                if (deadlines[i] && (!next || deadlines[i] < next))
                        next = deadlines[i];
        if (session->pong_deadline && session->ping_due &&
            session->ping_due < session->pong_deadline && next == session->ping_due)
                /* No second ping while one is unanswered. */
                next = session->pong_deadline;
        return next;
}

int session_encode_connect(struct session *session, const char *token, char **ret) {
        json_object *auth;
        int r;

        *ret = NULL;
        if (session->engine_io == 3) {
                /* Socket.IO 2 servers join the main namespace by themselves and
                 * send `40`; a CONNECT from us would be a second one. */
                return 0;
        }

        auth = json_object_new_object();
        if (!auth)
                return -ENOMEM;
        if (token)
                json_object_object_add(auth, "token", json_object_new_string(token));
        session->sent_pid = session->pid[0] != 0;
        if (session->sent_pid) {
                json_object_object_add(auth, "pid", json_object_new_string(session->pid));
                json_object_object_add(auth, "offset", json_object_new_string(session->offset));
        }

        r = sio_encode_connect(NULL, auth, ret);
        json_object_put(auth);
        return r;
}

int session_encode_emit(const struct session *session, const char *name, json_object *arg,
                        int64_t ack_id, char **ret) {
        *ret = NULL;
        if (!session->namespace_connected)
                return -ENOTCONN;
        return sio_encode_event(NULL, ack_id, name, arg, ret);
}

int64_t session_next_ack_id(struct session *session) {
        if (session->next_ack_id >= 999999999999999LL)
                session->next_ack_id = 0;
        return session->next_ack_id++;
}

int session_format_query(const struct session *session, char *buf, size_t size) {
        return snprintf(buf, size, "EIO=%u&transport=websocket", session->engine_io);
}

const char *session_explain_refusal(const struct session *session, unsigned http_status) {
        /* A Socket.IO 3/4 server answers EIO=3 with HTTP 400 before the upgrade. */
        if (http_status == 400 && session->engine_io == 3)
                return "the server refused Engine.IO 3 (HTTP 400); "
                       "set EngineIO=4 for a Socket.IO 3 or 4 server";
        return NULL;
}

const char *session_explain_early_close(const struct session *session) {
        if (session->open_seen || session->namespace_connected)
                return NULL;
        /* A WebSocket closed before Engine.IO's open packet is a server that
         * does not speak this version (a Socket.IO 3/4 server refusing EIO=3
         * writes an HTTP 400 into the WebSocket). */
        return session->engine_io == 3 ?
                "the server closed the connection before the Engine.IO handshake; "
                "a Socket.IO 3 or 4 server refuses EngineIO=3 this way" :
                "the server closed the connection before the Engine.IO handshake";
}

bool session_open_seen(const struct session *session) {
        return session->open_seen;
}

bool session_connected(const struct session *session) {
        return session->namespace_connected;
}

uint64_t session_ping_interval_usec(const struct session *session) {
        return session->ping_interval_usec;
}

uint64_t session_ping_timeout_usec(const struct session *session) {
        return session->ping_timeout_usec;
}

const char *session_pid(const struct session *session) {
        return session->pid;
}

const char *session_offset(const struct session *session) {
        return session->offset;
}
