/* SPDX-License-Identifier: MIT */
/*
 * The benchmark's receiving side: one plain D-Bus client that subscribes to
 * app.samdock.Events' signals, counts them, checks the sequence numbers the
 * sender put in each payload (lost, duplicated, out of order) and, with
 * --latency, records arrival minus the payload's send time. Both times are
 * CLOCK_MONOTONIC, so sender and subscriber may be different processes.
 * Written against sd-bus so that it costs far less per signal than anything
 * it measures. Prints "ready" once its match is in place, one JSON object
 * when done.
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

struct subscriber {
        uint64_t expected;              /* sequence numbers 0 .. expected-1 */
        uint64_t received, unique, duplicates, out_of_order, unparsable, resumed;
        uint64_t payload_bytes;
        int64_t last_seq;
        uint8_t *seen;                  /* bitmap over the expected range */
        bool latency;
        int64_t *latencies;             /* ns, one per received event */
        uint64_t first_ns, last_ns;
};

static uint64_t now_ns(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * NSEC_PER_SEC + (uint64_t) ts.tv_nsec;
}

/* The payload is compact JSON written by whichever bridge is measured; the
 * two numbers are found by their keys rather than by parsing it all. */
static bool payload_number(const char *payload, const char *key, int64_t *ret) {
        const char *p = strstr(payload, key);
        char *end;

        if (!p)
                return false;
        p += strlen(key);
        errno = 0;
        *ret = strtoll(p, &end, 10);
        return errno == 0 && end != p;
}

static void subscriber_record(struct subscriber *s, const char *payload, uint64_t arrival) {
        int64_t seq, sent;

        s->received++;
        s->payload_bytes += strlen(payload);
        if (!s->first_ns)
                s->first_ns = arrival;
        s->last_ns = arrival;

        if (!payload_number(payload, "\"seq\":", &seq) ||
            !payload_number(payload, "\"t\":", &sent)) {
                s->unparsable++;
                return;
        }
        if (seq < s->last_seq)
                s->out_of_order++;
        s->last_seq = seq;
        if (seq >= 0 && (uint64_t) seq < s->expected) {
                uint8_t bit = (uint8_t) (1u << (seq & 7));

                if (s->seen[seq >> 3] & bit)
                        s->duplicates++;
                else {
                        s->seen[seq >> 3] |= bit;
                        s->unique++;
                }
        }
        if (s->latency && s->received <= s->expected)
                s->latencies[s->received - 1] = (int64_t) arrival - sent;
}

static int on_signal(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        struct subscriber *s = userdata;
        uint64_t arrival = now_ns();
        const char *sig = sd_bus_message_get_signature(m, true);
        const char *a = NULL, *b = NULL, *c = NULL;
        int r;

        if (sd_bus_message_is_signal(m, NULL, "Resumed")) {
                s->resumed++;
                return 0;
        }
        if (sig && strcmp(sig, "ss") == 0)
                r = sd_bus_message_read(m, "ss", &a, &b);
        else if (sig && strcmp(sig, "sss") == 0)
                r = sd_bus_message_read(m, "sss", &a, &c, &b);
        else
                return 0;
        if (r < 0) {
                s->unparsable++;
                return 0;
        }
        subscriber_record(s, b, arrival);
        return 0;
}

static int compare_int64(const void *x, const void *y) {
        int64_t a = *(const int64_t *) x, b = *(const int64_t *) y;

        return a < b ? -1 : a > b;
}

static double percentile_us(const int64_t *sorted, uint64_t n, double p) {
        uint64_t i;

        if (n == 0)
                return -1;
        i = (uint64_t) (p * (double) (n - 1) + 0.5);
        return (double) sorted[i] / 1000.0;
}

