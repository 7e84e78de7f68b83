/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for the Engine.IO/Socket.IO codec. Every input is copied into a
 * buffer of exactly its length first, so that ASan catches a decoder reading
 * past len. Where json-c's behaviour is surprising, the test pins it down.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "eventd-codec.h"
#include "test-util.h"

#define JSON_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

/* Length of a string literal, embedded NULs included. */
#define LIT(s) (s), (sizeof(s) - 1)

static char *exact_copy(const char *s, size_t len) {
        char *b = malloc(len > 0 ? len : 1);

        CHECK(b);
        memcpy(b, s, len);
        return b;
}

static bool utf8(const char *s, size_t len) {
        char *b = exact_copy(s, len);
        bool valid = utf8_is_valid(b, len);

        free(b);
        return valid;
}

static int sio(const char *s, size_t len, struct sio_packet *p) {
        char *b = exact_copy(s, len);
        int r = sio_decode(b, len, p);

        free(b);
        if (r < 0)
                CHECK(!p->data);
        return r;
}

static int sio_str(const char *s, struct sio_packet *p) {
        return sio(s, strlen(s), p);
}

static int eio_open(const char *s, struct eio_open *o) {
        size_t len = strlen(s);
        char *b = exact_copy(s, len);
        int r = eio_open_parse(b, len, o);

        free(b);
        return r;
}

static void check_json(json_object *o, const char *expected) {
        CHECK_STR(json_object_to_json_string_ext(o, JSON_FLAGS), expected);
}

/* Decodes a packet that must be malformed. */
static void check_bad(const char *s, size_t len) {
        struct sio_packet p;

        CHECK_INT(sio(s, len, &p), -EBADMSG);
}

static void test_utf8(void) {
        static const char *const good[] = {
                "", "abc", "M\xc3\xbcller \xe6\x9d\xb1\xe4\xba\xac \xf0\x9f\x98\x80",
                "\xc2\x80", "\xdf\xbf", "\xe0\xa0\x80", "\xed\x9f\xbf", "\xee\x80\x80",
                "\xef\xbf\xbf", "\xf0\x90\x80\x80", "\xf4\x8f\xbf\xbf", "\x7f\x01",
        };
        static const char *const bad[] = {
                "\xff", "\xfe", "\x80", "a\xbf", "\xc0\xaf", "\xc1\xbf", "\xe0\x80\xaf",
                "\xe0\x9f\xbf", "\xf0\x80\x80\xaf", "\xf0\x8f\xbf\xbf", "\xed\xa0\x80",
                "\xed\xbf\xbf", "\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\xf8\x88\x80\x80\x80",
                "\xc3", "\xe6\x9d", "\xf0\x9f\x98", "\xc3\x28", "\xe6\x28\xb1",
                "\xf0\x9f\x28\x80", "ok\xc3",
        };

        for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
                CHECK(utf8(good[i], strlen(good[i])));
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                CHECK(!utf8(bad[i], strlen(bad[i])));

        CHECK(!utf8(LIT("a\0b")));
        CHECK(!utf8(LIT("\0")));
        /* Truncated by len, not by a NUL. */
        CHECK(!utf8("\xc3\xbc", 1));
        CHECK(!utf8("\xf0\x9f\x98\x80", 3));
        CHECK(utf8("ab\xff", 2));
        CHECK(utf8_is_valid(NULL, 0));
        CHECK(!utf8_is_valid(NULL, 1));
}

/* The check takes eight ASCII bytes at a time: a stray byte or a NUL is
 * found at every offset, a good character too. */
static void test_utf8_every_offset(void) {
        static const char *const bad[] = { "\x80", "\xff", "\xc3", "\xed\xa0\x80" };
        char buf[40];

        for (size_t at = 0; at < 32; at++) {
                for (size_t b = 0; b < sizeof(bad) / sizeof(bad[0]); b++) {
                        memset(buf, 'a', sizeof(buf));
                        memcpy(buf + at, bad[b], strlen(bad[b]));
                        CHECK(!utf8(buf, 36));
                }
                memset(buf, 'a', sizeof(buf));
                buf[at] = 0;
                CHECK(!utf8(buf, 36));
                memcpy(buf + at, "\xe2\x82\xac", 3);        /* € */
                CHECK(utf8(buf, 36));
                CHECK(!utf8(buf, at + 2));                /* cut inside it */
        }
}

/* One character at a time, as the log and samdock-eventctl read text. */
static void test_utf8_decode(void) {
        static const struct {
                const char *s;
                size_t len;
                uint32_t c;
        } cases[] = {
                { "A", 1, 0x41 }, { "\xc3\xbc", 2, 0xfc }, { "\xe2\x82\xac", 3, 0x20ac },
                { "\xf0\x9f\x98\x80", 4, 0x1f600 }, { "\xc2\x9b", 2, 0x9b },
                { "\xc3", 0, 0 }, { "\xc0\xaf", 0, 0 }, { "\xed\xa0\x80", 0, 0 },
                { "\xf4\x90\x80\x80", 0, 0 }, { "\xe2\x82", 0, 0 }, { "", 0, 0 },
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                uint32_t c = 0;

                CHECK_INT(utf8_decode(cases[i].s, &c), cases[i].len);
                if (cases[i].len)
                        CHECK_INT(c, cases[i].c);
        }
        for (uint32_t c = 0x80; c <= 0x9f; c++)
                CHECK(unicode_is_invisible_control(c));
        CHECK(unicode_is_invisible_control(0x2028) && unicode_is_invisible_control(0x202e));
        CHECK(unicode_is_invisible_control(0x2066) && unicode_is_invisible_control(0x2069));
        CHECK(!unicode_is_invisible_control('a') && !unicode_is_invisible_control(0xa0));
        CHECK(!unicode_is_invisible_control(0x202f) && !unicode_is_invisible_control(0x2065));
}

