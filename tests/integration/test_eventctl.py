# SPDX-License-Identifier: MIT
"""samdock-eventctl against the real daemon and the test server: every
subcommand, its output and its exit status, also with no daemon, no bus and
a bus that refuses access.

Run:
    SAMDOCK_EVENTD=build/samdock-eventd /usr/bin/python3 -m pytest -q \
        tests/integration/test_eventctl.py
The client is $SAMDOCK_BUILD_DIR/samdock-eventctl (meson test sets it), else
the samdock-eventctl next to $SAMDOCK_EVENTD.
"""

import contextlib
import json
import os
import re
import select
import shutil
import signal
import subprocess
import tempfile
import time
import unicodedata
from pathlib import Path

import pytest

import harness
from harness import IFACE, OBJECT_PATH

# The exit statuses samdock-eventctl(1) documents.
EXIT_FAILED, EXIT_USAGE, EXIT_NOT_RUNNING, EXIT_DENIED, EXIT_ERROR, EXIT_NO_BUS = 1, 2, 3, 4, 5, 6
ERROR = "app.samdock.Events.Error."
PERSON = "60a7c1e2f1d2c3b4a5960001"
TIME = r"\d\d:\d\d:\d\d\.\d{3}"


def eventctl_binary():
    build = os.environ.get("SAMDOCK_BUILD_DIR")
    if build:
        return Path(build) / "samdock-eventctl"
    return harness.daemon_binary().parent / "samdock-eventctl"


@pytest.fixture(scope="module", autouse=True)
def _binary_present():
    if not eventctl_binary().exists():
        pytest.fail(f"{eventctl_binary()} does not exist: build it, or set SAMDOCK_BUILD_DIR")


def ctl_env(address, extra=None):
    env = harness._clean_env({"DBUS_SESSION_BUS_ADDRESS": address, "LC_ALL": "C.UTF-8"})
    env.pop("COLUMNS", None)
    env.update(extra or {})
    return env


def ctl(address, *args, env=None, timeout=30):
    """Runs samdock-eventctl --session ARGS to its end."""
    return subprocess.run([str(eventctl_binary()), "--session", *args],
                          env=ctl_env(address, env), capture_output=True, text=True,
                          timeout=harness.scaled(timeout))


class Running:
    """samdock-eventctl running in the background (monitor, watch-import),
    with its standard output read line by line under a deadline."""

    def __init__(self, address, *args, env=None):
        self.proc = harness._track(subprocess.Popen(
            [str(eventctl_binary()), "--session", *args], env=ctl_env(address, env),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True))
        self.lines = []
        self._buf = b""

    def read(self, timeout=0.0):
        """Takes in what has been printed, waiting up to timeout for more."""
        d = harness.Deadline(timeout)
        fd = self.proc.stdout.fileno()
        while True:
            r, _, _ = select.select([fd], [], [], d.left())
            if not r:
                return self.lines
            chunk = os.read(fd, 65536)
            if not chunk:
                return self.lines
            self._buf += chunk
            *done, self._buf = self._buf.split(b"\n")
            self.lines += [line.decode("utf-8") for line in done]

    def wait_lines(self, pred, timeout=10, what="output"):
        d = harness.Deadline(timeout)
        while True:
            self.read(min(0.05, d.left()))
            v = pred(self.lines)
            if v:
                return v
            if d.expired() or (self.proc.poll() is not None and not self.read(0.1)):
                if pred(self.lines):
                    return pred(self.lines)
                raise harness.HarnessTimeout(
                    f"no {what} from samdock-eventctl within {harness.scaled(timeout):.0f}s "
                    f"(status {self.proc.poll()}); got {self.lines[-10:]}; "
                    f"stderr {self.stderr_now()!r}")

    def wait(self, timeout=10):
        rc = self.proc.wait(timeout=harness.scaled(timeout))
        self.read(0.2)
        return rc

    def stderr_now(self):
        if self.proc.poll() is None:
            return ""
        return self.proc.stderr.read().decode("utf-8", "replace")

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.wait()

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self.proc.stdout.close()
        self.proc.stderr.close()


