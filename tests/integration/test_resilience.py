# SPDX-License-Identifier: MIT
"""The reliability rules of DESIGN.md, each proven by doing the bad thing
for real: killing, freezing and restarting the server, refusing it,
feeding the daemon garbage from tests/corpus, and flooding it.

What the tests look at is what a user sees: signals and properties on the
bus (State, LastError, Reconnects, EventsDropped, Resumed) and what the
server sees (its statistics, or the connections our own doubles count).

Run:
    SAMDOCK_EVENTD=build/samdock-eventd /usr/bin/python3 -m pytest -q \
        tests/integration/test_resilience.py
"""

import json
import re
import signal
import subprocess
import threading
import time

import pytest

import harness
from harness import IFACE, OBJECT_PATH, STREAM_IFACE, STREAM_PATH_PREFIX
from resilience_helpers import (AcceptCloser, FakeSioServer, TcpRelay, load_corpus,
                                pick_unused_port, random_id, send_case)

ACTIVITIES = STREAM_PATH_PREFIX + "activities"
FAST = {"Reconnect": {"InitialDelaySec": "0.1", "MaxDelaySec": "1"}}


# ---------------------------------------------------------------------------
# helpers

def stream_prop(signals, name, path=ACTIVITIES):
    return signals.get_property(path, STREAM_IFACE, name)


def main_prop(signals, name):
    return signals.get_property(OBJECT_PATH, IFACE, name)


def wait_stream(signals, pred, timeout=10, what="stream state"):
    """Polls the activities stream's properties until pred(props) holds;
    returns the properties."""
    last = {}

    def check(_):
        nonlocal last
        last = signals.get_all_properties(ACTIVITIES, STREAM_IFACE)
        return last if pred(last) else None
    try:
        return signals.wait_until(check, timeout, what)
    except harness.HarnessTimeout as e:
        brief = {k: last.get(k) for k in ("State", "LastError", "Reconnects")}
        raise harness.HarnessTimeout(f"{e}; stream properties: {brief}") from None


def last_errors_seen(signals, path=ACTIVITIES):
    """Every LastError value the stream announced in PropertiesChanged."""
    signals.pump(0)
    return [changed["LastError"] for p, i, changed, _ in signals.prop_changes
            if p == path and i == STREAM_IFACE and changed.get("LastError")]


def expect_exactly(signals, member, ids, since, timeout=10, settle=0.7):
    """Waits for the signals `member` with first arguments ids, in that
    order, and makes sure nothing else arrives after them."""
    signals.wait_for(len(ids), timeout, member=member, since=since)
    signals.settle(settle)
    got = [s.args[0] for s in signals.of(member, since)]
    assert got == ids, f"expected {member} for {ids} exactly once each, in order; got {got}"


def emit_and_expect(server, signals, count=1, settle=0.7):
    """The node server emits count generated ActivityAddedEvents; each must
    arrive exactly once, in order. Returns the payloads."""
    mark = signals.mark()
    r = server.emit("ActivityAddedEvent", count=count)
    assert r["sent"] == 1, f"the daemon is not subscribed: {r}"
    expect_exactly(signals, "ActivityAdded", [p["_id"] for p in r["payloads"]], mark,
                   settle=settle)
    got = [json.loads(s.args[1]) for s in signals.of("ActivityAdded", mark)]
    assert got == r["payloads"]
    return r["payloads"]


class StatsWatcher:
    """Polls the node server's statistics in a thread and keeps the largest
    number of connections it ever saw per stream (Socket.IO sockets and
    Engine.IO clients). Polls that fail (server down or frozen) are
    skipped."""

    def __init__(self, server, interval=0.03):
        self.server = server
        self.interval = interval
        self.max_sockets = 0
        self.max_engine = 0
        self.polls = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopping.is_set():
            if self.server.alive():
                try:
                    st = self.server.request("GET", "/_test/stats", timeout=0.5)
                    self.max_sockets = max(self.max_sockets, st["connections"]["activities"])
                    self.max_engine = max(self.max_engine,
                                          st["engineConnections"]["activities"])
                    self.polls += 1
                except Exception:       # down, frozen, restarting: try again
                    pass
            self.stopping.wait(self.interval)

    def stop(self):
        self.stopping.set()
        self.thread.join(timeout=5)
        return self


@pytest.fixture
def relay_for():
    relays = []

    def make(port):
        r = TcpRelay(port)
        relays.append(r)
        return r
    yield make
    for r in relays:
        r.close()