/* Text from outside keeps every well-formed character; each stray byte
 * becomes one '?', and the result is always fit for D-Bus. */
static void test_utf8_scrub(void) {
        static const struct {
                const char *in, *out;
        } cases[] = {
                { "plain", "plain" },
                { "M\xc3\xbcller \xf0\x9f\x98\x80", "M\xc3\xbcller \xf0\x9f\x98\x80" },
                { "a\xff b", "a? b" },
                { "cut \xe6\x9d", "cut ??" },
                { "\xc3\x28", "?(" },
                { "\xed\xa0\x80x", "???x" },            /* a surrogate */
                { "\xc0\xaf\xc3\xbc", "??\xc3\xbc" },    /* overlong, then ü */
        };
        char buf[64];

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                snprintf(buf, sizeof(buf), "%s", cases[i].in);
                utf8_scrub(buf);
                CHECK_STR(buf, cases[i].out);
                CHECK(utf8_is_valid(buf, strlen(buf)));
        }
        utf8_scrub(NULL);
}

static void test_eio_decode(void) {
        static const char *const frames[] = {
                "0{\"sid\":\"x\"}", "1", "2", "3", "4hello", "5", "6",
        };
        struct eio_packet p;

        for (size_t i = 0; i < sizeof(frames) / sizeof(frames[0]); i++) {
                size_t len = strlen(frames[i]);
                char *b = exact_copy(frames[i], len);

                CHECK_INT(eio_decode(b, len, &p), 0);
                CHECK_INT(p.type, (int) i);
                CHECK(p.data == b + 1);
                CHECK_INT(p.len, len - 1);
                free(b);
        }

        /* Engine.IO 3 probes carry data on ping and pong. */
        char *b = exact_copy(LIT("3probe"));
        CHECK_INT(eio_decode(b, 6, &p), 0);
        CHECK_INT(p.type, EIO_PONG);
        CHECK_INT(p.len, 5);
        CHECK(memcmp(p.data, "probe", 5) == 0);
        free(b);

        CHECK_INT(eio_decode(NULL, 0, &p), -EBADMSG);
        CHECK_INT(eio_decode("", 0, &p), -EBADMSG);
        CHECK_INT(eio_decode("7", 1, &p), -EBADMSG);
        CHECK_INT(eio_decode("b4AAA", 5, &p), -EBADMSG);
        CHECK_INT(eio_decode("/", 1, &p), -EBADMSG);
        CHECK_INT(eio_decode(LIT("\0"), &p), -EBADMSG);
        CHECK_INT(eio_decode(NULL, 1, &p), -EINVAL);
        CHECK_INT(eio_decode("2", 1, NULL), -EINVAL);
        /* Only the first byte counts: "4" with len 1 is an empty message. */
        CHECK_INT(eio_decode("42[\"x\"]", 1, &p), 0);
        CHECK_INT(p.len, 0);
}

static void test_eio_open(void) {
        struct eio_open o;
        char json[256];

        CHECK_INT(eio_open("{\"sid\":\"lv_VI97HAXpY6yYWAAAC\",\"upgrades\":[],"
                           "\"pingInterval\":25000,\"pingTimeout\":20000,"
                           "\"maxPayload\":1000000}", &o), 0);
        CHECK_STR(o.sid, "lv_VI97HAXpY6yYWAAAC");
        CHECK_INT(o.ping_interval_ms, 25000);
        CHECK_INT(o.ping_timeout_ms, 20000);
        CHECK_INT(o.max_payload, 1000000);

        /* Engine.IO 3 has no maxPayload. */
        CHECK_INT(eio_open("{\"sid\":\"abc\",\"upgrades\":[\"websocket\"],"
                           "\"pingInterval\":25000,\"pingTimeout\":5000}", &o), 0);
        CHECK_INT(o.max_payload, 0);
        CHECK_INT(o.ping_timeout_ms, 5000);

        /* Limits: one day is fine, one more millisecond is not. */
        CHECK_INT(eio_open("{\"sid\":\"a\",\"pingInterval\":86400000,\"pingTimeout\":1}", &o), 0);
        CHECK_INT(eio_open("{\"sid\":\"a\",\"pingInterval\":86400001,\"pingTimeout\":1}", &o),
                  -EBADMSG);

        static const char *const bad[] = {
                "{\"pingInterval\":25000,\"pingTimeout\":5000}",
                "{\"sid\":\"a\",\"pingTimeout\":5000}",
                "{\"sid\":\"a\",\"pingInterval\":25000}",
                "{\"sid\":\"a\",\"pingInterval\":0,\"pingTimeout\":5000}",
                "{\"sid\":\"a\",\"pingInterval\":25000,\"pingTimeout\":0}",
                "{\"sid\":\"a\",\"pingInterval\":-1,\"pingTimeout\":5000}",
                "{\"sid\":\"a\",\"pingInterval\":99999999999999999999,\"pingTimeout\":5}",
                "{\"sid\":\"a\",\"pingInterval\":9223372036854775807,\"pingTimeout\":5}",
                "{\"sid\":\"a\",\"pingInterval\":25000.5,\"pingTimeout\":5000}",
                "{\"sid\":\"a\",\"pingInterval\":\"25000\",\"pingTimeout\":5000}",
                "{\"sid\":\"a\",\"pingInterval\":null,\"pingTimeout\":5000}",
                "{\"sid\":\"\",\"pingInterval\":25000,\"pingTimeout\":5000}",
                "{\"sid\":7,\"pingInterval\":25000,\"pingTimeout\":5000}",
                "{\"sid\":null,\"pingInterval\":25000,\"pingTimeout\":5000}",
                "{\"sid\":\"a\\u0000b\",\"pingInterval\":25000,\"pingTimeout\":5000}",
                "{\"sid\":\"a\",\"pingInterval\":1,\"pingTimeout\":1,\"maxPayload\":-1}",
                "{\"sid\":\"a\",\"pingInterval\":1,\"pingTimeout\":1,\"maxPayload\":\"1\"}",
                "{\"sid\":\"a\",\"pingInterval\":1,\"pingTimeout\":1}x",
                "{\"sid\":\"a\",\"pingInterval\":1,\"pingTimeout\":1}{}",
                "{\"sid\":\"a\",\"pingInterval\":1,\"pingTimeout\":1",
                "{\"sid\":\"\xff\",\"pingInterval\":1,\"pingTimeout\":1}",
                "[\"sid\",\"a\"]", "\"sid\"", "1", "null", "null ", "", "{}",
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                memset(&o, 0x55, sizeof(o));
                CHECK_INT(eio_open(bad[i], &o), -EBADMSG);
                /* Nothing half-filled is left behind. */
                CHECK_STR(o.sid, "");
                CHECK_INT(o.ping_interval_ms, 0);
        }

        /* sid: 63 bytes fit in sid[64], 64 do not. */
        snprintf(json, sizeof(json), "{\"sid\":\"%.63s\",\"pingInterval\":1,\"pingTimeout\":1}",
                 "0123456789012345678901234567890123456789012345678901234567890123456789");
        CHECK_INT(eio_open(json, &o), 0);
        CHECK_INT(strlen(o.sid), 63);
        snprintf(json, sizeof(json), "{\"sid\":\"%.64s\",\"pingInterval\":1,\"pingTimeout\":1}",
                 "0123456789012345678901234567890123456789012345678901234567890123456789");
        CHECK_INT(eio_open(json, &o), -EBADMSG);

        CHECK_INT(eio_open_parse(NULL, 1, &o), -EINVAL);
        CHECK_INT(eio_open_parse("{}", 2, NULL), -EINVAL);
}

