/* SPDX-License-Identifier: MIT */
/* The Engine.IO / Socket.IO session, driven frame by frame with a made-up
 * clock: what it tells the stream to do, and what it hands to the owner. */
#include <errno.h>
#include <string.h>

#include "eventd-session.h"
#include "test-util.h"

#define SEC 1000000ULL
#define OPEN4 "0{\"sid\":\"s1\",\"upgrades\":[],\"pingInterval\":25000,\"pingTimeout\":20000}"

/* What the owner saw. */
struct seen {
        char events[8][128];            /* "name json-of-the-arguments" */
        size_t n_events;
        size_t n_views;                 /* of n_events, how many came as views */
        int64_t ack_id;
        char ack[64];
        size_t drops[4];
        bool view_refuses;              /* the owner's fast path answers -EAGAIN */
        struct session *end_on_event;   /* an owner that ends the link on an event */
};

static void on_event(struct session *session, struct sio_packet *p, void *userdata) {
        struct seen *seen = userdata;
        json_object *args = json_object_new_array();

        for (size_t i = 1; i < json_object_array_length(p->data); i++)
                json_object_array_add(args, json_object_get(json_object_array_get_idx(p->data, i)));
        CHECK(seen->n_events < 8);
        snprintf(seen->events[seen->n_events++], sizeof(seen->events[0]), "%s %s",
                 sio_event_name(p),
                 json_object_to_json_string_ext(args, JSON_C_TO_STRING_PLAIN));
        json_object_put(args);
        if (seen->end_on_event)
                session_end(seen->end_on_event);
}

static int on_event_view(struct session *session, const struct sio_event_view *v,
                         size_t n_args, void *userdata) {
        struct seen *seen = userdata;
        char *out;

        if (seen->view_refuses)
                return -EAGAIN;
        CHECK(seen->n_events < 8);
        out = seen->events[seen->n_events++];
        out += sprintf(out, "%.*s [", (int) v->name_len, v->name);
        for (size_t i = 0; i < n_args; i++)
                out += sprintf(out, "%s%.*s", i ? "," : "", (int) v->arg_len[i], v->arg[i]);
        strcpy(out, "]");
        seen->n_views++;
        return 0;
}

static void on_ack(struct session *session, int64_t ack_id, json_object *args, void *userdata) {
        struct seen *seen = userdata;

        seen->ack_id = ack_id;
        snprintf(seen->ack, sizeof(seen->ack), "%s",
                 json_object_to_json_string_ext(args, JSON_C_TO_STRING_PLAIN));
}

static void on_dropped(struct session *session, enum session_drop why, void *userdata) {
        struct seen *seen = userdata;

        seen->drops[why]++;
}

static const struct session_ops ops = {
        .event = on_event,
        .event_view = on_event_view,
        .ack = on_ack,
        .dropped = on_dropped,
};

static struct session_result result;

/* One whole text frame at time now. */
static enum session_action text(struct session *session, const char *frame, uint64_t now) {
        return session_receive(session, frame, strlen(frame), false, true, now, &result);
}

static size_t total_drops(const struct seen *seen) {
        return seen->drops[0] + seen->drops[1] + seen->drops[2] + seen->drops[3];
}

static struct session *new_session(struct seen *seen, unsigned engine_io) {
        struct session *session;

        *seen = (struct seen) { .ack_id = -2 };
        CHECK_INT(session_new(&session, &ops, seen), 0);
        session_configure(session, engine_io, 1024 * 1024);
        return session;
}

/* A new link up to Engine.IO's open packet, at time 0; the last one ended. */
static void open_link(struct session *session) {
        session_end(session);
        session_begin(session, 0);
        CHECK_INT(text(session, OPEN4, 0), SESSION_OPENED);
}

/* A link up to the namespace's CONNECT reply, at time 0. */
static struct session *connected_session(struct seen *seen, const char *reply) {
        struct session *session = new_session(seen, 4);

        open_link(session);
        CHECK_INT(text(session, reply, 0), SESSION_CONNECTED);
        return session;
}

