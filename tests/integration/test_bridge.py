# SPDX-License-Identifier: MIT
"""End-to-end tests: the real samdock-eventd between the Samdock-like
Socket.IO server (tests/server) and a private D-Bus session bus.

Run:
    SAMDOCK_EVENTD=build/samdock-eventd /usr/bin/python3 -m pytest tests/integration -q

Every test looks at what a user of the bus would see (signals, method
replies, properties) or what Samdock would see (the server's statistics).
"""

import json
import os
import signal
import time

import pytest

import harness
from harness import (ACTIVITY_EVENTS, IFACE, OBJECT_PATH, STREAM_IFACE, STREAM_PATH_PREFIX,
                     deliver_and_check, expect_one)

TENANT = "5f8d0d55b54764421b7156c9"
UNICODE = "Café Müller – Angebot 東京 😀"


# ---------------------------------------------------------------------------
# helpers

def is_compact_json(s):
    """True when s has no whitespace outside string literals."""
    in_str = esc = False
    for ch in s:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in " \t\r\n":
            return False
    return True


def activity(_id, **over):
    a = {
        "_id": _id,
        "_tenantID": TENANT,
        "type": "note",
        "_personIDs": ["60a7c1e2f1d2c3b4a5960001"],
        "_organizationIDs": ["60a7c1e2f1d2c3b4a5960002"],
        "_dealID": None,
        "_taskIDs": [],
        "_userID": "60a7c1e2f1d2c3b4a5960003",
        "data": {"title": UNICODE, "text": "Zeile 1\nZeile 2 \"zitiert\" \\ Ende", "amount": 1234.5,
                 "tags": ["größe", "ß"], "done": False, "nothing": None},
        "timestamp": "2024-05-03T10:15:00.000Z",
        "createdAt": "2024-05-03T10:15:00.000Z",
        "updatedAt": "2024-05-03T10:16:30.000Z",
    }
    a.update(over)
    return a


# Samdock event -> (payload, expected first argument)
EXAMPLES = {
    "ActivityAddedEvent": (activity("6650a1b2c3d4e5f601234567"), "6650a1b2c3d4e5f601234567"),
    "ActivityEditedEvent": (activity("6650a1b2c3d4e5f601234568", type="call",
                                     updatedAt="2024-05-04T08:00:00.000Z"),
                            "6650a1b2c3d4e5f601234568"),
    "ActivityDeletedEvent": ({"_id": "6650a1b2c3d4e5f601234569", "_tenantID": TENANT,
                              "deletedAt": "2024-05-05T09:00:00.000Z", "reason": UNICODE},
                             "6650a1b2c3d4e5f601234569"),
    "PersonDeletedEvent": ({"_personID": "60a7c1e2f1d2c3b4a59600aa", "_tenantID": TENANT,
                            "name": "Jürgen Weiß 😀"}, "60a7c1e2f1d2c3b4a59600aa"),
    "OrganizationDeletedEvent": ({"_organizationID": "60a7c1e2f1d2c3b4a59600bb",
                                  "_tenantID": TENANT, "name": "Müller & Söhne GmbH 東京"},
                                 "60a7c1e2f1d2c3b4a59600bb"),
    "DealDeletedEvent": ({"_dealID": "60a7c1e2f1d2c3b4a59600cc", "_tenantID": TENANT,
                          "title": "Angebot – 2.500 €"}, "60a7c1e2f1d2c3b4a59600cc"),
    "TaskDeletedEvent": ({"_taskID": "60a7c1e2f1d2c3b4a59600dd", "_tenantID": TENANT,
                          "title": "Rückruf ✓"}, "60a7c1e2f1d2c3b4a59600dd"),
}


def wait_online(server, n=1, stream="activities", timeout=15):
    """Waits until the daemon's n-th subscription on stream has been
    accepted (the daemon is then in the room and receives events)."""
    return server.wait_subscribed(n, stream=stream, timeout=timeout)


# ---------------------------------------------------------------------------
# events -> signals

