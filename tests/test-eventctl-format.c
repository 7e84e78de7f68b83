/* SPDX-License-Identifier: MIT */
/* samdock-eventctl's output: what a terminal would act on is escaped, and
 * nothing else; lines are cut to their width in columns; --json stays JSON
 * with the same content; spans, times and signal lines read as documented. */
#include <locale.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eventctl-format.h"
#include "test-util.h"

#define SEC 1000000ULL
/* C allows no \u escape below U+00A0: the C1 controls in UTF-8. */
#define C1_FIRST "\xc2\x80"
#define NEL "\xc2\x85"
#define CSI "\xc2\x9b"
#define C1_LAST "\xc2\x9f"
/* Tue 2024-05-07 12:00:00 UTC */
#define TUESDAY_NOON 1715083200

static const char plain[] = "M\u00fcller \u6771\u4eac \U0001f600";

/* What one of the writers put out, as a string to compare and free. */
struct capture {
        FILE *f;
        char *text;
        size_t size;
};

static FILE *capture_start(struct capture *c) {
        c->f = open_memstream(&c->text, &c->size);
        CHECK(c->f);
        return c->f;
}

static char *capture_end(struct capture *c) {
        CHECK(fclose(c->f) == 0);
        return c->text;
}

static void check_text(const char *in, const char *expected) {
        struct capture c;

        format_text(capture_start(&c), in);
        CHECK_STR(capture_end(&c), expected);
        free(c.text);
}

static void check_cut(const char *in, size_t budget, const char *expected, size_t left) {
        struct capture c;

        format_cut(capture_start(&c), in, &budget);
        CHECK_STR(capture_end(&c), expected);
        CHECK_INT(budget, left);
        free(c.text);
}

static void check_json(const char *in, const char *expected) {
        struct capture c;

        format_json(capture_start(&c), in);
        CHECK_STR(capture_end(&c), expected);
        free(c.text);
}

static void test_escapes(void) {
        /* C0 and DEL, as before */
        check_text("a\nb\x1b[2Jc\x7f", "a\\x0ab\\x1b[2Jc\\x7f");
        /* C1 controls, first, CSI, NEL and last */
        check_text("a" C1_FIRST "b" CSI "2Jc" NEL "d" C1_LAST,
                   "a\\u0080b\\u009b2Jc\\u0085d\\u009f");
        /* line and paragraph separators */
        check_text("a\u2028b\u2029c", "a\\u2028b\\u2029c");
        /* bidi embeddings, overrides and isolates */
        check_text("\u202a\u202b\u202c\u202d\u202e", "\\u202a\\u202b\\u202c\\u202d\\u202e");
        check_text("\u2066\u2067\u2068\u2069", "\\u2066\\u2067\\u2068\\u2069");
        /* their neighbours are ordinary text */
        check_text("~\u00a0\u2027\u202f\u2065\u206a", "~\u00a0\u2027\u202f\u2065\u206a");
        check_text(plain, plain);
        /* bytes that start no character (never from sd-bus) are shown, not sent */
        check_text("a\xff" "b\xc2" "c\xe2\x80", "a\\xffb\\xc2c\\xe2\\x80");
        check_text("\xc0\xaf\xed\xa0\x80", "\\xc0\\xaf\\xed\\xa0\\x80");
}

static void test_cut(void) {
        /* wide characters take two columns; an ellipsis ends a cut line */
        check_cut("\u6771\u4eac\u6771\u4eac\u6771\u4eac", 10, "\u6771\u4eac\u6771\u4eac\u2026", 0);
        /* what fits, fits, with the rest of the budget left */
        check_cut(plain, 20, plain, 20 - 14);
        check_cut("abc", 3, "abc", 0);
        /* an escape takes as many columns as it has characters */
        check_cut("\u202eabc", 7, "\\u202e\u2026", 0);
        check_cut("\u202e", 6, "\\u202e", 0);
}

static void test_c_locale(void) {
        /* LANG=C: still decoded as UTF-8, as the terminal will show it */
        CHECK(setlocale(LC_ALL, "C"));
        check_text("a" CSI "b\u202ec\x1b", "a\\u009bb\\u202ec\\x1b");
        check_text(plain, plain);
        check_cut("abcdefgh", 6, "abc...", 0);
        CHECK(setlocale(LC_ALL, "C.UTF-8"));
}

static void test_json(void) {
        /* the same value, read back: only escapes inside strings change */
        check_json("{\"a\":\"x" CSI "y\u202ez\x7f\",\"b\":[\"\u2028\"]}",
                   "{\"a\":\"x\\u009by\\u202ez\\u007f\",\"b\":[\"\\u2028\"]}\n");
        check_json("[\"\\n\\u001b\"]", "[\"\\n\\u001b\"]\n");
        check_json("{\"name\":\"M\u00fcller \u6771\u4eac \U0001f600\"}",
                   "{\"name\":\"M\u00fcller \u6771\u4eac \U0001f600\"}\n");
}

