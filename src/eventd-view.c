/* SPDX-License-Identifier: MIT */
/*
 * A strict validator for canonical compact JSON, just enough to prove that a
 * slice of the frame is what json-c would have written for that value. It
 * refuses rather than guesses: every doubt is -EAGAIN, and the slow path,
 * which is the one that decides what is malformed, sees the packet then.
 * fuzz/fuzz-view.c holds the two paths to the same answers.
 */
#include <errno.h>
#include <string.h>

#include "eventd-codec.h"
#include "eventd-view.h"
#include "eventd-word.h"

#define VIEW_MAX_DEPTH 32
#define VIEW_INT_MAX_DIGITS 18
/* Keys per object the fast path compares for duplicates; more: slow path. */
#define VIEW_MAX_KEYS 64

struct scan {
        const char *p, *end;
        unsigned depth;
};

static bool is_digit(char c) {
        return c >= '0' && c <= '9';
}

static bool is_lower_hex(char c) {
        return is_digit(c) || (c >= 'a' && c <= 'f');
}

static int scan_value(struct scan *s);

/* A string in the form json-c writes: the short escapes for " \ and
 * \b \f \n \r \t, \u00xx (lower case) for the other control characters. */
static int scan_string(struct scan *s) {
        if (s->p >= s->end || *s->p != '"')
                return -EAGAIN;
        s->p++;
        while (s->p < s->end) {
                const char *stop = s->end - s->p > 8 ? s->p + 8 : s->end;
                unsigned char c;

                /* Eight plain bytes at once; else byte by byte up to the
                 * one that needs a look, within those eight. */
                if (s->end - s->p >= 8) {
                        uint64_t w = word_load(s->p);

                        if (!word_has_byte(w, '"') && !word_has_byte(w, '\\') &&
                            !word_has_below(w, 0x20)) {
                                s->p += 8;
                                continue;
                        }
                }
                while (s->p < stop && (c = (unsigned char) *s->p) != '"' && c != '\\' &&
                       c >= 0x20)
                        s->p++;
                if (s->p == stop)
                        continue;
                c = (unsigned char) *s->p;
                if (c == '"') {
                        s->p++;
                        return 0;
                }
                if (c < 0x20)
                        return -EAGAIN;
                /* a backslash */
                if (s->end - s->p < 2)
                        return -EAGAIN;
                switch (s->p[1]) {
                case '"': case '\\': case 'b': case 'f': case 'n': case 'r': case 't':
                        s->p += 2;
                        break;
                case 'u': {
                        int v;

                        if (s->end - s->p < 6 || s->p[2] != '0' || s->p[3] != '0' ||
                            !is_lower_hex(s->p[4]) || !is_lower_hex(s->p[5]))
                                return -EAGAIN;
                        v = (s->p[4] - '0') * 16 +
                            (is_digit(s->p[5]) ? s->p[5] - '0' : s->p[5] - 'a' + 10);
                        /* json-c writes these short, and cuts keys at NUL. */
                        if (v == 0 || v >= 0x20 || v == '\b' || v == '\f' || v == '\n' ||
                            v == '\r' || v == '\t')
                                return -EAGAIN;
                        s->p += 6;
                        break;
                }
                default:
                        return -EAGAIN;
                }
        }
        return -EAGAIN;
}

/* RFC 8259 numbers; integers json-c would print differently (-0) or clamp
 * (beyond 64 bits) are left to the slow path. json-c keeps the text of
 * doubles, so any valid double is written back as it came. */
static int scan_number(struct scan *s) {
        const char *start = s->p;
        bool integer = true;

        if (s->p < s->end && *s->p == '-')
                s->p++;
        if (s->p >= s->end || !is_digit(*s->p))
                return -EAGAIN;
        if (*s->p == '0')
                s->p++;
        else
                while (s->p < s->end && is_digit(*s->p))
                        s->p++;
        if (s->p < s->end && *s->p == '.') {
                integer = false;
                s->p++;
                if (s->p >= s->end || !is_digit(*s->p))
                        return -EAGAIN;
                while (s->p < s->end && is_digit(*s->p))
                        s->p++;
        }
        if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
                integer = false;
                s->p++;
                if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
                        s->p++;
                if (s->p >= s->end || !is_digit(*s->p))
                        return -EAGAIN;
                while (s->p < s->end && is_digit(*s->p))
                        s->p++;
        }
        if (integer) {
                size_t digits = (size_t) (s->p - start) - (*start == '-');

                if (digits > VIEW_INT_MAX_DIGITS || (*start == '-' && start[1] == '0'))
                        return -EAGAIN;
        }
        return 0;
}

static int scan_literal(struct scan *s, const char *word) {
        size_t n = strlen(word);

        if ((size_t) (s->end - s->p) < n || memcmp(s->p, word, n) != 0)
                return -EAGAIN;
        s->p += n;
        return 0;
}

/* Has this key (quotes included) come before in the same object? json-c
 * keeps only the last of two, so an object with a key twice is not written
 * back as it came: the slow path's case. */
static bool key_seen(const char *const *keys, const size_t *lens, size_t n, const char *key,
                     size_t len) {
        for (size_t i = 0; i < n; i++)
                if (lens[i] == len && memcmp(keys[i], key, len) == 0)
                        return true;
        return false;
}

