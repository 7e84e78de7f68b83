# SPDX-License-Identifier: MIT
"""The whole D-Bus API of samdock-eventd, driven against the real daemon and
the Samdock-like test server: every method with its answers and errors,
every property with its PropertiesChanged, and every signal that is not a
plain event (those are in test_bridge.py).

Run:
    SAMDOCK_EVENTD=build/samdock-eventd /usr/bin/python3 -m pytest -q \
        tests/integration/test_api.py
"""

import base64
import json
import subprocess
import time

import pytest
from gi.repository import Gio, GLib

import harness
from harness import BUS_NAME, IFACE, OBJECT_PATH, STREAM_IFACE, STREAM_PATH_PREFIX

ERROR = "app.samdock.Events.Error."
ACTIVITIES = STREAM_PATH_PREFIX + "activities"
IMPORT = STREAM_PATH_PREFIX + "import"
PERSON = "60a7c1e2f1d2c3b4a5960001"
ORGANIZATION = "60a7c1e2f1d2c3b4a5960002"
STREAM_PROPERTIES = {"Name": str, "Url": str, "State": str, "Since": int, "NextRetry": int,
                     "Reconnects": int, "LastError": str, "EventsReceived": int}


# ---------------------------------------------------------------------------
# helpers

class Calls:
    """Method calls in flight at the same time, on the collector's own
    connection; results arrive while its main context is iterated."""

    def __init__(self, signals):
        self.signals = signals
        self.results = {}

    def start(self, key, method, args=(), signature="(s)", timeout=30):
        def done(conn, result, _):
            try:
                reply = conn.call_finish(result)
                self.results[key] = ("ok", reply.unpack(), time.monotonic())
            except GLib.Error as e:
                name = Gio.DBusError.get_remote_error(e) or ""
                self.results[key] = ("error", name, e.message, time.monotonic())

        params = GLib.Variant(signature, tuple(args)) if args else None
        self.signals.ctx.push_thread_default()
        try:
            self.signals.conn.call(BUS_NAME, OBJECT_PATH, IFACE, method, params, None,
                                   Gio.DBusCallFlags.NO_AUTO_START,
                                   int(harness.scaled(timeout) * 1000), None, done, None)
        finally:
            self.signals.ctx.pop_thread_default()

    def wait(self, keys, timeout=20):
        self.signals.wait_until(lambda _: all(k in self.results for k in keys), timeout,
                                f"answers to {list(keys)}")
        return [self.results[k] for k in keys]


def wait_online(server, signals, timeout=15):
    """Waits until the daemon is subscribed and online, and takes in the
    PropertiesChanged of the start, so that marks taken next see only what
    the test causes."""
    server.wait_subscribed(1, timeout=timeout)
    harness.wait_until(lambda: signals.get_property(OBJECT_PATH, IFACE, "State") == "online",
                       timeout, what="State == online")
    signals.settle(0.3)


def browse_error(signals, method, ident, timeout=15):
    with pytest.raises(harness.DBusCallError) as e:
        signals.call(method, (ident,), timeout=timeout)
    return e.value


def replies_for(server, ident):
    return [b["reply"] for b in server.stats()["browseReplies"] if b["id"] == ident]


def changes(signals, path, name, since=0):
    """Values of property name in PropertiesChanged from path, in order."""
    return [c[name] for p, _, c, _ in signals.prop_changes[since:] if p == path and name in c]


def wait_change(signals, path, name, pred, since=0, timeout=10):
    def found(_):
        return next((v for v in changes(signals, path, name, since) if pred(v)), None)
    what = f"PropertiesChanged of {name} on {path}"
    return signals.wait_until(lambda s: found(s) is not None, timeout, what) and found(None)


def jwt(exp):
    def part(obj):
        raw = json.dumps(obj, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part({'sub': 'u1', 'exp': exp})}.c2ln"


def import_signals(signals, ident, since=0):
    return [s for s in signals.items[since:]
            if s.member.startswith("Import") and s.args[0] == ident]


# ---------------------------------------------------------------------------
# browsing