@pytest.fixture
def fake():
    """A FakeSioServer factory; every one is closed after the test."""
    servers = []

    def make(**kw):
        s = FakeSioServer(**kw)
        servers.append(s)
        return s
    yield make
    for s in servers:
        s.close()


# ---------------------------------------------------------------------------
# the server dies, freezes, restarts, says goodbye

def test_sigkill_and_restart_on_same_port(server, signals, daemon):
    """kill -9 of the server; a new one on the same port: the daemon comes
    back by itself and what is sent afterwards arrives exactly once."""
    server.wait_subscribed(1)
    emit_and_expect(server, signals)
    mark = signals.mark()
    server.kill(signal.SIGKILL)
    wait_stream(signals, lambda p: p["State"] != "connected", 5, "the loss to be noticed")
    time.sleep(1.0)                 # a few backoff rounds against a closed port
    server.start()
    server.wait_subscribed(1, timeout=20)
    emit_and_expect(server, signals, count=20)
    resumed = signals.of("Resumed", mark)
    assert len(resumed) == 1, f"one reconnect, one Resumed; got {resumed}"
    assert resumed[0].args[:2] == ("activities", False)
    st = server.stats()
    assert st["connects"]["activities"] == 1 and st["connections"]["activities"] == 1
    assert stream_prop(signals, "State") == "connected"


def test_three_restarts_then_one_event_gives_one_signal(server, signals, daemon):
    """Three restarts in a row, the daemon caught at whatever point of its
    handshake; then exactly one event must give exactly one signal."""
    server.wait_subscribed(1)
    watcher = StatsWatcher(server)
    try:
        for how in (signal.SIGKILL, signal.SIGTERM, signal.SIGKILL):
            server.restart(how)
            time.sleep(0.15)        # mid-handshake, or still backing off
        server.wait_subscribed(1, timeout=20)
        mark = signals.mark()
        r = server.emit("ActivityAddedEvent")
        assert r["sent"] == 1
        expect_exactly(signals, "ActivityAdded", [r["payloads"][0]["_id"]], mark, settle=1.5)
        assert [m for m in signals.members(mark) if m != "Resumed"] == ["ActivityAdded"]
    finally:
        watcher.stop()
    assert len(signals.of("Resumed")) == stream_prop(signals, "Reconnects") >= 1
    st = server.stats()
    assert st["connects"]["activities"] == 1, "more than one CONNECT on the last server"
    assert st["subscriptions"]["activities"] == 1
    assert st["connections"]["activities"] == 1
    assert watcher.max_sockets <= 1 and watcher.max_engine <= 1, \
        f"two connections at once: {watcher.max_sockets} sockets, {watcher.max_engine} engine"


@pytest.mark.server_args(ping_interval_ms=500, ping_timeout_ms=500)
def test_sigstop_past_the_ping_deadline(server, signals, daemon):
    """A frozen server (SIGSTOP) keeps the TCP connection open and sends
    nothing: the daemon must call it dead within pingInterval + pingTimeout
    (1 s here) and be back once the server is resumed."""
    server.wait_subscribed(1)
    emit_and_expect(server, signals)
    assert stream_prop(signals, "State") == "connected"
    mark = signals.mark()
    server.proc.send_signal(signal.SIGSTOP)
    stopped_at = time.monotonic()
    try:
        props = wait_stream(signals, lambda p: p["State"] != "connected", 4,
                            "the frozen server to be declared dead")
        noticed = time.monotonic() - stopped_at
        assert noticed <= 1.0 + 0.8, f"took {noticed:.2f} s, the deadline is 1.0 s"
        errors = [props["LastError"]] + last_errors_seen(signals)
        assert any("ping" in e.lower() for e in errors), f"LastError: {errors}"
        signals.settle(2.0)         # frozen a while longer; the daemon keeps trying
        assert daemon.alive()
    finally:
        server.proc.send_signal(signal.SIGCONT)
    server.wait_subscribed(2, timeout=30)
    watcher = StatsWatcher(server)
    try:
        emit_and_expect(server, signals, count=5)
        signals.settle(1.5)         # several ping rounds: the new link holds
    finally:
        watcher.stop()
    assert watcher.max_sockets <= 1 and watcher.max_engine <= 1
    st = server.stats()
    assert st["connections"]["activities"] == 1
    assert len(signals.of("Resumed", mark)) == 1
    assert stream_prop(signals, "State") == "connected"
    assert stream_prop(signals, "Reconnects") == 1


