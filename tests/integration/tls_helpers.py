# SPDX-License-Identifier: MIT
"""Helpers for test_tls.py: a small PKI made with the openssl CLI, an HTTP
CONNECT proxy, and a TLS front that records the SNI a client sends.

    Pki(directory)      a CA, and leaf certificates it signs (or self-signed)
    ConnectProxy()      HTTP CONNECT proxy on 127.0.0.1 that logs each CONNECT
                        and tunnels to loopback targets only
    SniFront(...)       TLS on 127.0.0.1 with a given certificate; records the
                        server_name of each handshake and relays the plain
                        bytes to a server on 127.0.0.1

Everything listens on 127.0.0.1 and talks to 127.0.0.1 only.
"""

import select
import shutil
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import harness
from resilience_helpers import _Listener, pipe_then_close, read_http_head

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")


def _openssl(*args, cwd=None):
    exe = shutil.which("openssl")
    if not exe:
        raise harness.HarnessError("openssl not found")
    subprocess.run([exe, *args], check=True, cwd=cwd, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE, timeout=harness.scaled(60))


class Pki:
    """A throw-away CA in directory. leaf() makes a key and a certificate
    signed by it (or self-signed) for the given subjectAltName entries."""

    def __init__(self, directory):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca_key = self.dir / "ca.key"
        self.ca_cert = self.dir / "ca.crt"
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                 "-subj", "/CN=samdock-eventd test CA", "-keyout", str(self.ca_key),
                 "-out", str(self.ca_cert),
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    def leaf(self, name, cn, sans, self_signed=False):
        """Returns (cert, key) for CN=cn with subjectAltName=sans (for
        example "IP:127.0.0.1,DNS:localhost")."""
        key = self.dir / f"{name}.key"
        cert = self.dir / f"{name}.crt"
        if self_signed:
            _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                     "-subj", f"/CN={cn}", "-addext", f"subjectAltName={sans}",
                     "-keyout", str(key), "-out", str(cert))
            return cert, key
        csr = self.dir / f"{name}.csr"
        ext = self.dir / f"{name}.ext"
        ext.write_text(f"subjectAltName={sans}\nbasicConstraints=CA:FALSE\n"
                       "keyUsage=digitalSignature,keyEncipherment\n"
                       "extendedKeyUsage=serverAuth\n")
        _openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}",
                 "-keyout", str(key), "-out", str(csr))
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(self.ca_cert),
                 "-CAkey", str(self.ca_key), "-CAcreateserial", "-days", "2",
                 "-extfile", str(ext), "-out", str(cert))
        return cert, key


def _pipe(src, dst, done):
    pipe_then_close(src, dst, (src, dst))
    done.set()


def _relay(a, b):
    done = threading.Event()
    threading.Thread(target=_pipe, args=(a, b, done), daemon=True).start()
    threading.Thread(target=_pipe, args=(b, a, done), daemon=True).start()


class _Server(_Listener):
    """A loopback listener serving each connection in its own thread."""

    def on_accept(self, conn):
        threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def handle(self, conn):
        raise NotImplementedError


class ConnectProxy(_Server):
    """An HTTP proxy that understands CONNECT only. .log holds one entry per
    request: {"method", "target", "time"}. Targets other than loopback are
    refused with 403 (nothing here ever leaves the machine)."""

    def __init__(self):
        self.log = []
        super().__init__()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def connects(self):
        return [e for e in self.log if e["method"] == "CONNECT"]

    def handle(self, conn):
        conn.settimeout(10)
        head = read_http_head(conn, 16384)
        if head is None:
            conn.close()
            return
        head, _, rest = head.partition(b"\r\n\r\n")
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = line.split()
        method = parts[0] if parts else ""
        target = parts[1] if len(parts) > 1 else ""
        self.log.append({"method": method, "target": target, "time": time.monotonic()})
        host, _, port = target.rpartition(":")
        if method != "CONNECT" or not port.isdigit():
            conn.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n"
                         b"Connection: close\r\n\r\n")
            conn.close()
            return
        if host not in LOOPBACK_NAMES:
            conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n"
                         b"Connection: close\r\n\r\n")
            conn.close()
            return
        try:
            upstream = socket.create_connection(
                ("::1" if host in ("::1", "[::1]") else "127.0.0.1", int(port)), timeout=5)
        except OSError:
            conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            conn.close()
            return
        conn.settimeout(None)
        upstream.settimeout(None)
        conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        if rest:
            upstream.sendall(rest)
        _relay(conn, upstream)


class SniFront(_Server):
    """TLS with cert/key on 127.0.0.1; relays the decrypted stream to
    127.0.0.1:target_port. .server_names holds the SNI names clients sent
    and .handshakes counts completed handshakes (with or without SNI)."""

    def __init__(self, cert, key, target_port):
        self.target_port = target_port
        self.server_names = []
        self.handshakes = 0
        self.handshake_errors = []
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(str(cert), str(key))
        self.ctx.set_alpn_protocols(["http/1.1"])
        self.ctx.sni_callback = self._on_sni
        super().__init__()

    def _on_sni(self, sslobj, server_name, ctx):
        self.server_names.append(server_name)
        return None

    def handle(self, conn):
        conn.settimeout(10)
        try:
            tls = self.ctx.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError) as e:
            self.handshake_errors.append(str(e))
            conn.close()
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
        except OSError:
            tls.close()
            return
        self.handshakes += 1
        # One thread for both directions: an SSL object must not be read
        # and written from two threads at once.
        tls.setblocking(False)
        upstream.setblocking(False)
        try:
            while not self.stopping:
                if not tls.pending():
                    ready, _, _ = select.select([tls, upstream], [], [], 0.5)
                else:
                    ready = [tls]
                for src, dst in ((tls, upstream), (upstream, tls)):
                    if src not in ready:
                        continue
                    try:
                        data = src.recv(65536)
                    except (ssl.SSLWantReadError, BlockingIOError):
                        continue
                    if not data:
                        raise EOFError
                    dst.setblocking(True)
                    dst.sendall(data)
                    dst.setblocking(False)
        except (EOFError, OSError, ssl.SSLError):
            pass
        for s in (tls, upstream):
            try:
                s.close()
            except OSError:
                pass
