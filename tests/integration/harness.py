# SPDX-License-Identifier: MIT
"""Helpers for samdock-eventd's integration tests.

Everything here talks to 127.0.0.1 / a private dbus-daemon only, and every
wait is bounded. Processes started here are remembered and killed (by pid)
by kill_strays(), which the pytest fixtures call and atexit runs too.

    Bus()           a private dbus-daemon (session-like policy)
    Server()        tests/server/samdock-server.js with its /_test/ control API
    Daemon(bus, server)
                    the samdock-eventd binary under test ($SAMDOCK_EVENTD)
    Signals(address)
                    collects app.samdock.Events signals, calls methods,
                    reads properties
    SioClient(...)  a minimal raw Engine.IO/Socket.IO client over WebSocket,
                    for testing the test server itself

Environment:
    SAMDOCK_EVENTD              daemon binary (default: REPO/build/samdock-eventd)
    SAMDOCK_EVENTD_WRAPPER      command prefix, e.g. "valgrind --error-exitcode=99"
    SAMDOCK_TEST_TIMEOUT_SCALE  multiply every timeout (default 1; use 10 under valgrind)
    NODE                        node binary (default: node)
"""

import atexit
import base64
import json
import os
import select
import shlex
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import gi

gi.require_version("GLib", "2.0")
gi.require_version("Gio", "2.0")
from gi.repository import Gio, GLib  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVER_DIR = REPO_ROOT / "tests" / "server"
SERVER_JS = SERVER_DIR / "samdock-server.js"

BUS_NAME = "app.samdock.Events"
OBJECT_PATH = "/app/samdock/Events"
IFACE = "app.samdock.Events"
STREAM_IFACE = "app.samdock.Events.Stream"
STREAM_PATH_PREFIX = OBJECT_PATH + "/streams/"

DEFAULT_TOKEN = "eyJhbGciOiJIUzI1NiJ9.test-token-7f3a9c.sig"

ACTIVITY_EVENTS = {
    # Samdock event: (D-Bus signal, the entity's own key)
    "ActivityAddedEvent": ("ActivityAdded", "_activityID"),
    "ActivityEditedEvent": ("ActivityEdited", "_activityID"),
    "ActivityDeletedEvent": ("ActivityDeleted", "_activityID"),
    "PersonDeletedEvent": ("PersonDeleted", "_personID"),
    "OrganizationDeletedEvent": ("OrganizationDeleted", "_organizationID"),
    "DealDeletedEvent": ("DealDeleted", "_dealID"),
    "TaskDeletedEvent": ("TaskDeleted", "_taskID"),
}
IMPORT_EVENTS = {
    "imported": "ImportProgress",
    "importError": "ImportError",
    "importFinished": "ImportFinished",
}


class HarnessError(Exception):
    """Something in the test set-up went wrong (not the code under test)."""


class HarnessTimeout(HarnessError, TimeoutError):
    pass


def scale():
    try:
        return max(float(os.environ.get("SAMDOCK_TEST_TIMEOUT_SCALE", "1")), 0.1)
    except ValueError:
        return 1.0


def scaled(seconds):
    return seconds * scale()


class Deadline:
    def __init__(self, seconds):
        self.end = time.monotonic() + scaled(seconds)

    def left(self):
        return max(0.0, self.end - time.monotonic())

    def expired(self):
        return time.monotonic() >= self.end


def wait_until(pred, timeout=10, interval=0.02, what="condition"):
    """Polls pred() until it returns a true value (returned) or raises
    HarnessTimeout."""
    d = Deadline(timeout)
    while True:
        v = pred()
        if v:
            return v
        if d.expired():
            raise HarnessTimeout(f"timed out after {scaled(timeout):.1f}s waiting for {what}")
        time.sleep(min(interval, d.left()) or 0.001)


# ---------------------------------------------------------------------------
# processes

_PROCS = []


def _track(proc):
    _PROCS.append(proc)
    return proc


def kill_strays():
    """SIGKILLs every process started by this module that is still running
    (by pid, never by name) and reaps it."""
    for p in list(_PROCS):
        if p.poll() is None:
            try:
                p.kill()
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        if p.poll() is not None:
            _PROCS.remove(p)


_TMPDIRS = []


def _tmpdir(prefix):
    d = Path(tempfile.mkdtemp(prefix=prefix))
    _TMPDIRS.append(d)
    return d


def remove_temp_dirs():
    """Removes the temporary directories of objects never cleaned up."""
    while _TMPDIRS:
        shutil.rmtree(_TMPDIRS.pop(), ignore_errors=True)


atexit.register(remove_temp_dirs)
atexit.register(kill_strays)   # runs first (atexit is LIFO)


def _read_line(fd, deadline, proc=None, what="process"):
    """Reads one line from a raw fd with a deadline."""
    buf = b""
    while b"\n" not in buf:
        left = deadline.left()
        if left <= 0:
            raise HarnessTimeout(f"{what}: no start-up line within the time limit (got {buf!r})")
        r, _, _ = select.select([fd], [], [], min(left, 0.2))
        if not r:
            if proc is not None and proc.poll() is not None:
                raise HarnessError(f"{what} exited with status {proc.returncode} before it was ready")
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            raise HarnessError(f"{what} closed its output before it was ready "
                               f"(status {proc.poll() if proc else '?'})")
        buf += chunk
    return buf.split(b"\n", 1)[0].decode("utf-8", "replace")