def test_socketio_disconnect_never_gives_up(server, signals, daemon):
    """A Socket.IO DISCONNECT (what a server that shuts down sends) makes
    browser clients stop; the daemon must come back every time, also when
    the server then stays away for several backoff rounds."""
    server.wait_subscribed(1)
    for n in range(2, 5):
        assert server.disconnect() == 1
        server.wait_subscribed(n, timeout=15)
        emit_and_expect(server, signals, settle=0.3)
    # DISCONNECT, then the server is gone for a while
    assert server.disconnect() == 1
    server.kill(signal.SIGKILL)
    time.sleep(3.0)                 # MaxDelaySec=1: several attempts
    assert daemon.alive()
    assert stream_prop(signals, "State") in ("backoff", "connecting")
    server.start()
    server.wait_subscribed(1, timeout=20)
    emit_and_expect(server, signals)
    assert stream_prop(signals, "Reconnects") == 4


@pytest.mark.time_limit(90)
def test_backoff_delays_grow_and_stay_under_the_max(spawn):
    """A port that accepts and closes every connection: each attempt fails.
    With InitialDelaySec=0.2 and MaxDelaySec=1.6 the delays (full jitter)
    start short, grow, never exceed the maximum, and never stop."""
    closer = AcceptCloser()
    try:
        d = spawn(f"http://127.0.0.1:{closer.port}",
                  config={"Reconnect": {"InitialDelaySec": "0.2", "MaxDelaySec": "1.6"}})
        window = 16.0
        time.sleep(window)
        attempts = list(closer.attempts)
        assert d.alive()
    finally:
        closer.close()
    gaps = [b - a for a, b in zip(attempts, attempts[1:])]
    assert len(attempts) >= 8, f"only {len(attempts)} attempts in {window} s: {gaps}"
    # 0.2 s doubling to 1.6 s averages about 0.8 s a try: no hot loop
    assert len(attempts) <= 40, f"{len(attempts)} attempts in {window} s: a hot loop"
    slack = 0.35
    assert max(gaps) <= 1.6 + slack, f"a delay above MaxDelaySec: {max(gaps):.2f} s"
    # the ceiling doubles: 0.2, 0.4, 0.8, then 1.6
    for i, ceiling in enumerate((0.2, 0.4, 0.8)):
        assert gaps[i] <= ceiling + slack, f"delay {i} was {gaps[i]:.2f} s (ceiling {ceiling})"
    early = sum(gaps[:3]) / 3
    late = sum(gaps[4:]) / len(gaps[4:])
    assert late > early, f"delays do not grow: first {gaps[:3]}, later {gaps[4:]}"
    # still trying at the end
    assert time.monotonic() - attempts[-1] <= 1.6 + slack + 1.0


@pytest.mark.time_limit(90)
def test_backoff_resets_after_a_connection_held(server, signals, relay_for, spawn):
    """Many failures push the delay ceiling to MaxDelaySec (2 s); a
    connection that then holds for longer than that resets it, so the
    next loss is followed by a quick retry (InitialDelaySec=0.1), each of
    three times."""
    relay = relay_for(server.port)
    spawn(f"http://127.0.0.1:{relay.port}",
          config={"Reconnect": {"InitialDelaySec": "0.1", "MaxDelaySec": "2"}})
    server.wait_subscribed(1)
    relay.refusing = True
    relay.cut()
    time.sleep(6.0)                 # 0.1, 0.2, ... 1.6, 2: the ceiling is at the maximum
    assert relay.accepted >= 5
    relay.refusing = False
    server.wait_subscribed(2, timeout=10)
    gaps = []
    for n in range(3, 6):
        time.sleep(2.5)             # held longer than MaxDelaySec
        cut_at = time.monotonic()
        assert relay.cut() == 1
        server.wait_subscribed(n, timeout=10)
        gaps.append(relay.accept_times[-1] - cut_at)
    assert max(gaps) <= 0.1 + 0.25, f"no reset after a held connection: retries after {gaps}"
    emit_and_expect(server, signals)


