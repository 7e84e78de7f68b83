/* SPDX-License-Identifier: MIT */
/*
 * Engine.IO / Socket.IO packet codec: splits a text frame into its Engine.IO
 * type, a Socket.IO packet into type, attachments, namespace, ack id and JSON,
 * and builds the few frames the client sends. Pure functions over buffers
 * that need not be NUL-terminated; json-c does the JSON, with the checks it
 * lacks added here (see json_parse_strict()).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE             /* memmem() */
#endif
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eventd-codec.h"
#include "eventd-word.h"

/* Deep enough for any CRM payload, shallow enough to bound the recursion in
 * json_check_tree() and json-c's own stack. */
#define JSON_MAX_DEPTH 64
#define ACK_ID_MAX_DIGITS 15
#define ACK_ID_MAX INT64_C(999999999999999)
#define ATTACHMENTS_MAX 1000
#define ATTACHMENTS_MAX_DIGITS 4
#define PING_MS_MAX UINT64_C(86400000)
#define JSON_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

static bool is_digit(char c) {
        return c >= '0' && c <= '9';
}

/* The length of the well-formed character at p[0..len), len > 0; 0 when
 * it is not one (a NUL counts as not one: D-Bus refuses it). */
static size_t utf8_char_len(const unsigned char *p, size_t len) {
        unsigned char c = p[0];
        unsigned char lo = 0x80, hi = 0xbf;
        size_t n;

        if (c == 0)
                return 0;
        if (c < 0x80)
                return 1;

        /* The second byte's range is what rules out overlong forms, UTF-16
         * surrogates and code points above U+10FFFF. */
        if (c < 0xc2)
                return 0;
        else if (c < 0xe0)
                n = 1;
        else if (c < 0xf0) {
                n = 2;
                if (c == 0xe0)
                        lo = 0xa0;
                else if (c == 0xed)
                        hi = 0x9f;
        } else if (c < 0xf5) {
                n = 3;
                if (c == 0xf0)
                        lo = 0x90;
                else if (c == 0xf4)
                        hi = 0x8f;
        } else
                return 0;

        if (len - 1 < n || p[1] < lo || p[1] > hi)
                return 0;
        for (size_t k = 2; k <= n; k++)
                if (p[k] < 0x80 || p[k] > 0xbf)
                        return 0;
        return n + 1;
}

bool utf8_is_valid(const char *s, size_t len) {
        const unsigned char *p = (const unsigned char *) s;

        if (!s)
                return len == 0;
        for (size_t i = 0, n, stop; i < len; i += n) {
                /* Eight ASCII bytes at once; else byte by byte, within
                 * those eight, up to the one that needs a look. */
                if (len - i >= 8 && word_is_ascii(word_load(p + i))) {
                        n = 8;
                        continue;
                }
                for (stop = len - i > 8 ? i + 8 : len; i < stop && p[i] - 1u < 0x7f; i++)
                        ;
                if (i == stop)
                        n = 0;
                else if ((n = utf8_char_len(p + i, len - i)) == 0)
                        return false;
        }
        return true;
}

size_t utf8_decode(const char *s, uint32_t *ret) {
        const unsigned char *p = (const unsigned char *) s;
        /* Reading stops at the first byte that does not fit, so the NUL
         * ending s is never passed. */
        size_t n = utf8_char_len(p, 4);
        uint32_t c;

        if (n == 0)
                return 0;
        c = n == 1 ? p[0] : p[0] & (0x7f >> n);
        for (size_t i = 1; i < n; i++)
                c = c << 6 | (p[i] & 0x3f);
        *ret = c;
        return n;
}

bool unicode_is_invisible_control(uint32_t c) {
        return (c >= 0x80 && c <= 0x9f) || c == 0x2028 || c == 0x2029 ||
               (c >= 0x202a && c <= 0x202e) || (c >= 0x2066 && c <= 0x2069);
}

