/* SPDX-License-Identifier: MIT */
/*
 * The few assertions the unit tests share. A failed check prints where and
 * what, then aborts, so meson test reports the test as failed.
 */
#pragma once

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                             \
        do {                                                                    \
                if (!(cond)) {                                                  \
                        fprintf(stderr, "%s:%d: check failed: %s\n",            \
                                __FILE__, __LINE__, #cond);                     \
                        abort();                                                \
                }                                                               \
        } while (0)

#define CHECK_STR(a, b)                                                         \
        do {                                                                    \
                const char *_a = (a), *_b = (b);                                \
                if (!_a || !_b || strcmp(_a, _b) != 0) {                        \
                        fprintf(stderr, "%s:%d: \"%s\" != \"%s\"\n",            \
                                __FILE__, __LINE__, _a ? _a : "(null)",         \
                                _b ? _b : "(null)");                            \
                        abort();                                                \
                }                                                               \
        } while (0)

#define CHECK_INT(a, b)                                                         \
        do {                                                                    \
                long long _a = (long long) (a), _b = (long long) (b);           \
                if (_a != _b) {                                                 \
                        fprintf(stderr, "%s:%d: %s == %lld, expected %lld\n",   \
                                __FILE__, __LINE__, #a, _a, _b);                \
                        abort();                                                \
                }                                                               \
        } while (0)