@pytest.mark.time_limit(90)
def test_backoff_state_and_next_retry_while_down(spawn, signals):
    """Nothing listens on the port at all: State says backoff, NextRetry
    is in the future but never further than MaxDelaySec, LastError says
    what failed, and the daemon stays up."""
    port = pick_unused_port()
    spawn(f"http://127.0.0.1:{port}",
          config={"Reconnect": {"InitialDelaySec": "0.2", "MaxDelaySec": "2"}})
    seen = []
    end = time.monotonic() + 6
    while time.monotonic() < end:
        p = signals.get_all_properties(ACTIVITIES, STREAM_IFACE)
        now_us = time.time() * 1e6
        if p["State"] == "backoff" and p["NextRetry"]:
            seen.append((p["NextRetry"] - now_us) / 1e6)
            assert p["LastError"], "backing off without a LastError"
        assert p["State"] in ("backoff", "connecting"), p["State"]
        time.sleep(0.05)
    assert seen, "never saw State=backoff with a NextRetry"
    assert max(seen) <= 2.0 + 0.1, f"NextRetry {max(seen):.2f} s ahead, MaxDelaySec=2"
    assert min(seen) >= -0.5, f"NextRetry in the past by {-min(seen):.2f} s"


@pytest.mark.time_limit(120)
def test_one_connection_when_ping_timeout_and_close_coincide(spawn, fake, signals):
    """The server stops pinging and closes the connection right at the
    daemon's ping deadline, a little before or a little after: whichever
    the daemon sees first, it must hold one connection at a time, reconnect
    once and deliver each event once."""
    srv = fake(ping_interval_ms=300, ping_timeout_ms=200)
    spawn(srv.url)
    srv.wait_subscribed(1)
    delivered = []
    offsets = (-0.03, -0.01, 0.0, 0.005, 0.01, 0.02, 0.04, 0.08)
    for i, offset in enumerate(offsets):
        conn = srv.current
        # right after a ping was answered, the server goes quiet
        pongs = conn.pongs
        harness.wait_until(lambda: conn.pongs > pongs, 5, what="a ping answered")
        conn.silent = True
        deadline = time.monotonic() + 0.5       # pingInterval + pingTimeout
        time.sleep(max(0.0, deadline + offset - time.monotonic()))
        conn.close()
        newer = srv.wait_subscribed(i + 2, timeout=15)
        mark = signals.mark()
        eid = random_id(f"coincide{i}")
        newer.emit("ActivityAddedEvent", {"_id": eid})
        expect_exactly(signals, "ActivityAdded", [eid], mark, settle=0.3)
        delivered.append(eid)
    signals.settle(0.5)
    assert [s.args[0] for s in signals.of("ActivityAdded")] == delivered
    overlap = srv.longest_overlap()
    assert overlap < 0.2, f"two connections open together for {overlap:.2f} s"
    assert srv.subscriptions == len(offsets) + 1
    assert len(srv.attempts) == len(offsets) + 1, "more connection attempts than losses"


# ---------------------------------------------------------------------------
# Engine.IO 3

@pytest.mark.server_args(eio3=True, ping_interval_ms=300, ping_timeout_ms=300)
@pytest.mark.daemon_args(extra_args=["--engine-io", "3"])
def test_engine_io_3_client_pings_and_events_flow(server, signals, daemon):
    """Against a Socket.IO 2-style session (EIO=3) the client pings: a
    server that hears no ping for pingInterval + pingTimeout (0.6 s) drops
    the client, so staying connected for 3 s proves the daemon pings."""
    server.wait_subscribed(1)
    emit_and_expect(server, signals)
    signals.settle(3.0)
    st = server.stats()
    assert st["disconnects"] == [], f"the server dropped the daemon: {st['disconnects']}"
    assert st["connects"]["activities"] == 1
    assert st["connections"]["activities"] == 1
    emit_and_expect(server, signals, count=3)
    conn_errors = [e for e in last_errors_seen(signals) if e]
    assert conn_errors == [], conn_errors


@pytest.mark.server_args(eio3=True, ping_interval_ms=400, ping_timeout_ms=400)
@pytest.mark.daemon_args(extra_args=["--engine-io", "3"])
def test_engine_io_3_unanswered_ping_is_detected(server, signals, daemon):
    """Engine.IO 3: the server stops answering the daemon's pings: the
    daemon must drop the link within pingInterval + pingTimeout and come
    back."""
    server.wait_subscribed(1)
    mark = signals.mark()
    server.config(ping_silence="existing")
    t0 = time.monotonic()
    server.wait_subscribed(2, timeout=10)
    took = time.monotonic() - t0
    assert took <= 0.8 + 1.5, f"took {took:.2f} s to give up on a silent server"
    assert any("pong" in e.lower() or "ping" in e.lower() for e in last_errors_seen(signals)), \
        f"LastError never named the missing pong: {last_errors_seen(signals)}"
    assert len(signals.of("Resumed", mark)) == 1
    emit_and_expect(server, signals)


