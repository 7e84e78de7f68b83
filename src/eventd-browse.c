/* SPDX-License-Identifier: MIT */
/*
 * How a browse reply finds its call. Samdock does not document it: an ACK
 * to the emit's ack id is certain; an event of the same name is matched by
 * the id it names, since several calls may be in flight. A reply that names
 * someone else answers no call (a late answer to a call that timed out must
 * not go to the next one); only a reply that names nobody, an empty list,
 * goes to the oldest call of its kind.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eventd-browse.h"
#include "eventd-codec.h"
#include "eventd-log.h"

struct browse {
        struct browse *next;
        struct browses *owner;
        enum bus_browse kind;
        char *id;
        int64_t ack_id;
        uint64_t timeout_usec;
        sd_bus_message *call;
        sd_event_source *timer;
};

struct browses {
        sd_event *event;
        struct browse *head;            /* oldest first */
        size_t n;
};

const char *browse_event_name(enum bus_browse kind) {
        return kind == BUS_BROWSE_PERSON ? "activities-by-person" : "activities-by-organization";
}

const char *browse_id_key(enum bus_browse kind) {
        return kind == BUS_BROWSE_PERSON ? "_personID" : "_organizationID";
}

static struct browse *browse_free(struct browse *b) {
        if (!b)
                return NULL;
        sd_event_source_disable_unref(b->timer);
        sd_bus_message_unref(b->call);
        free(b->id);
        free(b);
        return NULL;
}

static void browse_unlink(struct browse *b) {
        for (struct browse **p = &b->owner->head; *p; p = &(*p)->next)
                if (*p == b) {
                        *p = b->next;
                        b->owner->n--;
                        return;
                }
}

static void browse_fail(struct browse *b, const char *error, const char *message) {
        int r;

        browse_unlink(b);
        r = sd_bus_reply_method_errorf(b->call, error, "%s", message);
        if (r < 0)
                log_debug("Cannot answer a browse call: %s", strerror(-r));
        browse_free(b);
}

static void browse_answer(struct browse *b, json_object *reply) {
        const char *text = json_object_to_json_string_ext(reply, JSON_C_TO_STRING_PLAIN |
                                                          JSON_C_TO_STRING_NOSLASHESCAPE);
        int r;

        browse_unlink(b);
        if (!utf8_is_valid(text, strlen(text)))
                r = sd_bus_reply_method_errorf(b->call, BUS_ERROR_SERVER_ERROR,
                                               "The server's answer is not valid UTF-8");
        else
                r = sd_bus_reply_method_return(b->call, "s", text);
        if (r < 0)
                log_debug("Cannot answer a browse call: %s", strerror(-r));
        browse_free(b);
}

static int on_timeout(sd_event_source *source, uint64_t usec, void *userdata) {
        struct browse *b = userdata;
        char message[128];

        snprintf(message, sizeof(message), "The server did not answer within %.1f s",
                 (double) b->timeout_usec / 1e6);
        browse_fail(b, BUS_ERROR_TIMEOUT, message);
        return 0;
}

int browses_new(struct browses **ret, sd_event *event) {
        struct browses *b = calloc(1, sizeof(*b));

        if (!b)
                return -ENOMEM;
        b->event = sd_event_ref(event);
        *ret = b;
        return 0;
}

struct browses *browses_free(struct browses *b) {
        if (!b)
                return NULL;
        browses_fail_all(b, BUS_ERROR_NOT_CONNECTED, "The daemon is stopping");
        sd_event_unref(b->event);
        free(b);
        return NULL;
}

int browses_add(struct browses *b, enum bus_browse kind, const char *id, int64_t ack_id,
                sd_bus_message *call, uint64_t timeout_usec) {
        struct browse *n, **tail;
        int r;

        if (b->n >= BROWSE_MAX_WAITING)
                return -EBUSY;
        n = calloc(1, sizeof(*n));
        if (!n || !(n->id = strdup(id))) {
                free(n);
                return -ENOMEM;
        }
        n->owner = b;
        n->kind = kind;
        n->ack_id = ack_id;
        n->timeout_usec = timeout_usec;
        n->call = sd_bus_message_ref(call);

        r = sd_event_add_time_relative(b->event, &n->timer, CLOCK_BOOTTIME, timeout_usec, 1000,
                                       on_timeout, n);
        if (r < 0) {
                browse_free(n);
                return r;
        }

        for (tail = &b->head; *tail; tail = &(*tail)->next)
                ;
        *tail = n;
        b->n++;
        log_debug("Browse %s %s waits for ack %" PRId64, browse_event_name(kind), id, ack_id);
        return 0;
}

