/* SPDX-License-Identifier: MIT */
/*
 * Eight bytes at a time, for the scanners that look at every byte of every
 * event (UTF-8 and JSON string checks): most bytes are plain, and a word
 * test proves eight of them plain at once. The tests are exact about
 * whether some byte matches, not about which one; the callers then go
 * byte by byte.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#define WORD_ONES  UINT64_C(0x0101010101010101)
#define WORD_HIGHS UINT64_C(0x8080808080808080)

static inline uint64_t word_load(const void *p) {
        uint64_t w;

        memcpy(&w, p, sizeof(w));       /* unaligned, in one instruction */
        return w;
}

/* Some byte of w is below n (n <= 128). */
static inline bool word_has_below(uint64_t w, uint8_t n) {
        return ((w - WORD_ONES * n) & ~w & WORD_HIGHS) != 0;
}

/* Some byte of w is c. */
static inline bool word_has_byte(uint64_t w, uint8_t c) {
        return word_has_below(w ^ (WORD_ONES * c), 1);
}

/* Every byte of w is 0x01..0x7f: ASCII without NUL. */
static inline bool word_is_ascii(uint64_t w) {
        return ((w - WORD_ONES) | w) & WORD_HIGHS ? false : true;
}