@pytest.mark.parametrize("mode", ["ack", "event"])
@pytest.mark.parametrize("method,event,key,ident", [
    ("BrowseActivitiesByPerson", "activities-by-person", "_personID", PERSON),
    ("BrowseActivitiesByOrganization", "activities-by-organization", "_organizationID",
     ORGANIZATION),
])
def test_browse_returns_the_servers_answer(server, signals, daemon, mode, method, event, key,
                                           ident):
    wait_online(server, signals)
    server.config(browse_reply=mode)
    mark = signals.mark()
    (reply,) = signals.call(method, (ident,), timeout=15)
    assert json.loads(reply) == replies_for(server, ident)[-1]
    assert " " not in reply.replace('" ', "").split('"data"')[0], "not compact JSON"
    asked = [e for e in server.stats()["emitsReceived"] if e["event"] == event]
    assert len(asked) == 1
    assert asked[0]["arg"][key] == ident and asked[0]["authorized"] is True
    # with an ACK the daemon asked for one; an answer by event is not also a signal
    assert asked[0]["ack"] is True
    assert signals.settle(0.3) == [] and signals.of("Event", mark) == []


def test_browse_event_without_a_waiting_call_becomes_Event(server, signals, daemon):
    wait_online(server, signals)
    mark = signals.mark()
    server.emit("activities-by-person", [{"_id": "a1", "_personIDs": [PERSON]}])
    (sig,) = signals.wait_for(1, member="Event", since=mark)
    assert sig.args[:2] == ("activities", "activities-by-person")
    assert json.loads(sig.args[2]) == [{"_id": "a1", "_personIDs": [PERSON]}]


@pytest.mark.parametrize("mode", ["ack", "event"])
def test_several_browses_at_once_each_get_their_own_answer(server, signals, daemon, mode):
    wait_online(server, signals)
    server.config(browse_reply=mode, browse_delay_ms=400)
    calls = Calls(signals)
    wanted = [("p1", "BrowseActivitiesByPerson", PERSON),
              ("o1", "BrowseActivitiesByOrganization", ORGANIZATION),
              ("p2", "BrowseActivitiesByPerson", "60a7c1e2f1d2c3b4a59600ff"),
              ("o2", "BrowseActivitiesByOrganization", "60a7c1e2f1d2c3b4a59600ee")]
    for key, method, ident in wanted:
        calls.start(key, method, (ident,))
    results = calls.wait([w[0] for w in wanted])
    for (key, method, ident), result in zip(wanted, results):
        assert result[0] == "ok", f"{key}: {result}"
        assert json.loads(result[1][0]) == replies_for(server, ident)[-1], key


def test_browse_answers_sent_both_ways_go_to_the_right_calls(server, signals, daemon):
    """A server that acknowledges and also sends the event: the late event of
    one call must not become the answer of another call still waiting."""
    wait_online(server, signals)
    server.config(browse_reply="both", browse_delay_ms=300)
    calls = Calls(signals)
    calls.start("a", "BrowseActivitiesByPerson", (PERSON,))
    signals.pump(0.1)
    calls.start("b", "BrowseActivitiesByPerson", ("60a7c1e2f1d2c3b4a59600ff",))
    a, b = calls.wait(["a", "b"])
    assert a[0] == "ok" and b[0] == "ok", (a, b)
    assert json.loads(a[1][0]) == replies_for(server, PERSON)[-1]
    assert json.loads(b[1][0]) == replies_for(server, "60a7c1e2f1d2c3b4a59600ff")[-1]


def test_browse_does_not_block_events_or_other_calls(server, signals, daemon):
    wait_online(server, signals)
    server.config(browse_reply="ack", browse_delay_ms=1500)
    calls = Calls(signals)
    mark = signals.mark()
    calls.start("slow", "BrowseActivitiesByPerson", (PERSON,))
    signals.pump(0.1)
    t0 = time.monotonic()
    assert signals.get_property(OBJECT_PATH, IFACE, "State") == "online"
    assert time.monotonic() - t0 < 1.0, "a property read waited for the browse"
    r = server.emit("ActivityAddedEvent")
    (sig,) = signals.wait_for(1, member="ActivityAdded", since=mark, timeout=1.2)
    assert json.loads(sig.args[1]) == r["payloads"][0]
    assert "slow" not in calls.results, "the browse was answered before the server replied"
    (result,) = calls.wait(["slow"])
    assert result[0] == "ok" and result[2] > sig.time


