/* SPDX-License-Identifier: MIT */
/* The event-to-signal mapping: member names, the id rule, the payload as
 * compact JSON equal to what the server sent, and what is refused. */
#include <errno.h>
#include <string.h>
#include <json-c/json.h>

#include "eventd-event.h"
#include "test-util.h"

static json_object *parse(const char *text) {
        json_object *o = json_tokener_parse(text);

        CHECK(o);
        return o;
}

/* Maps text and checks member (NULL for Event), id and payload. */
static void check_map(const char *text, const char *member, const char *id,
                      const char *payload) {
        json_object *event = parse(text);
        struct event_signal sig;

        CHECK_INT(event_map(event, &sig), 0);
        if (member)
                CHECK_STR(sig.kind ? sig.kind->member : NULL, member);
        else
                CHECK(sig.kind == NULL);
        CHECK_STR(sig.id, id);
        CHECK_STR(sig.payload, payload);
        event_signal_release(&sig);
        json_object_put(event);
}

static void test_members(void) {
        static const char *const pairs[][2] = {
                { "ActivityAddedEvent", "ActivityAdded" },
                { "ActivityEditedEvent", "ActivityEdited" },
                { "ActivityDeletedEvent", "ActivityDeleted" },
                { "PersonDeletedEvent", "PersonDeleted" },
                { "OrganizationDeletedEvent", "OrganizationDeleted" },
                { "DealDeletedEvent", "DealDeleted" },
                { "TaskDeletedEvent", "TaskDeleted" },
                { "imported", "ImportProgress" },
                { "importError", "ImportError" },
                { "importFinished", "ImportFinished" },
        };
        size_t n = 0;

        for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++)
                CHECK_STR(event_kind_find(pairs[i][0])->member, pairs[i][1]);
        for (const struct event_kind *k = event_kinds; k->event; k++)
                n++;
        CHECK_INT(n, sizeof(pairs) / sizeof(pairs[0]));
        CHECK(event_kind_find("ActivityAdded") == NULL);
        CHECK(event_kind_find("activityaddedevent") == NULL);
}

static void test_id_rule(void) {
        /* _id first, then id, then the entity's own key */
        check_map("[\"ActivityAddedEvent\",{\"_id\":\"a1\",\"id\":\"b\"}]",
                  "ActivityAdded", "a1", "{\"_id\":\"a1\",\"id\":\"b\"}");
        check_map("[\"PersonDeletedEvent\",{\"id\":\"p2\",\"_personID\":\"x\"}]",
                  "PersonDeleted", "p2", "{\"id\":\"p2\",\"_personID\":\"x\"}");
        check_map("[\"PersonDeletedEvent\",{\"_personID\":\"p3\"}]",
                  "PersonDeleted", "p3", "{\"_personID\":\"p3\"}");
        check_map("[\"OrganizationDeletedEvent\",{\"_organizationID\":\"o1\"}]",
                  "OrganizationDeleted", "o1", "{\"_organizationID\":\"o1\"}");
        check_map("[\"DealDeletedEvent\",{\"_dealID\":\"d1\"}]", "DealDeleted", "d1",
                  "{\"_dealID\":\"d1\"}");
        check_map("[\"TaskDeletedEvent\",{\"_taskID\":\"t1\"}]", "TaskDeleted", "t1",
                  "{\"_taskID\":\"t1\"}");
        check_map("[\"imported\",{\"_importID\":\"i1\",\"progress\":0.5}]", "ImportProgress",
                  "i1", "{\"_importID\":\"i1\",\"progress\":0.5}");
        /* another entity's key is not ours */
        check_map("[\"DealDeletedEvent\",{\"_personID\":\"p\"}]", "DealDeleted", "",
                  "{\"_personID\":\"p\"}");
        /* numbers as ids, a bare string payload, no id at all */
        check_map("[\"TaskDeletedEvent\",{\"id\":42}]", "TaskDeleted", "42", "{\"id\":42}");
        check_map("[\"PersonDeletedEvent\",\"p9\"]", "PersonDeleted", "p9", "\"p9\"");
        check_map("[\"ActivityAddedEvent\",{\"_id\":null,\"id\":\"\"}]", "ActivityAdded", "",
                  "{\"_id\":null,\"id\":\"\"}");
        /* an id that cannot be a D-Bus string is left out, the event is not */
        check_map("[\"ActivityAddedEvent\",{\"_id\":\"a\\u0000b\"}]", "ActivityAdded", "",
                  "{\"_id\":\"a\\u0000b\"}");
}

static void test_unknown_and_arguments(void) {
        json_object *event = parse("[\"ActivityPinnedEvent\",{\"_id\":\"x\"}]");
        struct event_signal sig;

        CHECK_INT(event_map(event, &sig), 0);
        CHECK(sig.kind == NULL);
        CHECK_STR(sig.name, "ActivityPinnedEvent");
        CHECK_STR(sig.id, "x");
        event_signal_release(&sig);
        json_object_put(event);

        check_map("[\"NoPayloadEvent\"]", NULL, "", "null");
        check_map("[\"TwoArgs\",{\"a\":1},[2]]", NULL, "", "[{\"a\":1},[2]]");
}

static void test_payload_text(void) {
        /* Non-ASCII survives unescaped; slashes are not escaped. */
        check_map("[\"ActivityEditedEvent\",{\"_id\":\"e\",\"t\":\"Caf\\u00e9 M\u00fcller "
                  "\u6771\u4eac \\ud83d\\ude00\",\"u\":\"a/b\"}]",
                  "ActivityEdited", "e",
                  "{\"_id\":\"e\",\"t\":\"Café Müller 東京 😀\",\"u\":\"a/b\"}");
        /* Whitespace from the server is not kept: compact form. */
        check_map("[ \"DealDeletedEvent\" , { \"_id\" : \"d\" , \"n\" : [ 1 , 2 ] } ]",
                  "DealDeleted", "d", "{\"_id\":\"d\",\"n\":[1,2]}");
}

static void test_refused(void) {
        const char *bad[] = { "{}", "[]", "[1]", "[null,{}]", "\"x\"" };

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                json_object *o = parse(bad[i]);
                struct event_signal sig;

                CHECK_INT(event_map(o, &sig), -EBADMSG);
                CHECK(sig.id == NULL && sig.payload == NULL);
                json_object_put(o);
        }
}

int main(void) {
        test_members();
        test_id_rule();
        test_unknown_and_arguments();
        test_payload_text();
        test_refused();
        printf("test-event: ok\n");
        return 0;
}
