# SPDX-License-Identifier: MIT
"""A link where packets silently vanish: the server runs in a network
namespace made here, behind a veth pair; the daemon stays outside. Then
the namespace drops every packet of the connection (nftables), or its end
of the link goes down. No RST, no FIN: only the Engine.IO ping deadline
(pingInterval + pingTimeout) can tell the daemon, and it must, instead of
waiting for TCP's minutes. Once the link is back, it must reconnect and
deliver what comes next exactly once.

Needs root and `ip` (iproute2); the nftables case needs `nft`. Without
them the tests are skipped with the reason. The namespace, the veth pair
and the safety route are always removed afterwards.

Addresses: a /30 out of 198.18.0.0/15 (RFC 2544, for benchmarking test
networks) that nothing on this machine uses, checked first. An
`unreachable` route for the surrounding /24 makes sure that no packet for
it can ever take the default route, even while the veth link is down.
"""

import ipaddress
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

import harness
from harness import STREAM_IFACE, STREAM_PATH_PREFIX
from resilience_helpers import finish_daemons

ACTIVITIES = STREAM_PATH_PREFIX + "activities"
PING_INTERVAL_MS = 1000
PING_TIMEOUT_MS = 1000
DEADLINE = (PING_INTERVAL_MS + PING_TIMEOUT_MS) / 1000


def run(*argv, check=True):
    return subprocess.run(argv, check=check, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=harness.scaled(20))


def used_networks():
    """Every IPv4 network this machine has an address or a route in."""
    nets = []
    for line in run("ip", "-4", "-o", "addr", "show").stdout.splitlines():
        parts = line.split()
        if "inet" in parts:
            nets.append(ipaddress.ip_network(parts[parts.index("inet") + 1], strict=False))
    for line in run("ip", "-4", "route", "show", "table", "all").stdout.splitlines():
        first = line.split()[0] if line.split() else ""
        if first in ("unreachable", "blackhole", "prohibit", "local", "broadcast"):
            first = line.split()[1]
        try:
            net = ipaddress.ip_network(first, strict=False)
        except ValueError:
            continue
        if net.prefixlen > 0:
            nets.append(net)
    return nets


def free_slash24():
    used = used_networks()
    for third in range(213, 256):
        cand = ipaddress.ip_network(f"198.18.{third}.0/24")
        if not any(cand.overlaps(n) for n in used):
            return cand
    return None


