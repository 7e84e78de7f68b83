/* SPDX-License-Identifier: MIT */
/*
 * The ceiling: what the bus itself carries when nothing stands between the
 * events and sd_bus_emit_signal(). It owns app.samdock.Events and sends the
 * same ActivityAdded(s activity_id, s payload) signals, with the same ~300 B
 * payload bytes as bench/bench-server.js, either as fast as the bus takes
 * them or at a steady rate, each stamped with its CLOCK_MONOTONIC send time.
 * It pauses the way samdock-eventd does (above 4096 queued messages, resume
 * at 256), so the bus and not this program sets the pace.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>
#include <systemd/sd-bus.h>

#define NSEC_PER_SEC 1000000000ULL
#define QUEUE_HIGH 4096
#define QUEUE_LOW 256

static uint64_t now_ns(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * NSEC_PER_SEC + (uint64_t) ts.tv_nsec;
}

static void sleep_until(uint64_t when) {
        struct timespec ts = {
                .tv_sec = (time_t) (when / NSEC_PER_SEC),
                .tv_nsec = (long) (when % NSEC_PER_SEC),
        };

        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
                ;
}

static uint64_t timeval_usec(const struct timeval *tv) {
        return (uint64_t) tv->tv_sec * 1000000ULL + (uint64_t) tv->tv_usec;
}

/* Byte for byte what bench-server.js' eventFrame() puts in the payload. */
static int payload_format(char *buf, size_t size, uint32_t seq, uint64_t sent) {
        return snprintf(buf, size,
                        "{\"_id\":\"65f0a1b2c3d4e5f6%08" PRIx32 "\","
                        "\"_tenantID\":\"5f8d0d55b54764421b7156c9\",\"type\":\"note\","
                        "\"_personIDs\":[\"60a7c1e2f1d2c3b4%08" PRIx32 "\"],"
                        "\"_userID\":\"5f8d0d55b54764421b7156d1\","
                        "\"data\":{\"title\":\"R\u00fcckruf bei Frau Wei\u00df wegen "
                        "\u00d6lpr\u00fcfung \u2013 2.500 \u20ac\"},"
                        "\"createdAt\":\"2026-12-04T09:30:00.000Z\",\"seq\":%" PRIu32
                        ",\"t\":%" PRIu64 "}",
                        seq, (uint32_t) (seq * 7u), seq, sent);
}

/* Waits, serving the bus, until its write queue is short again. */
static int bus_drain(sd_bus *bus, uint64_t low) {
        uint64_t queued;
        int r;

        for (;;) {
                r = sd_bus_get_n_queued_write(bus, &queued);
                if (r < 0 || queued <= low)
                        return r;
                r = sd_bus_process(bus, NULL);
                if (r < 0)
                        return r;
                if (r > 0)
                        continue;
                r = sd_bus_wait(bus, UINT64_MAX);
                if (r < 0 && r != -EINTR)
                        return r;
        }
}

int main(int argc, char *argv[]) {
        static const struct option options[] = {
                { "count", required_argument, NULL, 'n' },
                { "rate",  required_argument, NULL, 'r' },
                {}
        };
        uint64_t count = 200000, start, end, queued;
        double rate = 0;
        sd_bus *bus = NULL;
        struct rusage usage;
        char id[32], payload[512];
        int c, r;

        while ((c = getopt_long(argc, argv, "", options, NULL)) >= 0) {
                switch (c) {
                case 'n': count = strtoull(optarg, NULL, 10); break;
                case 'r': rate = strtod(optarg, NULL); break;
                default:
                        fprintf(stderr,
                                "usage: bench-ceiling [--count N] [--rate EVENTS_PER_SEC]\n");
                        return 2;
                }
        }

        r = sd_bus_open_user(&bus);
        if (r < 0) {
                fprintf(stderr, "bench-ceiling: cannot connect to the bus: %s\n", strerror(-r));
                return 1;
        }
        /* While samdock-eventd holds the name (the benchmark interleaves the
         * two), send from the unique name: the bus routes the signals to the
         * same match at the same cost. */
        r = sd_bus_request_name(bus, "app.samdock.Events", 0);
        if (r < 0 && r != -EEXIST) {
                fprintf(stderr, "bench-ceiling: cannot own app.samdock.Events: %s\n", strerror(-r));
                return 1;
        }

        start = now_ns();
        for (uint64_t i = 0; i < count; i++) {
                uint32_t seq = (uint32_t) i;
                uint64_t sent;

                if (rate > 0)
                        sleep_until(start + (uint64_t) ((double) i * NSEC_PER_SEC / rate));
                sent = now_ns();
                snprintf(id, sizeof(id), "65f0a1b2c3d4e5f6%08" PRIx32, seq);
                payload_format(payload, sizeof(payload), seq, sent);
                r = sd_bus_emit_signal(bus, "/app/samdock/Events", "app.samdock.Events",
                                       "ActivityAdded", "ss", id, payload);
                if (r < 0) {
                        fprintf(stderr, "bench-ceiling: emit: %s\n", strerror(-r));
                        return 1;
                }
                if (rate > 0)
                        r = sd_bus_flush(bus);
                else if (sd_bus_get_n_queued_write(bus, &queued) >= 0 && queued >= QUEUE_HIGH)
                        r = bus_drain(bus, QUEUE_LOW);
                if (r < 0) {
                        fprintf(stderr, "bench-ceiling: bus: %s\n", strerror(-r));
                        return 1;
                }
        }
        r = sd_bus_flush(bus);
        end = now_ns();
        getrusage(RUSAGE_SELF, &usage);
        printf("{\"sent\":%" PRIu64 ",\"start_ns\":%" PRIu64 ",\"end_ns\":%" PRIu64
               ",\"cpu_usec\":%" PRIu64 "}\n", count, start, end,
               timeval_usec(&usage.ru_utime) + timeval_usec(&usage.ru_stime));
        sd_bus_flush_close_unref(bus);
        return r < 0 ? 1 : 0;
}