@pytest.mark.daemon_args(config={"Limits": {"BrowseTimeoutSec": "0.5"}})
def test_browse_timeout(server, signals, daemon):
    wait_online(server, signals)
    server.config(browse_reply="none")
    t0 = time.monotonic()
    e = browse_error(signals, "BrowseActivitiesByOrganization", ORGANIZATION)
    took = time.monotonic() - t0
    assert e.name == ERROR + "Timeout"
    assert "0.5" in e.message
    assert 0.4 <= took < harness.scaled(3)


@pytest.mark.parametrize("mode", ["ack", "event"])
@pytest.mark.daemon_args(config={"Limits": {"BrowseTimeoutSec": "1"}})
def test_late_answer_after_a_timeout_is_not_given_to_the_next_call(server, signals, daemon,
                                                                     mode):
    wait_online(server, signals)
    server.config(browse_reply=mode, browse_delay_ms=1500)
    assert browse_error(signals, "BrowseActivitiesByPerson", PERSON).name == ERROR + "Timeout"
    # asked at 1.0 s, answered at 1.8 s; the first call's answer comes at 1.5 s
    server.config(browse_delay_ms=800)
    other = "60a7c1e2f1d2c3b4a59600ff"
    (reply,) = signals.call("BrowseActivitiesByPerson", (other,), timeout=15)
    assert json.loads(reply) == replies_for(server, other)[-1]


BAD_IDS = ["", "x" * 129, "has space", "tab\there", "line\nbreak", "umlaut-\u00e4",
           "del\x7f", "quote'\"x y"]


@pytest.mark.parametrize("ident", BAD_IDS, ids=["empty", "129-chars", "space", "tab",
                                                "newline", "non-ascii", "del", "quotes"])
@pytest.mark.parametrize("method", ["BrowseActivitiesByPerson",
                                    "BrowseActivitiesByOrganization", "WatchImport",
                                    "UnwatchImport"])
def test_invalid_ids_are_refused(server, signals, daemon, method, ident):
    wait_online(server, signals)
    e = browse_error(signals, method, ident)
    assert e.name == ERROR + "InvalidArgument", e
    assert server.stats()["browseReplies"] == []
    assert signals.get_property(OBJECT_PATH, IFACE, "WatchedImports") == []


def test_longest_and_odd_but_valid_ids_are_accepted(server, signals, daemon):
    wait_online(server, signals)
    for ident in ["x" * 128, "!~#$%&()*+,-./:;<=>?@[]^_`{|}"]:
        (reply,) = signals.call("BrowseActivitiesByPerson", (ident,), timeout=15)
        assert json.loads(reply) == replies_for(server, ident)[-1]


def test_browse_when_the_server_is_down_is_NotConnected(server, signals, daemon):
    wait_online(server, signals)
    server.kill()
    harness.wait_until(lambda: signals.get_property(ACTIVITIES, STREAM_IFACE, "State")
                       != "connected", 10, what="the stream to notice")
    e = browse_error(signals, "BrowseActivitiesByPerson", PERSON)
    assert e.name == ERROR + "NotConnected"
    assert "activities" in e.message


@pytest.mark.daemon_args(config={"Limits": {"BrowseTimeoutSec": "30"}})
def test_browse_waiting_when_the_link_drops_is_NotConnected(server, signals, daemon):
    wait_online(server, signals)
    server.config(browse_reply="none")
    calls = Calls(signals)
    calls.start("w", "BrowseActivitiesByPerson", (PERSON,))
    harness.wait_until(lambda: replies_for(server, PERSON), 5, what="the request")
    t0 = time.monotonic()
    server.drop()
    (result,) = calls.wait(["w"], timeout=5)
    assert result[0] == "error" and result[1] == ERROR + "NotConnected", result
    assert result[3] - t0 < harness.scaled(3)


@pytest.mark.daemon_args(config={"Limits": {"BrowseTimeoutSec": "30"}})
def test_server_exception_while_browsing_is_ServerError(server, signals, daemon):
    wait_online(server, signals)
    server.config(browse_reply="none")
    calls = Calls(signals)
    mark = signals.mark()
    calls.start("w", "BrowseActivitiesByOrganization", (ORGANIZATION,))
    harness.wait_until(lambda: replies_for(server, ORGANIZATION), 5, what="the request")
    server.emit("exception", {"status": "error", "message": "Bad Request: _organizationID"})
    (result,) = calls.wait(["w"], timeout=5)
    assert result[0] == "error" and result[1] == ERROR + "ServerError", result
    assert "Bad Request" in result[2]
    (sig,) = signals.wait_for(1, member="Event", since=mark)
    assert sig.args[:2] == ("activities", "exception")


