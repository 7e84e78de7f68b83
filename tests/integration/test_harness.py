# SPDX-License-Identifier: MIT
"""Self-tests of the harness pieces that do not need the daemon: the private
bus, the signal collector (against a fake app.samdock.Events owner) and the
process handling. Run: /usr/bin/python3 -m pytest tests/integration/test_harness.py"""

import os
import signal
import subprocess
import threading
import time

import pytest

import harness
from harness import BUS_NAME, IFACE, OBJECT_PATH, Gio, GLib


FAKE_XML = """
<node>
  <interface name="app.samdock.Events">
    <method name="BrowseActivitiesByPerson">
      <arg name="person_id" type="s" direction="in"/>
      <arg name="activities" type="s" direction="out"/>
    </method>
    <property name="Version" type="s" access="read"/>
    <property name="EventsEmitted" type="t" access="read"/>
    <signal name="ActivityAdded">
      <arg name="activity_id" type="s"/>
      <arg name="payload" type="s"/>
    </signal>
  </interface>
</node>
"""


class FakeService:
    """Owns app.samdock.Events on the bus from its own thread and main loop,
    answers one method and two properties, and emits signals on request."""

    def __init__(self, address):
        self.address = address
        self.ready = threading.Event()
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        if not self.ready.wait(10):
            raise RuntimeError("fake service did not start")
        if self.error:
            raise self.error

    def _run(self):
        self.ctx = GLib.MainContext.new()
        self.ctx.push_thread_default()
        try:
            self.conn = harness.bus_connection(self.address)
            info = Gio.DBusNodeInfo.new_for_xml(FAKE_XML).interfaces[0]
            self.conn.register_object(OBJECT_PATH, info, self._on_call, self._on_get, None)
            r = self.conn.call_sync("org.freedesktop.DBus", "/org/freedesktop/DBus",
                                    "org.freedesktop.DBus", "RequestName",
                                    GLib.Variant("(su)", (BUS_NAME, 4)), GLib.VariantType("(u)"),
                                    Gio.DBusCallFlags.NONE, 5000, None)
            assert r.unpack()[0] == 1
            self.loop = GLib.MainLoop.new(self.ctx, False)
        except Exception as e:  # noqa: BLE001
            self.error = e
            self.ready.set()
            return
        self.ready.set()
        self.loop.run()
        self.ctx.pop_thread_default()

    def _on_call(self, conn, sender, path, iface, method, params, invocation):
        (pid,) = params.unpack()
        if pid == "":
            invocation.return_dbus_error("app.samdock.Events.Error.InvalidArgument", "empty id")
        else:
            invocation.return_value(GLib.Variant("(s)", (f'[{{"_personIDs":["{pid}"]}}]',)))

    def _on_get(self, conn, sender, path, iface, prop):
        return {"Version": GLib.Variant("s", "0.1.0"),
                "EventsEmitted": GLib.Variant("t", 42)}[prop]

    def emit(self, member, signature, args, path=OBJECT_PATH, iface=IFACE):
        self.conn.emit_signal(None, path, iface, member, GLib.Variant(signature, args))
        self.conn.flush_sync(None)

    def stop(self):
        src = GLib.idle_source_new()
        src.set_callback(lambda *a: self.loop.quit() or False)
        src.attach(self.ctx)
        self.thread.join(5)
        try:
            self.conn.close_sync(None)
        except GLib.Error:
            pass


@pytest.fixture
def fake(bus):
    f = FakeService(bus.address)
    yield f
    f.stop()


def test_bus_gives_a_private_address_and_stops():
    b = harness.Bus()
    try:
        assert b.address.startswith("unix:path=")
        assert b.socket_path.exists()
        conn = harness.bus_connection(b.address)
        assert conn.get_unique_name().startswith(":")
        assert not harness.name_has_owner(conn, BUS_NAME)
        conn.close_sync(None)
    finally:
        b.stop()
    assert not b.alive()
    assert not b.socket_path.exists()


def test_signals_collects_in_order_with_python_values(bus, fake, signals):
    fake.emit("ActivityAdded", "(ss)", ("a1", '{"data":{"title":"Café Müller – Angebot 東京 😀"}}'))
    fake.emit("Resumed", "(sbt)", ("activities", True, 1234567))
    fake.emit("Event", "(sss)", ("activities", "ActivityPinnedEvent", "{}"))
    got = signals.wait_for(3, timeout=5)
    assert [tuple(s) for s in got] == [
        ("ActivityAdded", ("a1", '{"data":{"title":"Café Müller – Angebot 東京 😀"}}')),
        ("Resumed", ("activities", True, 1234567)),
        ("Event", ("activities", "ActivityPinnedEvent", "{}")),
    ]
    assert all(s.path == OBJECT_PATH and s.interface == IFACE for s in got)
    member, args = got[0]
    assert member == "ActivityAdded" and args[0] == "a1"


