/* SPDX-License-Identifier: MIT */
/*
 * samdock-eventctl's output: what the daemon passes on from the network is
 * shown so that a line stays one line and reads in the order it was sent, and
 * what goes out as JSON stays plain JSON that a terminal can show as well.
 */
#include <stdbool.h>
#include <string.h>
#include <wchar.h>
#include <json-c/json.h>

#include "eventctl-format.h"
#include "eventd-codec.h"
#include "eventd-time.h"

/* ---- text ---- */

/* C0 keeps its old \xNN form; a \xNN for U+009B would name a byte that is
 * not there (it travels as C2 9B), hence \uXXXX for the rest. */
void format_cut(FILE *f, const char *s, size_t *budget) {
        const char *ellipsis = MB_CUR_MAX > 1 ? "\u2026" : "...";
        size_t ellipsis_width = MB_CUR_MAX > 1 ? 1 : 3;

        for (const char *p = s; *p;) {
                char escape[16] = "";
                size_t len, width, need;
                uint32_t c = 0;

                len = utf8_decode(p, &c);
                if (len == 0) {
                        len = 1;
                        snprintf(escape, sizeof(escape), "\\x%02x", (unsigned char) *p);
                } else if (c < 0x20 || c == 0x7f)
                        snprintf(escape, sizeof(escape), "\\x%02x", (unsigned) c);
                else if (unicode_is_invisible_control(c))
                        snprintf(escape, sizeof(escape), "\\u%04x", (unsigned) c);
                if (escape[0])
                        width = strlen(escape);
                else {
                        int w = wcwidth((wchar_t) c);

                        width = w < 0 ? 1 : (size_t) w;
                }
                /* Keep room for the ellipsis unless this is the end. */
                need = width + (p[len] ? ellipsis_width : 0);
                if (need > *budget) {
                        fputs(ellipsis, f);
                        *budget = 0;
                        return;
                }
                if (escape[0])
                        fputs(escape, f);
                else
                        fwrite(p, 1, len, f);
                *budget -= width;
                p += len;
        }
}

void format_text(FILE *f, const char *s) {
        size_t unlimited = SIZE_MAX;

        format_cut(f, s, &unlimited);
}

/* Valid JSON holds these characters only inside strings, where \uXXXX stands
 * for the same character. json-c escapes the C0 controls itself. */
void format_json(FILE *f, const char *json) {
        for (const char *p = json; *p;) {
                uint32_t c = 0;
                size_t len = utf8_decode(p, &c);

                if (len > 0 && (c == 0x7f || unicode_is_invisible_control(c)))
                        fprintf(f, "\\u%04x", (unsigned) c);
                else
                        fwrite(p, 1, len ? len : 1, f);
                p += len ? len : 1;
        }
        fputc('\n', f);
}

/* ---- times ---- */

const char *format_span(char buf[static 32], uint64_t usec) {
        static const struct { const char *unit; uint64_t usec; } units[] = {
                { "d", 86400 * USEC_PER_SEC }, { "h", 3600 * USEC_PER_SEC },
                { "min", 60 * USEC_PER_SEC }, { "s", USEC_PER_SEC },
        };

        if (usec < USEC_PER_SEC) {
                snprintf(buf, 32, "%llums", (unsigned long long) (usec / 1000));
                return buf;
        }
        if (usec < 60 * USEC_PER_SEC) {
                snprintf(buf, 32, "%.1fs", (double) usec / USEC_PER_SEC);
                return buf;
        }
        for (size_t i = 0; i < 3; i++) {
                if (usec < units[i].usec)
                        continue;
                snprintf(buf, 32, "%llu%s %llu%s",
                         (unsigned long long) (usec / units[i].usec), units[i].unit,
                         (unsigned long long) (usec % units[i].usec / units[i + 1].usec),
                         units[i + 1].unit);
                return buf;
        }
        return buf;
}

const char *format_when(char buf[static 96], uint64_t usec, uint64_t now) {
        char span[32], date[48] = "?";
        time_t t = (time_t) (usec / USEC_PER_SEC);
        struct tm tm;

        if (localtime_r(&t, &tm))
                strftime(date, sizeof(date), "%a %Y-%m-%d %H:%M:%S %Z", &tm);
        if (usec > now)
                snprintf(buf, 96, "%s (in %s)", date, format_span(span, usec - now));
        else
                snprintf(buf, 96, "%s (%s ago)", date, format_span(span, now - usec));
        return buf;
}

/* ---- signals ---- */