static void test_sio_types(void) {
        struct sio_packet p;

        CHECK_INT(sio(LIT("0"), &p), 0);
        CHECK_INT(p.type, SIO_CONNECT);
        CHECK_STR(p.nsp, "/");
        CHECK_INT(p.ack_id, SIO_NO_ACK_ID);
        CHECK_INT(p.attachments, 0);
        CHECK(!p.data);
        sio_packet_release(&p);

        CHECK_INT(sio(LIT("0{\"token\":\"x\"}"), &p), 0);
        check_json(p.data, "{\"token\":\"x\"}");
        sio_packet_release(&p);
        check_bad(LIT("0[]"));
        check_bad(LIT("0\"x\""));

        CHECK_INT(sio(LIT("1"), &p), 0);
        CHECK_INT(p.type, SIO_DISCONNECT);
        sio_packet_release(&p);
        check_bad(LIT("1{}"));
        check_bad(LIT("1[]"));

        CHECK_INT(sio(LIT("2[\"ActivityAddedEvent\",{\"_id\":\"a1\"}]"), &p), 0);
        CHECK_INT(p.type, SIO_EVENT);
        CHECK_STR(sio_event_name(&p), "ActivityAddedEvent");
        check_json(p.data, "[\"ActivityAddedEvent\",{\"_id\":\"a1\"}]");
        sio_packet_release(&p);
        CHECK_INT(sio(LIT("2[\"\"]"), &p), 0);
        CHECK_STR(sio_event_name(&p), "");
        sio_packet_release(&p);
        check_bad(LIT("2"));
        check_bad(LIT("2[]"));
        check_bad(LIT("2[1]"));
        check_bad(LIT("2[null]"));
        check_bad(LIT("2{}"));
        check_bad(LIT("2\"ev\""));

        CHECK_INT(sio(LIT("312[]"), &p), 0);
        CHECK_INT(p.type, SIO_ACK);
        CHECK_INT(p.ack_id, 12);
        CHECK(!sio_event_name(&p));
        sio_packet_release(&p);
        check_bad(LIT("3[]"));
        check_bad(LIT("312"));
        check_bad(LIT("312{}"));

        CHECK_INT(sio(LIT("4{\"message\":\"Not authorized\"}"), &p), 0);
        CHECK_INT(p.type, SIO_CONNECT_ERROR);
        sio_packet_release(&p);
        /* Socket.IO 2 sends a bare string. */
        CHECK_INT(sio(LIT("4\"Not authorized\""), &p), 0);
        CHECK_STR(json_object_get_string(p.data), "Not authorized");
        sio_packet_release(&p);
        CHECK_INT(sio(LIT("4"), &p), 0);
        sio_packet_release(&p);
        check_bad(LIT("4[]"));
        check_bad(LIT("4true "));

        for (char c = '7'; c <= '9'; c++) {
                char s[] = { c, '[', '"', 'a', '"', ']' };

                check_bad(s, sizeof(s));
        }
        check_bad(LIT(""));
        check_bad(LIT("x"));
        check_bad(LIT("-1"));
        CHECK_INT(sio_decode(NULL, 1, &p), -EINVAL);
        CHECK_INT(sio_decode("0", 1, NULL), -EINVAL);
}

