/* SPDX-License-Identifier: MIT */
/* Backoff: the ceiling doubles to the maximum, jitter stays inside it, a
 * reset starts over, and the floor keeps a retry loop from spinning. */
#include <stdint.h>

#include "eventd-backoff.h"
#include "test-util.h"

#define SEC 1000000ULL

static void test_doubling(void) {
        struct backoff b;
        const uint64_t expected[] = { 1, 2, 4, 8, 16, 32, 60, 60, 60 };

        backoff_init(&b, 1 * SEC, 60 * SEC);
        for (size_t i = 0; i < sizeof(expected) / sizeof(expected[0]); i++) {
                CHECK_INT(backoff_ceiling(&b), expected[i] * SEC);
                /* The largest random value gives the ceiling itself. */
                CHECK_INT(backoff_next(&b, UINT64_MAX), expected[i] * SEC);
        }
}

static void test_jitter_range(void) {
        struct backoff b;
        uint64_t seed = 42, lowest = UINT64_MAX, highest = 0;

        backoff_init(&b, 1 * SEC, 60 * SEC);
        for (int i = 0; i < 7; i++)
                (void) backoff_next(&b, 0);
        CHECK_INT(backoff_ceiling(&b), 60 * SEC);

        /* Full jitter: anywhere from the floor to the ceiling. */
        for (int i = 0; i < 10000; i++) {
                uint64_t d;

                seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
                d = backoff_next(&b, seed);
                CHECK(d >= 100000 && d <= 60 * SEC);
                lowest = d < lowest ? d : lowest;
                highest = d > highest ? d : highest;
        }
        CHECK(lowest < 3 * SEC);
        CHECK(highest > 57 * SEC);
        CHECK_INT(backoff_next(&b, 0), 100000);
}

static void test_reset(void) {
        struct backoff b;

        backoff_init(&b, 2 * SEC, 30 * SEC);
        for (int i = 0; i < 10; i++)
                (void) backoff_next(&b, UINT64_MAX);
        CHECK_INT(backoff_ceiling(&b), 30 * SEC);
        backoff_reset(&b);
        CHECK_INT(backoff_ceiling(&b), 2 * SEC);
        CHECK_INT(backoff_held_usec(&b), 30 * SEC);

        backoff_init(&b, 100000, 1 * SEC);
        CHECK_INT(backoff_held_usec(&b), 1 * SEC);
        backoff_init(&b, 5 * SEC, 10 * SEC);
        CHECK_INT(backoff_held_usec(&b), 50 * SEC);
}

static void test_small_and_odd(void) {
        struct backoff b;

        /* A maximum below the initial delay is raised to it. */
        backoff_init(&b, 5 * SEC, 1 * SEC);
        CHECK_INT(backoff_next(&b, UINT64_MAX), 5 * SEC);
        CHECK_INT(backoff_next(&b, UINT64_MAX), 5 * SEC);

        /* Tiny delays still never reach zero. */
        backoff_init(&b, 10000, 20000);
        for (int i = 0; i < 100; i++)
                CHECK(backoff_next(&b, (uint64_t) i * 0x0123456789abcdefULL) >= 1000);

        /* Many failures do not overflow. */
        backoff_init(&b, 1 * SEC, UINT64_MAX / 2);
        for (int i = 0; i < 200; i++)
                (void) backoff_next(&b, UINT64_MAX);
        CHECK(backoff_ceiling(&b) <= UINT64_MAX / 2);
}

int main(void) {
        test_doubling();
        test_jitter_range();
        test_reset();
        test_small_and_odd();
        printf("test-backoff: ok\n");
        return 0;
}