void utf8_scrub(char *s) {
        unsigned char *p = (unsigned char *) s;
        size_t len = s ? strlen(s) : 0;

        for (size_t i = 0, n; i < len; i += n)
                if ((n = utf8_char_len(p + i, len - i)) == 0) {
                        p[i] = '?';
                        n = 1;
                }
}

/* A C string view of a JSON string, or NULL when it holds a NUL (\u0000)
 * that would silently cut it short. */
static const char *json_string_plain(json_object *o, size_t *ret_len) {
        const char *s;
        size_t len;

        if (!json_object_is_type(o, json_type_string))
                return NULL;

        s = json_object_get_string(o);
        len = (size_t) json_object_get_string_len(o);
        if (strlen(s) != len)
                return NULL;

        if (ret_len)
                *ret_len = len;
        return s;
}

/* RFC 8259's number grammar. json-c's strict mode still takes NaN,
 * Infinity, "1." and "-.5" and prints them back verbatim, which would make
 * the payload we forward invalid JSON. */
static bool json_number_text_is_valid(const char *s, size_t len) {
        size_t i = 0, start;

        if (i < len && s[i] == '-')
                i++;
        if (i >= len || !is_digit(s[i]))
                return false;
        if (s[i] == '0')
                i++;
        else
                while (i < len && is_digit(s[i]))
                        i++;

        if (i < len && s[i] == '.') {
                start = ++i;
                while (i < len && is_digit(s[i]))
                        i++;
                if (i == start)
                        return false;
        }

        if (i < len && (s[i] == 'e' || s[i] == 'E')) {
                i++;
                if (i < len && (s[i] == '+' || s[i] == '-'))
                        i++;
                start = i;
                while (i < len && is_digit(s[i]))
                        i++;
                if (i == start)
                        return false;
        }

        return i == len;
}

static int json_check_tree(json_object *o) {
        const char *text;
        size_t len;
        int r;

        switch (json_object_get_type(o)) {
        case json_type_double:
                /* Parsed doubles serialise as the text they were parsed from. */
                text = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &len);
                if (!text)
                        return -ENOMEM;
                if (!json_number_text_is_valid(text, len))
                        return -EBADMSG;
                return 0;

        case json_type_int:
                /* json-c clamps integers it cannot hold to these values instead
                 * of failing, so the payload would no longer be what the server
                 * sent. The exact values themselves are lost along with them. */
                if (json_object_get_int64(o) == INT64_MIN ||
                    json_object_get_uint64(o) == UINT64_MAX)
                        return -EBADMSG;
                return 0;

        case json_type_array:
                for (size_t i = 0; i < json_object_array_length(o); i++) {
                        r = json_check_tree(json_object_array_get_idx(o, i));
                        if (r < 0)
                                return r;
                }
                return 0;

        case json_type_object: {
                json_object_object_foreach(o, key, value) {
                        (void) key;
                        r = json_check_tree(value);
                        if (r < 0)
                                return r;
                }
                return 0;
        }

        default:
                return 0;
        }
}

/* json-c keeps object keys as C strings: "a\u0000b" becomes "a" and may
 * overwrite a real "a". Find such keys in the text, since the parsed object
 * no longer shows them. The text has already been parsed, so it is JSON. */
static bool json_text_has_nul_key(const char *s, size_t len) {
        size_t i = 0;

        if (!s || len < 6 || !memmem(s, len, "\\u0000", 6))
                return false;

        while (i < len) {
                bool has_nul = false;
                size_t j;

                if (s[i] != '"') {
                        i++;
                        continue;
                }

                for (j = i + 1; j < len && s[j] != '"'; j++) {
                        if (s[j] != '\\')
                                continue;
                        if (len - j >= 6 && memcmp(s + j, "\\u0000", 6) == 0)
                                has_nul = true;
                        j++;    /* skip the escaped character, maybe a quote */
                }

                i = j + 1;
                while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
                        i++;
                if (has_nul && i < len && s[i] == ':')
                        return true;
        }

        return false;
}

