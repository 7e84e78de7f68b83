# SPDX-License-Identifier: MIT
"""Test doubles for the resilience tests: things that misbehave on purpose.

    AcceptCloser    a TCP port on 127.0.0.1 that accepts and at once closes
                    every connection, recording when each attempt came
    TcpRelay        a TCP relay on 127.0.0.1 in front of a real server that
                    can cut every connection and refuse new ones for a while,
                    and counts connections (total and at once)
    FakeSioServer   a small Engine.IO 4 / Socket.IO server over a WebSocket
                    written here, which can send any bytes as a frame (invalid
                    UTF-8 in a text frame, fragmented messages) and answer
                    CONNECT or the upgrade in ways a real server would not
    load_corpus()   the bad frames in tests/corpus

Everything listens on 127.0.0.1 only, every thread is a daemon thread that
ends with its socket, and every wait is bounded.
"""

import base64
import hashlib
import json
import os
import re
import socket
import struct
import threading
import time
from pathlib import Path

CORPUS_DIR = Path(__file__).resolve().parents[1] / "corpus"
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _close_quietly(sock):
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def pipe_then_close(src, dst, pair):
    """Copies src to dst until either side ends, then closes both of pair."""
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    for s in pair:
        _close_quietly(s)


def read_http_head(sock, limit):
    """Reads up to the blank line that ends an HTTP request's head (at most
    about limit bytes); None when the socket failed."""
    head = b""
    try:
        while b"\r\n\r\n" not in head and len(head) < limit:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
    except OSError:
        return None
    return head


