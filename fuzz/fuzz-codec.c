/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the Engine.IO/Socket.IO codec. The input is one
 * WebSocket text frame. Besides "no crash", it checks what the daemon relies
 * on: whatever decodes re-serialises to JSON the decoder takes back as equal,
 * and a decoded event re-encodes to a frame that decodes to the same event.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "eventd-codec.h"

#define JSON_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Failing loudly is what a fuzzer needs; abort() leaves a reproducer. */
#define ASSERT(cond)                    \
        do {                            \
                if (!(cond))            \
                        abort();        \
        } while (0)

/* A second, differently built UTF-8 check: decode each code point, then
 * judge it by value. */
static bool utf8_reference(const uint8_t *s, size_t len) {
        size_t i = 0;

        while (i < len) {
                uint32_t cp, min;
                size_t n;

                if (s[i] < 0x80) {
                        n = 0, cp = s[i], min = 1;
                } else if ((s[i] & 0xe0) == 0xc0) {
                        n = 1, cp = s[i] & 0x1f, min = 0x80;
                } else if ((s[i] & 0xf0) == 0xe0) {
                        n = 2, cp = s[i] & 0x0f, min = 0x800;
                } else if ((s[i] & 0xf8) == 0xf0) {
                        n = 3, cp = s[i] & 0x07, min = 0x10000;
                } else
                        return false;

                if (n > len - i - 1)
                        return false;
                for (size_t k = 1; k <= n; k++) {
                        if ((s[i + k] & 0xc0) != 0x80)
                                return false;
                        cp = cp << 6 | (s[i + k] & 0x3f);
                }
                if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                        return false;
                i += n + 1;
        }

        return true;
}

/* Serialises o, prefixes it with head, and decodes it again. */
static void check_reserialised(const char *head, json_object *o, enum sio_type type) {
        struct sio_packet again;
        const char *json;
        size_t json_len, head_len = strlen(head);
        char *msg;

        json = json_object_to_json_string_length(o, JSON_FLAGS, &json_len);
        ASSERT(json);
        ASSERT(utf8_is_valid(json, json_len));

        msg = malloc(head_len + json_len);
        ASSERT(msg);
        memcpy(msg, head, head_len);
        memcpy(msg + head_len, json, json_len);

        ASSERT(sio_decode(msg, head_len + json_len, &again) == 0);
        ASSERT(again.type == type);
        ASSERT(json_object_equal(again.data, o));
        sio_packet_release(&again);
        free(msg);
}

static void check_event_re_encoded(const struct sio_packet *p) {
        const char *name = sio_event_name(p);
        json_object *arg = json_object_array_length(p->data) > 1 ?
                           json_object_array_get_idx(p->data, 1) : NULL;
        struct eio_packet frame;
        struct sio_packet again;
        char *f;

        ASSERT(name);
        ASSERT(utf8_is_valid(name, strlen(name)));
        ASSERT(sio_encode_event(p->nsp, p->ack_id, name, arg, &f) == 0);

        ASSERT(eio_decode(f, strlen(f), &frame) == 0);
        ASSERT(frame.type == EIO_MESSAGE);
        ASSERT(sio_decode(frame.data, frame.len, &again) == 0);
        ASSERT(again.type == SIO_EVENT);
        ASSERT(strcmp(again.nsp, p->nsp) == 0);
        ASSERT(again.ack_id == p->ack_id);
        ASSERT(strcmp(sio_event_name(&again), name) == 0);
        if (arg)
                ASSERT(json_object_equal(json_object_array_get_idx(again.data, 1), arg));

        sio_packet_release(&again);
        free(f);
}

static void check_sio(const char *msg, size_t len) {
        struct sio_connect_reply reply;
        struct sio_packet p;
        char offset[64];
        char *f;
        size_t n;

        if (sio_decode(msg, len, &p) < 0) {
                ASSERT(!p.data);
                return;
        }

        ASSERT(p.nsp[0] == '/' && strlen(p.nsp) < SIO_NSP_MAX);
        ASSERT(!strchr(p.nsp, ','));
        ASSERT(p.ack_id == SIO_NO_ACK_ID || (p.ack_id >= 0 && p.ack_id <= 999999999999999));
        if (p.type == SIO_BINARY_EVENT || p.type == SIO_BINARY_ACK)
                ASSERT(p.attachments >= 1 && p.attachments <= 1000);
        else
                ASSERT(p.attachments == 0);

        switch (p.type) {
        case SIO_CONNECT:
                if (p.data)
                        check_reserialised("0", p.data, SIO_CONNECT);
                if (sio_connect_reply_parse(&p, &reply) == 0) {
                        ASSERT(reply.sid[0] && strlen(reply.sid) < sizeof(reply.sid));
                        ASSERT(utf8_is_valid(reply.sid, strlen(reply.sid)));
                        ASSERT(strlen(reply.pid) < sizeof(reply.pid));
                }
                ASSERT(sio_encode_connect(p.nsp, p.data, &f) == 0);
                free(f);
                break;

        case SIO_DISCONNECT:
                ASSERT(!p.data);
                break;

        case SIO_EVENT:
                check_reserialised("31", p.data, SIO_ACK);
                check_event_re_encoded(&p);

                n = json_object_array_length(p.data);
                if (sio_event_take_offset(&p, offset, sizeof(offset)) == 0) {
                        ASSERT(strlen(offset) < sizeof(offset));
                        ASSERT(utf8_is_valid(offset, strlen(offset)));
                        ASSERT(json_object_array_length(p.data) == n - 1);
                        ASSERT(sio_event_name(&p));
                } else
                        ASSERT(json_object_array_length(p.data) == n);
                break;

        case SIO_BINARY_EVENT:
        case SIO_ACK:
        case SIO_BINARY_ACK:
                ASSERT(json_object_is_type(p.data, json_type_array));
                ASSERT(!sio_event_name(&p));
                check_reserialised("31", p.data, SIO_ACK);
                break;

        case SIO_CONNECT_ERROR:
                if (p.data)
                        check_reserialised("4", p.data, SIO_CONNECT_ERROR);
                break;
        }

        sio_packet_release(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const char *text = (const char *) data;
        struct eio_packet frame;
        struct eio_open open;

        ASSERT(utf8_is_valid(text, size) == utf8_reference(data, size));

        /* The input as one Engine.IO frame, as the daemon sees it ... */
        if (eio_decode(text, size, &frame) == 0) {
                ASSERT(frame.data == text + 1 && frame.len == size - 1);

                if (frame.type == EIO_OPEN && eio_open_parse(frame.data, frame.len, &open) == 0) {
                        ASSERT(open.sid[0] && strlen(open.sid) < sizeof(open.sid));
                        ASSERT(open.ping_interval_ms > 0 && open.ping_interval_ms <= 86400000);
                        ASSERT(open.ping_timeout_ms > 0 && open.ping_timeout_ms <= 86400000);
                }
                if (frame.type == EIO_MESSAGE)
                        check_sio(frame.data, frame.len);
        }

        /* ... and as the bare payloads, so that mutations need no prefix. */
        (void) eio_open_parse(text, size, &open);
        check_sio(text, size);

        return 0;
}