@pytest.mark.time_limit(90)
def test_engine_io_4_server_refusing_eio3(server, signals, relay_for, spawn):
    """A Socket.IO 4 server without allowEIO3 answers EIO=3 with HTTP 400:
    a LastError that tells what to change, and slow retries (no hot loop)."""
    relay = relay_for(server.port)
    spawn(f"http://127.0.0.1:{relay.port}", extra_args=["--engine-io", "3"],
          config={"Reconnect": {"InitialDelaySec": "0.1", "MaxDelaySec": "3"}})
    props = wait_stream(signals, lambda p: p["LastError"] != "", 10, "a LastError")
    err = props["LastError"]
    assert "400" in err or "Engine.IO" in err, err
    assert "EngineIO" in err or "Engine.IO" in err, f"does not say what to change: {err!r}"
    start = relay.accepted
    time.sleep(6.0)
    tries = relay.accepted - start
    # 0.1 s doubling would make about 7 tries in 6 s; MaxDelaySec=3 at most 3
    assert 1 <= tries <= 3, f"{tries} attempts in 6 s"
    assert stream_prop(signals, "State") in ("backoff", "connecting")
    assert server.stats()["connects"]["activities"] == 0


@pytest.mark.time_limit(90)
def test_plain_http_400_for_eio3(fake, spawn, signals):
    """The same refusal as an older engine.io (or a proxy in front) sends
    it: a plain HTTP 400 with {"code":5} instead of the upgrade."""
    srv = fake(http_status=400, http_body='{"code":5,"message":"Unsupported protocol version"}')
    spawn(srv.url, extra_args=["--engine-io", "3"],
          config={"Reconnect": {"InitialDelaySec": "0.1", "MaxDelaySec": "3"}})
    props = wait_stream(signals, lambda p: p["LastError"] != "", 10, "a LastError")
    assert "EngineIO" in props["LastError"] or "Engine.IO" in props["LastError"], \
        props["LastError"]
    start = len(srv.attempts)
    time.sleep(6.0)
    tries = len(srv.attempts) - start
    assert 1 <= tries <= 3, f"{tries} attempts in 6 s"
    assert "EIO=3" in srv.requests[0]["line"]


