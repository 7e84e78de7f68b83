# SPDX-License-Identifier: MIT
"""TLS and proxies, for real: a CA made here with openssl, the node server
over HTTPS with certificates from it, certificates that must be refused
(self-signed, wrong host name), the SNI the daemon sends, and an HTTP
CONNECT proxy on 127.0.0.1 chosen by Proxy=, HTTPS_PROXY/HTTP_PROXY or
bypassed by NO_PROXY.

Certificates are always verified (DESIGN.md): no test here turns that off.
"""

import re
import time

import pytest

import harness
from harness import STREAM_IFACE, STREAM_PATH_PREFIX
from tls_helpers import ConnectProxy, Pki, SniFront

ACTIVITIES = STREAM_PATH_PREFIX + "activities"
FAST = {"Reconnect": {"InitialDelaySec": "0.1", "MaxDelaySec": "1"}}


@pytest.fixture
def pki(tmp_path):
    return Pki(tmp_path / "pki")


@pytest.fixture
def servers():
    """Node servers started by a test; cleaned up after it."""
    made = []

    def start(**kw):
        s = harness.Server(**kw)
        made.append(s)
        return s
    yield start
    for s in made:
        s.cleanup()


@pytest.fixture
def proxy():
    p = ConnectProxy()
    yield p
    p.close()


def stream_props(signals):
    return signals.get_all_properties(ACTIVITIES, STREAM_IFACE)



def refused(server, signals, what_pattern, seconds=3.0):
    """The daemon must not get through: no CONNECT reaches the server, the
    stream is not connected, and LastError matches what_pattern."""
    def has_error(_):
        p = stream_props(signals)
        return p if p["LastError"] else None
    props = signals.wait_until(has_error, 10, "a LastError")
    signals.settle(seconds)
    props = stream_props(signals)
    assert props["State"] != "connected"
    st = server.stats()
    assert st["connects"]["activities"] == 0, "a CONNECT got through a refused certificate"
    assert re.search(what_pattern, props["LastError"], re.I), \
        f"LastError does not say why: {props['LastError']!r}"
    return props


def test_custom_ca_file_works(pki, servers, spawn, signals):
    cert, key = pki.leaf("server", "127.0.0.1", "IP:127.0.0.1,DNS:localhost")
    s = servers(tls_cert=cert, tls_key=key)
    spawn(f"https://127.0.0.1:{s.port}", extra_args=["--ca-file", str(pki.ca_cert)])
    s.wait_subscribed(1)
    harness.deliver_and_check(s, signals)
    assert stream_props(signals)["Url"].startswith("wss://127.0.0.1:")


def test_ca_file_from_the_config_file(pki, servers, spawn, signals):
    cert, key = pki.leaf("server", "127.0.0.1", "IP:127.0.0.1")
    s = servers(tls_cert=cert, tls_key=key)
    spawn(f"https://127.0.0.1:{s.port}",
          config={"Server": {"CAFile": str(pki.ca_cert)}, **FAST})
    s.wait_subscribed(1)
    harness.deliver_and_check(s, signals)


CERT_WORDS = r"certif|verif|self[- ]?signed|issuer|trust"


def test_self_signed_certificate_not_in_ca_file_is_refused(pki, servers, spawn, signals,
                                                          tmp_path):
    cert, key = pki.leaf("selfsigned", "127.0.0.1", "IP:127.0.0.1", self_signed=True)
    s = servers(tls_cert=cert, tls_key=key)
    d = spawn(f"https://127.0.0.1:{s.port}", extra_args=["--ca-file", str(pki.ca_cert)])
    refused(s, signals, CERT_WORDS)
    assert d.alive()


def test_certificate_without_ca_file_is_refused(pki, servers, spawn, signals):
    """Signed by our CA, but the daemon trusts only the system store."""
    cert, key = pki.leaf("server", "127.0.0.1", "IP:127.0.0.1")
    s = servers(tls_cert=cert, tls_key=key)
    spawn(f"https://127.0.0.1:{s.port}")
    refused(s, signals, CERT_WORDS)


HOST_WORDS = r"host|name|mismatch|match"


def test_certificate_for_another_ip_host_is_refused(pki, servers, spawn, signals):
    """A valid chain, but for other.example: connecting to 127.0.0.1 must
    fail the host name (IP) check."""
    cert, key = pki.leaf("other", "other.example", "DNS:other.example")
    s = servers(tls_cert=cert, tls_key=key)
    spawn(f"https://127.0.0.1:{s.port}", extra_args=["--ca-file", str(pki.ca_cert)])
    refused(s, signals, HOST_WORDS)


def test_certificate_for_another_host_name_is_refused(pki, servers, spawn, signals):
    """The same by name: the daemon connects to localhost, the certificate
    is for other.example."""
    cert, key = pki.leaf("other", "other.example", "DNS:other.example")
    s = servers()
    front = SniFront(cert, key, s.port)
    try:
        spawn(f"https://localhost:{front.port}", extra_args=["--ca-file", str(pki.ca_cert)])
        refused(s, signals, HOST_WORDS)
    finally:
        front.close()


def test_sni_is_sent_and_host_name_verified(pki, servers, spawn, signals):
    """Through a TLS front that records the client's SNI: the daemon names
    the host it connects to, and a certificate for that name works."""
    cert, key = pki.leaf("localhost", "localhost", "DNS:localhost")
    s = servers()
    front = SniFront(cert, key, s.port)
    try:
        spawn(f"https://localhost:{front.port}", extra_args=["--ca-file", str(pki.ca_cert)])
        s.wait_subscribed(1)
        harness.deliver_and_check(s, signals)
        assert front.handshakes >= 1
        assert front.server_names == ["localhost"] * front.handshakes, \
            f"SNI sent: {front.server_names} in {front.handshakes} handshake(s)"
    finally:
        front.close()


