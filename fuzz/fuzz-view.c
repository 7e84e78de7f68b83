/* SPDX-License-Identifier: MIT */
/*
 * Differential: whatever the fast path (sio_event_view) accepts, the slow
 * path (sio_decode) must accept as the same event, each argument slice must
 * be what json-c writes for that argument, and event_map_view() must give
 * what event_map() gives. Any difference aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "eventd-codec.h"
#include "eventd-event.h"
#include "eventd-view.h"

#define JSON_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

static void check_arguments(const struct sio_event_view *v, json_object *array) {
        for (size_t i = 0; i < v->n_args; i++) {
                json_object *element = json_object_array_get_idx(array, i + 1);
                size_t len;
                const char *text = json_object_to_json_string_length(element, JSON_FLAGS, &len);
                json_object *again = json_tokener_parse(text);

                /* The same value, and the very same text. */
                if (!json_object_equal(again, element))
                        abort();
                if (len != v->arg_len[i] || memcmp(text, v->arg[i], len) != 0)
                        abort();
                json_object_put(again);
        }
}

static void check_mapping(const struct sio_event_view *v, json_object *array, size_t n_args) {
        struct event_signal fast, slow;
        json_object *copy = json_object_new_array();
        int r;

        for (size_t i = 0; i <= n_args; i++)
                json_object_array_add(copy, json_object_get(json_object_array_get_idx(array, i)));

        r = event_map_view(v, n_args, &fast);
        if (r == 0) {
                if (event_map(copy, &slow) != 0)
                        abort();
                if (fast.kind != slow.kind || strcmp(fast.name, slow.name) != 0 ||
                    strcmp(fast.id, slow.id) != 0)
                        abort();
                if (strcmp(fast.payload, slow.payload) != 0)
                        abort();
                event_signal_release(&slow);
                event_signal_release(&fast);
        }
        json_object_put(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const char *msg = (const char *) data;
        struct sio_event_view v;
        struct sio_packet p = {};

        if (sio_event_view(msg, size, &v) != 0)
                return 0;
        if (sio_decode(msg, size, &p) != 0 || p.type != SIO_EVENT || strcmp(p.nsp, "/") != 0 ||
            p.ack_id != v.ack_id || json_object_array_length(p.data) != v.n_args + 1)
                abort();
        if (strlen(sio_event_name(&p)) != v.name_len ||
            memcmp(sio_event_name(&p), v.name, v.name_len) != 0)
                abort();

        check_arguments(&v, p.data);
        check_mapping(&v, p.data, v.n_args);
        if (v.n_args > 0)
                check_mapping(&v, p.data, v.n_args - 1);
        sio_packet_release(&p);
        return 0;
}