@pytest.mark.parametrize("event", list(EXAMPLES))
def test_activity_event_becomes_signal(server, signals, daemon, event):
    wait_online(server)
    payload, expected_id = EXAMPLES[event]
    mark = signals.mark()
    assert server.emit(event, payload)["sent"] == 1
    member = ACTIVITY_EVENTS[event][0]
    sig = expect_one(signals, member, mark)
    assert sig.path == OBJECT_PATH and sig.interface == IFACE
    assert len(sig.args) == 2 and all(isinstance(a, str) for a in sig.args)
    assert sig.args[0] == expected_id
    assert json.loads(sig.args[1]) == payload
    assert is_compact_json(sig.args[1]), f"payload is not compact JSON: {sig.args[1]!r}"
    assert signals.members(mark) == [member]


@pytest.mark.parametrize("event,payload,expected_id", [
    ("ActivityAddedEvent", {"id": "plain-id-1", "data": {"t": UNICODE}}, "plain-id-1"),
    ("ActivityEditedEvent", {"_id": "underscore", "id": "plain"}, "underscore"),
    ("PersonDeletedEvent", {"_id": "x-id", "_personID": "p-id"}, "x-id"),
    ("PersonDeletedEvent", {"id": "y-id", "_personID": "p-id"}, "y-id"),
    ("OrganizationDeletedEvent", {"_organizationID": "o-id"}, "o-id"),
    ("DealDeletedEvent", {"_dealID": "d-id", "_personID": "not-this"}, "d-id"),
    ("TaskDeletedEvent", {"_taskID": "t-id"}, "t-id"),
    ("TaskDeletedEvent", {"title": "no id at all"}, ""),
    ("ActivityDeletedEvent", {}, ""),
])
def test_entity_id_fallback(server, signals, daemon, event, payload, expected_id):
    wait_online(server)
    mark = signals.mark()
    server.emit(event, payload)
    sig = expect_one(signals, ACTIVITY_EVENTS[event][0], mark)
    assert sig.args[0] == expected_id
    assert json.loads(sig.args[1]) == payload


@pytest.mark.parametrize("name,payload", [
    ("ActivityPinnedEvent", {"_id": "6650a1b2c3d4e5f6012345aa", "pinned": True, "note": UNICODE}),
    ("DealStageChangedEvent", {"_dealID": "d1", "from": "Qualifiziert", "to": "Angebot"}),
    ("Ereignis-Über-😀", [1, "zwei", {"drei": 3}]),
    ("StringPayloadEvent", "nur ein Text – 東京"),
])
def test_unknown_event_becomes_Event(server, signals, daemon, name, payload):
    wait_online(server)
    mark = signals.mark()
    server.emit(name, payload)
    sig = expect_one(signals, "Event", mark)
    assert len(sig.args) == 3
    stream, got_name, got_payload = sig.args
    assert (stream, got_name) == ("activities", name)
    assert json.loads(got_payload) == payload
    assert is_compact_json(got_payload)
    assert signals.members(mark) == ["Event"]


def test_order_preserved_for_a_burst_of_100(server, signals, daemon):
    wait_online(server)
    mark = signals.mark()
    r = server.emit("ActivityAddedEvent", count=100)
    assert r["sent"] == 1
    got = signals.wait_for(100, timeout=20, member="ActivityAdded", since=mark)
    signals.settle(0.5)
    got = signals.of("ActivityAdded", mark)
    assert len(got) == 100, f"expected 100 signals, got {len(got)}"
    assert [s.args[0] for s in got] == [p["_id"] for p in r["payloads"]]
    assert [json.loads(s.args[1]) for s in got] == r["payloads"]


def test_order_preserved_across_kinds(server, signals, daemon):
    wait_online(server)
    mark = signals.mark()
    sequence = list(EXAMPLES) + ["ActivityPinnedEvent"] + list(reversed(list(EXAMPLES)))
    for ev in sequence:
        server.emit(ev, EXAMPLES[ev][0] if ev in EXAMPLES else {"_id": "pin"})
    expected = [ACTIVITY_EVENTS[ev][0] if ev in EXAMPLES else "Event" for ev in sequence]
    signals.wait_until(lambda s: len(s.items) - mark >= len(expected), 15,
                       f"{len(expected)} signals")
    signals.settle(0.5)
    assert signals.members(mark) == expected


# ---------------------------------------------------------------------------
# subscriptions and authentication