# ---------------------------------------------------------------------------
# imports

def test_watch_import_follows_it_to_its_end(server, signals, daemon):
    wait_online(server, signals)
    assert signals.get_property(IMPORT, STREAM_IFACE, "State") == "idle"
    assert server.stats()["connections"]["import"] == 0
    mark, pmark = signals.mark(), len(signals.prop_changes)
    assert signals.call("WatchImport", ("imp-api-1",)) == ()
    assert signals.get_property(OBJECT_PATH, IFACE, "WatchedImports") == ["imp-api-1"]
    wait_change(signals, OBJECT_PATH, "WatchedImports", lambda v: v == ["imp-api-1"], pmark)
    wait_change(signals, IMPORT, "State", lambda v: v == "connected", pmark)
    server.wait_subscribed(1, stream="import")
    asked = [e for e in server.stats()["emitsReceived"] if e["event"] == "connectImportID"]
    assert len(asked) == 1
    assert asked[0]["arg"]["_importID"] == "imp-api-1" and asked[0]["authorized"] is True

    r = server.import_("imp-api-1", steps=3)
    assert r["sent"] == 1
    signals.wait_for(1, member="ImportFinished", since=mark, timeout=10)
    got = import_signals(signals, "imp-api-1", mark)
    assert [s.member for s in got] == ["ImportProgress"] * 3 + ["ImportFinished"]
    assert [json.loads(s.args[1]) for s in got] == [e["payload"] for e in r["events"]]

    # forgotten after its end, and the import stream closes
    wait_change(signals, OBJECT_PATH, "WatchedImports", lambda v: v == [], pmark)
    wait_change(signals, IMPORT, "State", lambda v: v == "idle", pmark)
    server.wait_stats(lambda s: s["connections"]["import"] == 0, 10, "the import link to close")


def test_import_error_ends_the_watch(server, signals, daemon):
    wait_online(server, signals)
    mark = signals.mark()
    signals.call("WatchImport", ("imp-api-2",))
    server.wait_subscribed(1, stream="import")
    r = server.import_("imp-api-2", steps=1, fail=True)
    signals.wait_for(1, member="ImportError", since=mark)
    got = import_signals(signals, "imp-api-2", mark)
    assert [s.member for s in got] == ["ImportProgress", "ImportError"]
    assert json.loads(got[1].args[1]) == r["events"][1]["payload"]
    harness.wait_until(lambda: signals.get_property(OBJECT_PATH, IFACE, "WatchedImports") == [],
                       5, what="the failed import to be forgotten")


def test_two_imports_share_the_stream(server, signals, daemon):
    wait_online(server, signals)
    mark = signals.mark()
    signals.call("WatchImport", ("imp-a",))
    signals.call("WatchImport", ("imp-b",))
    signals.call("WatchImport", ("imp-a",))          # again: no error, no duplicate
    assert signals.get_property(OBJECT_PATH, IFACE, "WatchedImports") == ["imp-a", "imp-b"]
    server.wait_subscribed(2, stream="import")
    server.wait_stats(lambda s: s["rooms"].get("import:imp-a") == 1 and
                      s["rooms"].get("import:imp-b") == 1, 10, "both import rooms")
    assert server.stats()["connections"]["import"] == 1
    server.import_("imp-a", steps=1)
    signals.wait_for(1, member="ImportFinished", since=mark)
    harness.wait_until(lambda: signals.get_property(OBJECT_PATH, IFACE, "WatchedImports")
                       == ["imp-b"], 5, what="imp-a to be forgotten")
    assert signals.get_property(IMPORT, STREAM_IFACE, "State") == "connected"
    server.import_("imp-b", steps=2)
    signals.wait_until(lambda s: [x.member for x in import_signals(s, "imp-b", mark)]
                       == ["ImportProgress"] * 2 + ["ImportFinished"], 10, "imp-b to end")