void browses_cancel(struct browses *b, int64_t ack_id) {
        for (struct browse *n = b->head; n; n = n->next)
                if (n->ack_id == ack_id) {
                        browse_unlink(n);
                        browse_free(n);
                        return;
                }
}

/* The arguments after the first skip ones as one value: the single one, or
 * an array of several; NULL for none. */
static json_object *arguments_value(json_object *args, size_t skip) {
        size_t n = json_object_array_length(args);
        json_object *all;

        if (n <= skip)
                return NULL;
        if (n == skip + 1)
                return json_object_get(json_object_array_get_idx(args, skip));
        all = json_object_new_array();
        for (size_t i = skip; all && i < n; i++)
                json_object_array_add(all, json_object_get(json_object_array_get_idx(args, i)));
        return all;
}

static bool is_string_equal(json_object *v, const char *id) {
        return json_object_is_type(v, json_type_string) &&
               (!id || strcmp(json_object_get_string(v), id) == 0);
}

/* Does the reply (or an item of it) name id in its _personID(s) or
 * _organizationID(s) fields? With id NULL: does it name anybody? */
static bool reply_names(json_object *reply, enum bus_browse kind, const char *id) {
        const char *many = kind == BUS_BROWSE_PERSON ? "_personIDs" : "_organizationIDs";
        json_object *v;

        if (json_object_is_type(reply, json_type_array)) {
                size_t n = json_object_array_length(reply);

                for (size_t i = 0; i < n && i < 1000; i++)
                        if (reply_names(json_object_array_get_idx(reply, i), kind, id))
                                return true;
                return false;
        }
        if (!json_object_is_type(reply, json_type_object))
                return false;
        if (json_object_object_get_ex(reply, browse_id_key(kind), &v) && is_string_equal(v, id))
                return true;
        if (json_object_object_get_ex(reply, many, &v) && json_object_is_type(v, json_type_array)) {
                size_t n = json_object_array_length(v);

                for (size_t i = 0; i < n; i++)
                        if (is_string_equal(json_object_array_get_idx(v, i), id))
                                return true;
        }
        return false;
}

bool browses_take_ack(struct browses *b, int64_t ack_id, json_object *args) {
        json_object *reply;

        for (struct browse *n = b->head; n; n = n->next) {
                if (n->ack_id != ack_id)
                        continue;
                reply = arguments_value(args, 0);
                browse_answer(n, reply);
                json_object_put(reply);
                return true;
        }
        return false;
}

bool browses_take_event(struct browses *b, const char *name, json_object *event) {
        json_object *payload = json_object_array_get_idx(event, 1), *reply;
        struct browse *match = NULL, *oldest = NULL;

        for (struct browse *n = b->head; n; n = n->next) {
                if (strcmp(browse_event_name(n->kind), name) != 0)
                        continue;
                if (!oldest)
                        oldest = n;
                if (reply_names(payload, n->kind, n->id)) {
                        match = n;
                        break;
                }
        }
        if (!match && oldest && !reply_names(payload, oldest->kind, NULL))
                match = oldest;
        if (!match)
                return false;

        reply = arguments_value(event, 1);
        browse_answer(match, reply);
        json_object_put(reply);
        return true;
}

bool browses_fail_oldest(struct browses *b, const char *error, const char *message) {
        if (!b->head)
                return false;
        browse_fail(b->head, error, message);
        return true;
}

void browses_fail_all(struct browses *b, const char *error, const char *message) {
        while (b->head)
                browse_fail(b->head, error, message);
}

size_t browses_waiting(const struct browses *b) {
        return b->n;
}