def test_subscribes_exactly_once_per_connection(server, signals, daemon):
    wait_online(server)
    signals.settle(2.0)   # long enough for a duplicate or a reconnect loop to show
    st = server.stats()
    assert st["connects"]["activities"] == 1, f"CONNECTs: {st['connects']}"
    assert st["subscriptions"]["activities"] == 1
    subs = [e for e in st["emitsReceived"] if e["stream"] == "activities" and e["event"] == "activities"]
    assert len(subs) == 1 and subs[0]["authorized"] is True
    # the CONNECT carried {"token": ...} as well
    auth = [a for a in st["connectAuth"] if a["stream"] == "activities"]
    assert len(auth) == 1 and auth[0]["authorized"] is True
    assert st["connections"]["activities"] == 1


def test_token_never_in_log_or_command_line(server, signals, daemon):
    wait_online(server)
    deliver_and_check(server, signals)
    assert daemon.token not in daemon.log(), "the token appears in the daemon's log"
    cmdline = harness.Path(f"/proc/{daemon.pid}/cmdline").read_bytes().decode(errors="replace")
    assert daemon.token not in cmdline


WRONG_TOKEN = "an-outdated-token-0001"


def auth_attempts(stats):
    """How often the daemon tried: CONNECTs plus upgrades refused by HTTP."""
    return stats["connects"]["activities"] + stats["httpRefused"]["activities"]


def wait_auth_failed(server, signals):
    server.wait_stats(lambda s: (s["exceptions"]["activities"] + s["rejected"]["activities"]
                                 + s["httpRefused"]["activities"]) >= 1, 15, "an auth failure")
    harness.wait_until(lambda: signals.get_property(OBJECT_PATH, IFACE, "State") == "auth-failed",
                       10, what="State == auth-failed")


def wait_state_online(signals, timeout=10):
    harness.wait_until(lambda: signals.get_property(OBJECT_PATH, IFACE, "State") == "online",
                       timeout, what="State == online")


@pytest.mark.daemon_args(token=WRONG_TOKEN)
@pytest.mark.parametrize("server", [
    # NestJS: an "exception" event answers the subscription
    {"auth_mode": "exception"},
    # a CONNECT_ERROR (44{"message":"unauthorized"}) answers the CONNECT
    {"auth_mode": "connect_error"},
    # the upgrade is refused with HTTP 401 / 403
    {"auth_mode": "http"},
    {"auth_mode": "http403"},
], indirect=True, ids=["exception", "connect_error", "http401", "http403"])
def test_wrong_token_gives_auth_failed_without_retry_storm(server, signals, daemon):
    wait_auth_failed(server, signals)
    path = STREAM_PATH_PREFIX + "activities"
    assert signals.get_property(path, STREAM_IFACE, "State") == "auth-failed"
    assert signals.get_property(path, STREAM_IFACE, "LastError") != ""
    attempts = auth_attempts(server.stats())
    signals.settle(3.0)   # MaxDelaySec=1: a daemon retrying the same token would reconnect
    st = server.stats()
    assert auth_attempts(st) == attempts, "retried with the same token"
    assert attempts <= 2
    assert st["subscriptions"]["activities"] == 0
    assert WRONG_TOKEN not in daemon.log()
    assert daemon.alive()


@pytest.mark.daemon_args(token=WRONG_TOKEN)
@pytest.mark.parametrize("how", ["Reload", "SIGHUP"])
def test_new_token_after_reload(server, signals, daemon, how):
    wait_auth_failed(server, signals)
    daemon.write_token(server.token)
    if how == "Reload":
        signals.call("Reload")
    else:
        daemon.send_signal(signal.SIGHUP)
    wait_online(server, 1, timeout=20)
    wait_state_online(signals)
    deliver_and_check(server, signals)
    assert server.token not in daemon.log()


@pytest.mark.daemon_args(token=WRONG_TOKEN)
@pytest.mark.parametrize("replace", ["rename", "in-place"])
def test_changed_token_file_is_picked_up_by_itself(server, signals, daemon, replace):
    """DESIGN: "A changed token file is picked up without restart" -- here
    without Reload() or SIGHUP either."""
    wait_auth_failed(server, signals)
    daemon.write_token(server.token, atomic=(replace == "rename"))
    wait_online(server, 1, timeout=20)
    wait_state_online(signals)
    deliver_and_check(server, signals)


