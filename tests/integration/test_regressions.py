# SPDX-License-Identifier: MIT
"""Findings from attacking the daemon from the outside, each kept fixed: a
CONNECT_ERROR that is no credential refusal, unusable CAFile= values (a FIFO
among them), an empty command-line value, Reconnect()'s log line, log lines
forged through an event name, a TokenCommand= that can never run, and option
errors that named the binary's path."""

import os
import subprocess
from pathlib import Path

import harness
from harness import OBJECT_PATH, IFACE, STREAM_IFACE, STREAM_PATH_PREFIX

ACTIVITIES = STREAM_PATH_PREFIX + "activities"


def stream_prop(signals, name):
    return signals.get_property(ACTIVITIES, STREAM_IFACE, name)


def test_connect_error_mid_session_is_dropped_not_an_auth_failure(server, signals, daemon):
    server.wait_subscribed(1)
    before = signals.get_property(OBJECT_PATH, IFACE, "EventsDropped")
    assert server.raw('44{"message":"Invalid namespace"}') == 1
    harness.wait_until(
        lambda: signals.get_property(OBJECT_PATH, IFACE, "EventsDropped") == before + 1,
        10, what="the stray CONNECT_ERROR counted as dropped")
    assert stream_prop(signals, "State") == "connected"
    mark = signals.mark()
    assert server.emit("ActivityAddedEvent")["sent"] == 1
    signals.wait_for(1, 10, member="ActivityAdded", since=mark)


def test_connect_error_without_auth_words_backs_off_instead_of_waiting_for_a_token(bus, server,
                                                                                   signals):
    # The fake server refuses every CONNECT with a reason that is not about
    # credentials: the daemon must keep retrying (slowly) on its own.
    from resilience_helpers import FakeSioServer
    fake = FakeSioServer(connect_reply='44{"message":"server is restarting"}')
    try:
        d = harness.Daemon(bus, url=fake.url, token="tok",
                           config={"Reconnect": {"InitialDelaySec": "0.1", "MaxDelaySec": "1"}})
        try:
            harness.wait_until(lambda: "restarting" in stream_prop(signals, "LastError"), 10,
                               what="LastError with the server's reason")
            state = stream_prop(signals, "State")
            assert state in ("backoff", "connecting"), state
            harness.wait_until(lambda: len(fake.attempts) >= 2, 10, what="a second attempt")
        finally:
            d.stop()
    finally:
        fake.close()


def test_unusable_ca_file_is_a_configuration_error(bus, server, tmp_path):
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello\n")
    fifo = tmp_path / "fifo.pem"        # opening it must not wait for a writer
    os.mkfifo(fifo)
    for path in (str(not_pem), str(tmp_path / "missing.pem"), str(tmp_path), str(fifo)):
        d = harness.Daemon(bus, server, wait=False, extra_args=["--ca-file", path])
        try:
            assert d.wait_exit(10) == 78
            assert "CAFile=" in d.log()
        finally:
            d.cleanup()


def test_empty_command_line_value_is_refused(bus, server):
    d = harness.Daemon(bus, server, wait=False, extra_args=["--url", ""])
    try:
        assert d.wait_exit(10) == 78
        assert "--url: empty value" in d.log()
        assert server.stats()["connects"]["activities"] == 0
    finally:
        d.cleanup()


def test_reconnect_logs_no_delay_it_does_not_use(server, signals, daemon):
    server.wait_subscribed(1)
    signals.call("Reconnect")
    server.wait_subscribed(2)
    log = daemon.log()
    assert "reconnect requested; reconnecting now" in log
    assert "reconnect requested; reconnecting in" not in log


def test_server_text_in_the_log_cannot_forge_lines(server, signals, daemon):
    """At debug level the log quotes event names from the server: a newline
    in one must not start a line of its own (with a priority prefix the
    server chose), nor ESC or BEL reach a terminal or the journal."""
    server.wait_subscribed(1)
    mark = signals.mark()
    name = ("Evil\n<0>samdock-eventd: FORGED\x1b]0;pwned\x07\x1b[2J"
            "\u009b2J\u202eRLO\u2028LS\u2066ISO")
    assert server.emit(name, {"_id": "x"})["sent"] == 1
    signals.wait_for(1, 10, member="Event", since=mark)
    assert signals.items[mark].args[1] == name      # the bus carries it as it is
    # the debug line comes right after the signal: wait for it
    harness.wait_until(lambda: "FORGED" in daemon.log(), 10,
                       what="the event name in the debug log")
    log = daemon.log()
    assert not any(line.startswith("<0>") for line in log.splitlines())
    assert "\x1b" not in log and "\x07" not in log
    for c in "\u009b\u202e\u2028\u2066":
        assert c not in log, f"U+{ord(c):04X} reached the log"


def test_token_command_that_cannot_run_is_a_configuration_error(bus, server):
    """An unclosed quote in TokenCommand= is found before anything connects,
    like any other bad setting, not at every connect as a failed token."""
    d = harness.Daemon(bus, server, wait=False,
                       extra_args=["--token-file=", "--token-command", 'echo "unterminated'])
    try:
        assert d.wait_exit(10) == 78
        assert "TokenCommand=" in d.log() and "quote is not closed" in d.log()
        assert server.stats()["connects"]["activities"] == 0
    finally:
        d.cleanup()


def test_option_errors_name_the_program_not_its_path():
    """As the man pages show them: "samdock-eventd: ...", whatever path
    the binary was started by."""
    daemon = Path(harness.daemon_binary()).resolve()
    for binary, status in ((daemon, 78), (daemon.parent / "samdock-eventctl", 2)):
        p = subprocess.run([str(binary), "--bogus"], capture_output=True, text=True, timeout=10)
        assert p.returncode == status
        assert p.stderr.startswith(f"{binary.name}: unrecognized option '--bogus'"), p.stderr
