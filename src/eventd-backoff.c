/* SPDX-License-Identifier: MIT */
/*
 * Exponential backoff with full jitter ("sleep = random(0, cap)"), which
 * spreads a crowd of clients best after a server restart. Pure arithmetic;
 * the caller supplies the randomness so tests can pin it.
 */
#include "eventd-backoff.h"

#define USEC_PER_MSEC 1000ULL

void backoff_init(struct backoff *b, uint64_t initial_usec, uint64_t max_usec) {
        b->initial_usec = initial_usec;
        b->max_usec = max_usec < initial_usec ? initial_usec : max_usec;
        b->failures = 0;
}

uint64_t backoff_ceiling(const struct backoff *b) {
        uint64_t cap = b->initial_usec;

        for (unsigned i = 0; i < b->failures && cap < b->max_usec; i++)
                cap = cap > b->max_usec / 2 ? b->max_usec : cap * 2;

        return cap < b->max_usec ? cap : b->max_usec;
}

uint64_t backoff_next(struct backoff *b, uint64_t r) {
        uint64_t cap = backoff_ceiling(b);
        uint64_t floor = b->initial_usec / 10;
        uint64_t delay;

        if (floor > 100 * USEC_PER_MSEC)
                floor = 100 * USEC_PER_MSEC;

        /* r / (UINT64_MAX / (span + 1)) maps r uniformly enough onto 0..span */
        if (cap <= floor)
                delay = floor;
        else {
                uint64_t span = cap - floor;
                uint64_t bucket = UINT64_MAX / (span + 1) + 1;

                delay = floor + r / bucket;
                if (delay > cap)
                        delay = cap;
        }

        if (b->failures < 64)
                b->failures++;
        return delay;
}

void backoff_reset(struct backoff *b) {
        b->failures = 0;
}

uint64_t backoff_held_usec(const struct backoff *b) {
        /* Long enough that a server which accepts and then drops every
         * connection keeps being backed off: the longest delay, or ten of the
         * shortest when that is more. */
        uint64_t held = 10 * b->initial_usec;

        return held > b->max_usec ? held : b->max_usec;
}