# ---------------------------------------------------------------------------
# reconnecting

def check_resumed(signals, since, recovered=False):
    sig = expect_one(signals, "Resumed", since, settle=0.2)
    stream, rec, offline_usec = sig.args
    assert stream == "activities"
    assert rec is recovered
    assert isinstance(offline_usec, int) and offline_usec >= 0
    return sig


def test_reconnect_after_dropped_connection(server, signals, daemon):
    wait_online(server)
    first = deliver_and_check(server, signals)
    mark = signals.mark()
    assert server.drop() == 1
    wait_online(server, 2)
    check_resumed(signals, mark, recovered=False)
    second = deliver_and_check(server, signals)
    # the first event was not delivered again
    assert [s.args[0] for s in signals.of("ActivityAdded")] == [first.args[0], second.args[0]]
    st = server.stats()
    assert st["connects"]["activities"] == 2 and st["subscriptions"]["activities"] == 2
    assert st["connections"]["activities"] == 1


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_reconnect_after_server_restart(server, signals, daemon, how):
    wait_online(server)
    first = deliver_and_check(server, signals)
    mark = signals.mark()
    server.kill(how)
    time.sleep(0.5)          # down for a moment; the daemon backs off
    server.start()           # same port, fresh process
    wait_online(server, 1, timeout=20)
    check_resumed(signals, mark, recovered=False)
    second = deliver_and_check(server, signals)
    assert [s.args[0] for s in signals.of("ActivityAdded")] == [first.args[0], second.args[0]]
    st = server.stats()
    assert st["connects"]["activities"] == 1 and st["subscriptions"]["activities"] == 1
    assert daemon.alive()


def test_reconnect_after_socketio_disconnect(server, signals, daemon):
    wait_online(server)
    first = deliver_and_check(server, signals)
    mark = signals.mark()
    assert server.disconnect() == 1          # "41", then the server closes
    wait_online(server, 2)
    check_resumed(signals, mark, recovered=False)
    second = deliver_and_check(server, signals)
    assert [s.args[0] for s in signals.of("ActivityAdded")] == [first.args[0], second.args[0]]
    st = server.stats()
    assert st["connects"]["activities"] == 2 and st["subscriptions"]["activities"] == 2


def test_reconnect_many_times(server, signals, daemon):
    wait_online(server)
    for i in range(2, 6):
        (server.drop if i % 2 else server.disconnect)()
        wait_online(server, i)
        deliver_and_check(server, signals, settle=0.2)
    st = server.stats()
    assert st["subscriptions"]["activities"] == st["connects"]["activities"] == 5
    assert len(signals.of("Resumed")) == 4


@pytest.mark.server_args(ping_interval_ms=400, ping_timeout_ms=400)
def test_silent_server_is_detected(server, signals, daemon):
    """No Engine.IO ping within pingInterval + pingTimeout: the daemon must
    give up on the connection by itself and reconnect."""
    wait_online(server)
    server.config(ping_silence="existing")   # frozen: TCP open, nothing sent
    mark = signals.mark()
    wait_online(server, 2, timeout=10)
    check_resumed(signals, mark, recovered=False)
    deliver_and_check(server, signals)


@pytest.mark.server_args(recovery_ms=60000)
def test_connection_state_recovery(server, signals, daemon):
    wait_online(server)
    first = deliver_and_check(server, signals)   # gives the daemon an offset
    mark = signals.mark()
    server.drop()
    missed = server.emit("ActivityAddedEvent", count=3)["payloads"]
    wait_online(server, 1)       # a recovered session keeps its rooms
    server.wait_stats(lambda s: s["recovered"] == 1 and s["connects"]["activities"] == 2, 15,
                      "a recovered connection")
    got = signals.wait_for(3, 10, member="ActivityAdded", since=mark)
    signals.settle(0.5)
    got = signals.of("ActivityAdded", mark)
    assert [json.loads(s.args[1]) for s in got] == missed, "missed events not replayed exactly once"
    assert [s.args[0] for s in got] == [p["_id"] for p in missed]
    resumed = check_resumed(signals, mark, recovered=True)
    # Resumed says the replayed events have been sent by then.
    order = signals.members(mark)
    assert order.index("Resumed") > max(i for i, m in enumerate(order) if m == "ActivityAdded")
    assert resumed is not None
    later = deliver_and_check(server, signals)
    ids = [s.args[0] for s in signals.of("ActivityAdded")]
    assert ids == [first.args[0]] + [p["_id"] for p in missed] + [later.args[0]]


