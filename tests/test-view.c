/* SPDX-License-Identifier: MIT */
/* The fast path: which events it takes as slices, which it leaves to the
 * slow path, and that its mapping agrees with the slow one. */
#include <errno.h>
#include <string.h>

#include "eventd-codec.h"
#include "eventd-event.h"
#include "eventd-view.h"
#include "test-util.h"

#define LIT(s) (s), (sizeof(s) - 1)

static void check_again(const char *msg, size_t len) {
        struct sio_event_view v;

        if (sio_event_view(msg, len, &v) != -EAGAIN) {
                fprintf(stderr, "taken by the fast path: %.*s\n", (int) len, msg);
                abort();
        }
}

static void test_taken(void) {
        struct sio_event_view v;

        CHECK_INT(sio_event_view(LIT("2[\"ActivityAddedEvent\",{\"_id\":\"a\",\"n\":[1,2.5]}]"),
                                 &v), 0);
        CHECK_INT(v.ack_id, SIO_NO_ACK_ID);
        CHECK_INT(v.name_len, 18);
        CHECK(memcmp(v.name, "ActivityAddedEvent", 18) == 0);
        CHECK_INT(v.n_args, 1);
        CHECK_INT(v.arg_len[0], strlen("{\"_id\":\"a\",\"n\":[1,2.5]}"));

        CHECK_INT(sio_event_view(LIT("217[\"E\",\"x\\n\\\"y\",null,true,-0.5e-3]"), &v), 0);
        CHECK_INT(v.ack_id, 17);
        CHECK_INT(v.n_args, 4);
        CHECK_INT(sio_event_view(LIT("2[\"E\"]"), &v), 0);
        CHECK_INT(v.n_args, 0);
        CHECK_INT(sio_event_view(LIT("2[\"Caf\xc3\xa9\",{\"t\":\"\xe6\x9d\xb1\\u001f\"}]"), &v), 0);
}

static void test_left_to_the_slow_path(void) {
        check_again(LIT("2[\"E\", {}]"));                 /* a blank */
        check_again(LIT("2[\"E\",{\"a\":\"\\/\"}]"));      /* \/ is not json-c's way */
        check_again(LIT("2[\"E\",\"\\u00e9\"]"));          /* neither is \u00e9 */
        check_again(LIT("2[\"E\",\"\\u000a\"]"));          /* json-c writes \n */
        check_again(LIT("2[\"E\",\"\\u0000\"]"));
        check_again(LIT("2[\"E\",\"\\u001F\"]"));          /* upper-case hex */
        check_again(LIT("2[\"E\",-0]"));
        check_again(LIT("2[\"E\",1234567890123456789]"));  /* 19 digits */
        check_again(LIT("2[\"E\",01]"));
        check_again(LIT("2[\"E\",1.]"));
        check_again(LIT("2[\"E\",NaN]"));
        check_again(LIT("2[\"E\\\"x\",1]"));               /* escape in the name */
        check_again(LIT("2[\"\",1]"));
        check_again(LIT("2[\"E\",1,2,3,4,5]"));           /* too many arguments */
        check_again(LIT("2/admin,[\"E\",1]"));
        check_again(LIT("21-[\"E\",1]"));
        check_again(LIT("3[\"E\",1]"));
        check_again(LIT("2[\"E\",1]x"));
        check_again(LIT("2[\"E\",\"\xff\"]"));
        /* Deeper than the fast path goes (32). */
        check_again(LIT("2[\"E\",[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
                        "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"));
        check_again(LIT("2[\"E\",{\"a\"}]"));
        check_again(LIT("2[\"E\",{\"a\":1,}]"));
}

static void check_same_mapping(const char *msg, size_t len, size_t n_args) {
        struct sio_event_view v;
        struct sio_packet p;
        struct event_signal fast, slow;

        CHECK_INT(sio_event_view(msg, len, &v), 0);
        CHECK_INT(sio_decode(msg, len, &p), 0);
        CHECK_INT(event_map_view(&v, n_args, &fast), 0);
        CHECK_INT(event_map(p.data, &slow), 0);
        CHECK(fast.kind == slow.kind);
        CHECK_STR(fast.name, slow.name);
        CHECK_STR(fast.id, slow.id);
        CHECK_STR(fast.payload, slow.payload);
        event_signal_release(&fast);
        event_signal_release(&slow);
        sio_packet_release(&p);
}

