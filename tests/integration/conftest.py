# SPDX-License-Identifier: MIT
"""pytest fixtures for samdock-eventd's integration tests.

Per test: a private dbus-daemon (`bus`), the Samdock-like Socket.IO server
(`server`), a signal collector (`signals`, subscribed before the daemon
starts) and the daemon (`daemon`). Everything is torn down after the test,
stray processes are killed by pid, and on failure the logs of the daemon
and the server are attached to the report.

Markers:
    @pytest.mark.server_args(recovery_ms=60000, eio3=True, ...)   Server(...)
    @pytest.mark.daemon_args(config={...}, extra_args=[...], ...)  Daemon(...)
"""

import signal
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402

TEST_TIME_LIMIT = 120  # seconds per test, times SAMDOCK_TEST_TIMEOUT_SCALE


def pytest_configure(config):
    config.addinivalue_line("markers", "server_args(**kw): keyword arguments for harness.Server")
    config.addinivalue_line("markers", "daemon_args(**kw): keyword arguments for harness.Daemon")
    config.addinivalue_line("markers", "time_limit(seconds): per-test limit (default 120)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
    if rep.failed:
        funcargs = getattr(item, "funcargs", {}) or {}
        for name in ("daemon", "server", "bus"):
            obj = funcargs.get(name)
            if obj is not None and hasattr(obj, "log"):
                text = obj.log()
                if text:
                    rep.sections.append((f"{name} log ({rep.when})", text[-30000:]))


def pytest_sessionfinish(session, exitstatus):
    harness.kill_strays()


class _TimeLimit(Exception):
    pass


@pytest.fixture(autouse=True)
def _time_limit(request):
    """Fails a test that runs longer than its limit (SIGALRM; the main
    thread gets an exception wherever it is)."""
    m = request.node.get_closest_marker("time_limit")
    limit = int(harness.scaled(m.args[0] if m else TEST_TIME_LIMIT))

    def on_alarm(signum, frame):
        raise _TimeLimit(f"test exceeded its time limit of {limit}s")
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(limit)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _kwargs(request, marker):
    m = request.node.get_closest_marker(marker)
    return dict(m.kwargs) if m else {}


@pytest.fixture
def bus():
    b = harness.Bus()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def server(request):
    """The server; keyword arguments from @pytest.mark.server_args or from
    indirect parametrisation (a dict)."""
    kw = _kwargs(request, "server_args")
    kw.update(getattr(request, "param", None) or {})
    s = harness.Server(**kw)
    try:
        yield s
    finally:
        s.cleanup()


@pytest.fixture
def signals(bus):
    s = harness.Signals(bus.address)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def daemon(request, bus, server, signals):
    """The daemon, started after `signals` subscribed; the test fails if the
    daemon died on its own during the test."""
    d = harness.Daemon(bus, server, **_kwargs(request, "daemon_args"))
    try:
        yield d
        died = d.returncode()
        if died is not None and not getattr(d, "stopped_by_test", False):
            pytest.fail(f"samdock-eventd died during the test with status {died}; "
                        f"log tail:\n{d.log()[-4000:]}", pytrace=False)
        if d.alive():
            # A clean stop is part of every test: under ASan or valgrind
            # this is where leaks and late memory errors show.
            code = d.stop(timeout=harness.scaled(20))
            if code != 0:
                pytest.fail(f"samdock-eventd exited with status {code} on SIGTERM; "
                            f"log tail:\n{d.log()[-4000:]}", pytrace=False)
        reports = harness.memory_error_reports(d.log())
        if reports:
            pytest.fail("memory checker reports in the daemon's log:\n" + reports,
                        pytrace=False)
    finally:
        try:
            if d.alive():
                d.stop(timeout=10)
        except harness.HarnessError:
            pass
        d.cleanup()
        harness.kill_strays()


@pytest.fixture
def spawn(request, bus):
    """Starts daemons against any URL (a relay, a fake server); each is
    stopped and cleaned up after the test, and the test fails if one died
    by itself. On failure their logs are printed (shown with the report)."""
    from resilience_helpers import finish_daemons

    daemons = []

    def start(url, **kw):
        kw.setdefault("token", harness.DEFAULT_TOKEN)
        d = harness.Daemon(bus, None, url=url, **kw)
        daemons.append(d)
        return d
    yield start
    rep = getattr(request.node, "rep_call", None)
    problem = finish_daemons(daemons, rep is not None and rep.failed)
    if problem:
        pytest.fail(problem, pytrace=False)