static int hex4(const char *s) {
        int v = 0;

        for (int i = 0; i < 4; i++) {
                char c = s[i];

                v <<= 4;
                if (c >= '0' && c <= '9')
                        v |= c - '0';
                else if (c >= 'a' && c <= 'f')
                        v |= c - 'a' + 10;
                else if (c >= 'A' && c <= 'F')
                        v |= c - 'A' + 10;
                else
                        return -1;
        }
        return v;
}

/* json-c turns a lone surrogate escape (\ud800 without its pair) into
 * U+FFFD: valid UTF-8, but not what the server sent. Refuse such text. The
 * text has already been parsed, so every backslash starts a valid escape. */
static bool json_text_has_lone_surrogate(const char *s, size_t len) {
        const char *p = s, *end = s + len;

        while ((p = memchr(p, '\\', (size_t) (end - p)))) {
                int cp, low;

                if (end - p < 2)
                        break;
                if (p[1] != 'u' || end - p < 6) {
                        p += 2;
                        continue;
                }
                cp = hex4(p + 2);
                p += 6;
                if (cp >= 0xdc00 && cp <= 0xdfff)
                        return true;
                if (cp < 0xd800 || cp > 0xdbff)
                        continue;
                low = end - p >= 6 && p[0] == '\\' && p[1] == 'u' ? hex4(p + 2) : -1;
                if (low < 0xdc00 || low > 0xdfff)
                        return true;
                p += 6;
        }
        return false;
}

/* RFC 8259 forbids raw control characters inside strings, and json-c's
 * strict mode lets them through; a frame carrying one is malformed. */
static bool json_text_has_raw_control(const char *s, size_t len) {
        bool in_string = false;

        for (size_t i = 0; i < len; i++) {
                unsigned char c = (unsigned char) s[i];

                if (in_string) {
                        if (c == '\\')
                                i++;
                        else if (c == '"')
                                in_string = false;
                        else if (c < 0x20)
                                return true;
                } else if (c == '"')
                        in_string = true;
        }
        return false;
}

/*
 * Parses s[0..len) as exactly one JSON value. The text must be valid UTF-8
 * (json-c's own check lets overlongs, surrogates and NUL bytes through, so the
 * caller runs utf8_is_valid() first). A NULL *ret with 0 means JSON null.
 */
static struct json_tokener *shared_tokener;