static void test_mapping(void) {
        struct sio_event_view v;
        struct event_signal sig;

        check_same_mapping(LIT("2[\"ActivityAddedEvent\",{\"_id\":\"a1\",\"id\":\"b\"}]"), 1);
        check_same_mapping(LIT("2[\"PersonDeletedEvent\",{\"id\":12,\"_personID\":\"p\"}]"), 1);
        check_same_mapping(LIT("2[\"PersonDeletedEvent\",{\"_personID\":\"p\"}]"), 1);
        check_same_mapping(LIT("2[\"DealDeletedEvent\",{\"_id\":null,\"id\":\"\",\"_dealID\":"
                               "\"d\"}]"), 1);
        check_same_mapping(LIT("2[\"TaskDeletedEvent\",\"t1\"]"), 1);
        check_same_mapping(LIT("2[\"NoPayload\"]"), 0);

        /* A key given twice: json-c keeps the last, so the slow path, with
         * the same answer whether or not the server put a blank in. */
        check_again(LIT("2[\"Unknown\",{\"_id\":\"u\",\"_id\":\"v\"}]"));
        check_again(LIT("2[\"E\",{\"a\":{\"k\":1,\"k\":2}}]"));
        CHECK_INT(sio_event_view(LIT("2[\"E\",{\"a\":{\"k\":1},\"b\":{\"k\":2}}]"), &v), 0);

        /* An id with escapes, or several arguments: the slow path's job. */
        CHECK_INT(sio_event_view(LIT("2[\"ActivityAddedEvent\",{\"_id\":\"a\\tb\"}]"), &v), 0);
        CHECK_INT(event_map_view(&v, 1, &sig), -EAGAIN);
        CHECK_INT(sio_event_view(LIT("2[\"E\",1,2]"), &v), 0);
        CHECK_INT(event_map_view(&v, 2, &sig), -EAGAIN);
        /* With the offset left out, the first argument alone is the payload. */
        CHECK_INT(event_map_view(&v, 1, &sig), 0);
        CHECK_STR(sig.payload, "1");
        event_signal_release(&sig);
}

static void test_member(void) {
        /* The top-level key, not the nested one of the same name; a view
         * never holds a key twice (those go the slow path). */
        const char *obj = "{\"a\":{\"_id\":\"inner\"},\"b\":[1],\"_id\":\"y\"}";
        const char *dup = "2[\"E\",{\"_id\":\"x\",\"_id\":\"y\"}]";
        struct sio_event_view v;
        const char *value;
        size_t len;

        CHECK(json_view_member(obj, strlen(obj), "_id", &value, &len));
        CHECK(len == 3 && memcmp(value, "\"y\"", 3) == 0);
        CHECK_INT(sio_event_view(dup, strlen(dup), &v), -EAGAIN);
        CHECK(json_view_member(obj, strlen(obj), "b", &value, &len));
        CHECK(len == 3 && memcmp(value, "[1]", 3) == 0);
        CHECK(!json_view_member(obj, strlen(obj), "_i", &value, &len));
        CHECK(!json_view_member("{}", 2, "a", &value, &len));
        CHECK(!json_view_member("[1]", 3, "a", &value, &len));
}

/* The scanners take eight bytes at a time: a byte that needs a look is
 * found wherever it sits in a word, and right at the string's end. */
static void test_every_offset(void) {
        static const struct {
                const char *insert;
                int expect;
        } cases[] = {
                { "\\n", 0 },          /* an escape */
                { "\\u001f", 0 },
                { "\xc3\xbc", 0 },      /* ü */
                { "\t", -EAGAIN },      /* a raw control character */
                { "\\u0041", -EAGAIN },/* not what json-c writes */
                { "\\x", -EAGAIN },
                { "\xff", -EAGAIN },     /* not UTF-8 */
                { "\xc3", -EAGAIN },
                { "\"", -EAGAIN },      /* the string ends early: bad JSON after it */
        };
        char frame[128], text[40];
        struct sio_event_view v;

        for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++)
                for (size_t at = 0; at <= 24; at++) {
                        memset(text, 'a', sizeof(text));
                        memcpy(text + at, cases[c].insert, strlen(cases[c].insert));
                        text[at + strlen(cases[c].insert) + (at % 3) * 5] = 0;
                        snprintf(frame, sizeof(frame), "2[\"E\",{\"k\":\"%s\"}]", text);
                        if (sio_event_view(frame, strlen(frame), &v) != cases[c].expect) {
                                fprintf(stderr, "case %zu at %zu: %s\n", c, at, frame);
                                CHECK(false);
                        }
                }
}

int main(void) {
        test_taken();
        test_left_to_the_slow_path();
        test_mapping();
        test_member();
        test_every_offset();
        printf("test-view: ok\n");
        return 0;
}
