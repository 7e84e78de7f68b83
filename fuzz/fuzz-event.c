/* SPDX-License-Identifier: MIT */
/*
 * Fuzzes the way from a Socket.IO EVENT to a D-Bus signal: decode, strip a
 * recovery offset, map to member, id and payload. Whatever comes out must be
 * something sd-bus would accept: valid UTF-8 without NUL in every string.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "eventd-codec.h"
#include "eventd-event.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct sio_packet packet = {};
        struct event_signal sig;
        char offset[64];

        if (sio_decode((const char *) data, size, &packet) < 0)
                return 0;
        if (packet.type != SIO_EVENT)
                goto finish;

        /* Half the inputs as if connection state recovery were on. */
        if (size > 0 && (data[size - 1] & 1) && json_object_array_length(packet.data) >= 3)
                (void) sio_event_take_offset(&packet, offset, sizeof(offset));

        if (event_map(packet.data, &sig) == 0) {
                if (!utf8_is_valid(sig.id, strlen(sig.id)) ||
                    !utf8_is_valid(sig.payload, strlen(sig.payload)) ||
                    !utf8_is_valid(sig.name, strlen(sig.name)))
                        abort();
                if (sig.kind && strcmp(sig.kind->event, sig.name) != 0)
                        abort();
                event_signal_release(&sig);
        }
finish:
        sio_packet_release(&packet);
        return 0;
}