static char *connect_frame(struct session *session, const char *token) {
        static char copy[256];
        char *frame;

        CHECK_INT(session_encode_connect(session, token, &frame), 0);
        CHECK(frame);
        snprintf(copy, sizeof(copy), "%s", frame);
        free(frame);
        return copy;
}

static void test_open(void) {
        struct seen seen;
        struct session *session = new_session(&seen, 4);

        session_begin(session, 0);
        CHECK_INT(session_next_deadline(session), 20 * SEC);   /* the handshake */
        CHECK(!session_open_seen(session));

        CHECK_INT(text(session, OPEN4, 1 * SEC), SESSION_OPENED);
        CHECK(result.rearm);
        CHECK(session_open_seen(session));
        CHECK_INT(session_ping_interval_usec(session), 25 * SEC);
        CHECK_INT(session_ping_timeout_usec(session), 20 * SEC);
        /* The handshake is still due first; the ping watchdog at 1 + 25 + 20 s. */
        CHECK_INT(session_next_deadline(session), 20 * SEC);
        CHECK_STR(connect_frame(session, "T"), "40{\"token\":\"T\"}");
        CHECK_STR(connect_frame(session, NULL), "40{}");

        /* A second open packet, or a broken one, ends the link. */
        CHECK_INT(text(session, OPEN4, 2 * SEC), SESSION_CLOSE);
        CHECK_STR(result.why, "malformed Engine.IO handshake from the server");
        session_end(session);
        CHECK_INT(session_next_deadline(session), 0);
        session_begin(session, 0);
        CHECK_INT(text(session, "0{\"sid\":\"s1\",\"pingInterval\":0,\"pingTimeout\":1}", 0),
                  SESSION_CLOSE);
        CHECK_INT(total_drops(&seen), 0);
        session_free(session);
}

static void test_heartbeat_engine_io_4(void) {
        struct seen seen;
        struct session *session = connected_session(&seen, "40{\"sid\":\"x\"}");

        /* Connected: only the watchdog is left, at 25 + 20 s. */
        CHECK_INT(session_next_deadline(session), 45 * SEC);
        CHECK_INT(session_tick(session, 44 * SEC, &result), SESSION_CONTINUE);

        /* The server's ping is answered with its own payload and moves the
         * watchdog on. */
        CHECK_INT(text(session, "2probe", 30 * SEC), SESSION_SEND);
        CHECK_STR(result.frame, "3probe");
        CHECK(result.rearm);
        CHECK_INT(session_next_deadline(session), 75 * SEC);
        CHECK_INT(session_tick(session, 75 * SEC - 1, &result), SESSION_CONTINUE);
        CHECK_INT(session_tick(session, 75 * SEC, &result), SESSION_CLOSE);
        CHECK_STR(result.why, "no ping from the server for 45.0 s");

        /* A pong from an Engine.IO 4 server means nothing; it is no drop. */
        CHECK_INT(text(session, "3", 31 * SEC), SESSION_CONTINUE);
        CHECK_INT(total_drops(&seen), 0);
        session_free(session);
}

static void test_heartbeat_engine_io_3(void) {
        struct seen seen;
        struct session *session = new_session(&seen, 3);
        char *frame = (char *) "unset";

        session_begin(session, 0);
        CHECK_INT(text(session, "0{\"sid\":\"s\",\"pingInterval\":1000,\"pingTimeout\":5000}",
                       0), SESSION_OPENED);
        /* Socket.IO 2 servers join by themselves: no CONNECT from us... */
        CHECK_INT(session_encode_connect(session, "T", &frame), 0);
        CHECK(frame == NULL);
        /* ...and their `40` has no sid. */
        CHECK_INT(text(session, "40", 0), SESSION_CONNECTED);
        CHECK(!result.recovered);

        /* We ping; no second ping while one is unanswered. */
        CHECK_INT(session_next_deadline(session), 1 * SEC);
        CHECK_INT(session_tick(session, 1 * SEC, &result), SESSION_SEND);
        CHECK_STR(result.frame, "2");
        CHECK_INT(session_next_deadline(session), 6 * SEC);
        CHECK_INT(text(session, "3", 2 * SEC), SESSION_CONTINUE);
        CHECK(result.rearm);
        CHECK_INT(session_next_deadline(session), 2 * SEC);

        CHECK_INT(session_tick(session, 2 * SEC, &result), SESSION_SEND);
        CHECK_INT(session_tick(session, 7 * SEC - 1, &result), SESSION_CONTINUE);
        CHECK_INT(session_tick(session, 7 * SEC, &result), SESSION_CLOSE);
        CHECK_STR(result.why, "no pong from the server within 5.0 s");

        /* A ping from the server would be one in the wrong direction. */
        CHECK_INT(text(session, "2", 3 * SEC), SESSION_CONTINUE);
        CHECK_INT(seen.drops[SESSION_DROP_MALFORMED], 1);
        session_free(session);
}