static int json_parse_strict(const char *s, size_t len, json_object **ret) {
        struct json_tokener *tok;
        json_object *o;
        enum json_tokener_error error;
        size_t end;
        int r;

        *ret = NULL;
        if (len == 0)
                return -EBADMSG;
        if (len > INT_MAX)
                return -EMSGSIZE;

        /* One tokener, reset for each text: json_tokener_new_ex() callocs a
         * 64-deep stack, which cost ~4,000 instructions per event. The daemon
         * is single-threaded. */
        if (!shared_tokener) {
                shared_tokener = json_tokener_new_ex(JSON_MAX_DEPTH);
                if (!shared_tokener)
                        return -ENOMEM;
                json_tokener_set_flags(shared_tokener,
                                       JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
        }
        tok = shared_tokener;
        json_tokener_reset(tok);

        o = json_tokener_parse_ex(tok, s, (int) len);
        error = json_tokener_get_error(tok);
        end = json_tokener_get_parse_end(tok);

        /* json_tokener_continue: the text ended inside a value. That includes
         * a bare top-level number or literal, which json-c cannot tell from a
         * truncated one; no packet has those as its whole payload. */
        if (error != json_tokener_success || end != len) {
                json_object_put(o);
                return -EBADMSG;
        }

        r = json_check_tree(o);
        if (r >= 0 && (json_text_has_nul_key(s, len) || json_text_has_lone_surrogate(s, len) ||
                       json_text_has_raw_control(s, len)))
                r = -EBADMSG;
        if (r < 0) {
                json_object_put(o);
                return r;
        }

        *ret = o;
        return 0;
}

int eio_decode(const char *frame, size_t len, struct eio_packet *ret) {
        if (!ret || (!frame && len > 0))
                return -EINVAL;

        *ret = (struct eio_packet) {};
        if (len == 0 || frame[0] < '0' || frame[0] > '6')
                return -EBADMSG;

        *ret = (struct eio_packet) {
                .type = (enum eio_type) (frame[0] - '0'),
                .data = frame + 1,
                .len = len - 1,
        };
        return 0;
}

/* A positive integer of at most a day, for the open packet's timing fields. */
static int json_get_ms(json_object *obj, const char *key, uint64_t *ret) {
        json_object *v;
        int64_t n;

        if (!json_object_object_get_ex(obj, key, &v) || !json_object_is_type(v, json_type_int))
                return -EBADMSG;

        n = json_object_get_int64(v);
        if (n <= 0 || (uint64_t) n > PING_MS_MAX)
                return -EBADMSG;

        *ret = (uint64_t) n;
        return 0;
}

int eio_open_parse(const char *data, size_t len, struct eio_open *ret) {
        json_object *obj = NULL, *v;
        const char *sid;
        size_t sid_len;
        int r;

        if (!ret || (!data && len > 0))
                return -EINVAL;

        *ret = (struct eio_open) {};
        if (!utf8_is_valid(data, len))
                return -EBADMSG;

        r = json_parse_strict(data, len, &obj);
        if (r < 0)
                return r;

        r = -EBADMSG;
        if (!json_object_is_type(obj, json_type_object))
                goto finish;

        if (!json_object_object_get_ex(obj, "sid", &v))
                goto finish;
        sid = json_string_plain(v, &sid_len);
        if (!sid || sid_len == 0 || sid_len >= sizeof(ret->sid))
                goto finish;

        if (json_get_ms(obj, "pingInterval", &ret->ping_interval_ms) < 0 ||
            json_get_ms(obj, "pingTimeout", &ret->ping_timeout_ms) < 0)
                goto finish;

        /* Engine.IO 3 has no maxPayload; when it is there it must make sense. */
        if (json_object_object_get_ex(obj, "maxPayload", &v)) {
                if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0)
                        goto finish;
                ret->max_payload = json_object_get_uint64(v);
        }

        memcpy(ret->sid, sid, sid_len + 1);
        r = 0;

finish:
        if (r < 0)
                *ret = (struct eio_open) {};
        json_object_put(obj);
        return r;
}

/* The shape rules of the header, once the JSON (or its absence) is known. */
static bool sio_shape_is_valid(const struct sio_packet *p, bool has_json) {
        json_object *name;

        switch (p->type) {
        case SIO_CONNECT:
                return !has_json || json_object_is_type(p->data, json_type_object);

        case SIO_DISCONNECT:
                return !has_json;

        case SIO_EVENT:
        case SIO_BINARY_EVENT:
                if (!json_object_is_type(p->data, json_type_array) ||
                    json_object_array_length(p->data) < 1)
                        return false;
                /* The name is handed out as a C string: no NUL may hide in it. */
                name = json_object_array_get_idx(p->data, 0);
                return json_string_plain(name, NULL) != NULL;

        case SIO_ACK:
        case SIO_BINARY_ACK:
                return json_object_is_type(p->data, json_type_array) &&
                       p->ack_id != SIO_NO_ACK_ID;

        case SIO_CONNECT_ERROR:
                return !has_json ||
                       json_object_is_type(p->data, json_type_object) ||
                       json_object_is_type(p->data, json_type_string);
        }

        return false;
}