def test_signals_ignores_other_senders_and_interfaces(bus, fake, signals):
    # a spoofed signal from a connection that does not own the name
    subprocess.run(["gdbus", "emit", "--address", bus.address, "--object-path", OBJECT_PATH,
                    "--signal", IFACE + ".ActivityAdded", "'spoofed'", "'{}'"],
                   check=True, timeout=10)
    subprocess.run(["busctl", f"--address={bus.address}", "emit", OBJECT_PATH, IFACE,
                    "ActivityDeleted", "ss", "spoofed-too", "{}"], check=True, timeout=10)
    fake.emit("Other", "(s)", ("x",), iface="org.example.Other")
    fake.emit("ActivityAdded", "(ss)", ("real", "{}"))
    signals.wait_for(1, timeout=5)
    signals.settle(0.3)
    assert [tuple(s) for s in signals.items] == [("ActivityAdded", ("real", "{}"))]


def test_wait_for_is_bounded_and_explains(bus, signals):
    t0 = time.monotonic()
    with pytest.raises(harness.HarnessTimeout, match="received 0 signal"):
        signals.wait_for(1, timeout=0.3)
    assert time.monotonic() - t0 < 2


def test_wait_for_member_and_since(bus, fake, signals):
    fake.emit("ActivityAdded", "(ss)", ("1", "{}"))
    fake.emit("TaskDeleted", "(ss)", ("2", "{}"))
    signals.wait_for(2, timeout=5)
    mark = signals.mark()
    fake.emit("TaskDeleted", "(ss)", ("3", "{}"))
    got = signals.wait_for(1, timeout=5, member="TaskDeleted", since=mark)
    assert [s.args[0] for s in got] == ["3"]
    assert [s.args[0] for s in signals.of("TaskDeleted")] == ["2", "3"]
    assert signals.members() == ["ActivityAdded", "TaskDeleted", "TaskDeleted"]


def test_call_get_property_and_errors(bus, fake, signals):
    (reply,) = signals.call("BrowseActivitiesByPerson", ("p1",))
    assert reply == '[{"_personIDs":["p1"]}]'
    with pytest.raises(harness.DBusCallError) as e:
        signals.call("BrowseActivitiesByPerson", ("",))
    assert e.value.name == "app.samdock.Events.Error.InvalidArgument"
    assert e.value.message == "empty id"
    assert signals.get_property(OBJECT_PATH, IFACE, "Version") == "0.1.0"
    assert signals.get_property(OBJECT_PATH, IFACE, "EventsEmitted") == 42
    assert signals.get_all_properties()["EventsEmitted"] == 42
    assert "BrowseActivitiesByPerson" in signals.introspect()
    assert signals.name_owner() == fake.conn.get_unique_name()


def test_call_without_owner_fails_fast(bus, signals):
    with pytest.raises(harness.DBusCallError) as e:
        signals.call("Reconnect", timeout=5)
    assert e.value.name in ("org.freedesktop.DBus.Error.NameHasNoOwner",
                            "org.freedesktop.DBus.Error.ServiceUnknown")


def test_daemon_reports_a_missing_binary(bus, server, tmp_path):
    with pytest.raises(harness.HarnessError, match="does not exist"):
        harness.Daemon(bus, server, binary=tmp_path / "no-such-daemon")


def _fake_daemon_script(tmp_path, body):
    """A stand-in binary: a Python script that records its argv and env and
    then does body (with bus helpers available)."""
    script = tmp_path / "fake-eventd"
    script.write_text(f"""#!/usr/bin/python3
import json, os, signal, sys, time
sys.path.insert(0, {str(harness.Path(harness.__file__).parent)!r})
import harness
from harness import GLib
json.dump({{"argv": sys.argv, "env": {{k: v for k, v in os.environ.items()}},
           "token_mode": oct(os.stat(sys.argv[sys.argv.index("--token-file") + 1]).st_mode & 0o777),
           "token": open(sys.argv[sys.argv.index("--token-file") + 1]).read(),
           "config": open(sys.argv[sys.argv.index("--config") + 1]).read()}},
          open({str(tmp_path / "record.json")!r}, "w"))
{body}
""")
    script.chmod(0o755)
    return script