static void test_handshake_deadline(void) {
        struct seen seen;
        struct session *session = new_session(&seen, 4);

        session_begin(session, 5 * SEC);
        CHECK_INT(session_tick(session, 25 * SEC - 1, &result), SESSION_CONTINUE);
        CHECK_INT(session_tick(session, 25 * SEC, &result), SESSION_CLOSE);
        CHECK_STR(result.why, "the server did not complete the Socket.IO handshake in time");
        session_free(session);
}

static void test_connect_reply_and_recovery(void) {
        struct seen seen;
        struct session *session = connected_session(&seen, "40{\"sid\":\"a\",\"pid\":\"p1\"}");

        CHECK(!result.recovered);               /* nothing was asked to recover */
        CHECK(session_connected(session));
        CHECK_STR(session_pid(session), "p1");

        /* With a pid, the last argument of each event is its offset. Both
         * paths take it off; neither hands it to the owner. */
        CHECK_INT(text(session, "42[\"E\",{\"n\":1},\"o1\"]", 0), SESSION_CONTINUE);
        seen.view_refuses = true;
        CHECK_INT(text(session, "42[\"E\",{\"n\":2},\"o2\"]", 0), SESSION_CONTINUE);
        CHECK_INT(seen.n_events, 2);
        CHECK_INT(seen.n_views, 1);
        CHECK_STR(seen.events[0], "E [{\"n\":1}]");
        CHECK_STR(seen.events[1], "E [{\"n\":2}]");
        CHECK_STR(session_offset(session), "o2");

        /* The next link asks to recover from there, and the same pid back
         * means the server replayed what was missed. */
        session_end(session);
        CHECK(!session_connected(session));
        open_link(session);
        CHECK_STR(connect_frame(session, "T"),
                  "40{\"token\":\"T\",\"pid\":\"p1\",\"offset\":\"o2\"}");
        CHECK_INT(text(session, "40{\"sid\":\"b\",\"pid\":\"p1\"}", 0), SESSION_CONNECTED);
        CHECK(result.recovered);
        CHECK_STR(session_offset(session), "o2");

        /* Another pid: a new session on the server, the old offset is void. */
        open_link(session);
        connect_frame(session, "T");
        CHECK_INT(text(session, "40{\"sid\":\"c\",\"pid\":\"p2\"}", 0), SESSION_CONNECTED);
        CHECK(!result.recovered);
        CHECK_STR(session_pid(session), "p2");
        CHECK_STR(session_offset(session), "");

        /* No pid: recovery is off, and event arguments stay as they are. */
        open_link(session);
        connect_frame(session, "T");
        CHECK_INT(text(session, "40{\"sid\":\"d\"}", 0), SESSION_CONNECTED);
        CHECK_STR(session_pid(session), "");
        CHECK_STR(connect_frame(session, "T"), "40{\"token\":\"T\"}");
        CHECK_INT(text(session, "42[\"E\",{\"n\":3},\"not-an-offset\"]", 0), SESSION_CONTINUE);
        CHECK_STR(seen.events[2], "E [{\"n\":3},\"not-an-offset\"]");

        /* A second CONNECT reply on the same link changes nothing. */
        CHECK_INT(text(session, "40{\"sid\":\"e\",\"pid\":\"p3\"}", 0), SESSION_CONTINUE);
        CHECK_STR(session_pid(session), "");

        /* Forgotten: the next CONNECT asks for nothing. */
        open_link(session);
        connect_frame(session, "T");
        CHECK_INT(text(session, "40{\"sid\":\"f\",\"pid\":\"p4\"}", 0), SESSION_CONNECTED);
        session_forget_recovery(session);
        CHECK_STR(connect_frame(session, "T"), "40{\"token\":\"T\"}");
        CHECK_INT(total_drops(&seen), 0);
        session_free(session);
}