static void test_span(void) {
        char buf[32];

        CHECK_STR(format_span(buf, 450 * 1000), "450ms");
        CHECK_STR(format_span(buf, 3200 * 1000), "3.2s");
        CHECK_STR(format_span(buf, (5 * 60 + 3) * SEC), "5min 3s");
        CHECK_STR(format_span(buf, (2 * 3600 + 10 * 60 + 59) * SEC), "2h 10min");
        CHECK_STR(format_span(buf, (3 * 86400 + 4 * 3600) * SEC), "3d 4h");
}

static void test_when(void) {
        uint64_t noon = TUESDAY_NOON * SEC;
        char buf[96];

        CHECK_STR(format_when(buf, noon, noon + 303 * SEC),
                  "Tue 2024-05-07 12:00:00 UTC (5min 3s ago)");
        CHECK_STR(format_when(buf, noon, noon - 1500 * 1000),
                  "Tue 2024-05-07 12:00:00 UTC (in 1.5s)");
}

static void check_line(const char *member, const struct signal_arg *args, size_t n,
                       size_t width, const char *expected) {
        const struct timespec when = { TUESDAY_NOON + 3661, 23456789 };
        struct capture c;

        format_signal_line(capture_start(&c), &when, member, args, n, width);
        CHECK_STR(capture_end(&c), expected);
        free(c.text);
}

static void test_signal_line(void) {
        const struct signal_arg event[] = {
                { 's', { .s = "activities" } },
                { 's', { .s = "Sneaky\u202eEvent" } },
                { 's', { .s = "{\"t\":\"" CSI "\"}" } },
        };
        const struct signal_arg added[] = {
                { 's', { .s = "p\u2028q" } },
                { 's', { .s = "{\"_id\":\"p\u2028q\"}" } },
        };
        const struct signal_arg resumed[] = {
                { 's', { .s = "activities" } },
                { 'b', { .b = 0 } },
                { 't', { .t = 4100 * 1000 } },
        };

        check_line("Event", event, 3, 200,
                   "13:01:01.023 Event stream=activities name=Sneaky\\u202eEvent "
                   "{\"t\":\"\\u009b\"}\n");
        check_line("ActivityAdded", added, 2, 200,
                   "13:01:01.023 ActivityAdded id=p\\u2028q {\"_id\":\"p\\u2028q\"}\n");
        check_line("Resumed", resumed, 3, 200,
                   "13:01:01.023 Resumed stream=activities recovered=no offline=4.1s\n");
        /* 13 columns of time, then 27 for the rest */
        check_line("ActivityAdded", added, 2, 40,
                   "13:01:01.023 ActivityAdded id=p\\u2028q \u2026\n");
}

static void test_signal_json(void) {
        const struct timespec when = { TUESDAY_NOON, 123456789 };
        const struct signal_arg added[] = {
                { 's', { .s = "p\u2028q" } },
                { 's', { .s = "{\"_id\":\"p\u2028q\",\"n\":1}" } },
        };
        const struct signal_arg broken[] = {
                { 's', { .s = "x" } },
                { 's', { .s = "{not json" } },
        };
        const struct signal_arg resumed[] = {
                { 's', { .s = "import" } },
                { 'b', { .b = 1 } },
                { 't', { .t = 18446744073709551615ULL } },
        };
        struct capture c;
        FILE *f = capture_start(&c);

        format_signal_json(f, &when, "ActivityAdded", added, 2);
        format_signal_json(f, &when, "ActivityAdded", broken, 2);
        format_signal_json(f, &when, "Resumed", resumed, 3);
        CHECK_STR(capture_end(&c),
                  "{\"time\":\"2024-05-07T12:00:00.123456Z\",\"member\":\"ActivityAdded\","
                  "\"args\":[\"p\\u2028q\",\"{\\\"_id\\\":\\\"p\\u2028q\\\",\\\"n\\\":1}\"],"
                  "\"payload\":{\"_id\":\"p\\u2028q\",\"n\":1}}\n"
                  "{\"time\":\"2024-05-07T12:00:00.123456Z\",\"member\":\"ActivityAdded\","
                  "\"args\":[\"x\",\"{not json\"],\"payload\":null}\n"
                  "{\"time\":\"2024-05-07T12:00:00.123456Z\",\"member\":\"Resumed\","
                  "\"args\":[\"import\",true,18446744073709551615]}\n");
        free(c.text);
}

int main(void) {
        setenv("TZ", "UTC", 1);
        tzset();
        CHECK(setlocale(LC_ALL, "C.UTF-8"));

        test_escapes();
        test_cut();
        test_c_locale();
        test_json();
        test_span();
        test_when();
        test_signal_line();
        test_signal_json();
        printf("test-eventctl-format: ok\n");
        return 0;
}