/* y, n, q, i, u and x all fit into an int64_t. */
static int64_t arg_integer(const struct signal_arg *a) {
        switch (a->type) {
        case 'y':
                return a->value.y;
        case 'n':
                return a->value.n;
        case 'q':
                return a->value.q;
        case 'i':
                return a->value.i;
        case 'u':
                return a->value.u;
        default:
                return a->value.x;
        }
}

/* The labels of a signal's leading arguments in the human format; the
 * trailing string (the payload) has none. */
static const char *arg_label(const char *member, size_t i) {
        static const struct { const char *member; const char *labels[3]; } table[] = {
                { "Event", { "stream", "name", NULL } },
                { "Resumed", { "stream", "recovered", "offline" } },
        };

        for (size_t k = 0; k < sizeof(table) / sizeof(table[0]); k++)
                if (strcmp(table[k].member, member) == 0)
                        return i < 3 ? table[k].labels[i] : NULL;
        return i == 0 ? "id" : NULL;
}

void format_signal_line(FILE *f, const struct timespec *when, const char *member,
                        const struct signal_arg *args, size_t n, size_t width) {
        size_t budget = width;
        char stamp[32], span[32], value[64];
        struct tm tm;

        localtime_r(&when->tv_sec, &tm);
        strftime(stamp, sizeof(stamp), "%H:%M:%S", &tm);
        fprintf(f, "%s.%03ld ", stamp, when->tv_nsec / 1000000);
        budget -= budget > 13 ? 13 : budget;
        format_cut(f, member, &budget);

        for (size_t i = 0; i < n && budget > 1; i++) {
                const char *label = arg_label(member, i);
                bool payload = i == n - 1 && args[i].type == 's';
                const char *text = value;

                fputc(' ', f);
                budget--;
                if (label && !payload) {
                        fprintf(f, "%s=", label);
                        budget -= strlen(label) + 1 < budget ? strlen(label) + 1 : budget;
                }
                switch (args[i].type) {
                case 's': case 'o': case 'g':
                        text = args[i].value.s;
                        break;
                case 'b':
                        text = args[i].value.b ? "yes" : "no";
                        break;
                case 't':
                        if (label && strcmp(label, "offline") == 0)
                                text = format_span(span, args[i].value.t);
                        else
                                snprintf(value, sizeof(value), "%llu",
                                         (unsigned long long) args[i].value.t);
                        break;
                case 'd':
                        snprintf(value, sizeof(value), "%g", args[i].value.d);
                        break;
                default:
                        snprintf(value, sizeof(value), "%lld",
                                 (long long) arg_integer(&args[i]));
                }
                format_cut(f, text, &budget);
        }
        fputc('\n', f);
}

static json_object *payload_parse(const char *text) {
        struct json_tokener *tok = json_tokener_new_ex(1000);
        json_object *o = NULL;

        if (!tok)
                return NULL;
        o = json_tokener_parse_ex(tok, text, (int) strlen(text));
        if (json_tokener_get_error(tok) != json_tokener_success) {
                json_object_put(o);
                o = NULL;
        }
        json_tokener_free(tok);
        return o;
}

void format_signal_json(FILE *f, const struct timespec *when, const char *member,
                        const struct signal_arg *args, size_t n) {
        json_object *o = json_object_new_object(), *list = json_object_new_array();
        char stamp[64], date[32];
        struct tm tm;

        if (!o || !list) {
                json_object_put(o);
                json_object_put(list);
                return;
        }
        gmtime_r(&when->tv_sec, &tm);
        strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(stamp, sizeof(stamp), "%s.%06uZ", date,
                 (unsigned) (when->tv_nsec / 1000 % 1000000));

        for (size_t i = 0; i < n; i++) {
                const struct signal_arg *a = &args[i];
                json_object *v;

                switch (a->type) {
                case 's': case 'o': case 'g':
                        v = json_object_new_string(a->value.s);
                        break;
                case 'b':
                        v = json_object_new_boolean(a->value.b);
                        break;
                case 't':
                        v = json_object_new_uint64(a->value.t);
                        break;
                case 'd':
                        v = json_object_new_double(a->value.d);
                        break;
                default:
                        v = json_object_new_int64(arg_integer(a));
                }
                json_object_array_add(list, v);
        }
        json_object_object_add(o, "time", json_object_new_string(stamp));
        json_object_object_add(o, "member", json_object_new_string(member));
        json_object_object_add(o, "args", list);
        /* Every signal but Resumed ends with the payload. */
        if (n > 0 && args[n - 1].type == 's')
                json_object_object_add(o, "payload", payload_parse(args[n - 1].value.s));
        format_json(f, json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                      JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(o);
}