int sio_decode(const char *msg, size_t len, struct sio_packet *ret) {
        size_t i = 1, start;
        bool binary;
        int r;

        if (!ret || (!msg && len > 0))
                return -EINVAL;

        *ret = (struct sio_packet) { .nsp = "/", .ack_id = SIO_NO_ACK_ID };
        if (len == 0 || msg[0] < '0' || msg[0] > '6')
                return -EBADMSG;
        if (!utf8_is_valid(msg, len))
                return -EBADMSG;

        ret->type = (enum sio_type) (msg[0] - '0');
        binary = ret->type == SIO_BINARY_EVENT || ret->type == SIO_BINARY_ACK;

        if (binary) {
                unsigned n = 0;

                for (start = i; i < len && is_digit(msg[i]); i++) {
                        if (i - start >= ATTACHMENTS_MAX_DIGITS)
                                return -EBADMSG;
                        n = n * 10 + (unsigned) (msg[i] - '0');
                }
                if (i == start || i >= len || msg[i] != '-')
                        return -EBADMSG;
                if (n == 0 || n > ATTACHMENTS_MAX)
                        return -EBADMSG;
                ret->attachments = n;
                i++;
        }

        /* As socket.io-parser does, the namespace also ends at the end of the
         * packet: "40/admin" is a CONNECT to /admin without payload. */
        if (i < len && msg[i] == '/') {
                const char *comma = memchr(msg + i, ',', len - i);
                size_t nsp_len = (comma ? (size_t) (comma - msg) : len) - i;

                if (nsp_len >= SIO_NSP_MAX)
                        return -EBADMSG;
                memcpy(ret->nsp, msg + i, nsp_len);
                ret->nsp[nsp_len] = '\0';
                i += nsp_len + (comma ? 1 : 0);
        }

        if (i < len && is_digit(msg[i])) {
                int64_t id = 0;

                for (start = i; i < len && is_digit(msg[i]); i++) {
                        if (i - start >= ACK_ID_MAX_DIGITS)
                                return -EBADMSG;
                        id = id * 10 + (msg[i] - '0');
                }
                ret->ack_id = id;
        }

        if (i < len) {
                r = json_parse_strict(msg + i, len - i, &ret->data);
                if (r < 0)
                        return r;
        }

        if (!sio_shape_is_valid(ret, i < len)) {
                sio_packet_release(ret);
                return -EBADMSG;
        }

        return 0;
}

void sio_packet_release(struct sio_packet *p) {
        if (!p)
                return;

        json_object_put(p->data);
        p->data = NULL;
}

const char *sio_event_name(const struct sio_packet *p) {
        if (!p || p->type != SIO_EVENT || !json_object_is_type(p->data, json_type_array) ||
            json_object_array_length(p->data) < 1)
                return NULL;

        return json_string_plain(json_object_array_get_idx(p->data, 0), NULL);
}

int sio_event_take_offset(struct sio_packet *p, char *ret_offset, size_t offset_size) {
        json_object *last;
        const char *offset;
        size_t n, offset_len;

        if (!p || !ret_offset || offset_size == 0)
                return -EINVAL;
        if (p->type != SIO_EVENT || !json_object_is_type(p->data, json_type_array))
                return -EINVAL;

        n = json_object_array_length(p->data);
        if (n < 2)
                return -EBADMSG;

        last = json_object_array_get_idx(p->data, n - 1);
        offset = json_string_plain(last, &offset_len);
        if (!offset || offset_len >= offset_size)
                return -EBADMSG;

        /* Copy before deleting: the array owns the string. */
        memcpy(ret_offset, offset, offset_len + 1);
        if (json_object_array_del_idx(p->data, n - 1, 1) < 0)
                return -EINVAL;

        return 0;
}

/* Copies a string field of the CONNECT reply; absent or null leaves "". */
static int connect_reply_field(json_object *obj, const char *key, char *buf, size_t size,
                               bool required) {
        json_object *v;
        const char *s;
        size_t len;

        if (!json_object_object_get_ex(obj, key, &v))
                return required ? -EPROTO : 0;
        if (!v && !required)
                return 0;

        s = json_string_plain(v, &len);
        if (!s || len >= size || (required && len == 0))
                return -EBADMSG;

        memcpy(buf, s, len + 1);
        return 0;
}

int sio_connect_reply_parse(const struct sio_packet *p, struct sio_connect_reply *ret) {
        int r;

        if (!p || !ret)
                return -EINVAL;

        *ret = (struct sio_connect_reply) {};
        if (p->type != SIO_CONNECT)
                return -EINVAL;

        /* Socket.IO 2 servers answer a bare `40`. */
        if (!p->data)
                return -EPROTO;
        if (!json_object_is_type(p->data, json_type_object))
                return -EBADMSG;

        r = connect_reply_field(p->data, "sid", ret->sid, sizeof(ret->sid), true);
        if (r >= 0)
                r = connect_reply_field(p->data, "pid", ret->pid, sizeof(ret->pid), false);
        if (r < 0)
                *ret = (struct sio_connect_reply) {};
        return r;
}

