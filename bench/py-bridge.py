#!/usr/bin/python3
# SPDX-License-Identifier: MIT
#
# A reference for the benchmark, NOT part of samdock-eventd: the bridge a
# user would write in an afternoon with Debian's python3-socketio and
# python3-dbus, to show what samdock-eventd is compared against. It speaks
# the same protocol (CONNECT with the token, the `activities` subscription
# with the bearer header) and emits the same signals with the same id rule
# on the same object, and nothing else: no reconnect policy beyond the
# library's, no properties, no import stream, no browse calls.
#
#   py-bridge.py --url http://127.0.0.1:PORT --token-file FILE
#
# Connects to $DBUS_SESSION_BUS_ADDRESS. The token is never printed.
import argparse
import json
import sys

import dbus
import dbus.service
import dbus.mainloop.glib
import socketio
from gi.repository import GLib

BUS_NAME = "app.samdock.Events"
OBJECT_PATH = "/app/samdock/Events"
IFACE = "app.samdock.Events"

# Samdock event -> (signal, the entity's own id key)
KINDS = {
    "ActivityAddedEvent": ("ActivityAdded", "_activityID"),
    "ActivityEditedEvent": ("ActivityEdited", "_activityID"),
    "ActivityDeletedEvent": ("ActivityDeleted", "_activityID"),
    "PersonDeletedEvent": ("PersonDeleted", "_personID"),
    "OrganizationDeletedEvent": ("OrganizationDeleted", "_organizationID"),
    "DealDeletedEvent": ("DealDeleted", "_dealID"),
    "TaskDeletedEvent": ("TaskDeleted", "_taskID"),
}


class Events(dbus.service.Object):
    """The signals, declared the dbus-python way; calling one sends it."""

    @dbus.service.signal(IFACE, signature="ss")
    def ActivityAdded(self, activity_id, payload):
        pass

    @dbus.service.signal(IFACE, signature="ss")
    def ActivityEdited(self, activity_id, payload):
        pass

    @dbus.service.signal(IFACE, signature="ss")
    def ActivityDeleted(self, activity_id, payload):
        pass

    @dbus.service.signal(IFACE, signature="ss")
    def PersonDeleted(self, person_id, payload):
        pass

    @dbus.service.signal(IFACE, signature="ss")
    def OrganizationDeleted(self, organization_id, payload):
        pass

    @dbus.service.signal(IFACE, signature="ss")
    def DealDeleted(self, deal_id, payload):
        pass

    @dbus.service.signal(IFACE, signature="ss")
    def TaskDeleted(self, task_id, payload):
        pass

    @dbus.service.signal(IFACE, signature="sss")
    def Event(self, stream, name, payload):
        pass


def payload_id(payload, own_key):
    if not isinstance(payload, dict):
        return ""
    for key in ("_id", "id", own_key):
        value = payload.get(key)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool) and value != "":
            return str(value)
    return ""


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--token-file", required=True)
    parser.add_argument("--activities-path", default="/api/activities/socket.io/")
    args = parser.parse_args()
    with open(args.token_file, encoding="utf-8") as f:
        token = f.read().strip()

    dbus.mainloop.glib.threads_init()
    dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
    bus = dbus.SessionBus()
    name = dbus.service.BusName(BUS_NAME, bus, do_not_queue=True)
    events = Events(bus, OBJECT_PATH)

    sio = socketio.Client()

    @sio.event
    def connect():
        sio.emit("activities", {"headers": {"authorization": f"Bearer {token}"}})

    @sio.on("*")
    def any_event(event, *data):
        payload = data[0] if len(data) == 1 else (list(data) if data else None)
        text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        kind = KINDS.get(event)
        if kind:
            getattr(events, kind[0])(payload_id(payload, kind[1]), text)
        else:
            events.Event("activities", event, text)

    sio.connect(args.url, socketio_path=args.activities_path, transports=["websocket"],
                auth={"token": token})
    loop = GLib.MainLoop()
    try:
        loop.run()
    except KeyboardInterrupt:
        pass
    finally:
        sio.disconnect()
        del name
    return 0


if __name__ == "__main__":
    sys.exit(main())