class Link:
    """A namespace with a veth pair to the root namespace: host side
    .host_ip, namespace side .ns_ip."""

    def __init__(self):
        if os.geteuid() != 0:
            pytest.skip("network namespaces need root")
        if not shutil.which("ip"):
            pytest.skip("`ip` (iproute2) is not installed")
        tag = f"{os.getpid() % 100000}"
        self.ns = f"sdk-netns-{tag}"
        self.host_if = f"sdkh{tag}"
        self.ns_if = f"sdkn{tag}"
        self.safety = None
        self.created = False
        r = run("ip", "netns", "add", self.ns, check=False)
        if r.returncode != 0:
            pytest.skip(f"cannot create a network namespace: {r.stderr.strip()}")
        self.created = True
        try:
            net = free_slash24()
            if net is None:
                pytest.skip("no unused /24 in 198.18.213.0-198.18.255.0 for the test link")
            hosts = list(net.hosts())
            self.host_ip, self.ns_ip = str(hosts[0]), str(hosts[1])
            self.safety = str(net)
            run("ip", "route", "add", "unreachable", self.safety)
            run("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if,
                "netns", self.ns)
            run("ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
            run("ip", "link", "set", self.host_if, "up")
            self.ns_run("ip", "addr", "add", f"{self.ns_ip}/30", "dev", self.ns_if)
            self.ns_run("ip", "link", "set", self.ns_if, "up")
            self.ns_run("ip", "link", "set", "lo", "up")
        except BaseException:
            self.remove()
            raise

    def ns_run(self, *argv, check=True):
        return run("ip", "netns", "exec", self.ns, *argv, check=check)

    def drop_with_nft(self, port):
        """Every packet to or from port in the namespace vanishes."""
        self.ns_run("nft", "add", "table", "inet", "sdktest")
        for chain, hook, match in (("in", "input", "dport"), ("out", "output", "sport")):
            self.ns_run("nft", "add", "chain", "inet", "sdktest", chain,
                        f"{{ type filter hook {hook} priority 0; policy accept; }}")
            self.ns_run("nft", "add", "rule", "inet", "sdktest", chain, "tcp", match,
                        str(port), "drop")

    def undrop_with_nft(self):
        self.ns_run("nft", "delete", "table", "inet", "sdktest", check=False)

    def set_ns_link(self, up):
        self.ns_run("ip", "link", "set", self.ns_if, "up" if up else "down")

    def remove(self):
        if self.created:
            run("ip", "netns", "del", self.ns, check=False)      # takes the veth pair along
            run("ip", "link", "del", self.host_if, check=False)
            self.created = False
        if self.safety:
            run("ip", "route", "del", "unreachable", self.safety, check=False)
            self.safety = None


class NetnsServer(harness.Server):
    """The node test server inside the namespace, on its veth address."""

    def __init__(self, link, **kw):
        self.link = link
        super().__init__(extra_args=["--host", link.ns_ip], start=False, **kw)
        node = shutil.which(self.node) or self.node
        self.wrapper = Path(tempfile.mkdtemp(prefix="samdock-netns-")) / "node-in-netns"
        self.wrapper.write_text(f"#!/bin/sh\nexec ip netns exec {link.ns} {node} \"$@\"\n")
        self.wrapper.chmod(0o755)
        self.node = str(self.wrapper)
        self.start()

    @property
    def url(self):
        return f"http://{self.link.ns_ip}:{self.port}"

    def cleanup(self):
        super().cleanup()
        shutil.rmtree(self.wrapper.parent, ignore_errors=True)


@pytest.fixture
def link():
    lk = Link()
    try:
        yield lk
    finally:
        lk.remove()


@pytest.fixture
def ns_server(link):
    s = NetnsServer(link, ping_interval_ms=PING_INTERVAL_MS, ping_timeout_ms=PING_TIMEOUT_MS)
    try:
        yield s
    finally:
        s.cleanup()


@pytest.fixture
def ns_daemon(request, bus, ns_server, signals):
    d = harness.Daemon(bus, ns_server)
    yield d
    rep = getattr(request.node, "rep_call", None)
    problem = finish_daemons([d], rep is not None and rep.failed)
    if problem:
        pytest.fail(problem, pytrace=False)


def stream_props(signals):
    return signals.get_all_properties(ACTIVITIES, STREAM_IFACE)


def wait_reachable(server, timeout=20):
    """Waits until the server's control API answers again over the link
    (a veth end that was down needs a moment for its carrier)."""
    def ok():
        try:
            return server.request("GET", "/_test/health", timeout=1)
        except (harness.HarnessError, OSError):
            return None
    harness.wait_until(ok, timeout, 0.2, "the server to be reachable over the link")



@pytest.mark.time_limit(150)
@pytest.mark.parametrize("how", ["nft-drop", "link-down"])
def test_silently_dropped_packets_are_noticed_by_the_ping_deadline(link, ns_server, signals,
                                                                   ns_daemon, how):
    if how == "nft-drop" and not shutil.which("nft"):
        pytest.skip("`nft` (nftables) is not installed")
    ns_server.wait_subscribed(1)
    harness.deliver_and_check(ns_server, signals)
    assert stream_props(signals)["State"] == "connected"
    mark = signals.mark()

    if how == "nft-drop":
        link.drop_with_nft(ns_server.port)
    else:
        link.set_ns_link(False)
    cut_at = time.monotonic()
    try:
        props = signals.wait_until(
            lambda _: (lambda p: p if p["State"] != "connected" else None)(stream_props(signals)),
            DEADLINE + 5, "the dead link to be noticed")
        noticed = time.monotonic() - cut_at
        assert noticed <= DEADLINE + 1.0, \
            f"took {noticed:.1f} s; pingInterval + pingTimeout is {DEADLINE:.1f} s"
        assert "ping" in props["LastError"].lower(), props["LastError"]
        signals.settle(3.0)         # the link stays dead; the daemon keeps trying
        assert ns_daemon.alive()
        assert stream_props(signals)["State"] != "connected"
    finally:
        if how == "nft-drop":
            link.undrop_with_nft()
        else:
            link.set_ns_link(True)

    # SYNs lost meanwhile are retransmitted after 1, 2, 4, 8 s
    wait_reachable(ns_server)
    ns_server.wait_subscribed(2, timeout=45)
    harness.deliver_and_check(ns_server, signals)
    assert len(signals.of("Resumed", mark)) == 1
    st = ns_server.stats()
    assert st["connections"]["activities"] == 1
    assert stream_props(signals)["State"] == "connected"


@pytest.mark.time_limit(150)
def test_server_killed_behind_a_dead_link(link, ns_server, signals, ns_daemon):
    """The link goes quiet and the server dies meanwhile (it never says
    goodbye); a new server on the same address and port once the link is
    back: the daemon finds it and gets each event once."""
    if not shutil.which("nft"):
        pytest.skip("`nft` (nftables) is not installed")
    ns_server.wait_subscribed(1)
    link.drop_with_nft(ns_server.port)
    try:
        ns_server.kill(signal.SIGKILL)
        signals.wait_until(lambda _: stream_props(signals)["State"] != "connected",
                           DEADLINE + 5, "the dead link to be noticed")
    finally:
        link.undrop_with_nft()
    ns_server.start()
    wait_reachable(ns_server)
    ns_server.wait_subscribed(1, timeout=45)
    harness.deliver_and_check(ns_server, signals)
    assert ns_server.stats()["connections"]["activities"] == 1