static void test_binary(void) {
        struct sio_packet p;

        CHECK_INT(sio(LIT("51-[\"ev\",{\"_placeholder\":true,\"num\":0}]"), &p), 0);
        CHECK_INT(p.type, SIO_BINARY_EVENT);
        CHECK_INT(p.attachments, 1);
        CHECK_STR(p.nsp, "/");
        CHECK_INT(p.ack_id, SIO_NO_ACK_ID);
        /* The name is for EVENT only: a binary event is not one to forward. */
        CHECK(!sio_event_name(&p));
        sio_packet_release(&p);

        CHECK_INT(sio(LIT("52-/nsp,12[\"ev\",{\"_placeholder\":true,\"num\":0},"
                          "{\"_placeholder\":true,\"num\":1}]"), &p), 0);
        CHECK_INT(p.attachments, 2);
        CHECK_STR(p.nsp, "/nsp");
        CHECK_INT(p.ack_id, 12);
        sio_packet_release(&p);

        CHECK_INT(sio(LIT("51000-[\"ev\"]"), &p), 0);
        CHECK_INT(p.attachments, 1000);
        sio_packet_release(&p);

        CHECK_INT(sio(LIT("61-/admin,7[{\"_placeholder\":true,\"num\":0}]"), &p), 0);
        CHECK_INT(p.type, SIO_BINARY_ACK);
        CHECK_INT(p.attachments, 1);
        CHECK_STR(p.nsp, "/admin");
        CHECK_INT(p.ack_id, 7);
        sio_packet_release(&p);

        check_bad(LIT("5[\"ev\"]"));
        check_bad(LIT("5-[\"ev\"]"));
        check_bad(LIT("50-[\"ev\"]"));
        check_bad(LIT("51001-[\"ev\"]"));
        check_bad(LIT("510000-[\"ev\"]"));
        check_bad(LIT("51[\"ev\"]"));
        check_bad(LIT("51"));
        check_bad(LIT("51-"));
        check_bad(LIT("51-[]"));
        check_bad(LIT("61-[]"));
        check_bad(LIT("6[]"));
        /* Only binary types have a count: here "1" is an ack id, then junk. */
        check_bad(LIT("21-[\"ev\"]"));
}

static void test_namespaces(void) {
        struct sio_packet p;
        char s[400];

        CHECK_INT(sio(LIT("2/admin,[\"a\"]"), &p), 0);
        CHECK_STR(p.nsp, "/admin");
        CHECK_STR(sio_event_name(&p), "a");
        sio_packet_release(&p);

        CHECK_INT(sio(LIT("0/admin,"), &p), 0);
        CHECK_STR(p.nsp, "/admin");
        CHECK(!p.data);
        sio_packet_release(&p);

        /* Like socket.io-parser, the end of the packet also ends it. */
        CHECK_INT(sio(LIT("1/admin"), &p), 0);
        CHECK_STR(p.nsp, "/admin");
        sio_packet_release(&p);

        CHECK_INT(sio(LIT("0/a/b,{\"x\":1}"), &p), 0);
        CHECK_STR(p.nsp, "/a/b");
        sio_packet_release(&p);

        CHECK_INT(sio(LIT("2/,[\"a\"]"), &p), 0);
        CHECK_STR(p.nsp, "/");
        sio_packet_release(&p);

        CHECK_INT(sio(LIT("0/M\xc3\xbcller,"), &p), 0);
        CHECK_STR(p.nsp, "/M\xc3\xbcller");
        sio_packet_release(&p);

        check_bad(LIT("2/admin[\"a\"]"));
        check_bad(LIT("2/\xff,[\"a\"]"));
        check_bad(LIT("2/a\0b,[\"a\"]"));

        /* SIO_NSP_MAX includes the NUL: 255 bytes fit, 256 do not. */
        memset(s, 'n', sizeof(s));
        s[0] = '2';
        s[1] = '/';
        memcpy(s + 1 + 255, ",[\"a\"]", 7);
        CHECK_INT(sio_str(s, &p), 0);
        CHECK_INT(strlen(p.nsp), 255);
        sio_packet_release(&p);
        s[1 + 255] = 'n';
        memcpy(s + 1 + 256, ",[\"a\"]", 7);
        CHECK_INT(sio_str(s, &p), -EBADMSG);
}

static void test_ack_ids(void) {
        struct sio_packet p;

        CHECK_INT(sio(LIT("20[\"a\"]"), &p), 0);
        CHECK_INT(p.ack_id, 0);
        sio_packet_release(&p);

        CHECK_INT(sio(LIT("2007[\"a\"]"), &p), 0);
        CHECK_INT(p.ack_id, 7);
        sio_packet_release(&p);

        CHECK_INT(sio(LIT("2999999999999999[\"a\"]"), &p), 0);
        CHECK_INT(p.ack_id, INT64_C(999999999999999));
        sio_packet_release(&p);

        CHECK_INT(sio(LIT("3/admin,42[1,\"two\"]"), &p), 0);
        CHECK_STR(p.nsp, "/admin");
        CHECK_INT(p.ack_id, 42);
        check_json(p.data, "[1,\"two\"]");
        sio_packet_release(&p);

        /* Sixteen digits are refused, not cut at fifteen. */
        check_bad(LIT("21234567890123456[\"a\"]"));
        check_bad(LIT("39999999999999999[]"));
        check_bad(LIT("3/admin,[]"));
        check_bad(LIT("2-1[\"a\"]"));
}