def test_import_followed_to_its_end_across_a_reconnect(server, signals, daemon):
    wait_online(server, signals)
    mark = signals.mark()
    signals.call("WatchImport", ("imp-long",))
    signals.call("WatchImport", ("imp-other",))
    server.wait_subscribed(2, stream="import")
    server.import_("imp-long", steps=12, interval_ms=250)
    signals.wait_until(lambda s: len(import_signals(s, "imp-long", mark)) >= 2, 10,
                       "two progress signals")
    assert server.drop("import") == 1
    # connectImportID again, for every watched import
    server.wait_subscribed(4, stream="import", timeout=10)
    again = [e["arg"]["_importID"] for e in server.stats()["emitsReceived"]
             if e["event"] == "connectImportID"]
    assert sorted(again[2:]) == ["imp-long", "imp-other"]
    signals.wait_for(1, member="ImportFinished", since=mark, timeout=15)
    got = import_signals(signals, "imp-long", mark)
    assert got[-1].member == "ImportFinished"
    resumed = [s for s in signals.of("Resumed", mark) if s.args[0] == "import"]
    assert len(resumed) == 1 and resumed[0].args[1] is False and resumed[0].args[2] > 0
    # progress came on both sides of the reconnect
    before = [s for s in got if s.time < resumed[0].time]
    after = [s for s in got if s.time > resumed[0].time and s.member == "ImportProgress"]
    assert len(before) >= 2 and len(after) >= 1, [s.member for s in got]
    harness.wait_until(lambda: signals.get_property(OBJECT_PATH, IFACE, "WatchedImports")
                       == ["imp-other"], 5, what="imp-long to be forgotten")


def test_unwatch_import(server, signals, daemon):
    wait_online(server, signals)
    mark, pmark = signals.mark(), len(signals.prop_changes)
    signals.call("WatchImport", ("imp-stop",))
    server.wait_subscribed(1, stream="import")
    assert signals.call("UnwatchImport", ("imp-stop",)) == ()
    assert signals.get_property(OBJECT_PATH, IFACE, "WatchedImports") == []
    wait_change(signals, OBJECT_PATH, "WatchedImports", lambda v: v == [], pmark)
    wait_change(signals, IMPORT, "State", lambda v: v == "idle", pmark)
    server.wait_stats(lambda s: s["connections"]["import"] == 0, 10, "the import link to close")
    assert server.import_("imp-stop", steps=1)["sent"] == 0
    assert import_signals(signals, "imp-stop", mark) == []
    e = browse_error(signals, "UnwatchImport", "imp-stop")
    assert e.name == ERROR + "InvalidArgument"


def test_import_stream_opened_again_is_not_a_reconnect(server, signals, daemon):
    """As app.samdock.Events(5) says: the import stream closed for want of
    watched imports starts afresh when it opens again: no Resumed, and its
    Reconnects counter stays 0."""
    wait_online(server, signals)
    mark = signals.mark()
    signals.call("WatchImport", ("imp-one",))
    server.wait_subscribed(1, stream="import")
    server.import_("imp-one", steps=1)
    signals.wait_for(1, member="ImportFinished", since=mark)
    harness.wait_until(lambda: signals.get_property(IMPORT, STREAM_IFACE, "State") == "idle", 5,
                       what="the import stream to close")
    signals.call("WatchImport", ("imp-two",))
    server.wait_subscribed(2, stream="import")
    harness.wait_until(lambda: signals.get_property(IMPORT, STREAM_IFACE, "State") == "connected",
                       5, what="the import stream to connect again")
    signals.settle(0.5)
    assert signals.of("Resumed", mark) == []
    assert signals.get_property(IMPORT, STREAM_IFACE, "Reconnects") == 0


# ---------------------------------------------------------------------------
# Reconnect, Reload

def test_reconnect(server, signals, daemon):
    wait_online(server, signals)
    assert signals.get_property(ACTIVITIES, STREAM_IFACE, "Reconnects") == 0
    mark, pmark = signals.mark(), len(signals.prop_changes)
    assert signals.call("Reconnect") == ()
    server.wait_subscribed(2)
    (sig,) = signals.wait_for(1, member="Resumed", since=mark)
    assert sig.args[0] == "activities" and sig.args[1] is False
    assert 0 < sig.args[2] < 10_000_000
    assert server.stats()["connects"]["activities"] == 2
    wait_change(signals, ACTIVITIES, "Reconnects", lambda v: v == 1, pmark)
    harness.wait_until(lambda: signals.get_property(ACTIVITIES, STREAM_IFACE, "State")
                       == "connected", 5, what="connected again")
    # the import stream is left alone while nothing is watched
    assert signals.get_property(IMPORT, STREAM_IFACE, "State") == "idle"
    assert [s for s in signals.of("Resumed", mark) if s.args[0] == "import"] == []


