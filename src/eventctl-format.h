/* SPDX-License-Identifier: MIT */
/*
 * How samdock-eventctl shows what comes off the bus: text with whatever a
 * terminal would act on escaped, spans and times as systemctl shows them, and
 * a signal as one line or as one JSON object. No bus and no clock here: the
 * caller reads the signal and passes the time, so all of it is testable.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

/* One basic argument of a signal. */
struct signal_arg {
        char type;                      /* one of "sogbynqiuxtd" */
        union {                         /* what sd_bus_message_read_basic() writes */
                const char *s;
                int b;
                uint8_t y;
                int16_t n;
                uint16_t q;
                int32_t i;
                uint32_t u;
                int64_t x;
                uint64_t t;
                double d;
        } value;
};

/* Writes s to f with the C0 controls and DEL as \xNN and the C1 controls,
 * U+2028, U+2029 and the bidi embeddings, overrides and isolates as \uXXXX,
 * cut with an ellipsis so that it takes at most *budget columns; *budget
 * is left with what remains. */
void format_cut(FILE *f, const char *s, size_t *budget);
/* The same, never cut. */
void format_text(FILE *f, const char *s);
/* Writes JSON text and a newline to f, with DEL and the characters that
 * format_cut() shows as \uXXXX written as JSON escapes: it reads back as
 * the same value. */
void format_json(FILE *f, const char *json);

/* "450ms", "3.2s", "5min 3s", "2h 10min", "3d 4h". */
const char *format_span(char buf[static 32], uint64_t usec);
/* "Tue 2024-05-07 12:00:00 CEST (5min 3s ago)", in local time; both in µs of
 * CLOCK_REALTIME. */
const char *format_when(char buf[static 96], uint64_t usec, uint64_t now);

/* One line for a signal that arrived at `when` (CLOCK_REALTIME): local time,
 * member, labelled leading arguments, payload; at most width columns. */
void format_signal_line(FILE *f, const struct timespec *when, const char *member,
                        const struct signal_arg *args, size_t n, size_t width);
/* One JSON object and a newline: {"time","member","args","payload"}. */
void format_signal_json(FILE *f, const struct timespec *when, const char *member,
                        const struct signal_arg *args, size_t n);