static void test_invalid_json(void) {
        static const char *const bad[] = {
                "2[\"a\"", "2[\"a\",]", "2['a']", "2[\"a\",tru]", "2[\"a\",{a:1}]",
                "2[\"a\",{\"k\":1,}]", "2[\"a\",01]", "2[\"a\",0x10]", "2[\"a\",+1]",
                "2[\"a\",\"\\x41\"]", "2[\"a\",\"\\u12\"]", "2[\"a\"]//c", "2/*c*/[\"a\"]",
                "2 ", "2[\"a\",\"unterminated]",
                /* json-c's strict mode takes these and prints them back as they
                 * came, which is not JSON; the codec refuses them. */
                "2[\"a\",NaN]", "2[\"a\",Infinity]", "2[\"a\",-Infinity]", "2[\"a\",1.]",
                "2[\"a\",-.5]", "2[\"a\",1.e5]", "2[\"a\",{\"x\":[0.]}]",
                /* json-c clamps these to INT64_MIN / UINT64_MAX without an error. */
                "2[\"a\",20000000000000000000]", "2[\"a\",-9223372036854775809]",
                "2[\"a\",{\"n\":123456789012345678901234567890}]",
                "2[\"a\",18446744073709551615]", "2[\"a\",-9223372036854775808]",
        };
        struct sio_packet p;
        char deep[200];

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                check_bad(bad[i], strlen(bad[i]));

        /* Valid numbers survive as sent, doubles even in their spelling. */
        CHECK_INT(sio(LIT("2[\"a\",1.5e+3,-0.0,1E2,1e999,1.50,9223372036854775807,"
                          "-9223372036854775807,18446744073709551614,0,-1]"), &p), 0);
        check_json(p.data, "[\"a\",1.5e+3,-0.0,1E2,1e999,1.50,9223372036854775807,"
                   "-9223372036854775807,18446744073709551614,0,-1]");
        sio_packet_release(&p);

        /* json-c quirk, harmless: integers lose a sign of zero and leading
         * zeros after a minus, the value stays. */
        CHECK_INT(sio(LIT("2[\"a\",-0,-01]"), &p), 0);
        check_json(p.data, "[\"a\",0,-1]");
        sio_packet_release(&p);

        /* Nesting: the event array plus 63 levels is the limit of 64. */
        for (int levels = 63; levels <= 64; levels++) {
                size_t n = 0;

                memcpy(deep, "2[\"a\",", 6);
                n = 6;
                for (int i = 0; i < levels; i++)
                        deep[n++] = '[';
                for (int i = 0; i < levels; i++)
                        deep[n++] = ']';
                deep[n++] = ']';
                CHECK_INT(sio(deep, n, &p), levels == 63 ? 0 : -EBADMSG);
                sio_packet_release(&p);
        }
}

static void test_trailing(void) {
        struct sio_packet p;

        check_bad(LIT("2[\"a\"]x"));
        check_bad(LIT("2[\"a\"][\"b\"]"));
        check_bad(LIT("2[\"a\"]]"));
        check_bad(LIT("2[\"a\"]\0"));
        check_bad(LIT("2[\"a\"]\0junk"));
        check_bad(LIT("0{}{}"));
        check_bad(LIT("4\"a\"\"b\""));

        /* Whitespace around the JSON is JSON; the servers never send it. */
        CHECK_INT(sio(LIT("2 [\"a\"]\r\n"), &p), 0);
        CHECK_STR(sio_event_name(&p), "a");
        sio_packet_release(&p);
}

static void test_invalid_utf8(void) {
        check_bad(LIT("2[\"a\",\"\xff\"]"));
        check_bad(LIT("2[\"a\",\"\xc0\xaf\"]"));
        check_bad(LIT("2[\"a\",\"\xed\xa0\x80\"]"));
        check_bad(LIT("2[\"a\",\"\xf4\x90\x80\x80\"]"));
        check_bad(LIT("2[\"a\",\"\xe6\x9d\"]"));
        check_bad(LIT("2[\"\xe0\x80\xaf\"]"));
        check_bad(LIT("2[\"a\",{\"\xc3\":1}]"));
        check_bad(LIT("2[\"a\",\"x\0y\"]"));
        check_bad(LIT("2[\"a\",\"x\"]\xc3"));
}

static void test_unicode(void) {
        static const char text[] = "M\xc3\xbcller \xe6\x9d\xb1\xe4\xba\xac \xf0\x9f\x98\x80";
        struct sio_packet p;
        char msg[256];
        char *frame;

        snprintf(msg, sizeof(msg), "2[\"%s\",{\"name\":\"%s\"}]", text, text);
        CHECK_INT(sio_str(msg, &p), 0);
        CHECK_STR(sio_event_name(&p), text);
        /* Re-serialised byte for byte, no \u escapes. */
        check_json(p.data, msg + 1);
        sio_packet_release(&p);

        CHECK_INT(sio(LIT("2[\"\\u00fc\",\"\\ud83d\\ude00\",\"\\u6771\"]"), &p), 0);
        CHECK_STR(sio_event_name(&p), "\xc3\xbc");
        check_json(p.data, "[\"\xc3\xbc\",\"\xf0\x9f\x98\x80\",\"\xe6\x9d\xb1\"]");
        sio_packet_release(&p);

        CHECK_INT(sio_encode_event(NULL, SIO_NO_ACK_ID, text, NULL, &frame), 0);
        snprintf(msg, sizeof(msg), "42[\"%s\"]", text);
        CHECK_STR(frame, msg);
        free(frame);
}

/* What json-c does with escapes that have no place in a C string or in
 * UTF-8, and what the codec makes of it. */