@pytest.mark.daemon_args(token=None)
def test_reconnect_without_a_token_is_AuthFailed(server, signals, daemon):
    harness.wait_until(lambda: signals.get_property(OBJECT_PATH, IFACE, "State")
                       == "auth-failed", 10, what="State auth-failed")
    with pytest.raises(harness.DBusCallError) as e:
        signals.call("Reconnect")
    assert e.value.name == ERROR + "AuthFailed"
    assert signals.get_property(ACTIVITIES, STREAM_IFACE, "LastError") != ""


@pytest.mark.daemon_args(config={"Limits": {"BrowseTimeoutSec": "30"}})
def test_reload_applies_the_new_configuration_and_refuses_a_broken_one(server, signals,
                                                                         daemon):
    wait_online(server, signals)
    server.config(browse_reply="none")
    good = daemon.config_path.read_text().replace("BrowseTimeoutSec=30", "BrowseTimeoutSec=0.5")
    daemon.config_path.write_text(good)
    assert signals.call("Reload") == ()
    t0 = time.monotonic()
    assert browse_error(signals, "BrowseActivitiesByPerson", PERSON).name == ERROR + "Timeout"
    assert time.monotonic() - t0 < harness.scaled(3)

    daemon.config_path.write_text(good + "\n[Limits]\nBrowseTimeoutSec=soon\n")
    with pytest.raises(harness.DBusCallError) as e:
        signals.call("Reload")
    assert e.value.name == ERROR + "InvalidArgument"
    assert "eventd.conf:" in daemon.log()
    # still running, with the configuration that was in force
    t0 = time.monotonic()
    assert browse_error(signals, "BrowseActivitiesByPerson", PERSON).name == ERROR + "Timeout"
    assert time.monotonic() - t0 < harness.scaled(3)
    assert daemon.alive()


# ---------------------------------------------------------------------------
# properties and PropertiesChanged

def test_version_is_constant_and_matches_the_binary(server, signals, daemon):
    out = subprocess.run([str(daemon.binary), "--version"], capture_output=True, text=True,
                         timeout=10).stdout
    assert out.split() == ["samdock-eventd", signals.get_property(OBJECT_PATH, IFACE,
                                                                  "Version")]


def test_state_changes_are_announced(server, signals, daemon):
    wait_online(server, signals)
    pmark = len(signals.prop_changes)
    server.kill()
    wait_change(signals, OBJECT_PATH, "State", lambda v: v in ("offline", "connecting"), pmark)
    wait_change(signals, ACTIVITIES, "State", lambda v: v == "backoff", pmark)
    # a stream in backoff says when it tries again, and why it is down
    in_backoff = [c for p, _, c, _ in signals.prop_changes[pmark:]
                  if p == ACTIVITIES and c.get("State") == "backoff"]
    assert in_backoff[0]["NextRetry"] > 0 and in_backoff[0]["LastError"] != ""
    assert set(in_backoff[0]) >= {"Url", "State", "Since", "NextRetry", "Reconnects",
                                  "LastError"}
    pmark = len(signals.prop_changes)
    server.start()
    wait_change(signals, OBJECT_PATH, "State", lambda v: v == "online", pmark, timeout=15)
    up = wait_change(signals, ACTIVITIES, "State", lambda v: v == "connected", pmark)
    assert up == "connected"
    last = [c for p, _, c, _ in signals.prop_changes if p == ACTIVITIES and "State" in c][-1]
    assert last["NextRetry"] == 0 and last["LastError"] == ""
    assert signals.get_property(ACTIVITIES, STREAM_IFACE, "Reconnects") >= 1