@pytest.mark.server_args(recovery_ms=60000)
@pytest.mark.time_limit(120)
def test_replay_too_big_to_keep_is_no_recovery(server, signals, daemon):
    """A recovering server replays what was missed before it answers
    CONNECT; the daemon keeps 10000 such events. When more come, those
    that found no room are counted as dropped, and Resumed says
    recovered=false, so that subscribers refresh instead of trusting a
    replay with a hole in it."""
    wait_online(server)
    deliver_and_check(server, signals)           # gives the daemon an offset
    emitted = signals.get_property(OBJECT_PATH, IFACE, "EventsEmitted")
    dropped = signals.get_property(OBJECT_PATH, IFACE, "EventsDropped")
    mark = signals.mark()
    os.kill(daemon.pid, signal.SIGSTOP)          # it cannot reconnect meanwhile
    try:
        server.drop()
        server.emit("ActivityAddedEvent", {"_id": "r", "n": 1}, count=10100)
    finally:
        os.kill(daemon.pid, signal.SIGCONT)
    server.wait_stats(lambda s: s["recovered"] == 1, 30, "a recovered connection")
    signals.wait_for(1, 60, member="Resumed", since=mark)
    check_resumed(signals, mark, recovered=False)
    harness.wait_until(lambda: signals.get_property(OBJECT_PATH, IFACE, "EventsDropped")
                       == dropped + 100, 30, what="the 100 without room counted")
    assert signals.get_property(OBJECT_PATH, IFACE, "EventsEmitted") == emitted + 10000
    assert "reporting the recovery as incomplete" in daemon.log()
    deliver_and_check(server, signals)


def test_reload_with_changed_settings_reconnects_each_time(server, signals, daemon):
    """Each reload that changes a connection setting reconnects with it
    (here MaxEventSize=, three times), and events flow after each. Under
    the valgrind run in CI this also proves that it leaks nothing: a new
    libwebsockets context per reload lost about 700 KiB each time."""
    wait_online(server)
    base = daemon.config_path.read_text()
    for i, size in enumerate(["2M", "3M", "4M"], start=2):
        daemon.config_path.write_text(base + f"\n[Limits]\nMaxEventSize={size}\n")
        daemon.send_signal(signal.SIGHUP)
        server.wait_stats(lambda s: s["connects"]["activities"] == i, 20,
                          f"reconnect {i - 1} after a reload")
        wait_online(server, i)
        deliver_and_check(server, signals, settle=0.2)
    assert daemon.alive()


# ---------------------------------------------------------------------------
# bad input

MALFORMED_TEXT = [
    "42[broken",
    "4",
    "xyz",
    "",
    "42",
    '42{"not":"an array"}',
    "42[17,{}]",
    "42[]",
    '42["ActivityAddedEvent",{"_id":"a"}]trailing',
    "43",
    "4999999999999999999999[\"x\"]",
]


@pytest.mark.parametrize("frame", MALFORMED_TEXT + ["<binary>"])
def test_malformed_frame_is_dropped_and_nothing_else_lost(server, signals, daemon, frame):
    wait_online(server)
    deliver_and_check(server, signals, settle=0.1)
    mark = signals.mark()
    if frame == "<binary>":
        assert server.raw(binary=b"\x00\xff\xfe\x80garbage\x04") == 1
    else:
        assert server.raw(frame) == 1
    # sent right after the bad frame: must not be lost
    r = server.emit("ActivityAddedEvent")
    sig = expect_one(signals, "ActivityAdded", mark)
    assert json.loads(sig.args[1]) == r["payloads"][0]
    assert signals.members(mark) == ["ActivityAdded"], "the bad frame produced a signal"
    assert daemon.alive()
    # and the connection was kept
    assert server.stats()["connects"]["activities"] == 1