static void test_connect_reply_shapes(void) {
        struct seen seen;
        struct session *session = new_session(&seen, 4);

        /* Engine.IO 4 and a `40` without a sid: a Socket.IO 2 server. */
        open_link(session);
        CHECK_INT(text(session, "40", 0), SESSION_CLOSE);
        CHECK(result.slow_retry);
        CHECK(strstr(result.why, "set EngineIO=3"));

        open_link(session);
        CHECK_INT(text(session, "40{\"sid\":7}", 0), SESSION_CLOSE);
        CHECK(!result.slow_retry);
        CHECK_STR(result.why, "malformed CONNECT reply from the server");
        session_free(session);
}

static enum session_action connect_error(const char *frame) {
        struct seen seen;
        struct session *session = new_session(&seen, 4);
        enum session_action action;

        open_link(session);
        action = text(session, frame, 0);
        session_free(session);
        return action;
}

static void test_connect_error(void) {
        struct seen seen;
        struct session *session;

        /* Credentials refused: no retry with the same token. */
        CHECK_INT(connect_error("44{\"message\":\"Authentication error\"}"), SESSION_AUTH_FAILED);
        CHECK_STR(result.why, "the server refused CONNECT: Authentication error");
        CHECK_INT(connect_error("44{\"message\":\"jwt expired\"}"), SESSION_AUTH_FAILED);
        CHECK_INT(connect_error("44{\"message\":\"UNAUTHORIZED\"}"), SESSION_AUTH_FAILED);
        CHECK_INT(connect_error("44{\"message\":\"Access denied\"}"), SESSION_AUTH_FAILED);
        CHECK_INT(connect_error("44\"Invalid credentials\""), SESSION_AUTH_FAILED);
        /* No reason at all is taken as a refusal too (middleware's default). */
        CHECK_INT(connect_error("44{}"), SESSION_AUTH_FAILED);
        CHECK_STR(result.why, "the server refused CONNECT: no reason given");
        CHECK_INT(connect_error("44{\"message\":\"\"}"), SESSION_AUTH_FAILED);

        /* Anything else: back off slowly, the token may be fine. */
        CHECK_INT(connect_error("44{\"message\":\"server is full\"}"), SESSION_CLOSE);
        CHECK(result.slow_retry);
        CHECK_STR(result.why, "the server refused CONNECT: server is full");
        CHECK_INT(connect_error("44{\"message\":\"Invalid namespace\"}"), SESSION_CLOSE);

        /* After the CONNECT reply it answers nothing: dropped. */
        session = connected_session(&seen, "40{\"sid\":\"x\"}");
        CHECK_INT(text(session, "44{\"message\":\"unauthorized\"}", 0), SESSION_CONTINUE);
        CHECK_INT(seen.drops[SESSION_DROP_MALFORMED], 1);
        session_free(session);
}