static void test_escapes(void) {
        struct sio_packet p;
        json_object *v;
        char offset[16];

        /* A NUL in a string value is kept (the length counts it) and written
         * back as \u0000, so the payload stays what the server sent. Code that
         * reads such a value as a C string must check the length. */
        CHECK_INT(sio(LIT("2[\"a\",\"x\\u0000y\",{\"k\":\"\\u0000\"}]"), &p), 0);
        v = json_object_array_get_idx(p.data, 1);
        CHECK_INT(json_object_get_string_len(v), 3);
        CHECK_INT(strlen(json_object_get_string(v)), 1);
        check_json(p.data, "[\"a\",\"x\\u0000y\",{\"k\":\"\\u0000\"}]");
        /* ... but such a string is no offset. */
        CHECK_INT(sio_event_take_offset(&p, offset, sizeof(offset)), -EBADMSG);
        sio_packet_release(&p);

        /* The event name is handed out as a C string: refused. */
        check_bad(LIT("2[\"ActivityAddedEvent\\u0000x\"]"));
        /* json-c would cut the key to "k" (and overwrite a real "k"): refused. */
        check_bad(LIT("2[\"a\",{\"k\\u0000\":1}]"));
        check_bad(LIT("2[\"a\",{\"k\":1,\"k\\u0000\" :2}]"));
        check_bad(LIT("0{\"\\u0000\":1}"));

        /* An escaped backslash is no escape: this is the text \u0000. */
        CHECK_INT(sio(LIT("2[\"a\",{\"\\\\u0000\":\"\\\\u0000\"}]"), &p), 0);
        check_json(p.data, "[\"a\",{\"\\\\u0000\":\"\\\\u0000\"}]");
        sio_packet_release(&p);

        /* json-c would turn lone surrogate escapes into U+FFFD, which is not
         * what the server sent: refused. Proper pairs and escaped
         * backslashes before a 'u' are fine. */
        check_bad(LIT("2[\"a\",\"\\ud800\"]"));
        check_bad(LIT("2[\"a\",\"\\udc00x\"]"));
        check_bad(LIT("2[\"a\",\"\\ud800\\u0041\"]"));
        check_bad(LIT("2[\"a\",{\"\\uDBFF\":1}]"));
        CHECK_INT(sio(LIT("2[\"a\",\"\\ud83d\\ude00\",\"\\\\ud800\"]"), &p), 0);
        check_json(p.data, "[\"a\",\"\xf0\x9f\x98\x80\",\"\\\\ud800\"]");
        sio_packet_release(&p);

        /* Raw control characters in strings are not JSON (RFC 8259), though
         * json-c's strict mode lets them through: refused. DEL is no control
         * character there, and escaped ones are fine. */
        check_bad(LIT("2[\"a\",\"\x01\"]"));
        check_bad(LIT("2[\"a\",\"x\ty\"]"));
        check_bad(LIT("2[\"a\",{\"k\x1f\":1}]"));
        CHECK_INT(sio(LIT("2[\"a\",\"\\u0001\\t\x7f\"]"), &p), 0);
        check_json(p.data, "[\"a\",\"\\u0001\\t\x7f\"]");
        sio_packet_release(&p);

        /* Duplicate keys: the last one wins. */
        CHECK_INT(sio(LIT("2[\"a\",{\"_id\":\"1\",\"_id\":\"2\"}]"), &p), 0);
        check_json(p.data, "[\"a\",{\"_id\":\"2\"}]");
        sio_packet_release(&p);
}

static void test_offset(void) {
        struct sio_packet p;
        char offset[16];

        CHECK_INT(sio(LIT("2[\"ev\",{\"x\":1},\"MzUPkW0\"]"), &p), 0);
        CHECK_INT(sio_event_take_offset(&p, offset, sizeof(offset)), 0);
        CHECK_STR(offset, "MzUPkW0");
        check_json(p.data, "[\"ev\",{\"x\":1}]");
        /* Again: now {"x":1} is last and no string. */
        CHECK_INT(sio_event_take_offset(&p, offset, sizeof(offset)), -EBADMSG);
        check_json(p.data, "[\"ev\",{\"x\":1}]");
        sio_packet_release(&p);

        CHECK_INT(sio(LIT("2[\"ev\",\"o\"]"), &p), 0);
        CHECK_INT(sio_event_take_offset(&p, offset, sizeof(offset)), 0);
        CHECK_STR(offset, "o");
        check_json(p.data, "[\"ev\"]");
        CHECK_INT(sio_event_take_offset(&p, offset, sizeof(offset)), -EBADMSG);
        sio_packet_release(&p);

        /* Size includes the NUL: 15 bytes fit in 16, 16 do not, and a refused
         * offset leaves the packet as it was. */
        CHECK_INT(sio(LIT("2[\"ev\",\"0123456789abcde\"]"), &p), 0);
        CHECK_INT(sio_event_take_offset(&p, offset, sizeof(offset)), 0);
        CHECK_STR(offset, "0123456789abcde");
        sio_packet_release(&p);
        CHECK_INT(sio(LIT("2[\"ev\",\"0123456789abcdef\"]"), &p), 0);
        CHECK_INT(sio_event_take_offset(&p, offset, sizeof(offset)), -EBADMSG);
        check_json(p.data, "[\"ev\",\"0123456789abcdef\"]");
        CHECK_INT(sio_event_take_offset(&p, offset, 0), -EINVAL);
        CHECK_INT(sio_event_take_offset(&p, NULL, 16), -EINVAL);
        sio_packet_release(&p);

        CHECK_INT(sio(LIT("2[\"ev\",{\"x\":1},2]"), &p), 0);
        CHECK_INT(sio_event_take_offset(&p, offset, sizeof(offset)), -EBADMSG);
        sio_packet_release(&p);

        CHECK_INT(sio(LIT("312[\"x\",\"y\"]"), &p), 0);
        CHECK_INT(sio_event_take_offset(&p, offset, sizeof(offset)), -EINVAL);
        sio_packet_release(&p);
        CHECK_INT(sio(LIT("51-[\"ev\",{\"_placeholder\":true,\"num\":0},\"o\"]"), &p), 0);
        CHECK_INT(sio_event_take_offset(&p, offset, sizeof(offset)), -EINVAL);
        sio_packet_release(&p);
        /* Released twice, and a zeroed packet: both fine. */
        sio_packet_release(&p);
        sio_packet_release(&(struct sio_packet) {});
        sio_packet_release(NULL);
}

