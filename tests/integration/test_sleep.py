# SPDX-License-Identifier: MIT
"""Suspend and resume: when logind says the machine woke up
(PrepareForSleep(false)), the daemon reconnects at once instead of waiting
for its backoff or a ping deadline. The private bus stands in for the
system bus, and the test takes logind's name on it."""

import time

from gi.repository import GLib

import harness


def emit_prepare_for_sleep(conn, sleeping):
    conn.emit_signal(None, "/org/freedesktop/login1", "org.freedesktop.login1.Manager",
                     "PrepareForSleep", GLib.Variant("(b)", (sleeping,)))
    conn.flush_sync(None)


def test_resume_from_sleep_reconnects_at_once(bus, server, signals):
    daemon = harness.Daemon(bus, server, env={"DBUS_SYSTEM_BUS_ADDRESS": bus.address},
                            config={"Reconnect": {"InitialDelaySec": "30", "MaxDelaySec": "60"}})
    try:
        server.wait_subscribed(1)

        # Anyone else saying so is ignored: the match is on logind's name.
        impostor = harness.bus_connection(bus.address)
        emit_prepare_for_sleep(impostor, False)
        signals.settle(1.0)
        assert server.stats()["connects"]["activities"] == 1

        logind = harness.bus_connection(bus.address)
        reply = logind.call_sync("org.freedesktop.DBus", "/org/freedesktop/DBus",
                                 "org.freedesktop.DBus", "RequestName",
                                 GLib.Variant("(su)", ("org.freedesktop.login1", 0)),
                                 None, 0, 5000, None)
        assert reply.unpack()[0] == 1
        emit_prepare_for_sleep(logind, True)
        signals.settle(0.5)
        assert server.stats()["connects"]["activities"] == 1, "reconnected on going to sleep"

        started = time.monotonic()
        emit_prepare_for_sleep(logind, False)
        # With InitialDelaySec=30 only the resume can explain a quick second connect.
        server.wait_subscribed(2, timeout=10)
        assert time.monotonic() - started < 5
        assert "woke up" in daemon.log()

        mark = signals.mark()
        r = server.emit("ActivityAddedEvent")
        assert r["sent"] == 1
        signals.wait_for(1, 10, member="ActivityAdded", since=mark)
    finally:
        daemon.stop()