static void test_early_events(void) {
        struct seen seen;
        struct session *session = new_session(&seen, 4);

        /* A recovering server replays before it answers CONNECT. */
        open_link(session);
        CHECK_INT(text(session, "42[\"A\",1,\"o1\"]", 0), SESSION_CONTINUE);
        CHECK_INT(text(session, "42[\"B\",2,\"o2\"]", 0), SESSION_CONTINUE);
        CHECK_INT(seen.n_events, 0);

        CHECK_INT(text(session, "40{\"sid\":\"x\",\"pid\":\"p\"}", 0), SESSION_CONNECTED);
        CHECK_INT(seen.n_events, 0);                    /* not before the stream is ready */
        session_release_early(session);
        CHECK_INT(seen.n_events, 2);
        CHECK_STR(seen.events[0], "A [1]");
        CHECK_STR(seen.events[1], "B [2]");
        CHECK_STR(session_offset(session), "o2");
        session_release_early(session);                 /* released once */
        CHECK_INT(seen.n_events, 2);

        /* A link that ends before the reply takes its early events with it. */
        open_link(session);
        CHECK_INT(text(session, "42[\"C\",3]", 0), SESSION_CONTINUE);
        open_link(session);
        CHECK_INT(text(session, "40{\"sid\":\"y\"}", 0), SESSION_CONNECTED);
        session_release_early(session);
        CHECK_INT(seen.n_events, 2);

        /* An owner that ends the link on the first early event gets no more. */
        open_link(session);
        CHECK_INT(text(session, "42[\"D\",4]", 0), SESSION_CONTINUE);
        CHECK_INT(text(session, "42[\"E\",5]", 0), SESSION_CONTINUE);
        CHECK_INT(text(session, "40{\"sid\":\"z\"}", 0), SESSION_CONNECTED);
        seen.end_on_event = session;
        session_release_early(session);
        CHECK_INT(seen.n_events, 3);
        CHECK_STR(seen.events[2], "D [4]");
        CHECK(!session_connected(session));
        seen.end_on_event = NULL;

        /* At most 10000 wait; the rest are dropped, and a recovery that
         * lost some is no recovery. */
        open_link(session);
        CHECK_INT(text(session, "40{\"sid\":\"r1\",\"pid\":\"q\"}", 0), SESSION_CONNECTED);
        CHECK_INT(text(session, "42[\"F\",6,\"o9\"]", 0), SESSION_CONTINUE);
        open_link(session);
        connect_frame(session, "T");                    /* asks to recover from o9 */
        for (int i = 0; i < 10001; i++)
                CHECK_INT(text(session, "42[\"F\",6,\"o10\"]", 0), SESSION_CONTINUE);
        CHECK_INT(seen.drops[SESSION_DROP_NO_ROOM], 1);
        CHECK_INT(text(session, "40{\"sid\":\"r2\",\"pid\":\"q\"}", 0), SESSION_CONNECTED);
        CHECK(!result.recovered);
        CHECK_INT(result.early_lost, 1);

        /* The same with the next link, where all of it fits: recovered. */
        open_link(session);
        connect_frame(session, "T");
        CHECK_INT(text(session, "42[\"F\",6,\"o11\"]", 0), SESSION_CONTINUE);
        CHECK_INT(text(session, "40{\"sid\":\"r3\",\"pid\":\"q\"}", 0), SESSION_CONNECTED);
        CHECK(result.recovered);
        CHECK_INT(result.early_lost, 0);
        session_release_early(session);

        /* Bounded by bytes too: 16 MiB of text. */
        {
                size_t big = 600 * 1024;
                char *frame = malloc(big + 16);
                int kept = 0;

                CHECK(frame);
                memcpy(frame, "42[\"G\",\"", 8);
                memset(frame + 8, 'x', big);
                strcpy(frame + 8 + big, "\"]");
                open_link(session);
                seen.drops[SESSION_DROP_NO_ROOM] = 0;
                for (int i = 0; i < 40; i++) {
                        CHECK_INT(text(session, frame, 0), SESSION_CONTINUE);
                        kept += seen.drops[SESSION_DROP_NO_ROOM] == 0;
                }
                CHECK_INT(kept, (16 * 1024 * 1024) / (int) (big + 10));
                CHECK_INT(seen.drops[SESSION_DROP_NO_ROOM], 40 - kept);
                free(frame);
        }
        session_free(session);                          /* frees the waiting ones */
}

