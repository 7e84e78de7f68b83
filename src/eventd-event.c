/* SPDX-License-Identifier: MIT */
/*
 * The table of Samdock events and their D-Bus signals, and the id rule:
 * "_id", else "id", else the entity's own key. Unknown names are not an
 * error; they travel as Event(stream, name, payload) so that new Samdock
 * events reach subscribers before this table learns them.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "eventd-codec.h"
#include "eventd-event.h"
#include "eventd-view.h"

const struct event_kind event_kinds[] = {
        { "ActivityAddedEvent",       "ActivityAdded",       "_activityID",     "activity_id" },
        { "ActivityEditedEvent",      "ActivityEdited",      "_activityID",     "activity_id" },
        { "ActivityDeletedEvent",     "ActivityDeleted",     "_activityID",     "activity_id" },
        { "PersonDeletedEvent",       "PersonDeleted",       "_personID",       "person_id" },
        { "OrganizationDeletedEvent", "OrganizationDeleted", "_organizationID", "organization_id" },
        { "DealDeletedEvent",         "DealDeleted",         "_dealID",         "deal_id" },
        { "TaskDeletedEvent",         "TaskDeleted",         "_taskID",         "task_id" },
        { "imported",                 "ImportProgress",      "_importID",       "import_id" },
        { "importError",              "ImportError",         "_importID",       "import_id" },
        { "importFinished",           "ImportFinished",      "_importID",       "import_id" },
        {}
};

const struct event_kind *event_kind_find(const char *name) {
        for (const struct event_kind *k = event_kinds; k->event; k++)
                if (strcmp(k->event, name) == 0)
                        return k;
        return NULL;
}

static char *id_from_value(json_object *v) {
        const char *s;
        size_t len;

        switch (json_object_get_type(v)) {
        case json_type_string:
                s = json_object_get_string(v);
                len = (size_t) json_object_get_string_len(v);
                break;
        case json_type_int:
        case json_type_double:
                s = json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN);
                len = strlen(s);
                break;
        default:
                return NULL;
        }

        /* An id with an embedded NUL (from a \u0000 escape) or broken
         * UTF-8 cannot be a D-Bus string; treat it as absent. */
        if (len == 0 || !utf8_is_valid(s, len))
                return NULL;
        return strndup(s, len);
}

char *event_payload_id(json_object *payload, const char *own_key) {
        const char *keys[] = { "_id", "id", own_key };
        json_object *v;
        char *id;

        if (!json_object_is_type(payload, json_type_object)) {
                id = id_from_value(payload);
                return id ? id : strdup("");
        }

        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
                if (!keys[i] || !json_object_object_get_ex(payload, keys[i], &v))
                        continue;
                id = id_from_value(v);
                if (id)
                        return id;
        }
        return strdup("");
}

int event_map(json_object *event, struct event_signal *ret) {
        json_object *name, *payload;
        const char *text;
        size_t n, len;

        *ret = (struct event_signal) {};

        if (!json_object_is_type(event, json_type_array))
                return -EBADMSG;
        n = json_object_array_length(event);
        name = json_object_array_get_idx(event, 0);
        if (n < 1 || !json_object_is_type(name, json_type_string))
                return -EBADMSG;

        ret->name = json_object_get_string(name);
        if (!utf8_is_valid(ret->name, (size_t) json_object_get_string_len(name)))
                return -EBADMSG;
        ret->kind = event_kind_find(ret->name);

        if (n == 1)
                payload = NULL;
        else if (n == 2)
                payload = json_object_array_get_idx(event, 1);
        else {
                /* Several arguments: keep them all, in order, as one array. */
                payload = json_object_new_array_ext((int) n - 1);
                if (!payload)
                        return -ENOMEM;
                for (size_t i = 1; i < n; i++)
                        json_object_array_add(payload,
                                              json_object_get(json_object_array_get_idx(event, i)));
        }

        text = json_object_to_json_string_length(payload,
                                                 JSON_C_TO_STRING_PLAIN |
                                                 JSON_C_TO_STRING_NOSLASHESCAPE, &len);
        ret->payload = text ? strndup(text, len) : NULL;
        ret->id = event_payload_id(payload, ret->kind ? ret->kind->id_key : NULL);
        if (n > 2)
                json_object_put(payload);

        if (!ret->payload || !ret->id) {
                event_signal_release(ret);
                return -ENOMEM;
        }
        /* No second UTF-8 pass over ret->payload: json-c wrote it from text
         * that sio_decode() checked (lone surrogates refused) and escapes
         * what it must, and sd-bus checks it once more anyway. */
        return 0;
}

void event_signal_release(struct event_signal *s) {
        free(s->id);
        free(s->payload);
        free(s->name_owned);
        s->id = s->payload = s->name_owned = NULL;
}

/* The id from a value's text, as id_from_value() would give it: a string
 * without escapes or a number; NULL for other types and empty strings;
 * -EAGAIN (via *ret_again) for strings with escapes. */
static char *id_from_view(const char *value, size_t len, bool *ret_again) {
        if (len > 0 && value[0] == '"') {
                if (!json_view_is_plain_string(value, len)) {
                        *ret_again = true;
                        return NULL;
                }
                return len > 2 ? strndup(value + 1, len - 2) : NULL;
        }
        if (len > 0 && (value[0] == '-' || (value[0] >= '0' && value[0] <= '9')))
                return strndup(value, len);
        return NULL;
}

int event_map_view(const struct sio_event_view *v, size_t n_args, struct event_signal *ret) {
        const char *payload = n_args == 1 ? v->arg[0] : "null";
        size_t payload_len = n_args == 1 ? v->arg_len[0] : 4;
        const char *keys[3] = { "_id", "id", NULL };
        bool again = false;
        char *id = NULL;

        *ret = (struct event_signal) {};
        if (n_args > 1 || v->name_len > 255)
                return -EAGAIN;

        ret->name_owned = strndup(v->name, v->name_len);
        if (!ret->name_owned)
                return -ENOMEM;
        ret->name = ret->name_owned;
        ret->kind = event_kind_find(ret->name);
        keys[2] = ret->kind ? ret->kind->id_key : NULL;

        if (payload[0] == '{') {
                for (size_t i = 0; i < 3 && !id && !again; i++) {
                        const char *value;
                        size_t len;

                        if (keys[i] && json_view_member(payload, payload_len, keys[i], &value,
                                                        &len))
                                id = id_from_view(value, len, &again);
                }
        } else
                id = id_from_view(payload, payload_len, &again);
        if (again) {
                event_signal_release(ret);
                return -EAGAIN;
        }

        ret->id = id ? id : strdup("");
        ret->payload = strndup(payload, payload_len);
        if (!ret->id || !ret->payload) {
                event_signal_release(ret);
                return -ENOMEM;
        }
        return 0;
}