@contextlib.contextmanager
def monitoring(server, bus, *args, env=None):
    """samdock-eventctl monitor ARGS, once the daemon is subscribed and the
    monitor printed a probe: yields it and the index of its first line after
    the probe; killed afterwards if still running."""
    server.wait_subscribed(1)
    mon = Running(bus.address, "monitor", *args, env=env)
    try:
        yield mon, monitor_ready(server, mon)
    finally:
        mon.close()


def monitor_ready(server, mon, timeout=10):
    """Emits a probe event until the monitor prints it: from then on it is
    subscribed. Returns the index of the first line after the probe."""
    d = harness.Deadline(timeout)
    while not d.expired():
        server.emit("ProbeEvent", {"_id": "probe"})
        if any("ProbeEvent" in line for line in mon.read(0.2)):
            mon.read(0.2)
            return len(mon.lines)
    raise harness.HarnessTimeout(f"the monitor printed nothing; stderr {mon.stderr_now()!r}")


def width(s):
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in s)


def status_fields(text):
    """status output -> {"": {daemon fields}, "activities": {...}, ...}."""
    sections, current = {"": {}}, ""
    for line in text.splitlines():
        if line.startswith("Stream "):
            current = line[len("Stream "):]
            sections[current] = {}
        elif ":" in line:
            key, value = line.split(":", 1)
            sections[current][key.strip()] = value.strip()
    return sections


# ---------------------------------------------------------------------------
# without a daemon