/* The elements of an array or the members of an object, after the opening
 * bracket; stops after the closing one. */
static int scan_container(struct scan *s, char close) {
        const char *keys[VIEW_MAX_KEYS];
        size_t key_lens[VIEW_MAX_KEYS], n_keys = 0;
        int r;

        if (++s->depth > VIEW_MAX_DEPTH)
                return -EAGAIN;
        if (s->p < s->end && *s->p == close) {
                s->p++;
                s->depth--;
                return 0;
        }
        for (;;) {
                if (close == '}') {
                        const char *key = s->p;

                        r = scan_string(s);
                        if (r < 0)
                                return r;
                        if (n_keys == VIEW_MAX_KEYS ||
                            key_seen(keys, key_lens, n_keys, key, (size_t) (s->p - key)))
                                return -EAGAIN;
                        keys[n_keys] = key;
                        key_lens[n_keys++] = (size_t) (s->p - key);
                        if (s->p >= s->end || *s->p != ':')
                                return -EAGAIN;
                        s->p++;
                }
                r = scan_value(s);
                if (r < 0)
                        return r;
                if (s->p >= s->end)
                        return -EAGAIN;
                if (*s->p == close) {
                        s->p++;
                        s->depth--;
                        return 0;
                }
                if (*s->p != ',')
                        return -EAGAIN;
                s->p++;
        }
}

static int scan_value(struct scan *s) {
        if (s->p >= s->end)
                return -EAGAIN;
        switch (*s->p) {
        case '{':
                s->p++;
                return scan_container(s, '}');
        case '[':
                s->p++;
                return scan_container(s, ']');
        case '"':
                return scan_string(s);
        case 't':
                return scan_literal(s, "true");
        case 'f':
                return scan_literal(s, "false");
        case 'n':
                return scan_literal(s, "null");
        default:
                return scan_number(s);
        }
}

int sio_event_view(const char *msg, size_t len, struct sio_event_view *ret) {
        struct scan s = { .p = msg, .end = msg + len };
        const char *name_end;
        int r;

        *ret = (struct sio_event_view) { .ack_id = SIO_NO_ACK_ID };
        if (!msg || len < 4 || msg[0] != '2')
                return -EAGAIN;
        s.p++;

        if (is_digit(*s.p)) {
                int64_t id = 0;
                const char *start = s.p;

                while (s.p < s.end && is_digit(*s.p)) {
                        if (s.p - start >= 15)
                                return -EAGAIN;
                        id = id * 10 + (*s.p++ - '0');
                }
                ret->ack_id = id;
        }
        if (s.p >= s.end || *s.p != '[')
                return -EAGAIN;
        s.p++;

        /* The name: a string without any escape. */
        if (s.p >= s.end || *s.p != '"')
                return -EAGAIN;
        ret->name = s.p + 1;
        name_end = memchr(ret->name, '"', (size_t) (s.end - ret->name));
        if (!name_end || name_end == ret->name || memchr(ret->name, '\\', name_end - ret->name))
                return -EAGAIN;
        ret->name_len = (size_t) (name_end - ret->name);
        for (size_t i = 0; i < ret->name_len; i++)
                if ((unsigned char) ret->name[i] < 0x20)
                        return -EAGAIN;
        s.p = name_end + 1;
        s.depth = 1;

        while (s.p < s.end && *s.p == ',') {
                const char *start = ++s.p;

                if (ret->n_args == SIO_VIEW_MAX_ARGS)
                        return -EAGAIN;
                r = scan_value(&s);
                if (r < 0)
                        return r;
                ret->arg[ret->n_args] = start;
                ret->arg_len[ret->n_args] = (size_t) (s.p - start);
                ret->n_args++;
        }
        /* "]" must end the packet exactly. */
        if (s.p + 1 != s.end || *s.p != ']')
                return -EAGAIN;

        /* Valid UTF-8 without NUL bytes, as D-Bus wants (and the slow path
         * checks first). */
        if (!utf8_is_valid(msg, len))
                return -EAGAIN;
        return 0;
}

bool json_view_is_plain_string(const char *value, size_t len) {
        return len >= 2 && value[0] == '"' && value[len - 1] == '"' &&
               !memchr(value, '\\', len);
}

bool json_view_member(const char *obj, size_t len, const char *key, const char **ret,
                      size_t *ret_len) {
        struct scan s = { .p = obj, .end = obj + len, .depth = 1 };
        size_t key_len = strlen(key);

        if (len < 2 || obj[0] != '{')
                return false;
        s.p++;
        if (*s.p == '}')
                return false;
        for (;;) {
                const char *name = s.p, *value;

                if (scan_string(&s) < 0 || s.p >= s.end || *s.p != ':')
                        return false;
                s.p++;
                value = s.p;
                if (scan_value(&s) < 0)
                        return false;
                /* A key written with escapes is never the plain key we seek. */
                if ((size_t) (s.p - value) > 0 && (size_t) (value - name) == key_len + 3 &&
                    memcmp(name + 1, key, key_len) == 0) {
                        *ret = value;
                        *ret_len = (size_t) (s.p - value);
                        return true;    /* a view has no key twice */
                }
                if (s.p >= s.end || *s.p != ',')
                        return false;
                s.p++;
        }
}