def _stop_process(proc, sig=signal.SIGTERM, timeout=10):
    """Sends sig, waits; SIGKILLs after timeout. Returns the exit status
    (negative signal number when killed by one), or None if it had to be
    SIGKILLed after the timeout."""
    if proc.poll() is not None:
        return proc.returncode
    try:
        proc.send_signal(sig)
    except ProcessLookupError:
        pass
    try:
        return proc.wait(timeout=scaled(timeout))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
        return None


def _clean_env(extra=None):
    """The environment for child processes: no proxies, no inherited bus or
    systemd sockets."""
    env = dict(os.environ)
    for k in list(env):
        if k.lower() in ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "ftp_proxy"):
            del env[k]
    for k in ("DBUS_SESSION_BUS_ADDRESS", "DBUS_SYSTEM_BUS_ADDRESS", "NOTIFY_SOCKET",
              "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID",
              "LISTEN_FDNAMES", "CREDENTIALS_DIRECTORY", "INVOCATION_ID", "JOURNAL_STREAM"):
        env.pop(k, None)
    if extra:
        env.update(extra)
    return env


# ---------------------------------------------------------------------------
# D-Bus

_BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <keep_umask/>
  <listen>unix:path={path}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
  <limit name="max_incoming_bytes">1000000000</limit>
  <limit name="max_outgoing_bytes">1000000000</limit>
  <limit name="max_message_size">1000000000</limit>
  <limit name="max_completed_connections">100000</limit>
  <limit name="max_incomplete_connections">10000</limit>
  <limit name="max_connections_per_user">100000</limit>
  <limit name="max_names_per_connection">50000</limit>
  <limit name="max_match_rules_per_connection">50000</limit>
  <limit name="max_replies_per_connection">50000</limit>