static void test_ack_and_emit(void) {
        struct seen seen;
        struct session *session = new_session(&seen, 4);
        json_object *arg = json_object_new_string("p");
        char *frame;

        CHECK_INT(session_encode_emit(session, "activities", NULL, SIO_NO_ACK_ID, &frame),
                  -ENOTCONN);
        session_free(session);

        session = connected_session(&seen, "40{\"sid\":\"x\"}");
        CHECK_INT(session_next_ack_id(session), 0);
        CHECK_INT(session_next_ack_id(session), 1);
        CHECK_INT(session_encode_emit(session, "activities-by-person", arg, 1, &frame), 0);
        CHECK_STR(frame, "421[\"activities-by-person\",\"p\"]");
        free(frame);
        CHECK_INT(session_encode_emit(session, "activities", NULL, SIO_NO_ACK_ID, &frame), 0);
        CHECK_STR(frame, "42[\"activities\"]");
        free(frame);
        json_object_put(arg);

        CHECK_INT(text(session, "431[[{\"_id\":\"a\"}]]", 0), SESSION_CONTINUE);
        CHECK_INT(seen.ack_id, 1);
        CHECK_STR(seen.ack, "[[{\"_id\":\"a\"}]]");
        CHECK_INT(seen.n_events, 0);
        session_free(session);
}

static void test_closing(void) {
        struct seen seen;
        struct session *session = connected_session(&seen, "40{\"sid\":\"x\"}");

        CHECK_INT(text(session, "41", 0), SESSION_CLOSE);
        CHECK_STR(result.why, "the server disconnected this client");
        CHECK(!result.slow_retry);
        CHECK_INT(text(session, "1", 0), SESSION_CLOSE);
        CHECK_STR(result.why, "the server closed the Engine.IO session");
        session_free(session);
}

static void test_drops(void) {
        struct seen seen;
        struct session *session = new_session(&seen, 4);
        const char *malformed[] = {
                "", "9", "x", "4", "42[", "42[\"E\",1]x", "42/admin,[\"E\",1]", "47[]",
                "42{\"E\":1}", "2" "................................................"
                "................................................................"
                "................................................................",
        };

        /* A message before the open packet is out of place. */
        session_begin(session, 0);
        CHECK_INT(text(session, "42[\"E\",1]", 0), SESSION_CONTINUE);
        CHECK_INT(seen.drops[SESSION_DROP_MALFORMED], 1);

        CHECK_INT(text(session, OPEN4, 0), SESSION_OPENED);
        CHECK_INT(text(session, "40{\"sid\":\"x\"}", 0), SESSION_CONNECTED);
        for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++) {
                CHECK_INT(text(session, malformed[i], 0), SESSION_CONTINUE);
                CHECK_INT(seen.drops[SESSION_DROP_MALFORMED], 2 + i);
        }

        /* A binary event is dropped once; its attachments go unseen, and a
         * binary frame that belongs to nothing is dropped. */
        CHECK_INT(text(session, "452-[\"E\",{\"_placeholder\":true,\"num\":0}]", 0),
                  SESSION_CONTINUE);
        CHECK_INT(seen.drops[SESSION_DROP_BINARY], 1);
        for (int i = 0; i < 2; i++)
                CHECK_INT(session_receive(session, "\x01\x02", 2, true, true, 0, &result),
                          SESSION_CONTINUE);
        CHECK_INT(seen.drops[SESSION_DROP_BINARY], 1);
        CHECK_INT(session_receive(session, "\x01\x02", 2, true, true, 0, &result),
                  SESSION_CONTINUE);
        CHECK_INT(seen.drops[SESSION_DROP_BINARY], 2);

        /* A text frame where an attachment was due ends the waiting. */
        CHECK_INT(text(session, "451-[\"E\",{\"_placeholder\":true,\"num\":0}]", 0),
                  SESSION_CONTINUE);
        CHECK_INT(text(session, "42[\"G\",1]", 0), SESSION_CONTINUE);
        CHECK_INT(session_receive(session, "\x01", 1, true, true, 0, &result),
                  SESSION_CONTINUE);
        CHECK_INT(seen.drops[SESSION_DROP_BINARY], 4);
        CHECK_INT(seen.n_events, 1);
        CHECK_INT(seen.drops[SESSION_DROP_OVERSIZE], 0);
        session_free(session);
}

