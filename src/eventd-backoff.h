/* SPDX-License-Identifier: MIT */
/*
 * Reconnect delays: exponential with full jitter. The n-th failure in a row
 * waits a uniformly random time in [0, min(max, initial * 2^n)], except that
 * the first retry after a long-held connection never waits less than a small
 * floor, so that a server restart does not get every client back at once
 * and a flapping link does not spin.
 */
#pragma once

#include <stdint.h>

struct backoff {
        uint64_t initial_usec;
        uint64_t max_usec;
        unsigned failures;      /* failed attempts since the last reset */
};

void backoff_init(struct backoff *b, uint64_t initial_usec, uint64_t max_usec);
/* The cap for the next delay, before jitter. */
uint64_t backoff_ceiling(const struct backoff *b);
/* Picks the next delay with random value r in [0, UINT64_MAX], and counts
 * the failure. Never below min(initial/10, 100 ms). */
uint64_t backoff_next(struct backoff *b, uint64_t r);
/* After a connection held long enough (see backoff_held_usec). */
void backoff_reset(struct backoff *b);
/* How long a connection must hold before the delay starts over. */
uint64_t backoff_held_usec(const struct backoff *b);
