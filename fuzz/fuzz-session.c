/* SPDX-License-Identifier: MIT */
/*
 * Drives the session with arbitrary frames, the way the stream does, and
 * carries out what it answers. The first byte picks Engine.IO 3 or 4, a
 * small MaxEventSize and which of the owner's fast-path answers refuse; the
 * rest is lines, one frame or step each:
 *   b...  a binary frame        f...  a text fragment, more to come
 *   t...  time passes (one second per byte), then the liveness deadline
 *   else  a whole text frame
 * Aborts when an event reaches the owner outside a connected link, when an
 * action comes without its reason, or when a deadline lies in the past.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "eventd-session.h"

struct owner {
        struct session *session;
        bool view_refuses;
        unsigned events;
};

static void on_event(struct session *session, struct sio_packet *p, void *userdata) {
        if (!session_connected(session) || p->type != SIO_EVENT || !sio_event_name(p))
                abort();
}

static int on_event_view(struct session *session, const struct sio_event_view *v,
                         size_t n_args, void *userdata) {
        struct owner *owner = userdata;

        if (!session_connected(session) || n_args > v->n_args)
                abort();
        /* Every other time, as an owner that wants the slow path would. */
        owner->view_refuses = !owner->view_refuses;
        return owner->view_refuses ? -EAGAIN : 0;
}

static void on_ack(struct session *session, int64_t ack_id, json_object *args, void *userdata) {
        if (ack_id < 0 || !json_object_is_type(args, json_type_array))
                abort();
}

static const struct session_ops ops = {
        .event = on_event,
        .event_view = on_event_view,
        .ack = on_ack,
};

static void apply(struct session *session, enum session_action action,
                  const struct session_result *result, uint64_t now) {
        char *frame = NULL;

        switch (action) {
        case SESSION_CONTINUE:
                break;
        case SESSION_SEND:
                if (!result->frame[0] || !result->why[0])
                        abort();
                break;
        case SESSION_OPENED:
                if (session_encode_connect(session, "token", &frame) == 0)
                        free(frame);
                break;
        case SESSION_CONNECTED:
                session_release_early(session);
                if (session_encode_emit(session, "activities", NULL, session_next_ack_id(session),
                                        &frame) == 0)
                        free(frame);
                break;
        case SESSION_CLOSE:
        case SESSION_AUTH_FAILED:
                if (!result->why[0])
                        abort();
                session_end(session);
                if (session_next_deadline(session) != 0 || session_connected(session))
                        abort();
                session_begin(session, now);
                break;
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct owner owner = {};
        struct session_result result;
        struct session *session;
        const char *p = (const char *) data + 1, *end = (const char *) data + size;
        uint64_t now = 1000000;

        if (size < 1 || session_new(&session, &ops, &owner) < 0)
                return 0;
        session_configure(session, data[0] & 1 ? 3 : 4, data[0] & 2 ? 64 : 1024 * 1024);
        owner.view_refuses = data[0] & 4;
        session_begin(session, now);

        while (p < end) {
                const char *line_end = memchr(p, '\n', end - p);
                size_t len = (line_end ? line_end : end) - p;
                enum session_action action;

                if (len > 0 && p[0] == 't') {
                        uint64_t next;

                        now += len * 1000000;
                        next = session_next_deadline(session);
                        action = session_tick(session, next > now ? next : now, &result);
                        if (action == SESSION_CONTINUE && session_next_deadline(session) &&
                            session_next_deadline(session) < now)
                                abort();
                } else if (len > 0 && (p[0] == 'b' || p[0] == 'f'))
                        action = session_receive(session, p + 1, len - 1, p[0] == 'b',
                                                 p[0] == 'b', now, &result);
                else
                        action = session_receive(session, p, len, false, true, now, &result);
                apply(session, action, &result, now);
                p += len + 1;
        }
        session_free(session);
        return 0;
}