static void test_connect_reply(void) {
        static const char sid64[] = "0123456789012345678901234567890123456789"
                                    "012345678901234567890123";
        struct sio_connect_reply r;
        struct sio_packet p;
        char msg[256];

        CHECK_INT(strlen(sid64), 64);
        CHECK_INT(sio(LIT("0{\"sid\":\"wZX3oN0bSVIhsaknAAAI\"}"), &p), 0);
        CHECK_INT(sio_connect_reply_parse(&p, &r), 0);
        CHECK_STR(r.sid, "wZX3oN0bSVIhsaknAAAI");
        CHECK_STR(r.pid, "");
        sio_packet_release(&p);

        CHECK_INT(sio(LIT("0/admin,{\"sid\":\"s1\",\"pid\":\"p1\"}"), &p), 0);
        CHECK_INT(sio_connect_reply_parse(&p, &r), 0);
        CHECK_STR(r.sid, "s1");
        CHECK_STR(r.pid, "p1");
        sio_packet_release(&p);

        CHECK_INT(sio(LIT("0{\"sid\":\"s1\",\"pid\":null}"), &p), 0);
        CHECK_INT(sio_connect_reply_parse(&p, &r), 0);
        CHECK_STR(r.pid, "");
        sio_packet_release(&p);

        /* Socket.IO 2: `40` without sid. */
        static const char *const v2[] = { "0", "0{}", "0{\"pid\":\"p\"}", "0/admin," };
        for (size_t i = 0; i < sizeof(v2) / sizeof(v2[0]); i++) {
                CHECK_INT(sio_str(v2[i], &p), 0);
                CHECK_INT(sio_connect_reply_parse(&p, &r), -EPROTO);
                sio_packet_release(&p);
        }

        static const char *const bad[] = {
                "0{\"sid\":1}", "0{\"sid\":\"\"}", "0{\"sid\":null}", "0{\"sid\":[\"x\"]}",
                "0{\"sid\":\"s\",\"pid\":5}", "0{\"sid\":\"s\\u0000t\"}",
                "0{\"sid\":\"s\",\"pid\":\"p\\u0000\"}",
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                CHECK_INT(sio_str(bad[i], &p), 0);
                memset(&r, 'x', sizeof(r));
                CHECK_INT(sio_connect_reply_parse(&p, &r), -EBADMSG);
                CHECK_STR(r.sid, "");
                CHECK_STR(r.pid, "");
                sio_packet_release(&p);
        }

        snprintf(msg, sizeof(msg), "0{\"sid\":\"%.63s\",\"pid\":\"%.63s\"}", sid64, sid64);
        CHECK_INT(sio_str(msg, &p), 0);
        CHECK_INT(sio_connect_reply_parse(&p, &r), 0);
        CHECK_INT(strlen(r.sid), 63);
        CHECK_INT(strlen(r.pid), 63);
        sio_packet_release(&p);
        snprintf(msg, sizeof(msg), "0{\"sid\":\"%s\"}", sid64);
        CHECK_INT(sio_str(msg, &p), 0);
        CHECK_INT(sio_connect_reply_parse(&p, &r), -EBADMSG);
        sio_packet_release(&p);
        snprintf(msg, sizeof(msg), "0{\"sid\":\"s\",\"pid\":\"%s\"}", sid64);
        CHECK_INT(sio_str(msg, &p), 0);
        CHECK_INT(sio_connect_reply_parse(&p, &r), -EBADMSG);
        sio_packet_release(&p);

        CHECK_INT(sio(LIT("2[\"sid\"]"), &p), 0);
        CHECK_INT(sio_connect_reply_parse(&p, &r), -EINVAL);
        sio_packet_release(&p);
        CHECK_INT(sio_connect_reply_parse(NULL, &r), -EINVAL);
}

/* Takes the frame by address: it is only set once the encoder has run. */
static void check_frame(int r, char **frame, const char *expected) {
        CHECK_INT(r, 0);
        CHECK_STR(*frame, expected);
        free(*frame);
        *frame = NULL;
}

static void test_encode_connect(void) {
        json_object *auth =
                json_tokener_parse("{\"token\":\"a/b.c\",\"pid\":\"p\",\"offset\":\"o\"}");
        char nsp[300];
        char *f = NULL;

        CHECK(auth);
        check_frame(sio_encode_connect(NULL, NULL, &f), &f, "40");
        check_frame(sio_encode_connect("/", NULL, &f), &f, "40");
        check_frame(sio_encode_connect("/admin", NULL, &f), &f, "40/admin,");
        check_frame(sio_encode_connect(NULL, auth, &f), &f,
                    "40{\"token\":\"a/b.c\",\"pid\":\"p\",\"offset\":\"o\"}");
        check_frame(sio_encode_connect("/admin", auth, &f), &f,
                    "40/admin,{\"token\":\"a/b.c\",\"pid\":\"p\",\"offset\":\"o\"}");
        json_object_put(auth);

        auth = json_object_new_object();
        check_frame(sio_encode_connect(NULL, auth, &f), &f, "40{}");
        json_object_put(auth);

        auth = json_object_new_array();
        CHECK_INT(sio_encode_connect(NULL, auth, &f), -EINVAL);
        CHECK(!f);
        json_object_put(auth);

        CHECK_INT(sio_encode_connect("admin", NULL, &f), -EINVAL);
        CHECK_INT(sio_encode_connect("/a,b", NULL, &f), -EINVAL);
        CHECK_INT(sio_encode_connect("", NULL, &f), -EINVAL);
        CHECK_INT(sio_encode_connect("/\xff", NULL, &f), -EINVAL);
        CHECK_INT(sio_encode_connect(NULL, NULL, NULL), -EINVAL);

        memset(nsp, 'n', sizeof(nsp));
        nsp[0] = '/';
        nsp[255] = '\0';
        CHECK_INT(sio_encode_connect(nsp, NULL, &f), 0);
        CHECK_INT(strlen(f), 2 + 255 + 1);
        free(f);
        nsp[255] = 'n';
        nsp[256] = '\0';
        CHECK_INT(sio_encode_connect(nsp, NULL, &f), -EINVAL);
}