</busconfig>
"""


class Bus:
    """A private dbus-daemon with a session-like policy (no service
    activation). .address is its D-Bus address."""

    def __init__(self, timeout=15):
        dbus_daemon = shutil.which("dbus-daemon")
        if not dbus_daemon:
            raise HarnessError("dbus-daemon not found (apt-get install dbus)")
        # own short directory: unix socket paths are limited to 107 bytes
        self.tmpdir = _tmpdir("samdock-bus-")
        self.socket_path = self.tmpdir / "bus"
        self.config_path = self.tmpdir / "bus.conf"
        self.config_path.write_text(_BUS_CONFIG.format(path=self.socket_path))
        self.log_path = self.tmpdir / "dbus-daemon.log"
        r, w = os.pipe()
        try:
            with open(self.log_path, "wb") as log:
                self.proc = _track(subprocess.Popen(
                    [dbus_daemon, f"--config-file={self.config_path}", "--nofork",
                     f"--print-address={w}"],
                    pass_fds=(w,), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                    env=_clean_env(), start_new_session=True))
            os.close(w)
            w = -1
            self.address = _read_line(r, Deadline(timeout), self.proc, "dbus-daemon").strip()
        except BaseException:
            if w >= 0:
                os.close(w)
            self.stop()
            raise
        finally:
            os.close(r)
        if not self.address.startswith("unix:"):
            self.stop()
            raise HarnessError(f"dbus-daemon printed an odd address: {self.address!r}")

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self):
        if getattr(self, "proc", None) is not None:
            _stop_process(self.proc, signal.SIGTERM, timeout=5)
        shutil.rmtree(self.tmpdir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def bus_connection(address):
    """A new, private GDBus connection to a message bus at address."""
    return Gio.DBusConnection.new_for_address_sync(
        address,
        Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT
        | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION,
        None, None)


def name_has_owner(conn, name, timeout=5):
    r = conn.call_sync("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                       "NameHasOwner", GLib.Variant("(s)", (name,)), GLib.VariantType("(b)"),
                       Gio.DBusCallFlags.NONE, int(scaled(timeout) * 1000), None)
    return r.unpack()[0]


def get_name_owner(conn, name, timeout=5):
    """The unique name owning name, or None."""
    try:
        r = conn.call_sync("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                           "GetNameOwner", GLib.Variant("(s)", (name,)), GLib.VariantType("(s)"),
                           Gio.DBusCallFlags.NONE, int(scaled(timeout) * 1000), None)
        return r.unpack()[0]
    except GLib.Error:
        return None


class DBusCallError(Exception):
    """A D-Bus method call failed; .name is the D-Bus error name (for
    example app.samdock.Events.Error.NotConnected), .message the text."""

    def __init__(self, name, message):
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message


class Signal:
    """One received signal. Unpacks as (member, args)."""
    __slots__ = ("member", "args", "path", "interface", "sender", "time")

    def __init__(self, member, args, path, interface, sender):
        self.member = member
        self.args = args
        self.path = path
        self.interface = interface
        self.sender = sender
        self.time = time.monotonic()

    def __iter__(self):
        return iter((self.member, self.args))

    def __getitem__(self, i):
        return (self.member, self.args)[i]

    def __len__(self):
        return 2

    def __eq__(self, other):
        return tuple(self) == tuple(other)

    def __repr__(self):
        shown = tuple(a if not isinstance(a, str) or len(a) < 200 else a[:200] + "..." for a in self.args)
        return f"Signal({self.member!r}, {shown!r})"


def _infer_signature(args):
    sig = ""
    for a in args:
        if isinstance(a, bool):
            sig += "b"
        elif isinstance(a, int):
            sig += "x"
        elif isinstance(a, float):
            sig += "d"
        elif isinstance(a, str):
            sig += "s"
        elif isinstance(a, (list, tuple)) and all(isinstance(x, str) for x in a):
            sig += "as"
        else:
            raise HarnessError(f"cannot infer a D-Bus type for {a!r}; pass signature=")
    return f"({sig})"


class Signals:
    """Collects, in order, every signal that the owner of app.samdock.Events
    sends on interface app.samdock.Events (and, with properties=True,
    PropertiesChanged from any of its objects into .prop_changes).

    Signals arrive only while the private GLib main context is iterated:
    wait_for(), wait_until(), settle() and pump() do that, with deadlines."""

    def __init__(self, address, sender=BUS_NAME, interface=IFACE, properties=True):
        self.address = address
        self.items = []
        self.prop_changes = []     # (path, interface, {changed}, [invalidated])
        self.ctx = GLib.MainContext.new()
        self._subs = []
        self.ctx.push_thread_default()
        try:
            self.conn = bus_connection(address)
            self._subs.append(self.conn.signal_subscribe(
                sender, interface, None, None, None, Gio.DBusSignalFlags.NONE,
                self._on_signal, None))
            if properties:
                self._subs.append(self.conn.signal_subscribe(
                    sender, "org.freedesktop.DBus.Properties", "PropertiesChanged", None, None,
                    Gio.DBusSignalFlags.NONE, self._on_props, None))
        finally:
            self.ctx.pop_thread_default()
        # a round trip: once it returns, the bus has processed our AddMatch
        self.conn.call_sync("org.freedesktop.DBus", "/org/freedesktop/DBus",
                            "org.freedesktop.DBus", "GetId", None, None,
                            Gio.DBusCallFlags.NONE, 5000, None)

    # -- collection
    def _on_signal(self, conn, sender, path, iface, member, params, *user):
        args = params.unpack() if params is not None else ()
        self.items.append(Signal(member, tuple(args), path, iface, sender))

    def _on_props(self, conn, sender, path, iface, member, params, *user):
        iface_name, changed, invalidated = params.unpack()
        self.prop_changes.append((path, iface_name, changed, invalidated))

    def pump(self, duration=0.0):
        """Dispatches what is pending, for at least duration seconds."""
        end = time.monotonic() + duration
        while True:
            while self.ctx.iteration(False):
                pass
            left = end - time.monotonic()
            if left <= 0:
                return
            self._block(min(left, 0.02))

    def _block(self, seconds):
        src = GLib.timeout_source_new(max(1, int(seconds * 1000)))
        src.set_callback(lambda *a: False)
        src.attach(self.ctx)
        try:
            self.ctx.iteration(True)
        finally:
            src.destroy()

    def wait_until(self, pred, timeout=10, what="signals"):
        """Iterates the main context until pred(self) is true (returns its
        value) or raises HarnessTimeout describing what was received."""
        d = Deadline(timeout)
        while True:
            while self.ctx.iteration(False):
                pass
            v = pred(self)
            if v:
                return v
            if d.expired():
                raise HarnessTimeout(
                    f"timed out after {scaled(timeout):.1f}s waiting for {what}; "
                    f"received {len(self.items)} signal(s): {self._summary()}")
            self._block(min(0.02, d.left()) or 0.001)

    def wait_for(self, n, timeout=10, member=None, since=0):
        """Waits until at least n signals (of member, when given) have been
        received after index since; returns them (all of them, not only n)."""
        def enough(_):
            got = self.of(member, since)
            return got if len(got) >= n else None
        what = f"{n} signal(s)" + (f" {member}" if member else "")
        return self.wait_until(enough, timeout, what)

    def settle(self, duration=0.5):
        """Pumps for duration seconds (to catch late duplicates); returns
        the signals that arrived meanwhile."""
        before = len(self.items)
        self.pump(scaled(duration))
        return self.items[before:]

    def of(self, member=None, since=0):
        return [s for s in self.items[since:] if member is None or s.member == member]

    def members(self, since=0):
        return [s.member for s in self.items[since:]]

    def clear(self):
        self.items.clear()
        self.prop_changes.clear()

    def mark(self):
        """The current position, for since= arguments."""
        return len(self.items)

    def _summary(self, limit=20):
        shown = ", ".join(repr(s) for s in self.items[-limit:])
        return ("... " if len(self.items) > limit else "") + shown

    # -- calls on the same connection
    def call(self, method, args=None, timeout=10, path=OBJECT_PATH, iface=IFACE,
             signature=None, dest=BUS_NAME):
        """Calls a method; args is a GLib.Variant, or a tuple/list of Python
        values (signature inferred unless given). Returns the reply's values
        as a tuple; raises DBusCallError for D-Bus errors."""
        if args is not None and not isinstance(args, GLib.Variant):
            args = tuple(args)
            args = GLib.Variant(signature or _infer_signature(args), args)
        try:
            r = self.conn.call_sync(dest, path, iface, method, args, None,
                                    Gio.DBusCallFlags.NO_AUTO_START,
                                    int(scaled(timeout) * 1000), None)
        except GLib.Error as e:
            name = Gio.DBusError.get_remote_error(e) or f"{e.domain}:{e.code}"
            msg = e.message or ""
            prefix = f"GDBus.Error:{name}: "
            if msg.startswith(prefix):
                msg = msg[len(prefix):]
            raise DBusCallError(name, msg) from None
        return tuple(r.unpack()) if r is not None else ()

    def get_property(self, path, iface, name, timeout=5):
        (v,) = self.call("Get", GLib.Variant("(ss)", (iface, name)), timeout, path,
                         "org.freedesktop.DBus.Properties")
        return v

    def get_all_properties(self, path=OBJECT_PATH, iface=IFACE, timeout=5):
        (v,) = self.call("GetAll", GLib.Variant("(s)", (iface,)), timeout, path,
                         "org.freedesktop.DBus.Properties")
        return v

    def introspect(self, path=OBJECT_PATH, timeout=5):
        (xml,) = self.call("Introspect", None, timeout, path,
                           "org.freedesktop.DBus.Introspectable")
        return xml

    def name_owner(self, name=BUS_NAME):
        return get_name_owner(self.conn, name)

    def close(self):
        for s in self._subs:
            self.conn.signal_unsubscribe(s)
        self._subs = []
        try:
            self.conn.close_sync(None)
        except GLib.Error:
            pass
        self.pump(0)


# ---------------------------------------------------------------------------
# the Samdock-like Socket.IO server

_MISSING = object()

_CONFIG_KEYS = {
    "token": "token",
    "auth_mode": "authMode",
    "browse_reply": "browseReply",
    "browse_delay_ms": "browseDelayMs",
    "ping_silence": "pingSilence",
}


def make_tls_cert(directory, host="127.0.0.1"):
    """Creates a self-signed certificate for host (IP SAN) with openssl;
    returns (cert_path, key_path)."""
    openssl = shutil.which("openssl")
    if not openssl:
        raise HarnessError("openssl not found")
    directory = Path(directory)
    cert, key = directory / "server.crt", directory / "server.key"
    san = f"IP:{host}" if host.replace(".", "").isdigit() or ":" in host else f"DNS:{host}"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", f"/CN={host}", "-addext", f"subjectAltName={san}",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                   timeout=scaled(30))
    return cert, key


class Server:
    """tests/server/samdock-server.js on 127.0.0.1. Arguments map to its
    command line; .port is the real port once started."""

    def __init__(self, port=0, *, token=DEFAULT_TOKEN, eio3=False, auth_mode=None, recovery_ms=None,
                 ping_interval_ms=None, ping_timeout_ms=None, max_payload=None,
                 tls_cert=None, tls_key=None, demo=False, demo_interval_ms=None,
                 quiet=False, extra_args=(), timeout=15, start=True):
        self.node = os.environ.get("NODE") or shutil.which("node") or "node"
        if not (SERVER_DIR / "node_modules" / "socket.io").is_dir():
            raise HarnessError(f"socket.io is not installed: run `npm ci` in {SERVER_DIR}")
        self.tmpdir = _tmpdir("samdock-server-")
        self.token_file = self.tmpdir / "token"
        self.log_path = self.tmpdir / "server.log"
        self.token = token
        self._write_token(token)
        self.tls = bool(tls_cert)
        self.args = []
        if eio3:
            self.args.append("--eio3")
        if auth_mode:
            self.args += ["--auth-mode", auth_mode]
        if recovery_ms:
            self.args += ["--recovery", str(int(recovery_ms))]
        if ping_interval_ms:
            self.args += ["--ping-interval", str(int(ping_interval_ms))]
        if ping_timeout_ms:
            self.args += ["--ping-timeout", str(int(ping_timeout_ms))]
        if max_payload:
            self.args += ["--max-payload", str(int(max_payload))]
        if tls_cert:
            self.args += ["--tls-cert", str(tls_cert), "--tls-key", str(tls_key)]
        if demo:
            self.args.append("--demo")
            if demo_interval_ms:
                self.args += ["--demo-interval", str(int(demo_interval_ms))]
        if quiet:
            self.args.append("--quiet")
        self.args += list(extra_args)
        self.timeout = timeout
        self.port = port
        self.proc = None
        self.starts = 0
        # no proxies, ever: the control API is on 127.0.0.1
        handlers = [urllib.request.ProxyHandler({})]
        if self.tls:
            handlers.append(urllib.request.HTTPSHandler(context=ssl._create_unverified_context()))
        self._opener = urllib.request.build_opener(*handlers)
        if start:
            self.start()

    def _write_token(self, token):
        fd = os.open(self.token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")

    # -- life cycle
    def start(self, retry_busy_for=5.0):
        """Starts the server (on self.port; 0 picks a free one) and waits for
        its ready line. A busy port (just after a kill) is retried."""
        if self.alive():
            raise HarnessError("server already running")
        d = Deadline(retry_busy_for)
        while True:
            with open(self.log_path, "ab") as log:
                self.proc = _track(subprocess.Popen(
                    [self.node, str(SERVER_JS), "--host", "127.0.0.1", "--port", str(self.port),
                     "--token-file", str(self.token_file), *self.args],
                    cwd=SERVER_DIR, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                    stderr=log, env=_clean_env(), start_new_session=True))
            try:
                line = _read_line(self.proc.stdout.fileno(), Deadline(self.timeout), self.proc,
                                  "samdock-server.js")
                break
            except HarnessError:
                _stop_process(self.proc, signal.SIGKILL, 5)
                self.proc.stdout.close()
                busy = "EADDRINUSE" in self.log()[-2000:]
                if busy and self.port and not d.expired():
                    time.sleep(0.1)
                    continue
                raise HarnessError(f"samdock-server.js did not start; log:\n{self.log()[-4000:]}")
        try:
            ready = json.loads(line)
        except ValueError:
            ready = {}
        if ready.get("ready") is not True or not isinstance(ready.get("port"), int):
            _stop_process(self.proc, signal.SIGKILL)
            raise HarnessError(f"unexpected ready line from samdock-server.js: {line!r}")
        self.port = ready["port"]
        self.starts += 1
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    @property
    def url(self):
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def kill(self, sig=signal.SIGKILL, timeout=10):
        """Sends sig and waits for the exit; returns the exit status."""
        if not self.alive():
            return self.proc.returncode if self.proc else None
        rc = _stop_process(self.proc, sig, timeout)
        self.proc.stdout.close()
        return rc

    def stop(self, timeout=10):
        """SIGTERM (clean shutdown); returns the exit status (0 expected)."""
        return self.kill(signal.SIGTERM, timeout)

    def restart(self, sig=signal.SIGTERM):
        """Stops (with sig) if running, then starts again on the same port."""
        if self.alive():
            self.kill(sig)
        return self.start()

    def cleanup(self):
        if self.proc is not None and self.proc.poll() is None:
            self.kill(signal.SIGKILL)
        shutil.rmtree(self.tmpdir, ignore_errors=True)

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def set_token(self, token):
        """Changes the token the running server accepts (and the one used
        on restart)."""
        self.token = token
        self._write_token(token)
        if self.alive():
            self.config(token=token)

    # -- control API
    def request(self, method, path, body=None, timeout=10):
        data = None if body is None else json.dumps(body).encode("utf-8")
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with self._opener.open(req, timeout=scaled(timeout)) as r:
                return json.loads(r.read().decode("utf-8"))
        except urllib.error.HTTPError as e:
            text = e.read().decode("utf-8", "replace")
            raise HarnessError(f"{method} {path}: HTTP {e.code}: {text}") from None

    def emit(self, event="ActivityAddedEvent", payload=_MISSING, *, stream="activities",
             import_id=None, count=None, args=None, room=None, binary=None, direct=False):
        """Emits event to the room ("activities" or "import:ID"). Without
        payload a realistic one is generated. Returns the reply:
        {"sent": sockets reached, "payloads": [...] when generated}."""
        body = {"stream": stream, "event": event}
        if payload is not _MISSING:
            body["payload"] = payload
        if import_id is not None:
            body["importID"] = import_id
        if count is not None:
            body["count"] = count
        if args is not None:
            body["args"] = list(args)
        if room is not None:
            body["room"] = room
        if binary is not None:
            body["binaryBase64"] = base64.b64encode(binary).decode()
        if direct:
            body["direct"] = True
        return self.request("POST", "/_test/emit", body)

    def raw(self, frame=None, *, binary=None, stream="activities"):
        """Writes one WebSocket frame as is: frame (str) as a text frame, or
        binary (bytes) as a binary frame. Returns the number of clients."""
        body = {"stream": stream}
        if binary is not None:
            body["base64"] = base64.b64encode(binary).decode()
        else:
            body["frame"] = frame
        return self.request("POST", "/_test/raw", body)["sent"]

    def drop(self, stream=None):
        """Destroys the TCP connections (no close frame). Returns the count."""
        return self.request("POST", "/_test/drop", {} if stream is None else {"stream": stream})["sent"]

    def disconnect(self, stream=None):
        """socket.disconnect(true) on every socket: a Socket.IO DISCONNECT."""
        return self.request("POST", "/_test/disconnect",
                            {} if stream is None else {"stream": stream})["sent"]

    def config(self, **kw):
        """token=, auth_mode= ("exception", "connect_error", "http", "http403"),
        browse_reply= ("ack", "event", "both", "none"), browse_delay_ms=,
        ping_silence= (True, False, "existing"). camelCase names work too."""
        body = {}
        for k, v in kw.items():
            body[_CONFIG_KEYS.get(k, k)] = v
        if "token" in body:
            self.token = body["token"]
            self._write_token(self.token)
        return self.request("POST", "/_test/config", body)

    def import_(self, import_id, steps=3, fail=False, interval_ms=None):
        body = {"importID": import_id, "steps": steps, "fail": bool(fail)}
        if interval_ms:
            body["intervalMs"] = interval_ms
        return self.request("POST", "/_test/import", body)

    def stats(self):
        return self.request("GET", "/_test/stats")

    def reset_stats(self):
        return self.request("POST", "/_test/reset-stats", {})

    def wait_stats(self, pred, timeout=15, what="server state"):
        """Polls stats() until pred(stats) is true; returns those stats."""
        last = {}

        def check():
            nonlocal last
            last = self.stats()
            return last if pred(last) else None
        try:
            return wait_until(check, timeout, 0.05, what)
        except HarnessTimeout as e:
            brief = {k: last.get(k) for k in ("connections", "connects", "subscriptions", "rooms",
                                              "recovered", "rejected", "httpRefused")}
            raise HarnessTimeout(f"{e}; last stats: {json.dumps(brief)}") from None

    def wait_subscribed(self, n=1, stream="activities", timeout=15):
        """Waits until n successful subscriptions have been counted on stream
        and someone is in the room; returns the stats."""
        room = "activities" if stream == "activities" else None

        def ok(s):
            if s["subscriptions"][stream] < n:
                return False
            return room is None or s["rooms"].get(room, 0) >= 1
        return self.wait_stats(ok, timeout, f"{n} subscription(s) on {stream}")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()


# ---------------------------------------------------------------------------
# the daemon under test

def daemon_binary():
    b = os.environ.get("SAMDOCK_EVENTD")
    p = Path(b) if b else REPO_ROOT / "build" / "samdock-eventd"
    if not p.is_absolute():
        p = (Path.cwd() / p) if (Path.cwd() / p).exists() else (REPO_ROOT / p)
    return p


def _ini(sections):
    out = []
    for section, keys in sections.items():
        out.append(f"[{section}]")
        for k, v in keys.items():
            out.append(f"{k}={v}")
        out.append("")
    return "\n".join(out)


MEMORY_ERROR_MARKERS = (
    "ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
    "definitely lost in", "indirectly lost in", "Invalid read of", "Invalid write of",
    "Conditional jump or move depends", "Invalid free", "Mismatched free",
)


def memory_error_reports(log):
    """The lines of a daemon log in which ASan, UBSan or valgrind reported
    something, with a little context; "" when there are none."""
    lines = log.splitlines()
    hits = [i for i, line in enumerate(lines) if any(m in line for m in MEMORY_ERROR_MARKERS)]
    return "\n".join("\n".join(lines[i:i + 12]) for i in hits[:5])


class Daemon:
    """Runs samdock-eventd on the private bus:
        samdock-eventd --session --config CONF --url URL --token-file TOKENFILE
                       --log-level debug [extra_args]
    config is a dict of sections ({"Reconnect": {"MaxDelaySec": "1"}}) merged
    over fast test defaults, or a str written as is. stderr+stdout go to
    .log_path. With wait=True (default) the constructor returns once
    app.samdock.Events has an owner."""

    TEST_CONFIG = {
        "Reconnect": {"InitialDelaySec": "0.1", "MaxDelaySec": "1"},
    }

    def __init__(self, bus, server=None, *, url=None, token=_MISSING, config=None,
                 extra_args=(), env=None, binary=None, wait=True, timeout=15,
                 token_file_mode=0o600, log_level="debug"):
        self.bus = bus
        self.binary = Path(binary) if binary else daemon_binary()
        if not self.binary.exists():
            raise HarnessError(
                f"daemon binary {self.binary} does not exist: build it (meson setup build && "
                f"ninja -C build) or set SAMDOCK_EVENTD")
        self.tmpdir = _tmpdir("samdock-eventd-")
        (self.tmpdir / "xdg-config").mkdir()
        self.config_path = self.tmpdir / "eventd.conf"
        self.token_path = self.tmpdir / "token"
        self.log_path = self.tmpdir / "eventd.log"
        if url is None:
            if server is None:
                raise HarnessError("Daemon needs a server or a url")
            url = server.url
        self.url = url
        if token is _MISSING:
            token = server.token if server is not None else DEFAULT_TOKEN
        self.token = token
        if token is not None:
            self.write_token(token, token_file_mode)
        if isinstance(config, str):
            text = config
        else:
            merged = {s: dict(k) for s, k in self.TEST_CONFIG.items()}
            for s, keys in (config or {}).items():
                merged.setdefault(s, {}).update(keys)
            text = _ini(merged)
        self.config_path.write_text(text)
        wrapper = shlex.split(os.environ.get("SAMDOCK_EVENTD_WRAPPER", ""))
        self.argv = wrapper + [str(self.binary), "--session", "--config", str(self.config_path),
                               "--url", url, "--token-file", str(self.token_path),
                               "--log-level", log_level, *extra_args]
        self.env = _clean_env({
            "DBUS_SESSION_BUS_ADDRESS": bus.address,
            "XDG_CONFIG_HOME": str(self.tmpdir / "xdg-config"),
            "XDG_RUNTIME_DIR": str(self.tmpdir),
            "HOME": str(self.tmpdir),
            "SYSTEMD_LOG_LEVEL": "debug",
        })
        if env:
            self.env.update(env)
        self.proc = None
        self._conn = None
        self.stopped_by_test = False
        try:
            self.start(wait=wait, timeout=timeout)
        except BaseException:
            self.cleanup()
            raise

    def write_token(self, token, mode=0o600, atomic=True):
        """(Re)writes the token file: atomically by rename (as most tools
        do; the inode changes), or in place (truncate and write)."""
        if atomic or not self.token_path.exists():
            tmp = self.tmpdir / ".token.new"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            with os.fdopen(fd, "w") as f:
                f.write(token + "\n")
            os.chmod(tmp, mode)
            os.replace(tmp, self.token_path)
        else:
            with open(self.token_path, "r+") as f:
                f.truncate(0)
                f.write(token + "\n")
            os.chmod(self.token_path, mode)
        self.token = token

    def start(self, wait=True, timeout=15):
        if self.alive():
            raise HarnessError("daemon already running")
        self.stopped_by_test = False
        with open(self.log_path, "ab") as log:
            self.proc = _track(subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=self.env,
                cwd=self.tmpdir, start_new_session=True))
        if wait:
            self.wait_ready(timeout)
        return self

    def _bus_conn(self):
        if self._conn is None:
            self._conn = bus_connection(self.bus.address)
        return self._conn

    def wait_ready(self, timeout=15):
        """Waits until app.samdock.Events has an owner on the bus."""
        d = Deadline(timeout)
        conn = self._bus_conn()
        while True:
            if name_has_owner(conn, BUS_NAME):
                return
            if self.proc.poll() is not None:
                raise HarnessError(f"samdock-eventd exited with status {self.proc.returncode} "
                                   f"before taking its bus name; log:\n{self.log()[-6000:]}")
            if d.expired():
                raise HarnessTimeout(f"samdock-eventd did not take {BUS_NAME} within "
                                     f"{scaled(timeout):.0f}s; log:\n{self.log()[-6000:]}")
            time.sleep(0.02)

    def name_owned(self):
        return name_has_owner(self._bus_conn(), BUS_NAME)

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def returncode(self):
        return self.proc.poll() if self.proc else None

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def send_signal(self, sig):
        if sig in (signal.SIGTERM, signal.SIGINT, signal.SIGKILL, signal.SIGQUIT):
            self.stopped_by_test = True
        if self.alive():
            self.proc.send_signal(sig)

    def wait_exit(self, timeout=10):
        """Waits for the process to end by itself; returns its status."""
        try:
            return self.proc.wait(timeout=scaled(timeout))
        except subprocess.TimeoutExpired:
            raise HarnessTimeout(f"samdock-eventd still running after {scaled(timeout):.0f}s") from None

    def stop(self, timeout=10):
        """SIGTERM, wait; returns the exit status (0 for a clean exit).
        Raises HarnessTimeout (after a SIGKILL) when it does not exit in time."""
        if self.proc is None:
            return None
        self.stopped_by_test = True
        if self.proc.poll() is not None:
            return self.proc.returncode
        rc = _stop_process(self.proc, signal.SIGTERM, timeout)
        if rc is None:
            raise HarnessTimeout(f"samdock-eventd ignored SIGTERM for {scaled(timeout):.0f}s "
                                 f"(killed); log tail:\n{self.log()[-3000:]}")
        return rc

    def kill(self, sig=signal.SIGKILL):
        self.stopped_by_test = True
        if self.proc is not None:
            return _stop_process(self.proc, sig, 10)
        return None

    def cleanup(self):
        if self.proc is not None and self.proc.poll() is None:
            _stop_process(self.proc, signal.SIGKILL, 5)
        if self._conn is not None:
            try:
                self._conn.close_sync(None)
            except GLib.Error:
                pass
            self._conn = None
        shutil.rmtree(self.tmpdir, ignore_errors=True)


# ---------------------------------------------------------------------------
# a minimal raw Socket.IO-over-WebSocket client (for testing the server)

class WebSocketClosed(Exception):
    def __init__(self, code=None, reason=""):
        super().__init__(f"WebSocket closed (code {code}, {reason!r})")
        self.code = code
        self.reason = reason


class RawWebSocket:
    """RFC 6455 client, just enough for ws://127.0.0.1: text/binary frames,
    ping/pong, close. recv() returns ("text", str) / ("binary", bytes) and
    raises WebSocketClosed on a close frame or EOF."""

    def __init__(self, port, path, host="127.0.0.1", timeout=10, tls=False):
        self.sock = socket.create_connection((host, port), timeout=scaled(timeout))
        if tls:
            self.sock = ssl._create_unverified_context().wrap_socket(self.sock)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                           "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                break
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1]) if lines and len(lines[0].split()) > 1 else 0
        self.response_head = head.decode("latin-1")
        if self.status != 101:
            # read the body, if any, for the caller
            try:
                self.sock.settimeout(1)
                while True:
                    chunk = self.sock.recv(4096)
                    if not chunk:
                        break
                    self.buf += chunk
            except OSError:
                pass
            self.body = self.buf.decode("utf-8", "replace")
            self.sock.close()
        self.closed = self.status != 101

    def _recv_exact(self, n, deadline):
        while len(self.buf) < n:
            left = deadline.left()
            if left <= 0:
                raise HarnessTimeout("no WebSocket frame in time")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                raise HarnessTimeout("no WebSocket frame in time") from None
            except (ConnectionResetError, BrokenPipeError):
                chunk = b""
            if not chunk:
                self.closed = True
                raise WebSocketClosed(None, "EOF")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv(self, timeout=5, deadline=None):
        d = deadline or Deadline(timeout)
        message, mtype = b"", None
        while True:
            b0, b1 = self._recv_exact(2, d)
            fin, op = b0 & 0x80, b0 & 0x0F
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._recv_exact(2, d))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._recv_exact(8, d))[0]
            data = self._recv_exact(n, d)
            if op == 0x8:
                code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else None
                self.closed = True
                raise WebSocketClosed(code, data[2:].decode("utf-8", "replace"))
            if op == 0x9:
                self._send(0xA, data)
                continue
            if op == 0xA:
                continue
            if op in (0x1, 0x2):
                mtype = "text" if op == 0x1 else "binary"
            message += data
            if fin:
                return (mtype, message.decode("utf-8") if mtype == "text" else message)

    def _send(self, op, payload):
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x80 | op, 0x80 | n)
        elif n < 65536:
            head = struct.pack("!BBH", 0x80 | op, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", 0x80 | op, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(head + mask + masked)

    def send_text(self, s):
        self._send(0x1, s.encode("utf-8"))

    def send_binary(self, b):
        self._send(0x2, bytes(b))

    def close(self):
        if not self.closed:
            try:
                self._send(0x8, struct.pack("!H", 1000))
            except OSError:
                pass
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass


class SioClient:
    """Engine.IO 4 (or 3) + Socket.IO client on a RawWebSocket, answering
    pings itself. recv() returns the next text frame other than a ping, as
    the raw string (e.g. '42["ActivityAddedEvent",{...}]')."""

    def __init__(self, server_port, path="/api/activities/socket.io/", eio=4, auth=None,
                 connect=True, timeout=10, tls=False):
        self.ws = RawWebSocket(server_port, f"{path}?EIO={eio}&transport=websocket",
                               timeout=timeout, tls=tls)
        if self.ws.status != 101:
            raise HarnessError(f"upgrade refused: {self.ws.response_head.splitlines()[0]}")
        self.eio = eio
        self.frames = []      # every frame received, pings included, in order
        kind, opening = self.ws.recv(timeout)
        self.frames.append(opening)
        if not opening.startswith("0"):
            raise HarnessError(f"expected an Engine.IO open packet, got {opening!r}")
        self.open = json.loads(opening[1:])
        self.connect_reply = None
        if connect:
            self.connect(auth, timeout)

    def connect(self, auth=None, timeout=10):
        if self.eio == 3:
            # Engine.IO 3: the server connects "/" by itself
            self.connect_reply = self.recv(timeout)
        else:
            self.send("40" + (json.dumps(auth) if auth is not None else ""))
            self.connect_reply = self.recv(timeout)
        return self.connect_reply

    def send(self, frame):
        self.ws.send_text(frame)

    def emit(self, event, *args, ack_id=None):
        self.send("42" + ("" if ack_id is None else str(ack_id)) +
                  json.dumps([event, *args], ensure_ascii=False))

    def recv(self, timeout=5, skip_pings=True, deadline=None):
        d = deadline or Deadline(timeout)
        while True:
            kind, data = self.ws.recv(deadline=d)
            self.frames.append(data)
            if kind == "text" and skip_pings and data == "2" and self.eio == 4:
                self.send("3")
                continue
            if kind == "text" and skip_pings and data == "3" and self.eio == 3:
                continue
            return data

    def recv_event(self, timeout=5):
        """The next EVENT as (name, [args]); other frames are skipped."""
        d = Deadline(timeout)
        while True:
            f = self.recv(deadline=d)
            if isinstance(f, str) and f.startswith("42"):
                body = f[2:]
                i = 0
                while i < len(body) and body[i].isdigit():
                    i += 1
                arr = json.loads(body[i:])
                return arr[0], arr[1:]

    def close(self):
        self.ws.close()


# ---------------------------------------------------------------------------
# one event end to end

def expect_one(signals, member, since=0, timeout=10, settle=0.5):
    """Waits for one signal member after since and makes sure no second one
    follows within settle seconds; returns it."""
    signals.wait_for(1, timeout, member=member, since=since)
    signals.settle(settle)
    got = signals.of(member, since)
    assert len(got) == 1, f"expected exactly one {member}, got {got}"
    return got[0]


def deliver_and_check(server, signals, event="ActivityAddedEvent", settle=0.5):
    """Emits one generated event and checks it arrives exactly once."""
    mark = signals.mark()
    r = server.emit(event)
    assert r["sent"] == 1, f"the daemon is not subscribed: {r}"
    payload = r["payloads"][0]
    member = ACTIVITY_EVENTS[event][0]
    sig = expect_one(signals, member, mark, settle=settle)
    assert json.loads(sig.args[1]) == payload
    return sig