static bool nsp_is_main(const char *nsp) {
        return !nsp || strcmp(nsp, "/") == 0;
}

/* A namespace we can write so that the server reads it back the same. */
static bool nsp_is_valid(const char *nsp) {
        size_t len;

        if (nsp_is_main(nsp))
                return true;

        len = strlen(nsp);
        return nsp[0] == '/' && len < SIO_NSP_MAX && !memchr(nsp, ',', len) &&
               utf8_is_valid(nsp, len);
}

/* `4<type>[<nsp>,][<ack id>]<json>` as a newly allocated string. */
static int sio_frame_build(char type, const char *nsp, int64_t ack_id, const char *json,
                           size_t json_len, char **ret) {
        char ack[ACK_ID_MAX_DIGITS + 1] = "";
        size_t nsp_len = nsp_is_main(nsp) ? 0 : strlen(nsp);
        size_t ack_len = 0, size, k = 0;
        char *frame;

        if (ack_id != SIO_NO_ACK_ID)
                ack_len = (size_t) snprintf(ack, sizeof(ack), "%" PRId64, ack_id);

        size = 2 + (nsp_len > 0 ? nsp_len + 1 : 0) + ack_len + json_len + 1;
        frame = malloc(size);
        if (!frame)
                return -ENOMEM;

        frame[k++] = '0' + EIO_MESSAGE;
        frame[k++] = type;
        if (nsp_len > 0) {
                memcpy(frame + k, nsp, nsp_len);
                k += nsp_len;
                frame[k++] = ',';
        }
        memcpy(frame + k, ack, ack_len);
        k += ack_len;
        if (json_len > 0)
                memcpy(frame + k, json, json_len);
        k += json_len;
        frame[k] = '\0';

        *ret = frame;
        return 0;
}

int sio_encode_connect(const char *nsp, json_object *auth, char **ret) {
        const char *json = NULL;
        size_t json_len = 0;

        if (!ret)
                return -EINVAL;
        *ret = NULL;
        if (!nsp_is_valid(nsp) || (auth && !json_object_is_type(auth, json_type_object)))
                return -EINVAL;

        if (auth) {
                json = json_object_to_json_string_length(auth, JSON_FLAGS, &json_len);
                if (!json)
                        return -ENOMEM;
        }

        return sio_frame_build('0' + SIO_CONNECT, nsp, SIO_NO_ACK_ID, json, json_len, ret);
}

int sio_encode_event(const char *nsp, int64_t ack_id, const char *name, json_object *arg,
                     char **ret) {
        json_object *array, *name_string;
        const char *json;
        size_t json_len;
        int r;

        if (!ret)
                return -EINVAL;
        *ret = NULL;
        if (!nsp_is_valid(nsp) || !name || !utf8_is_valid(name, strlen(name)))
                return -EINVAL;
        if (ack_id != SIO_NO_ACK_ID && (ack_id < 0 || ack_id > ACK_ID_MAX))
                return -EINVAL;

        array = json_object_new_array();
        if (!array)
                return -ENOMEM;

        name_string = json_object_new_string(name);
        if (!name_string || json_object_array_add(array, name_string) < 0) {
                json_object_put(name_string);
                r = -ENOMEM;
                goto finish;
        }

        /* The array takes a reference of its own; arg stays the caller's. */
        if (arg && json_object_array_add(array, json_object_get(arg)) < 0) {
                json_object_put(arg);
                r = -ENOMEM;
                goto finish;
        }

        json = json_object_to_json_string_length(array, JSON_FLAGS, &json_len);
        if (!json) {
                r = -ENOMEM;
                goto finish;
        }

        r = sio_frame_build('0' + SIO_EVENT, nsp, ack_id, json, json_len, ret);

finish:
        json_object_put(array);
        return r;
}