static void test_encode_event(void) {
        json_object *arg = json_tokener_parse(
                "{\"_personID\":\"p1\",\"headers\":{\"authorization\":\"Bearer x.y/z\"}}");
        char *f = NULL;

        CHECK(arg);
        check_frame(sio_encode_event(NULL, SIO_NO_ACK_ID, "activities", arg, &f), &f,
                    "42[\"activities\",{\"_personID\":\"p1\","
                    "\"headers\":{\"authorization\":\"Bearer x.y/z\"}}]");
        check_frame(sio_encode_event("/", 12, "activities-by-person", arg, &f), &f,
                    "4212[\"activities-by-person\",{\"_personID\":\"p1\","
                    "\"headers\":{\"authorization\":\"Bearer x.y/z\"}}]");
        /* arg is still the caller's, with its one reference. */
        CHECK_INT(json_object_put(arg), 1);

        check_frame(sio_encode_event(NULL, SIO_NO_ACK_ID, "ping", NULL, &f), &f, "42[\"ping\"]");
        check_frame(sio_encode_event(NULL, 0, "x", NULL, &f), &f, "420[\"x\"]");
        check_frame(sio_encode_event("/admin", 7, "x", NULL, &f), &f, "42/admin,7[\"x\"]");
        check_frame(sio_encode_event(NULL, INT64_C(999999999999999), "x", NULL, &f), &f,
                    "42999999999999999[\"x\"]");
        check_frame(sio_encode_event(NULL, SIO_NO_ACK_ID, "", NULL, &f), &f, "42[\"\"]");
        check_frame(sio_encode_event(NULL, SIO_NO_ACK_ID, "q\"b\\s/\n\x01", NULL, &f), &f,
                    "42[\"q\\\"b\\\\s/\\n\\u0001\"]");

        arg = json_object_new_string("s");
        check_frame(sio_encode_event(NULL, SIO_NO_ACK_ID, "x", arg, &f), &f, "42[\"x\",\"s\"]");
        json_object_put(arg);

        CHECK_INT(sio_encode_event(NULL, INT64_C(1000000000000000), "x", NULL, &f), -EINVAL);
        CHECK(!f);
        CHECK_INT(sio_encode_event(NULL, -2, "x", NULL, &f), -EINVAL);
        CHECK_INT(sio_encode_event(NULL, INT64_MIN, "x", NULL, &f), -EINVAL);
        CHECK_INT(sio_encode_event(NULL, SIO_NO_ACK_ID, NULL, NULL, &f), -EINVAL);
        CHECK_INT(sio_encode_event(NULL, SIO_NO_ACK_ID, "\xc0\xaf", NULL, &f), -EINVAL);
        CHECK_INT(sio_encode_event("x", SIO_NO_ACK_ID, "x", NULL, &f), -EINVAL);
        CHECK_INT(sio_encode_event(NULL, SIO_NO_ACK_ID, "x", NULL, NULL), -EINVAL);
}

/* What the client sends, the decoder (as the server) reads back the same. */
static void test_round_trip(void) {
        json_object *arg = json_tokener_parse("{\"_importID\":\"i\\u00fc\",\"n\":[1,2.5,null]}");
        struct eio_packet e;
        struct sio_packet p;
        char *f;

        CHECK(arg);
        CHECK_INT(sio_encode_event("/imports", 31, "connectImportID", arg, &f), 0);
        CHECK_INT(eio_decode(f, strlen(f), &e), 0);
        CHECK_INT(e.type, EIO_MESSAGE);
        CHECK_INT(sio(e.data, e.len, &p), 0);
        CHECK_INT(p.type, SIO_EVENT);
        CHECK_STR(p.nsp, "/imports");
        CHECK_INT(p.ack_id, 31);
        CHECK_STR(sio_event_name(&p), "connectImportID");
        CHECK(json_object_equal(json_object_array_get_idx(p.data, 1), arg));
        sio_packet_release(&p);
        free(f);

        CHECK_INT(sio_encode_connect("/imports", arg, &f), 0);
        CHECK_INT(eio_decode(f, strlen(f), &e), 0);
        CHECK_INT(sio(e.data, e.len, &p), 0);
        CHECK_INT(p.type, SIO_CONNECT);
        CHECK(json_object_equal(p.data, arg));
        sio_packet_release(&p);
        free(f);
        json_object_put(arg);
}

/* Every prefix of good packets, each in a buffer of exactly its length:
 * whatever the verdict, ASan sees no read past the end. */
static void test_prefixes(void) {
        static const char *const packets[] = {
                "52-/nsp,12[\"ev\",{\"_placeholder\":true,\"num\":0},\"\xf0\x9f\x98\x80\"]",
                "0/admin,{\"sid\":\"abc\",\"pid\":\"p\"}",
                "2[\"a\",1.5e+3,-12,true,false,null,\"\\u00fc\\ud83d\\ude00\\\\\"]",
                "4\"Not authorized\"",
                "312[{\"k\\u0000\":1}]",
        };
        struct sio_packet p;
        struct eio_open o;
        char *b;

        for (size_t i = 0; i < sizeof(packets) / sizeof(packets[0]); i++) {
                size_t len = strlen(packets[i]);

                for (size_t n = 0; n <= len; n++) {
                        b = exact_copy(packets[i], n);
                        if (sio_decode(b, n, &p) >= 0)
                                sio_packet_release(&p);
                        (void) utf8_is_valid(b, n);
                        free(b);
                }
        }

        static const char open[] = "{\"sid\":\"a\",\"pingInterval\":1,\"pingTimeout\":2}";
        for (size_t n = 0; n < sizeof(open) - 1; n++) {
                b = exact_copy(open, n);
                CHECK_INT(eio_open_parse(b, n, &o), -EBADMSG);
                free(b);
        }

        /* Bytes after len are not looked at. */
        CHECK_INT(sio_decode("2[\"a\"]garbage", 6, &p), 0);
        sio_packet_release(&p);
        CHECK_INT(sio_decode("2[\"a\"]\"]", 8, &p), -EBADMSG);
}

int main(void) {
        test_utf8();
        test_utf8_scrub();
        test_utf8_decode();
        test_utf8_every_offset();
        test_eio_decode();
        test_eio_open();
        test_sio_types();
        test_binary();
        test_namespaces();
        test_ack_ids();
        test_invalid_json();
        test_trailing();
        test_invalid_utf8();
        test_unicode();
        test_escapes();
        test_offset();
        test_connect_reply();
        test_encode_connect();
        test_encode_event();
        test_round_trip();
        test_prefixes();
        return 0;
}