static void test_fragments_and_size(void) {
        struct seen seen;
        struct session *session = connected_session(&seen, "40{\"sid\":\"x\"}");
        char big[200];

        /* A message in pieces is read once, when complete. */
        CHECK_INT(session_receive(session, "42[\"E\",", 7, false, false, 0, &result),
                  SESSION_CONTINUE);
        CHECK_INT(session_receive(session, "", 0, false, false, 0, &result), SESSION_CONTINUE);
        CHECK_INT(seen.n_events, 0);
        CHECK_INT(session_receive(session, "{\"n\":1}]", 8, false, true, 0, &result),
                  SESSION_CONTINUE);
        CHECK_INT(seen.n_events, 1);
        CHECK_STR(seen.events[0], "E [{\"n\":1}]");

        /* Bigger than allowed, whole or in pieces: dropped once, and the next
         * message is fine. */
        session_configure(session, 4, 16);
        CHECK_INT(text(session, "42[\"E\",\"0123456789\"]", 0), SESSION_CONTINUE);
        CHECK_INT(seen.drops[SESSION_DROP_OVERSIZE], 1);
        CHECK_INT(session_receive(session, "42[\"E\",\"01", 10, false, false, 0, &result),
                  SESSION_CONTINUE);
        CHECK_INT(session_receive(session, "23456789\"]", 10, false, true, 0, &result),
                  SESSION_CONTINUE);
        CHECK_INT(seen.drops[SESSION_DROP_OVERSIZE], 2);
        CHECK_INT(text(session, "42[\"E\",2]", 0), SESSION_CONTINUE);
        CHECK_INT(seen.n_events, 2);
        CHECK_STR(seen.events[1], "E [2]");
        /* Exactly the largest allowed size is fine. */
        CHECK_INT(text(session, "42[\"E\",\"012345\"]", 0), SESSION_CONTINUE);
        CHECK_INT(seen.n_events, 3);

        /* An oversize binary frame is oversize. */
        memset(big, 'x', sizeof(big));
        CHECK_INT(session_receive(session, big, sizeof(big), true, true, 0, &result),
                  SESSION_CONTINUE);
        CHECK_INT(seen.drops[SESSION_DROP_OVERSIZE], 3);
        CHECK_INT(seen.drops[SESSION_DROP_MALFORMED] + seen.drops[SESSION_DROP_BINARY], 0);
        session_free(session);
}

/* The request's query, and what the session says about a server of the
 * other Engine.IO version. */
static void test_version_mismatch(void) {
        struct seen seen;
        struct session *session = new_session(&seen, 3);
        char query[64];

        session_format_query(session, query, sizeof(query));
        CHECK_STR(query, "EIO=3&transport=websocket");
        CHECK(strstr(session_explain_refusal(session, 400), "set EngineIO=4"));
        CHECK(!session_explain_refusal(session, 401));
        CHECK(!session_explain_refusal(session, 0));
        session_begin(session, 0);
        CHECK(strstr(session_explain_early_close(session), "refuses EngineIO=3"));

        session_configure(session, 4, 1024 * 1024);
        session_format_query(session, query, sizeof(query));
        CHECK_STR(query, "EIO=4&transport=websocket");
        CHECK(!session_explain_refusal(session, 400));
        CHECK_STR(session_explain_early_close(session),
                  "the server closed the connection before the Engine.IO handshake");
        /* Once the handshake came, an early close is an ordinary one. */
        open_link(session);
        CHECK(!session_explain_early_close(session));
        session_free(session);
}

int main(void) {
        test_open();
        test_heartbeat_engine_io_4();
        test_heartbeat_engine_io_3();
        test_handshake_deadline();
        test_connect_reply_and_recovery();
        test_connect_reply_shapes();
        test_connect_error();
        test_early_events();
        test_ack_and_emit();
        test_closing();
        test_drops();
        test_fragments_and_size();
        test_version_mismatch();
        CHECK(session_free(NULL) == NULL);
        printf("test-session: ok\n");
        return 0;
}