# ---------------------------------------------------------------------------
# proxies

def connects_to(proxy, port):
    return [e for e in proxy.connects() if e["target"].endswith(f":{port}")]


def test_proxy_setting_tunnels_plain_websocket(servers, proxy, spawn, signals):
    s = servers()
    spawn(s.url, extra_args=["--proxy", proxy.url])
    s.wait_subscribed(1)
    harness.deliver_and_check(s, signals)
    assert connects_to(proxy, s.port), f"no CONNECT at the proxy: {proxy.log}"
    assert len(connects_to(proxy, s.port)) == 1


def test_proxy_setting_tunnels_tls(pki, servers, proxy, spawn, signals):
    cert, key = pki.leaf("server", "127.0.0.1", "IP:127.0.0.1")
    s = servers(tls_cert=cert, tls_key=key)
    spawn(f"https://127.0.0.1:{s.port}",
          config={"Server": {"Proxy": proxy.url, "CAFile": str(pki.ca_cert)}, **FAST})
    s.wait_subscribed(1)
    harness.deliver_and_check(s, signals)
    assert [e["target"] for e in proxy.connects()] == [f"127.0.0.1:{s.port}"]


def test_https_proxy_from_the_environment(pki, servers, proxy, spawn, signals):
    cert, key = pki.leaf("server", "127.0.0.1", "IP:127.0.0.1")
    s = servers(tls_cert=cert, tls_key=key)
    spawn(f"https://127.0.0.1:{s.port}", extra_args=["--ca-file", str(pki.ca_cert)],
          env={"HTTPS_PROXY": proxy.url})
    s.wait_subscribed(1)
    harness.deliver_and_check(s, signals)
    assert connects_to(proxy, s.port), f"HTTPS_PROXY was not used: {proxy.log}"


def test_lower_case_https_proxy_from_the_environment(pki, servers, proxy, spawn, signals):
    cert, key = pki.leaf("server", "127.0.0.1", "IP:127.0.0.1")
    s = servers(tls_cert=cert, tls_key=key)
    spawn(f"https://127.0.0.1:{s.port}", extra_args=["--ca-file", str(pki.ca_cert)],
          env={"https_proxy": proxy.url})
    s.wait_subscribed(1)
    harness.deliver_and_check(s, signals)
    assert connects_to(proxy, s.port), f"https_proxy was not used: {proxy.log}"


def test_http_proxy_from_the_environment_for_ws(servers, proxy, spawn, signals):
    s = servers()
    spawn(s.url, env={"HTTP_PROXY": proxy.url})
    s.wait_subscribed(1)
    harness.deliver_and_check(s, signals)
    assert connects_to(proxy, s.port), f"HTTP_PROXY was not used: {proxy.log}"


@pytest.mark.parametrize("no_proxy", ["127.0.0.1", "localhost,127.0.0.1", "*",
                                      "example.com, 127.0.0.1:443"])
def test_no_proxy_bypasses_the_proxy(pki, servers, proxy, spawn, signals, no_proxy):
    cert, key = pki.leaf("server", "127.0.0.1", "IP:127.0.0.1")
    s = servers(tls_cert=cert, tls_key=key)
    spawn(f"https://127.0.0.1:{s.port}", extra_args=["--ca-file", str(pki.ca_cert)],
          env={"HTTPS_PROXY": proxy.url, "NO_PROXY": no_proxy})
    s.wait_subscribed(1)
    harness.deliver_and_check(s, signals)
    assert proxy.log == [], f"NO_PROXY={no_proxy!r} but the proxy saw {proxy.log}"


def test_no_proxy_for_another_host_keeps_the_proxy(pki, servers, proxy, spawn, signals):
    cert, key = pki.leaf("server", "127.0.0.1", "IP:127.0.0.1")
    s = servers(tls_cert=cert, tls_key=key)
    spawn(f"https://127.0.0.1:{s.port}", extra_args=["--ca-file", str(pki.ca_cert)],
          env={"HTTPS_PROXY": proxy.url, "NO_PROXY": "example.com,127.0.0.10"})
    s.wait_subscribed(1)
    harness.deliver_and_check(s, signals)
    assert connects_to(proxy, s.port)


def test_certificate_is_verified_through_the_proxy(pki, servers, proxy, spawn, signals):
    """A proxy is no excuse to skip verification."""
    cert, key = pki.leaf("selfsigned", "127.0.0.1", "IP:127.0.0.1", self_signed=True)
    s = servers(tls_cert=cert, tls_key=key)
    spawn(f"https://127.0.0.1:{s.port}", extra_args=["--proxy", proxy.url,
                                                     "--ca-file", str(pki.ca_cert)])
    refused(s, signals, CERT_WORDS)
    assert connects_to(proxy, s.port), "the proxy was not even used"


def test_proxy_down_is_reported_and_retried(servers, spawn, signals):
    """A proxy that is not there: a LastError and backoff, never a direct
    connection around it."""
    s = servers()
    p = ConnectProxy()
    port = p.port
    p.close()
    spawn(s.url, extra_args=["--proxy", f"http://127.0.0.1:{port}"])
    signals.wait_until(lambda _: stream_props(signals)["LastError"], 10, "a LastError")
    assert stream_props(signals)["State"] != "connected"
    time.sleep(0.5)
    assert s.stats()["connects"]["activities"] == 0