def test_help_and_version(tmp_path):
    r = subprocess.run([str(eventctl_binary()), "--help"], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 0
    for word in ["status", "monitor", "browse", "watch-import", "reconnect", "reload",
                 "--system", "--session", "--user", "--json"]:
        assert word in r.stdout
    v = subprocess.run([str(eventctl_binary()), "--version"], capture_output=True, text=True,
                       timeout=10)
    d = subprocess.run([str(harness.daemon_binary()), "--version"], capture_output=True,
                       text=True, timeout=10)
    assert v.returncode == 0
    assert v.stdout.split()[1] == d.stdout.split()[1]


@pytest.mark.parametrize("args", [
    [], ["frobnicate"], ["status", "extra"], ["browse", "person"], ["browse", "thing", "x"],
    ["watch-import"], ["--bogus", "status"], ["--json", "status"], ["reload", "now"],
])
def test_usage_errors_exit_2(bus, args):
    r = ctl(bus.address, *args)
    assert r.returncode == EXIT_USAGE, r
    assert r.stderr.startswith("samdock-eventctl:") or "Try" in r.stderr
    assert r.stdout == ""


@pytest.mark.parametrize("args", [["status"], ["monitor"], ["monitor", "--json"],
                                  ["browse", "person", PERSON], ["watch-import", "imp-1"],
                                  ["reconnect"], ["reload"]])
def test_no_daemon_running_exits_3(bus, args):
    r = ctl(bus.address, *args, timeout=10)
    assert r.returncode == EXIT_NOT_RUNNING, r
    assert "samdock-eventd is not running" in r.stderr
    assert "session bus" in r.stderr


def test_no_bus_exits_6(tmp_path):
    missing = f"unix:path={tmp_path}/no-such-bus"
    r = ctl(missing, "status")
    assert r.returncode == EXIT_NO_BUS, r
    assert "session bus" in r.stderr
    # --system is honoured, and is the default
    for args in (["--system", "status"], ["status"]):
        r = subprocess.run([str(eventctl_binary()), *args],
                           env=ctl_env(missing, {"DBUS_SYSTEM_BUS_ADDRESS": missing}),
                           capture_output=True, text=True, timeout=10)
        assert r.returncode == EXIT_NO_BUS, r
        assert "system bus" in r.stderr


_DENYING_BUS = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={path}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
    <deny send_destination="app.samdock.Events"/>
  </policy>
</busconfig>
"""


class DenyingBus:
    """A private dbus-daemon whose policy lets nobody send to
    app.samdock.Events, as the system policy does for users outside the
    group samdock."""

    def __init__(self):
        self.tmpdir = Path(tempfile.mkdtemp(prefix="samdock-deny-"))
        (self.tmpdir / "bus.conf").write_text(_DENYING_BUS.format(path=self.tmpdir / "bus"))
        r, w = os.pipe()
        try:
            self.proc = harness._track(subprocess.Popen(
                [shutil.which("dbus-daemon"), f"--config-file={self.tmpdir / 'bus.conf'}",
                 "--nofork", f"--print-address={w}"], pass_fds=(w,),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                env=harness._clean_env(), start_new_session=True))
            os.close(w)
            self.address = harness._read_line(r, harness.Deadline(15), self.proc,
                                              "dbus-daemon").strip()
        finally:
            os.close(r)

    def stop(self):
        harness._stop_process(self.proc, signal.SIGTERM, 5)
        shutil.rmtree(self.tmpdir, ignore_errors=True)


def test_access_denied_exits_4(server):
    deny = DenyingBus()
    try:
        d = harness.Daemon(deny, server)
        try:
            for args in (["status"], ["reload"], ["monitor"], ["browse", "person", PERSON]):
                r = ctl(deny.address, *args, timeout=10)
                assert r.returncode == EXIT_DENIED, r
                assert "access denied" in r.stderr
        finally:
            d.stop()
            d.cleanup()
    finally:
        deny.stop()


# ---------------------------------------------------------------------------
# status

def test_status_when_online(server, signals, daemon, bus):
    server.wait_subscribed(1)
    harness.wait_until(lambda: signals.get_property(OBJECT_PATH, IFACE, "State") == "online",
                       10, what="online")
    r = server.emit("TaskDeletedEvent", count=3)
    signals.wait_for(3, member="TaskDeleted")
    signals.call("WatchImport", ("imp-7",))
    server.wait_subscribed(1, stream="import")
    harness.wait_until(lambda: signals.get_property(
        harness.STREAM_PATH_PREFIX + "activities", harness.STREAM_IFACE, "EventsReceived") == 3,
        5, what="the counter")
    out = ctl(bus.address, "status")
    assert out.returncode == 0, out
    f = status_fields(out.stdout)
    assert list(f) == ["", "activities", "import"]
    top = f[""]
    assert top["State"] == "online"
    assert top["Version"] == signals.get_property(OBJECT_PATH, IFACE, "Version")
    assert top["Token expiry"] == "unknown"
    assert top["Events emitted"] == "3" and top["Events dropped"] == "0"
    assert top["Watched imports"] == "imp-7"
    act = f["activities"]
    assert act["State"].startswith("connected since ") and act["State"].endswith(" ago)")
    assert act["URL"] == f"ws://127.0.0.1:{server.port}/api/activities/socket.io/"
    assert act["Last error"] == "none" and act["Next retry"] == "none"
    assert act["Reconnects"] == "0" and act["Events received"] == "3"
    assert f["import"]["State"].startswith("connected since ")
    assert f["import"]["URL"].endswith("/api/contacts/import/socket.io/")
    assert r["sent"] == 1


@pytest.mark.daemon_args(config={"Reconnect": {"InitialDelaySec": "20", "MaxDelaySec": "60"}})
def test_status_when_the_server_is_down(server, signals, daemon, bus):
    server.wait_subscribed(1)
    server.kill()
    harness.wait_until(lambda: signals.get_property(
        harness.STREAM_PATH_PREFIX + "activities", harness.STREAM_IFACE, "State") == "backoff",
        10, what="backoff")
    f = status_fields(ctl(bus.address, "status").stdout)
    assert f[""]["State"] == "offline"
    act = f["activities"]
    assert act["State"].startswith("backoff since ")
    assert act["Last error"] != "none"
    # absolute and relative, within the 2 s to 20 s the first delay may take
    # (a jittered delay under a second is shown in ms)
    m = re.fullmatch(r"\w{3} \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+ \(in ([\d.]+)(ms|s)\)",
                     act["Next retry"])
    assert m, act["Next retry"]
    seconds = float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)
    assert 0 < seconds <= 20, act["Next retry"]
    assert f["import"]["State"].startswith("idle since ")


@pytest.mark.server_args(token="eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjIwMDAwMDAwMDB9.c2ln")
def test_status_shows_the_token_expiry(server, signals, daemon, bus):
    server.wait_subscribed(1)
    out = ctl(bus.address, "status", env={"TZ": "UTC"}).stdout
    # exp 2000000000 is 2033-05-18 03:33:20 UTC
    assert re.search(r"Token expiry: Wed 2033-05-18 03:33:20 UTC \(in \d+d \d+h\)", out), out


# ---------------------------------------------------------------------------
# monitor

def test_monitor_prints_one_line_per_signal(server, signals, daemon, bus):
    with monitoring(server, bus, env={"COLUMNS": "100"}) as (mon, start):
        added = server.emit("ActivityAddedEvent")["payloads"][0]
        server.emit("CommentAddedEvent", {"_id": "c-1", "text": "Grüße"})
        server.emit("PersonDeletedEvent", {"_personID": "line\nbreak"})
        server.drop()
        mon.wait_lines(lambda lines: any("Resumed" in x for x in lines[start:]), 10, "Resumed")
        lines = mon.lines[start:]
        assert len(lines) == 4, lines
        assert re.fullmatch(rf"{TIME} ActivityAdded id={added['_id']} \{{.*", lines[0])
        assert lines[0].endswith("…") and 98 <= width(lines[0]) <= 100
        shown = lines[0].split(" ", 3)[3][:-1]
        assert json.dumps(added, ensure_ascii=False, separators=(",", ":")).startswith(shown)
        assert re.fullmatch(rf'{TIME} Event stream=activities name=CommentAddedEvent '
                            r'\{"_id":"c-1","text":"Grüße"\}', lines[1])
        assert re.fullmatch(rf'{TIME} PersonDeleted id=line\\x0abreak '
                            r'\{"_personID":"line\\nbreak"\}', lines[2])
        assert re.fullmatch(rf"{TIME} Resumed stream=activities recovered=no offline=\S+",
                            lines[3])
        assert mon.stop(signal.SIGINT) == 0


def test_monitor_cuts_lines_to_200_columns_off_a_terminal(server, signals, daemon, bus):
    with monitoring(server, bus) as (mon, start):
        server.emit("ActivityEditedEvent", {"_id": "e1", "data": {"text": "東京" * 300}})
        (line,) = mon.wait_lines(lambda lines: lines[start:], 10)
        assert line.endswith("…") and 190 <= width(line) <= 200, width(line)
        assert mon.stop(signal.SIGTERM) == 0


def test_monitor_json(server, signals, daemon, bus):
    with monitoring(server, bus, "--json") as (mon, start):
        added = server.emit("ActivityAddedEvent")["payloads"][0]
        big = {"_id": "big", "data": {"text": "ß" * 5000}}
        server.emit("ActivityEditedEvent", big)
        server.emit("CommentAddedEvent", {"_id": "c-1"})
        server.drop()
        mon.wait_lines(lambda lines: any('"Resumed"' in x for x in lines[start:]), 10)
        objs = [json.loads(x) for x in mon.lines[start:]]
        assert [o["member"] for o in objs] == ["ActivityAdded", "ActivityEdited", "Event",
                                               "Resumed"]
        assert objs[0]["args"][0] == added["_id"] and objs[0]["payload"] == added
        assert json.loads(objs[0]["args"][1]) == added
        assert objs[1]["payload"] == big, "the payload was cut"
        assert objs[2]["args"][:2] == ["activities", "CommentAddedEvent"]
        assert objs[2]["payload"] == {"_id": "c-1"}
        stream, recovered, offline = objs[3]["args"]
        assert (stream, recovered) == ("activities", False) and isinstance(offline, int)
        assert "payload" not in objs[3]
        for o in objs:
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", o["time"])
        assert mon.stop() == 0


def test_monitor_waits_for_a_restarted_daemon(server, signals, daemon, bus):
    with monitoring(server, bus) as (mon, _):
        daemon.stop()
        time.sleep(0.3)
        assert mon.proc.poll() is None
        daemon.start()
        server.wait_subscribed(2)
        start = monitor_ready(server, mon)
        server.emit("DealDeletedEvent", {"_dealID": "d-9"})
        mon.wait_lines(lambda lines: any("DealDeleted id=d-9" in x for x in lines[start:]), 10)
        assert mon.stop() == 0
        err = mon.proc.stderr.read().decode()
        assert "went away" in err and "is back" in err


def test_monitor_exits_6_when_the_bus_goes(server, signals, daemon, bus):
    with monitoring(server, bus) as (mon, _):
        daemon.stop()
        bus.proc.kill()
        assert mon.wait(10) == EXIT_NO_BUS
        assert "lost the connection to the session bus" in mon.proc.stderr.read().decode()


# ---------------------------------------------------------------------------
# browse

@pytest.mark.parametrize("mode", ["ack", "event"])
@pytest.mark.parametrize("kind,key", [("person", "_personID"),
                                      ("organization", "_organizationID")])
def test_browse(server, signals, daemon, bus, mode, kind, key):
    server.wait_subscribed(1)
    server.config(browse_reply=mode)
    r = ctl(bus.address, "browse", kind, PERSON)
    assert r.returncode == 0, r
    assert r.stdout.count("\n") == 1
    sent = server.stats()["browseReplies"][-1]
    assert sent["event"] == f"activities-by-{kind}" and sent["id"] == PERSON
    assert json.loads(r.stdout) == sent["reply"]


@pytest.mark.daemon_args(config={"Limits": {"BrowseTimeoutSec": "0.5"}})
def test_browse_errors_exit_5_with_the_error_name(server, signals, daemon, bus):
    server.wait_subscribed(1)
    r = ctl(bus.address, "browse", "person", "has space")
    assert r.returncode == EXIT_ERROR and r.stdout == ""
    assert ERROR + "InvalidArgument: " in r.stderr
    server.config(browse_reply="none")
    r = ctl(bus.address, "browse", "organization", PERSON)
    assert r.returncode == EXIT_ERROR and ERROR + "Timeout: " in r.stderr
    server.kill()
    harness.wait_until(lambda: signals.get_property(OBJECT_PATH, IFACE, "State") != "online",
                       10, what="the daemon to notice")
    r = ctl(bus.address, "browse", "person", PERSON)
    assert r.returncode == EXIT_ERROR and ERROR + "NotConnected: " in r.stderr


# ---------------------------------------------------------------------------
# watch-import

def start_watch(bus, server, ident, *args, n=1):
    w = Running(bus.address, "watch-import", *args, ident)
    server.wait_subscribed(n, stream="import")
    return w


def test_watch_import_until_finished(server, signals, daemon, bus):
    server.wait_subscribed(1)
    w = start_watch(bus, server, "imp-ok")
    try:
        signals.call("WatchImport", ("imp-other",))
        # the server must have the daemon in imp-other's room before it
        # sends, or imp-other's events reach no one and it stays watched
        server.wait_subscribed(2, stream="import")
        assert server.import_("imp-other", steps=2)["sent"] == 1
        r = server.import_("imp-ok", steps=3)
        assert w.wait(10) == 0
        assert len(w.lines) == 4, w.lines
        for line, member in zip(w.lines, ["ImportProgress"] * 3 + ["ImportFinished"]):
            assert re.match(rf"{TIME} {member} id=imp-ok \{{", line), line
        assert "imp-other" not in "".join(w.lines)
        assert r["sent"] == 1
        assert signals.get_property(OBJECT_PATH, IFACE, "WatchedImports") == []
    finally:
        w.close()


def test_watch_import_json_and_failure(server, signals, daemon, bus):
    server.wait_subscribed(1)
    w = start_watch(bus, server, "imp-bad", "--json")
    try:
        r = server.import_("imp-bad", steps=2, fail=True)
        assert w.wait(10) == EXIT_FAILED
        objs = [json.loads(x) for x in w.lines]
        assert [o["member"] for o in objs] == ["ImportProgress"] * 2 + ["ImportError"]
        assert [o["payload"] for o in objs] == [e["payload"] for e in r["events"]]
        assert all(o["args"][0] == "imp-bad" for o in objs)
    finally:
        w.close()


def test_watch_import_across_a_reconnect(server, signals, daemon, bus):
    server.wait_subscribed(1)
    w = start_watch(bus, server, "imp-long")
    try:
        server.import_("imp-long", steps=10, interval_ms=250)
        w.wait_lines(lambda lines: len(lines) >= 2, 10, "two progress lines")
        assert server.drop("import") == 1
        assert w.wait(15) == 0
        assert "ImportFinished id=imp-long" in w.lines[-1]
        assert server.stats()["subscriptions"]["import"] == 2
    finally:
        w.close()


def test_watch_import_unwatched_by_someone_else_exits_1(server, signals, daemon, bus):
    server.wait_subscribed(1)
    signals.call("WatchImport", ("imp-x",))
    w = start_watch(bus, server, "imp-gone", n=2)
    try:
        signals.call("UnwatchImport", ("imp-gone",))
        assert w.wait(10) == EXIT_FAILED
        assert "imp-gone is no longer watched" in w.proc.stderr.read().decode()
        # the other import is none of its business
        assert signals.get_property(OBJECT_PATH, IFACE, "WatchedImports") == ["imp-x"]
    finally:
        w.close()


def test_watch_import_when_the_daemon_stops_exits_3(server, signals, daemon, bus):
    server.wait_subscribed(1)
    w = start_watch(bus, server, "imp-stop")
    try:
        daemon.stop()
        assert w.wait(10) == EXIT_NOT_RUNNING
        assert "stopped before import imp-stop ended" in w.proc.stderr.read().decode()
    finally:
        w.close()


def test_watch_import_invalid_id_exits_5(server, signals, daemon, bus):
    r = ctl(bus.address, "watch-import", "no good")
    assert r.returncode == EXIT_ERROR and ERROR + "InvalidArgument: " in r.stderr


# ---------------------------------------------------------------------------
# text from the network on a terminal

# The characters a terminal acts on, or that make a line show in another order
# than it was sent, by class; the human output shows each as \uXXXX.
UNSAFE = {
    "C1 controls": "\u0080\u0085\u009b\u009f",
    "line and paragraph separators": "\u2028\u2029",
    "bidi embeddings and overrides": "\u202a\u202b\u202c\u202d\u202e",
    "bidi isolates": "\u2066\u2067\u2068\u2069",
}
ALL_UNSAFE = "".join(UNSAFE.values())
PLAIN_TEXT = "Müller 東京 😀"


def escaped(text):
    return "".join(f"\\u{ord(c):04x}" if c in ALL_UNSAFE else c for c in text)


def assert_no_unsafe(text):
    raw = sorted({f"U+{ord(c):04X}" for c in text if c in ALL_UNSAFE})
    assert not raw, f"printed as they are: {raw} in {text!r}"


def test_monitor_escapes_what_a_terminal_would_act_on(server, signals, daemon, bus):
    with monitoring(server, bus) as (mon, start):
        mark = signals.mark()
        for chars in UNSAFE.values():
            server.emit("PersonDeletedEvent", {"_personID": f"p{chars}q"})
        server.emit("Sneaky\u202eEvent", {"_id": "x"})
        server.emit("CommentAddedEvent", {"_id": "plain", "text": PLAIN_TEXT})
        mon.wait_lines(lambda lines: len(lines) >= start + len(UNSAFE) + 2, 10)
        lines = mon.lines[start:]
        assert len(lines) == len(UNSAFE) + 2, lines
        # the daemon passes the characters on as they are: escaping them is
        # samdock-eventctl's doing
        sent = signals.wait_for(len(UNSAFE), member="PersonDeleted", since=mark)
        assert [s.args[0] for s in sent] == [f"p{c}q" for c in UNSAFE.values()]
        for line, (kind, chars) in zip(lines, UNSAFE.items()):
            shown = escaped(f"p{chars}q")
            assert re.fullmatch(rf"{TIME} PersonDeleted id={re.escape(shown)} "
                                + re.escape(f'{{"_personID":"{shown}"}}'), line), (kind, line)
            assert_no_unsafe(line)
        assert re.fullmatch(rf"{TIME} Event stream=activities name=Sneaky\\u202eEvent "
                            r'\{"_id":"x"\}', lines[-2])
        assert re.fullmatch(rf'{TIME} Event stream=activities name=CommentAddedEvent '
                            rf'\{{"_id":"plain","text":"{PLAIN_TEXT}"\}}', lines[-1])
        assert mon.stop() == 0


def test_monitor_json_escapes_them_as_json_does(server, signals, daemon, bus):
    with monitoring(server, bus, "--json") as (mon, start):
        payload = {"_id": "j", "text": ALL_UNSAFE + PLAIN_TEXT + "\x7f"}
        server.emit("CommentAddedEvent", payload)
        (line,) = mon.wait_lines(lambda lines: lines[start:], 10)
        obj = json.loads(line)
        assert obj["payload"] == payload and json.loads(obj["args"][2]) == payload
        assert_no_unsafe(line)
        assert "\x7f" not in line and "\\u007f" in line
        assert PLAIN_TEXT in line
        assert mon.stop() == 0


def test_watch_import_escapes_them(server, signals, daemon, bus):
    server.wait_subscribed(1)
    w = start_watch(bus, server, "imp-esc")
    try:
        name = f"Kontakte{UNSAFE['bidi embeddings and overrides']}vsc.exe {PLAIN_TEXT}"
        server.emit("imported", {"_importID": "imp-esc", "fileName": name}, stream="import",
                    import_id="imp-esc")
        server.import_("imp-esc", steps=0)
        assert w.wait(10) == 0
        assert len(w.lines) == 2, w.lines
        assert re.fullmatch(rf"{TIME} ImportProgress id=imp-esc "
                            + re.escape(f'{{"_importID":"imp-esc","fileName":"{escaped(name)}"}}'),
                            w.lines[0])
        assert_no_unsafe("\n".join(w.lines))
    finally:
        w.close()


def test_status_escapes_the_last_error(bus, signals, spawn):
    from resilience_helpers import FakeSioServer
    reason = f"bad {ALL_UNSAFE} day, {PLAIN_TEXT}"
    fake = FakeSioServer(connect_reply="44" + json.dumps({"message": reason}, ensure_ascii=False))
    try:
        spawn(fake.url, config={"Reconnect": {"InitialDelaySec": "20", "MaxDelaySec": "60"}})
        path = harness.STREAM_PATH_PREFIX + "activities"
        harness.wait_until(lambda: reason in signals.get_property(
            path, harness.STREAM_IFACE, "LastError"), 10, what="LastError with the reason")
        out = ctl(bus.address, "status")
        assert out.returncode == 0, out
        assert_no_unsafe(out.stdout)
        assert f"     Last error: the server refused CONNECT: {escaped(reason)}\n" in out.stdout
    finally:
        fake.close()


def browse_in_flight(bus, server):
    """samdock-eventctl browse, once the server has the daemon's emit."""
    server.config(browse_reply="none")
    b = Running(bus.address, "browse", "person", PERSON)
    server.wait_stats(lambda s: any(e["event"] == "activities-by-person"
                                    for e in s["emitsReceived"]), 10, "the browse emit")
    return b


def test_browse_escapes_them_and_keeps_the_json(server, signals, daemon, bus):
    server.wait_subscribed(1)
    b = browse_in_flight(bus, server)
    try:
        reply = [{"_id": "a1", "_personIDs": [PERSON],
                  "data": {"title": ALL_UNSAFE + PLAIN_TEXT}}]
        server.emit("activities-by-person", reply)
        assert b.wait(10) == 0
        (line,) = b.lines
        assert json.loads(line) == reply
        assert_no_unsafe(line)
        assert PLAIN_TEXT in line
    finally:
        b.close()


def test_browse_error_message_escapes_them(server, signals, daemon, bus):
    server.wait_subscribed(1)
    b = browse_in_flight(bus, server)
    try:
        message = f"no \u009b2J{PLAIN_TEXT}"
        server.emit("exception", {"status": "error", "message": message})
        assert b.wait(10) == EXIT_ERROR
        err = b.proc.stderr.read().decode()
        assert_no_unsafe(err)
        assert ERROR + "ServerError: " in err and escaped(message) in err
    finally:
        b.close()


# ---------------------------------------------------------------------------
# reconnect, reload

def test_reconnect(server, signals, daemon, bus):
    server.wait_subscribed(1)
    mark = signals.mark()
    r = ctl(bus.address, "reconnect")
    assert r.returncode == 0 and r.stdout == "" and r.stderr == ""
    server.wait_subscribed(2)
    (sig,) = signals.wait_for(1, member="Resumed", since=mark)
    assert sig.args[0] == "activities"
    assert server.stats()["connects"]["activities"] == 2


def test_reload(server, signals, daemon, bus):
    server.wait_subscribed(1)
    r = ctl(bus.address, "reload")
    assert r.returncode == 0 and r.stdout == "" and r.stderr == ""
    assert "Reloading configuration" in daemon.log()
    daemon.config_path.write_text(daemon.config_path.read_text() + "\n[Server]\nEngineIO=5\n")
    r = ctl(bus.address, "reload")
    assert r.returncode == EXIT_ERROR
    assert ERROR + "InvalidArgument: " in r.stderr
    assert daemon.alive()