def test_event_with_a_lone_surrogate_is_dropped(server, signals, daemon):
    """Valid JSON text whose string decodes to invalid UTF-16/UTF-8 (a lone
    surrogate). DESIGN: invalid UTF-8 is dropped and counted, and a signal
    carries "exactly the value the server sent": so neither a signal with
    U+FFFD in its place nor any other substitute."""
    wait_online(server)
    mark = signals.mark()
    server.raw('42["ActivityAddedEvent",{"_id":"lone-surrogate","t":"\\ud800"}]')
    r = server.emit("ActivityAddedEvent")
    sig = expect_one(signals, "ActivityAdded", mark)
    assert json.loads(sig.args[1]) == r["payloads"][0]
    assert server.stats()["connects"]["activities"] == 1


def test_malformed_input_is_counted(server, signals, daemon):
    wait_online(server)
    deliver_and_check(server, signals, settle=0.1)
    before = signals.get_property(OBJECT_PATH, IFACE, "EventsDropped")
    emitted = signals.get_property(OBJECT_PATH, IFACE, "EventsEmitted")
    for frame in ("42[broken", "xyz", "42[17]"):
        server.raw(frame)
    server.raw(binary=b"\xde\xad\xbe\xef")
    deliver_and_check(server, signals, settle=0.1)
    assert signals.get_property(OBJECT_PATH, IFACE, "EventsDropped") > before
    assert signals.get_property(OBJECT_PATH, IFACE, "EventsEmitted") == emitted + 1


@pytest.mark.daemon_args(config={"Limits": {"MaxEventSize": "64K"}})
def test_oversized_event_is_dropped(server, signals, daemon):
    wait_online(server)
    mark = signals.mark()
    server.emit("ActivityAddedEvent", activity("big", data={"blob": "x" * 200_000}))
    r = server.emit("ActivityAddedEvent")
    sig = expect_one(signals, "ActivityAdded", mark, settle=1.0)
    assert json.loads(sig.args[1]) == r["payloads"][0]
    assert daemon.alive()


# ---------------------------------------------------------------------------
# methods, properties, imports

def test_state_properties_when_online(server, signals, daemon):
    wait_online(server)
    harness.wait_until(lambda: signals.get_property(OBJECT_PATH, IFACE, "State") == "online",
                       10, what="State == online")
    path = STREAM_PATH_PREFIX + "activities"
    assert signals.get_property(path, STREAM_IFACE, "Name") == "activities"
    assert signals.get_property(path, STREAM_IFACE, "State") == "connected"
    url = signals.get_property(path, STREAM_IFACE, "Url")
    assert f"127.0.0.1:{server.port}" in url and "/api/activities/socket.io/" in url
    assert daemon.token not in url
    deliver_and_check(server, signals)
    harness.wait_until(lambda: signals.get_property(path, STREAM_IFACE, "EventsReceived") >= 1, 5,
                       what="EventsReceived >= 1")
    assert signals.get_property(OBJECT_PATH, IFACE, "EventsEmitted") >= 1


@pytest.mark.parametrize("mode", ["ack", "event"])
@pytest.mark.parametrize("method,event,key", [
    ("BrowseActivitiesByPerson", "activities-by-person", "_personID"),
    ("BrowseActivitiesByOrganization", "activities-by-organization", "_organizationID"),
])
def test_browse(server, signals, daemon, mode, method, event, key):
    wait_online(server)
    server.config(browse_reply=mode)
    (reply,) = signals.call(method, ("60a7c1e2f1d2c3b4a5960042",), timeout=15)
    st = server.stats()
    sent = st["browseReplies"][-1]
    assert sent["event"] == event and sent["id"] == "60a7c1e2f1d2c3b4a5960042"
    assert json.loads(reply) == sent["reply"]
    asked = [e for e in st["emitsReceived"] if e["event"] == event]
    assert len(asked) == 1 and asked[0]["authorized"] is True
    assert asked[0]["arg"][key] == "60a7c1e2f1d2c3b4a5960042"


@pytest.mark.daemon_args(config={"Limits": {"BrowseTimeoutSec": "1"}})
def test_browse_timeout(server, signals, daemon):
    wait_online(server)
    server.config(browse_reply="none")
    t0 = time.monotonic()
    with pytest.raises(harness.DBusCallError) as e:
        signals.call("BrowseActivitiesByPerson", ("60a7c1e2f1d2c3b4a5960042",), timeout=15)
    assert e.value.name == "app.samdock.Events.Error.Timeout"
    assert time.monotonic() - t0 < harness.scaled(5)
    # the connection is still good
    deliver_and_check(server, signals)