@pytest.mark.time_limit(120)
def test_server_that_stops_reading_is_dropped_not_queued_for(fake, spawn, bus, signals):
    """A server that keeps pinging but reads nothing more: what the daemon
    sends piles up (each browse carries the 15 KB token here). At 1 MiB it
    sends no more, drops the link and connects again, instead of holding
    ever more copies of the token in memory."""
    srv = fake(rcvbuf=4096)          # a small TCP window holds little on the way
    d = spawn(srv.url, token="T" * 15000,
              config={**FAST, "Limits": {"BrowseTimeoutSec": "3"}})
    conn = srv.wait_subscribed(1)
    conn.deaf.set()
    errors = []
    # Rounds of browse calls (each waits at most 3 s) until the daemon
    # gives up on the link; the kernel takes the first few MiB itself.
    for round_ in range(8):
        calls = [subprocess.Popen(["busctl", f"--address={bus.address}", "call",
                                   harness.BUS_NAME, OBJECT_PATH, IFACE,
                                   "BrowseActivitiesByPerson", "s", f"p{round_}-{i}"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                 for i in range(200)]
        for c in calls:
            try:
                errors.append(c.communicate(timeout=harness.scaled(30))[1].decode())
            except subprocess.TimeoutExpired:
                c.kill()
                errors.append(c.communicate()[1].decode())
        if len(srv.attempts) > 1:
            break
    harness.wait_until(lambda: "has not read the last 1 MiB sent to it" in d.log(), 20,
                       what="the log line about the server not reading")
    assert any("not reading what is sent" in e for e in errors), errors[-3:]
    srv.wait_subscribed(2)
    assert len(srv.attempts) == 2, "not one reconnect"
    assert stream_prop(signals, "Reconnects") == 1


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirect_on_upgrade_is_not_followed(fake, spawn, signals, status):
    """The token goes to the configured server only: an upgrade answered
    with a redirect to another server is an error, never followed."""
    elsewhere = fake()
    srv = fake(http_status=status,
               http_headers=[f"Location: {elsewhere.url}/other/?EIO=4&transport=websocket"])
    spawn(srv.url, config={"Reconnect": {"InitialDelaySec": "0.1", "MaxDelaySec": "1"}})
    props = wait_stream(signals, lambda p: str(status) in p["LastError"], 10,
                        f"a LastError naming HTTP {status}")
    assert "redirect" in props["LastError"], props["LastError"]
    harness.wait_until(lambda: len(srv.attempts) >= 2, 10, what="a second attempt")
    assert elsewhere.attempts == [] and elsewhere.requests == [], "the redirect was followed"
    assert props["State"] != "connected"


@pytest.mark.time_limit(90)
def test_connect_reply_without_sid(fake, spawn, signals):
    """A Socket.IO 2 server answers CONNECT with a bare `40`: the daemon must
    say so in LastError and retry slowly, without subscribing."""
    srv = fake(connect_reply="40")
    spawn(srv.url, config={"Reconnect": {"InitialDelaySec": "0.1", "MaxDelaySec": "3"}})
    props = wait_stream(signals, lambda p: "sid" in p["LastError"], 10,
                        "a LastError about the missing sid")
    assert props["State"] != "connected"
    start = len(srv.attempts)
    time.sleep(6.0)
    tries = len(srv.attempts) - start
    assert 1 <= tries <= 3, f"{tries} attempts in 6 s"
    assert srv.subscriptions == 0
    assert "sid" in stream_prop(signals, "LastError")


# ---------------------------------------------------------------------------
# connection state recovery

@pytest.mark.time_limit(120)
@pytest.mark.server_args(recovery_ms=60000)
def test_recovery_replays_missed_events_once_and_in_order(server, signals, relay_for, spawn):
    """The link is cut and stays down for a while (the relay refuses new
    connections) while the server sends 10 events; twice. Each time the
    missed events arrive exactly once and in order, and Resumed says
    recovered with about the time spent offline."""
    relay = relay_for(server.port)
    spawn(f"http://127.0.0.1:{relay.port}")
    server.wait_subscribed(1)
    emit_and_expect(server, signals)           # gives the daemon an offset
    for round_ in range(2):
        mark = signals.mark()
        relay.refusing = True
        assert relay.cut() == 1
        wait_stream(signals, lambda p: p["State"] != "connected", 5, "the cut to be noticed")
        down_at = time.monotonic()
        missed = server.emit("ActivityAddedEvent", count=10)["payloads"]
        time.sleep(2.0)
        relay.refusing = False
        offline = time.monotonic() - down_at
        server.wait_stats(lambda s: s["recovered"] == round_ + 1, 20, "a recovered session")
        expect_exactly(signals, "ActivityAdded", [p["_id"] for p in missed], mark)
        got = [json.loads(s.args[1]) for s in signals.of("ActivityAdded", mark)]
        assert got == missed, "payloads changed (an offset left in?)"
        resumed = signals.of("Resumed", mark)
        assert len(resumed) == 1, resumed
        stream, recovered, offline_usec = resumed[0].args
        assert (stream, recovered) == ("activities", True)
        assert 1.5e6 <= offline_usec <= (offline + 5) * 1e6, \
            f"offline_usec {offline_usec} for about {offline:.1f} s offline"
        emit_and_expect(server, signals)
    st = server.stats()
    assert st["connections"]["activities"] == 1
    assert relay.max_open == 1


# ---------------------------------------------------------------------------
# authentication

WRONG = "an-expired-token-0002"
RENEWED = "eyJhbGciOiJIUzI1NiJ9.renewed-token-81c2.sig"


@pytest.mark.time_limit(90)
@pytest.mark.parametrize("mode", ["http", "http403", "connect_error", "exception"])
def test_auth_failure_waits_for_a_new_token(server, signals, relay_for, spawn, mode):
    """Refused credentials (HTTP 401/403 on the upgrade, CONNECT_ERROR, a
    NestJS `exception` saying unauthorized): State auth-failed, no further
    attempt with the same token (not even once the server would accept
    again), and a new token written to the token file brings it back."""
    server.config(auth_mode=mode)
    relay = relay_for(server.port)
    d = spawn(f"http://127.0.0.1:{relay.port}", token=WRONG)
    props = wait_stream(signals, lambda p: p["State"] == "auth-failed", 15, "auth-failed")
    assert props["LastError"], "auth-failed without a LastError"
    assert main_prop(signals, "State") == "auth-failed"
    tries = relay.accepted
    assert tries == 1, f"{tries} attempts before giving up on the token"
    time.sleep(3.0)                 # MaxDelaySec=1: a retry would show
    assert relay.accepted == tries, "retried with the same token"
    # the server takes a new token now; the daemon still has the old one
    server.config(auth_mode="exception", token=RENEWED)
    time.sleep(2.0)
    assert relay.accepted == tries, "retried with the same token"
    assert stream_prop(signals, "State") == "auth-failed"
    mark = signals.mark()
    d.write_token(RENEWED)
    server.wait_subscribed(1, timeout=20)
    wait_stream(signals, lambda p: p["State"] == "connected", 10, "connected")
    r = server.emit("ActivityAddedEvent")
    expect_exactly(signals, "ActivityAdded", [r["payloads"][0]["_id"]], mark)
    assert stream_prop(signals, "LastError") == ""
    assert relay.accepted == tries + 1
    assert WRONG not in d.log() and RENEWED not in d.log()


# ---------------------------------------------------------------------------
# bad input

CORPUS = load_corpus()
SPECIAL = ("oversize-", "flood-")
CORPUS_CASES = [c for c in CORPUS if not c.name.startswith(SPECIAL)]


def dropped_lines(text):
    return [ln for ln in text.splitlines() if "dropped" in ln and ln.startswith("<4>")]


def good_event(conn, signals, tag):
    """Sends one valid event on conn; it must arrive exactly once and be
    the only signal. Returns its id."""
    mark = signals.mark()
    eid = random_id(tag)
    conn.emit("ActivityAddedEvent", {"_id": eid, "note": "Grüße 😀"})
    expect_exactly(signals, "ActivityAdded", [eid], mark, settle=0.3)
    assert signals.members(mark) == ["ActivityAdded"]
    return eid


@pytest.mark.parametrize("case", CORPUS_CASES, ids=[c.name for c in CORPUS_CASES])
def test_corpus_frame_is_dropped_counted_and_nothing_else_lost(fake, spawn, signals, case):
    """Every bad frame in tests/corpus: dropped, counted once in
    EventsDropped, a warning logged, no signal for it, the link kept, and
    the next good event arrives."""
    srv = fake()
    d = spawn(srv.url)
    conn = srv.wait_subscribed(1)
    good_event(conn, signals, "before")
    before = main_prop(signals, "EventsDropped")
    emitted = main_prop(signals, "EventsEmitted")
    mark = signals.mark()
    send_case(conn, case)
    good_event(conn, signals, "after")
    assert signals.members(mark) == ["ActivityAdded"], "the bad frame became a signal"
    assert main_prop(signals, "EventsDropped") == before + 1
    assert main_prop(signals, "EventsEmitted") == emitted + 1
    assert len(srv.attempts) == 1 and not conn.closed, "the link was dropped over it"
    assert dropped_lines(d.log()), "no log line about the dropped frame"
    assert d.alive() and d.name_owned()


def test_bad_input_on_one_stream_keeps_the_other(server, signals, daemon):
    """Garbage on the activities stream must not disturb a watched import
    on the other stream."""
    server.wait_subscribed(1)
    signals.call("WatchImport", ("imp-77",))
    server.wait_subscribed(1, stream="import")
    mark = signals.mark()
    for case in CORPUS_CASES:
        for kind, data in case.frames:
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                continue            # the node server sends text frames from strings
            if kind == "text":
                server.raw(text)
            else:
                server.raw(binary=data)
    r = server.import_("imp-77", steps=3)
    names = [e["event"] for e in r["events"]]
    signals.wait_for(len(names), 10, since=mark)
    signals.settle(0.5)
    assert signals.members(mark) == ["ImportProgress"] * 3 + ["ImportFinished"]
    st = server.stats()
    assert st["connects"] == {"activities": 1, "import": 1}
    emit_and_expect(server, signals)


ONE_K = {"Limits": {"MaxEventSize": "1K"}, **FAST}
OVERSIZE = next(c for c in CORPUS if c.name == "oversize-event").frames[0][1]


@pytest.mark.parametrize("how", ["whole", "fragmented", "fragmented-with-ping", "binary",
                                 "5MB"])
def test_oversized_frame_is_dropped(fake, spawn, signals, how):
    """MaxEventSize=1K: a 2 KB event in one frame, in four fragments of
    512 bytes (each below the limit), with a ping between fragments, as a
    binary frame, and a 5 MB frame: each dropped and counted once; the
    link and the next event survive."""
    srv = fake()
    d = spawn(srv.url, config=ONE_K)
    conn = srv.wait_subscribed(1)
    good_event(conn, signals, "before")
    before = main_prop(signals, "EventsDropped")
    mark = signals.mark()
    if how == "whole":
        conn.send_text(OVERSIZE)
    elif how == "fragmented":
        conn.send_fragmented(OVERSIZE, 4)
    elif how == "fragmented-with-ping":
        conn.send_fragmented(OVERSIZE, 4, ping_between=True)
    elif how == "binary":
        conn.send_binary(b"\x04" + OVERSIZE)
    else:
        conn.send_text(b'42["ActivityAddedEvent",{"_id":"huge","b":"' + b"y" * (5 << 20) +
                       b'"}]')
    good_event(conn, signals, "after")
    assert signals.members(mark) == ["ActivityAdded"]
    assert main_prop(signals, "EventsDropped") == before + 1
    assert len(srv.attempts) == 1 and not conn.closed
    assert d.alive()


@pytest.mark.parametrize("parts", [2, 3, 9])
def test_fragmented_event_under_the_limit_is_delivered(fake, spawn, signals, parts):
    """The other side of the limit: an event just under MaxEventSize=1K in
    several fragments is put together and delivered whole."""
    srv = fake()
    spawn(srv.url, config=ONE_K)
    conn = srv.wait_subscribed(1)
    payload = {"_id": random_id("frag"), "text": "ä" * 300}    # ~650 bytes
    frame = "42" + json.dumps(["ActivityAddedEvent", payload], ensure_ascii=False)
    assert len(frame.encode()) < 1024
    mark = signals.mark()
    conn.send_fragmented(frame, parts, ping_between=True)
    expect_exactly(signals, "ActivityAdded", [payload["_id"]], mark)
    assert json.loads(signals.of("ActivityAdded", mark)[0].args[1]) == payload
    assert main_prop(signals, "EventsDropped") == 0


@pytest.mark.time_limit(120)
def test_flood_of_10k_malformed_frames(fake, spawn, signals):
    """10 000 malformed frames back to back: the daemon stays up, counts
    every one, logs a handful of lines (rate-limited), and the next good
    event arrives."""
    srv = fake()
    d = spawn(srv.url, log_level="info")
    conn = srv.wait_subscribed(1)
    good_event(conn, signals, "before")
    log_before = len(d.log().splitlines())
    flood = next(c for c in CORPUS if c.name == "flood-frame").frames[0][1]
    frame = b"\x81" + bytes([126]) + len(flood).to_bytes(2, "big") + flood \
        if len(flood) >= 126 else b"\x81" + bytes([len(flood)]) + flood
    t0 = time.monotonic()
    for _ in range(10):
        assert conn.send_raw(frame * 1000)
    good_event(conn, signals, "after")
    took = time.monotonic() - t0
    harness.wait_until(lambda: main_prop(signals, "EventsDropped") == 10000, 10,
                       what="EventsDropped == 10000")
    assert d.alive() and d.name_owned()
    assert not conn.closed and len(srv.attempts) == 1
    new_lines = d.log().splitlines()[log_before:]
    drops = dropped_lines("\n".join(new_lines))
    # a burst of 10 and 10 more per 10 s
    allowed = 10 + 10 * (int(took // 10) + 1)
    assert 1 <= len(drops) <= allowed, f"{len(drops)} drop lines in {took:.1f} s"
    assert len(new_lines) <= allowed + 20, f"{len(new_lines)} log lines for the flood"

    # Within a rate-limit window (10 s) of the flood, with no further drop
    # to carry it, the log accounts for every dropped frame.
    def accounted():
        lines = d.log().splitlines()[log_before:]
        each = len(dropped_lines("\n".join(lines)))
        held = sum(int(n) for ln in lines
                   for n in re.findall(r"(\d+) more (?:frames|since)", ln))
        return each + held
    harness.wait_until(lambda: accounted() == 10000, harness.scaled(15),
                       what="log lines accounting for all 10000 drops")