static void subscriber_report(struct subscriber *s, bool timed_out) {
        struct rusage usage;

        getrusage(RUSAGE_SELF, &usage);
        printf("{\"cpu_usec\":%" PRIu64 ",",
               (uint64_t) (usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * UINT64_C(1000000) +
               (uint64_t) (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec));
        printf("\"received\":%" PRIu64 ",\"expected\":%" PRIu64 ",\"unique\":%" PRIu64
               ",\"missing\":%" PRIu64 ",\"duplicates\":%" PRIu64 ",\"out_of_order\":%" PRIu64
               ",\"unparsable\":%" PRIu64 ",\"resumed\":%" PRIu64 ",\"timed_out\":%s"
               ",\"first_ns\":%" PRIu64 ",\"last_ns\":%" PRIu64 ",\"mean_payload_bytes\":%.1f",
               s->received, s->expected, s->unique, s->expected - s->unique, s->duplicates,
               s->out_of_order, s->unparsable, s->resumed, timed_out ? "true" : "false",
               s->first_ns, s->last_ns,
               s->received ? (double) s->payload_bytes / (double) s->received : 0.0);
        if (s->latency) {
                uint64_t n = s->received < s->expected ? s->received : s->expected;
                double sum = 0;

                qsort(s->latencies, n, sizeof(int64_t), compare_int64);
                for (uint64_t i = 0; i < n; i++)
                        sum += (double) s->latencies[i];
                printf(",\"latency_us\":{\"n\":%" PRIu64 ",\"min\":%.1f,\"p50\":%.1f,"
                       "\"p90\":%.1f,\"p99\":%.1f,\"p999\":%.1f,\"max\":%.1f,\"mean\":%.1f}",
                       n, percentile_us(s->latencies, n, 0), percentile_us(s->latencies, n, 0.5),
                       percentile_us(s->latencies, n, 0.9), percentile_us(s->latencies, n, 0.99),
                       percentile_us(s->latencies, n, 0.999), percentile_us(s->latencies, n, 1),
                       n ? sum / (double) n / 1000.0 : -1);
        }
        printf("}\n");
        fflush(stdout);
}

static void usage(void) {
        fprintf(stderr, "usage: bench-subscriber --count N [--latency] [--idle-timeout SEC]\n"
                        "                        [--timeout SEC] [--resumed N]\n"
                        "Connects to $DBUS_SESSION_BUS_ADDRESS.\n");
        exit(2);
}

int main(int argc, char *argv[]) {
        static const struct option options[] = {
                { "count",        required_argument, NULL, 'n' },
                { "latency",      no_argument,       NULL, 'l' },
                { "idle-timeout", required_argument, NULL, 'i' },
                { "timeout",      required_argument, NULL, 't' },
                { "resumed",      required_argument, NULL, 'r' },
                {}
        };
        struct subscriber s = { .last_seq = -1 };
        double idle_timeout = 30, timeout = 3600;
        uint64_t want_resumed = 0, deadline, last_progress;
        sd_bus *bus = NULL;
        bool timed_out = false;
        int c, r;

        while ((c = getopt_long(argc, argv, "", options, NULL)) >= 0) {
                switch (c) {
                case 'n': s.expected = strtoull(optarg, NULL, 10); break;
                case 'l': s.latency = true; break;
                case 'i': idle_timeout = strtod(optarg, NULL); break;
                case 't': timeout = strtod(optarg, NULL); break;
                case 'r': want_resumed = strtoull(optarg, NULL, 10); break;
                default: usage();
                }
        }

        s.seen = calloc(s.expected / 8 + 1, 1);
        s.latencies = s.latency ? calloc(s.expected + 1, sizeof(int64_t)) : NULL;
        if (!s.seen || (s.latency && !s.latencies)) {
                fprintf(stderr, "bench-subscriber: out of memory\n");
                return 1;
        }

        r = sd_bus_open_user(&bus);
        if (r >= 0)
                r = sd_bus_match_signal(bus, NULL, NULL, "/app/samdock/Events",
                                        "app.samdock.Events", NULL, on_signal, &s);
        if (r < 0) {
                fprintf(stderr, "bench-subscriber: cannot subscribe: %s\n", strerror(-r));
                return 1;
        }
        printf("ready\n");
        fflush(stdout);

        deadline = now_ns() + (uint64_t) (timeout * NSEC_PER_SEC);
        last_progress = now_ns();
        while (s.unique < s.expected || s.resumed < want_resumed) {
                uint64_t before = s.received + s.resumed, now;

                r = sd_bus_process(bus, NULL);
                if (r < 0) {
                        fprintf(stderr, "bench-subscriber: bus: %s\n", strerror(-r));
                        break;
                }
                now = now_ns();
                if (s.received + s.resumed != before)
                        last_progress = now;
                if (now > deadline || now - last_progress > idle_timeout * NSEC_PER_SEC) {
                        timed_out = true;
                        break;
                }
                if (r > 0)
                        continue;
                r = sd_bus_wait(bus, 100 * 1000);
                if (r < 0 && r != -EINTR) {
                        fprintf(stderr, "bench-subscriber: wait: %s\n", strerror(-r));
                        break;
                }
        }

        subscriber_report(&s, timed_out);
        sd_bus_flush_close_unref(bus);
        free(s.seen);
        free(s.latencies);
        return 0;
}