def test_watch_import(server, signals, daemon):
    wait_online(server)
    mark = signals.mark()
    signals.call("WatchImport", ("imp-4711",))
    wait_online(server, 1, stream="import")
    watched = signals.get_property(OBJECT_PATH, IFACE, "WatchedImports")
    assert "imp-4711" in watched
    r = server.import_("imp-4711", steps=3)
    assert r["sent"] == 1
    signals.wait_for(1, 15, member="ImportFinished", since=mark)
    signals.settle(0.5)
    got = [s for s in signals.items[mark:] if s.member.startswith("Import")]
    assert [s.member for s in got] == ["ImportProgress"] * 3 + ["ImportFinished"]
    assert all(s.args[0] == "imp-4711" for s in got)
    assert [json.loads(s.args[1]) for s in got] == [e["payload"] for e in r["events"]]
    harness.wait_until(lambda: "imp-4711" not in signals.get_property(OBJECT_PATH, IFACE,
                                                                      "WatchedImports"),
                       5, what="the finished import to be unwatched")


def test_watch_import_error(server, signals, daemon):
    wait_online(server)
    mark = signals.mark()
    signals.call("WatchImport", ("imp-0815",))
    wait_online(server, 1, stream="import")
    r = server.import_("imp-0815", steps=1, fail=True)
    signals.wait_for(1, 15, member="ImportError", since=mark)
    signals.settle(0.3)
    got = [s for s in signals.items[mark:] if s.member.startswith("Import")]
    assert [s.member for s in got] == ["ImportProgress", "ImportError"]
    assert json.loads(got[1].args[1]) == r["events"][1]["payload"]
    assert got[1].args[0] == "imp-0815"


# ---------------------------------------------------------------------------
# protocol variants

@pytest.mark.server_args(eio3=True)
@pytest.mark.daemon_args(extra_args=["--engine-io", "3"])
def test_engine_io_3(server, signals, daemon):
    wait_online(server)
    deliver_and_check(server, signals)
    signals.settle(1.0)
    st = server.stats()
    assert st["connects"]["activities"] == 1 and st["subscriptions"]["activities"] == 1


def test_tls_with_custom_ca(bus, signals, tmp_path):
    cert, key = harness.make_tls_cert(tmp_path)
    s = harness.Server(tls_cert=cert, tls_key=key)
    try:
        d = harness.Daemon(bus, s, extra_args=["--ca-file", str(cert)])
        try:
            wait_online(s)
            deliver_and_check(s, signals)
        finally:
            d.stop()
            d.cleanup()
    finally:
        s.cleanup()


def test_tls_untrusted_certificate_is_refused(bus, signals, tmp_path):
    cert, key = harness.make_tls_cert(tmp_path)
    s = harness.Server(tls_cert=cert, tls_key=key)
    try:
        d = harness.Daemon(bus, s)          # no --ca-file: the system store
        try:
            signals.settle(2.0)
            assert s.stats()["connects"]["activities"] == 0
            path = STREAM_PATH_PREFIX + "activities"
            assert signals.get_property(path, STREAM_IFACE, "State") != "connected"
            assert signals.get_property(path, STREAM_IFACE, "LastError") != ""
            assert d.alive()
        finally:
            d.stop()
            d.cleanup()
    finally:
        s.cleanup()


# ---------------------------------------------------------------------------
# shutting down

def test_sigterm_exits_0_and_releases_the_name(server, signals, daemon):
    wait_online(server)
    deliver_and_check(server, signals)
    t0 = time.monotonic()
    assert daemon.stop(timeout=5) == 0
    assert time.monotonic() - t0 < harness.scaled(5)
    assert signals.name_owner() is None
    server.wait_stats(lambda s: s["connections"]["activities"] == 0, 5, "the daemon to disconnect")


def test_sigterm_while_server_is_down_exits_0(server, signals, daemon):
    wait_online(server)
    server.kill(signal.SIGKILL)
    signals.settle(1.0)                      # the daemon is now backing off
    assert daemon.stop(timeout=5) == 0