class _Listener:
    """A listening socket on 127.0.0.1 served by one accept thread."""

    def __init__(self, port=0, rcvbuf=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if rcvbuf:
            # inherited by accepted connections, and fixed: no autotuning
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stopping = False
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()

    def _accept_loop(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conn.settimeout(None)
            self.on_accept(conn)

    def on_accept(self, conn):
        raise NotImplementedError

    def close(self):
        self.stopping = True
        _close_quietly(self.sock)
        self.thread.join(timeout=2)


class AcceptCloser(_Listener):
    """Accepts every connection and closes it at once: to a client each
    attempt fails in the handshake. .attempts holds time.monotonic() of
    each accept."""

    def __init__(self, port=0):
        self.attempts = []
        super().__init__(port)

    def on_accept(self, conn):
        self.attempts.append(time.monotonic())
        _close_quietly(conn)


class TcpRelay(_Listener):
    """127.0.0.1:port -> 127.0.0.1:target_port, byte for byte.

    .cut() closes every relayed connection on both sides (the server sees the
    client go away, the client sees the server go away); while .refusing is
    true new connections are accepted and closed at once. .accepted counts
    connections, .max_open the most that were open at the same time."""

    def __init__(self, target_port, port=0):
        self.target_port = target_port
        self.refusing = False
        self.accepted = 0
        self.accept_times = []
        self.open = 0
        self.max_open = 0
        self.pairs = []
        self.lock = threading.Lock()
        super().__init__(port)

    def on_accept(self, conn):
        with self.lock:
            self.accepted += 1
            self.accept_times.append(time.monotonic())
            if self.refusing:
                _close_quietly(conn)
                return
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            upstream.settimeout(None)
        except OSError:
            _close_quietly(conn)
            return
        pair = (conn, upstream)
        with self.lock:
            self.pairs.append(pair)
            self.open += 1
            self.max_open = max(self.max_open, self.open)
        done = threading.Event()
        for a, b in ((conn, upstream), (upstream, conn)):
            threading.Thread(target=self._pipe, args=(a, b, pair, done), daemon=True).start()

    def _pipe(self, src, dst, pair, done):
        pipe_then_close(src, dst, pair)
        with self.lock:
            if not done.is_set():
                done.set()
                self.open -= 1
                if pair in self.pairs:
                    self.pairs.remove(pair)

    def cut(self):
        with self.lock:
            pairs = list(self.pairs)
        for pair in pairs:
            for s in pair:
                _close_quietly(s)
        return len(pairs)

    def close(self):
        self.cut()
        super().close()


# ---------------------------------------------------------------------------
# a fake Socket.IO server


def ws_frame(opcode, payload, fin=True):
    """One unmasked (server to client) WebSocket frame."""
    n = len(payload)
    b0 = (0x80 if fin else 0) | opcode
    if n < 126:
        head = struct.pack("!BB", b0, n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, 126, n)
    else:
        head = struct.pack("!BBQ", b0, 127, n)
    return head + payload


class FakeConnection:
    """One client of FakeSioServer."""

    def __init__(self, server, sock, request):
        self.server = server
        self.sock = sock
        self.request = request
        self.lock = threading.Lock()
        self.closed = False
        self.received = []          # text frames from the client, in order
        self.connected = False      # we answered its CONNECT
        self.subscribed = False
        self.pongs = 0
        self.opened_at = time.monotonic()
        self.closed_at = None
        self.silent = False         # pings are no longer sent
        self.deaf = threading.Event()   # set: nothing more is read from the client

    def send_raw(self, data):
        with self.lock:
            if self.closed:
                return False
            try:
                self.sock.sendall(data)
                return True
            except OSError:
                self.closed = True
                return False

    def send_text(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        return self.send_raw(ws_frame(0x1, data))

    def send_binary(self, data):
        return self.send_raw(ws_frame(0x2, bytes(data)))

    def send_fragmented(self, data, parts, binary=False, ping_between=False):
        """One message in `parts` WebSocket frames (a first frame and
        continuations), optionally with a ping control frame between them."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        size = max(1, -(-len(data) // parts))
        chunks = [data[i:i + size] for i in range(0, len(data), size)] or [b""]
        out = b""
        for i, chunk in enumerate(chunks):
            opcode = (0x2 if binary else 0x1) if i == 0 else 0x0
            out += ws_frame(opcode, chunk, fin=(i == len(chunks) - 1))
            if ping_between and i < len(chunks) - 1:
                out += ws_frame(0x9, b"mid")
        return self.send_raw(out)

    def emit(self, name, *args):
        return self.send_text("42" + json.dumps([name, *args], ensure_ascii=False))

    def close(self):
        with self.lock:
            self.closed = True
        _close_quietly(self.sock)

    # -- reading
    def _recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return buf

    def read_loop(self):
        message, mtype = b"", None
        try:
            while True:
                while self.deaf.is_set() and not self.closed:
                    time.sleep(0.05)
                b0, b1 = self._recv_exact(2)
                op, n = b0 & 0x0F, b1 & 0x7F
                if n == 126:
                    n = struct.unpack("!H", self._recv_exact(2))[0]
                elif n == 127:
                    n = struct.unpack("!Q", self._recv_exact(8))[0]
                mask = self._recv_exact(4) if b1 & 0x80 else b"\0\0\0\0"
                data = bytes(c ^ mask[i % 4] for i, c in enumerate(self._recv_exact(n)))
                if op == 0x8:
                    self.send_raw(ws_frame(0x8, data[:2]))
                    break
                if op == 0x9:
                    self.send_raw(ws_frame(0xA, data))
                    continue
                if op == 0xA:
                    continue
                if op in (0x1, 0x2):
                    mtype = op
                message += data
                if not b0 & 0x80:
                    continue
                if mtype == 0x1:
                    self.on_text(message.decode("utf-8", "replace"))
                message = b""
        except (EOFError, OSError):
            pass
        self.close()
        self.server.on_closed(self)

    def on_text(self, text):
        self.received.append(text)
        srv = self.server
        if text.startswith("3"):
            self.pongs += 1
        elif text.startswith("40") and not self.connected:
            srv.connect_frames.append(text)
            if srv.connect_reply is not None:
                self.connected = True
                self.send_text(srv.connect_reply)
        elif text.startswith("42"):
            body = re.sub(r"^42\d*", "", text)
            try:
                name = json.loads(body)[0]
            except (ValueError, IndexError, KeyError, TypeError):
                return
            if name == "activities":
                self.subscribed = True
                with srv.cond:
                    srv.subscriptions += 1
                    srv.cond.notify_all()


class FakeSioServer(_Listener):
    """An Engine.IO 4 / Socket.IO 4 server that does just enough: answers
    the upgrade, sends the open packet, pings every ping_interval_ms,
    answers CONNECT with connect_reply (None: never) and counts the
    `activities` subscriptions. With http_status set it refuses the upgrade
    with that status, http_headers (lines such as "Location: ...") and
    http_body instead.

    .current is the newest connection; .attempts holds the times of all
    accepts; .max_open the most connections that were open at once."""

    def __init__(self, ping_interval_ms=25000, ping_timeout_ms=20000,
                 connect_reply='40{"sid":"fake-sid-1"}', http_status=None, http_body="",
                 http_headers=(), rcvbuf=None):
        self.ping_interval_ms = ping_interval_ms
        self.ping_timeout_ms = ping_timeout_ms
        self.connect_reply = connect_reply
        self.http_status = http_status
        self.http_body = http_body
        self.http_headers = http_headers
        self.attempts = []
        self.requests = []
        self.connect_frames = []
        self.connections = []
        self.history = []           # every connection ever, for overlap checks
        self.current = None
        self.subscriptions = 0
        self.open = 0
        self.max_open = 0
        self.cond = threading.Condition()
        super().__init__(rcvbuf=rcvbuf)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def on_accept(self, conn):
        self.attempts.append(time.monotonic())
        threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, sock):
        sock.settimeout(10)
        head = read_http_head(sock, 65536) or b""
        lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        request = {"line": lines[0] if lines else "", "headers": headers}
        self.requests.append(request)
        if self.http_status is not None:
            body = self.http_body.encode()
            try:
                extra = "".join(f"{h}\r\n" for h in self.http_headers)
                sock.sendall(f"HTTP/1.1 {self.http_status} Refused\r\nConnection: close\r\n"
                             f"{extra}Content-Type: application/json\r\n"
                             f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            except OSError:
                pass
            _close_quietly(sock)
            return
        key = headers.get("sec-websocket-key", "")
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        try:
            sock.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                          f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n")
                         .encode())
        except OSError:
            _close_quietly(sock)
            return
        sock.settimeout(None)
        conn = FakeConnection(self, sock, request)
        with self.cond:
            self.connections.append(conn)
            self.history.append(conn)
            self.current = conn
            self.open += 1
            self.max_open = max(self.max_open, self.open)
            self.cond.notify_all()
        conn.send_text("0" + json.dumps({
            "sid": f"fake-eio-{len(self.attempts)}", "upgrades": [],
            "pingInterval": self.ping_interval_ms, "pingTimeout": self.ping_timeout_ms,
            "maxPayload": 1000000}))
        threading.Thread(target=self._pinger, args=(conn,), daemon=True).start()
        conn.read_loop()

    def _pinger(self, conn):
        while not conn.closed and not self.stopping:
            time.sleep(self.ping_interval_ms / 1000)
            if conn.silent:
                continue
            if not conn.send_text("2"):
                return

    def on_closed(self, conn):
        with self.cond:
            if conn.closed_at is None:
                conn.closed_at = time.monotonic()
            if conn in self.connections:
                self.connections.remove(conn)
                self.open -= 1
            self.cond.notify_all()

    def wait_subscribed(self, n=1, timeout=15):
        """Waits for the n-th `activities` subscription; returns the
        connection it came on."""
        end = time.monotonic() + timeout
        with self.cond:
            while self.subscriptions < n:
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"fake server: {self.subscriptions} subscription(s), "
                                       f"wanted {n}; {len(self.attempts)} attempt(s)")
                self.cond.wait(min(left, 0.2))
            return self.current

    def longest_overlap(self):
        """The longest time (s) that two connections were open together."""
        now = time.monotonic()
        spans = [(c.opened_at, c.closed_at or now) for c in list(self.history)]
        worst = 0.0
        for i, (a0, a1) in enumerate(spans):
            for b0, b1 in spans[i + 1:]:
                worst = max(worst, min(a1, b1) - max(a0, b0))
        return worst

    def close(self):
        super().close()
        for conn in list(self.connections):
            conn.close()


# ---------------------------------------------------------------------------
# the corpus

class CorpusCase:
    """One bad input: frames [(kind, bytes)], kind "text" or "binary"."""

    def __init__(self, name, frames):
        self.name = name
        self.frames = frames

    def __repr__(self):
        return f"CorpusCase({self.name!r}, {len(self.frames)} frame(s))"


def load_corpus(directory=CORPUS_DIR):
    """Every case in tests/corpus: NAME.text / NAME.bin is one text / binary
    frame with the file's bytes as they are; NAME.1.text, NAME.2.bin, ... are
    the frames of one case sent in that order. Files starting with '_' or
    ending in .md are not cases."""
    groups = {}
    for p in sorted(directory.iterdir()):
        if p.name.startswith(("_", ".")) or p.suffix not in (".text", ".bin"):
            continue
        kind = "text" if p.suffix == ".text" else "binary"
        stem = p.name[:-len(p.suffix)]
        m = re.fullmatch(r"(.+)\.(\d+)", stem)
        name, order = (m.group(1), int(m.group(2))) if m else (stem, 0)
        groups.setdefault(name, []).append((order, kind, p.read_bytes()))
    return [CorpusCase(name, [(k, data) for _, k, data in sorted(parts, key=lambda x: x[0])])
            for name, parts in sorted(groups.items())]


def send_case(conn, case):
    for kind, data in case.frames:
        if kind == "text":
            conn.send_text(data)
        else:
            conn.send_binary(data)


def pick_unused_port():
    """A TCP port on 127.0.0.1 that nothing listens on (just now)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def random_id(prefix="id"):
    return f"{prefix}-{os.urandom(6).hex()}"


# ---------------------------------------------------------------------------
# daemons started by the tests themselves

def finish_daemons(daemons, test_failed):
    """Stops each daemon the way the conftest fixture does: a clean SIGTERM
    must exit 0, and no memory checker (ASan, UBSan, valgrind) may have
    reported anything. Prints the logs when the test failed. Returns a
    failure message, or None."""
    import harness

    problems = []
    for i, d in enumerate(daemons):
        if test_failed:
            print(f"--- samdock-eventd #{i} log (tail) ---\n{d.log()[-20000:]}")
        try:
            died = d.returncode()
            if died is not None and not d.stopped_by_test:
                problems.append(f"samdock-eventd #{i} died during the test with status {died}")
            elif d.alive():
                code = d.stop(timeout=harness.scaled(20))
                if code != 0:
                    problems.append(f"samdock-eventd #{i} exited with status {code} on SIGTERM")
            reports = harness.memory_error_reports(d.log())
            if reports:
                problems.append(f"memory checker reports for samdock-eventd #{i}:\n{reports}")
        except harness.HarnessError as e:
            problems.append(str(e))
        finally:
            d.cleanup()
    if problems and not test_failed:
        tails = "\n".join(f"--- #{i} ---\n{d.log()[-3000:]}" for i, d in enumerate(daemons))
        return "\n".join(problems) + "\n" + tails
    return "\n".join(problems) or None