def test_daemon_command_line_environment_and_readiness(bus, server, tmp_path):
    import json
    script = _fake_daemon_script(tmp_path, """
conn = harness.bus_connection(os.environ["DBUS_SESSION_BUS_ADDRESS"])
conn.call_sync("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
               "RequestName", GLib.Variant("(su)", ("app.samdock.Events", 4)), None, 0, 5000, None)
sys.stderr.write("fake daemon up\\n"); sys.stderr.flush()
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
while True:
    time.sleep(0.1)
""")
    d = harness.Daemon(bus, server, binary=script, config={"Limits": {"BrowseTimeoutSec": "2"}})
    try:
        rec = json.loads((tmp_path / "record.json").read_text())
        argv = rec["argv"][1:]
        assert argv[:2] == ["--session", "--config"]
        assert argv[3:] == ["--url", server.url, "--token-file", str(d.token_path),
                            "--log-level", "debug"]
        assert rec["env"]["DBUS_SESSION_BUS_ADDRESS"] == bus.address
        assert not any(k.lower().endswith("_proxy") for k in rec["env"])
        assert rec["token_mode"] == "0o600"
        assert rec["token"].strip() == server.token
        assert "[Reconnect]\nInitialDelaySec=0.1\nMaxDelaySec=1\n" in rec["config"]
        assert "[Limits]\nBrowseTimeoutSec=2\n" in rec["config"]
        assert server.token not in " ".join(rec["argv"])
        assert d.alive() and d.name_owned()
        harness.wait_until(lambda: "fake daemon up" in d.log(), 5, what="log line")
        assert d.stop() == 0
        assert not d.alive()
    finally:
        d.cleanup()


def test_daemon_that_exits_early_is_reported_with_its_log(bus, server, tmp_path):
    script = _fake_daemon_script(tmp_path, 'sys.stderr.write("eventd.conf:3: bad key\\n"); sys.exit(78)')
    with pytest.raises(harness.HarnessError, match=r"(?s)status 78.*eventd.conf:3: bad key"):
        harness.Daemon(bus, server, binary=script)


def test_daemon_stop_kills_a_hanging_process(bus, server, tmp_path):
    script = _fake_daemon_script(tmp_path, """
conn = harness.bus_connection(os.environ["DBUS_SESSION_BUS_ADDRESS"])
conn.call_sync("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
               "RequestName", GLib.Variant("(su)", ("app.samdock.Events", 4)), None, 0, 5000, None)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
while True:
    time.sleep(0.1)
""")
    d = harness.Daemon(bus, server, binary=script)
    try:
        t0 = time.monotonic()
        with pytest.raises(harness.HarnessTimeout, match="ignored SIGTERM"):
            d.stop(timeout=1)
        assert time.monotonic() - t0 < 5
        assert not d.alive()
    finally:
        d.cleanup()


def test_kill_strays_only_kills_our_processes():
    p = harness._track(subprocess.Popen(["sleep", "30"]))
    other = subprocess.Popen(["sleep", "30"])
    try:
        harness.kill_strays()
        assert p.poll() is not None
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_server_start_stop_restart_same_port(server):
    port = server.port
    assert port > 0 and server.url == f"http://127.0.0.1:{port}"
    assert server.stats()["connections"] == {"activities": 0, "import": 0}
    assert server.stop() == 0
    server.start()
    assert server.port == port
    assert server.kill(signal.SIGKILL) == -signal.SIGKILL
    server.restart()
    assert server.port == port and server.alive()
    assert server.starts == 3


def test_server_never_leaks_the_token(server):
    c = harness.SioClient(server.port, auth={"token": server.token})
    c.emit("activities", {"headers": {"authorization": f"Bearer {server.token}"}})
    server.wait_subscribed()
    server.config(token="another-token-123")
    st = server.stats()
    text = repr(st) + server.log()
    assert server.token not in text and "another-token-123" not in text
    assert server.token not in " ".join(harness.Path(f"/proc/{server.pid}/cmdline").read_text().split("\0"))
    c.close()


def test_processes_get_no_proxy_settings(monkeypatch):
    monkeypatch.setenv("https_proxy", "http://192.0.2.1:3128")
    monkeypatch.setenv("HTTP_PROXY", "http://192.0.2.1:3128")
    env = harness._clean_env()
    assert "https_proxy" not in env and "HTTP_PROXY" not in env
    assert "DBUS_SESSION_BUS_ADDRESS" not in env
    # and the control API ignores them too
    s = harness.Server()
    try:
        assert s.stats()["connections"]["activities"] == 0
    finally:
        s.cleanup()
    assert os.environ["https_proxy"]  # untouched for the rest of the process