def test_counters_are_announced_coalesced(server, signals, daemon):
    wait_online(server, signals)
    before = signals.get_property(OBJECT_PATH, IFACE, "EventsEmitted")
    received = signals.get_property(ACTIVITIES, STREAM_IFACE, "EventsReceived")
    mark, pmark = signals.mark(), len(signals.prop_changes)
    t0 = time.monotonic()
    assert server.emit("ActivityEditedEvent", count=400)["sent"] == 1
    signals.wait_for(400, member="ActivityEdited", since=mark, timeout=20)
    wait_change(signals, OBJECT_PATH, "EventsEmitted", lambda v: v == before + 400, pmark)
    wait_change(signals, ACTIVITIES, "EventsReceived", lambda v: v == received + 400, pmark)
    signals.settle(1.2)
    took = time.monotonic() - t0
    emitted = changes(signals, OBJECT_PATH, "EventsEmitted", pmark)
    assert emitted == sorted(emitted)
    # at most one a second, instead of one per event
    assert 1 <= len(emitted) <= took + 2, (len(emitted), took)
    assert len(changes(signals, ACTIVITIES, "EventsReceived", pmark)) <= took + 2
    assert signals.get_property(OBJECT_PATH, IFACE, "EventsEmitted") == before + 400


def test_dropped_input_is_counted_and_announced(server, signals, daemon):
    wait_online(server, signals)
    pmark = len(signals.prop_changes)
    server.raw('42["ActivityAddedEvent",{"_id":')
    wait_change(signals, OBJECT_PATH, "EventsDropped", lambda v: v >= 1, pmark)
    assert signals.get_property(OBJECT_PATH, IFACE, "EventsDropped") >= 1


TOKEN_EXP = 2000000000


@pytest.mark.server_args(token=jwt(TOKEN_EXP))
def test_token_expiry_comes_from_the_jwt_and_follows_the_token(server, signals, daemon):
    wait_online(server, signals)
    assert signals.get_property(OBJECT_PATH, IFACE, "TokenExpiry") == TOKEN_EXP * 1_000_000
    pmark = len(signals.prop_changes)
    token = jwt(TOKEN_EXP + 3600)
    server.set_token(token)
    daemon.write_token(token)
    wait_change(signals, OBJECT_PATH, "TokenExpiry", lambda v: v == (TOKEN_EXP + 3600) * 10**6,
                pmark)
    token = "not-a-jwt"
    server.set_token(token)
    daemon.write_token(token)
    wait_change(signals, OBJECT_PATH, "TokenExpiry", lambda v: v == 0, pmark)


def test_object_manager_lists_the_streams(server, signals, daemon):
    wait_online(server, signals)
    (objects,) = signals.call("GetManagedObjects", None, path=OBJECT_PATH,
                              iface="org.freedesktop.DBus.ObjectManager")
    assert sorted(objects) == [ACTIVITIES, IMPORT]
    for path, interfaces in objects.items():
        props = interfaces[STREAM_IFACE]
        assert {k: type(v) for k, v in props.items()} == STREAM_PROPERTIES
        assert path == STREAM_PATH_PREFIX + props["Name"]
        assert props["Url"] == signals.get_property(path, STREAM_IFACE, "Url")
        assert props["Url"].startswith(f"ws://127.0.0.1:{server.port}/api/")
    assert objects[ACTIVITIES][STREAM_IFACE]["State"] == "connected"
    assert objects[IMPORT][STREAM_IFACE]["State"] == "idle"
    assert objects[ACTIVITIES][STREAM_IFACE]["Since"] <= time.time() * 1e6 + 1e6


def test_a_second_daemon_on_the_same_bus_exits_1(server, signals, daemon, bus):
    second = harness.Daemon(bus, server, wait=False)
    try:
        assert second.wait_exit(10) == 1
        assert "app.samdock.Events" in second.log()
        assert daemon.name_owned() and daemon.alive()
    finally:
        second.cleanup()


@pytest.mark.daemon_args(config={"Limits": {"BrowseTimeoutSec": "30"}})
def test_sigterm_answers_a_waiting_browse_with_NotConnected(server, signals, daemon):
    wait_online(server, signals)
    server.config(browse_reply="none")
    calls = Calls(signals)
    calls.start("w", "BrowseActivitiesByPerson", (PERSON,))
    harness.wait_until(lambda: replies_for(server, PERSON), 5, what="the request")
    assert daemon.stop() == 0
    (result,) = calls.wait(["w"], timeout=5)
    assert result[:2] == ("error", ERROR + "NotConnected"), result


def test_losing_the_bus_exits_1(server, signals, daemon, bus):
    wait_online(server, signals)
    daemon.stopped_by_test = True
    bus.proc.kill()
    assert daemon.wait_exit(10) == 1
