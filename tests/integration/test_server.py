# SPDX-License-Identifier: MIT
"""Tests of tests/server/samdock-server.js itself, with a raw WebSocket
client: they pin down the Socket.IO 4.8 / Engine.IO 6 wire behaviour that
samdock-eventd has to cope with. They need no daemon.

Run: /usr/bin/python3 -m pytest tests/integration/test_server.py -q"""

import json
import re
import signal
import time

import pytest

import harness
from harness import SioClient, RawWebSocket, WebSocketClosed, HarnessTimeout

ACT = "/api/activities/socket.io/"
IMP = "/api/contacts/import/socket.io/"
HEX24 = re.compile(r"^[0-9a-f]{24}$")


def headers(token):
    return {"headers": {"authorization": f"Bearer {token}"}}


def subscribed_client(server, **kw):
    c = SioClient(server.port, auth={"token": server.token}, **kw)
    before = server.stats()["subscriptions"]["activities"]
    c.emit("activities", headers(server.token))
    server.wait_subscribed(before + 1)
    return c


def frames_until_closed(c, timeout=3):
    """Every frame until the connection ends; returns (frames, close) where
    close is the WebSocketClosed (code None + reason '' for an empty close
    frame, reason 'EOF' when the TCP connection just ended)."""
    got = []
    d = harness.Deadline(timeout)
    while True:
        try:
            got.append(c.ws.recv(deadline=d))
        except WebSocketClosed as e:
            return got, e


def test_open_and_connect_reply(server):
    c = SioClient(server.port, connect=False)
    assert set(c.open) == {"sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"}
    assert c.open["upgrades"] == [] and c.open["pingInterval"] == 25000
    reply = c.connect({"token": server.token})
    assert re.fullmatch(r'40\{"sid":"[^"]+"\}', reply)   # no pid without recovery
    st = server.stats()
    assert st["connects"]["activities"] == 1 and st["connections"]["activities"] == 1
    assert st["connectAuth"][-1]["authorized"] is True and "token" not in st["connectAuth"][-1]


def test_subscription_and_generated_events(server):
    c = subscribed_client(server)
    st = server.stats()
    assert st["subscriptions"] == {"activities": 1, "import": 0}
    assert st["rooms"] == {"activities": 1}
    last = st["emitsReceived"][-1]
    assert last["event"] == "activities" and last["authorized"] is True
    assert "headers" not in last["arg"] and last["arg"]["authorized"] is True
    for event in harness.ACTIVITY_EVENTS:
        r = server.emit(event)
        assert r["sent"] == 1 and len(r["payloads"]) == 1
        name, args = c.recv_event()
        assert name == event and args == r["payloads"]
    r = server.emit("ActivityAddedEvent")
    a = r["payloads"][0]
    assert list(a) == ["_id", "_tenantID", "type", "_personIDs", "_organizationIDs", "_dealID",
                       "_taskIDs", "_userID", "data", "timestamp", "createdAt", "updatedAt"]
    assert HEX24.match(a["_id"]) and all(HEX24.match(x) for x in a["_personIDs"])
    assert any(ord(ch) > 127 for ch in json.dumps(a["data"], ensure_ascii=False))
    assert c.recv_event()[1] == [a]


def test_emit_count_order_and_explicit_payload(server):
    c = subscribed_client(server)
    r = server.emit("ActivityAddedEvent", count=50)
    ids = [p["_id"] for p in r["payloads"]]
    assert len(set(ids)) == 50
    assert [c.recv_event()[1][0]["_id"] for _ in range(50)] == ids
    p = {"_personID": "p1", "name": "Jürgen 😀"}
    assert server.emit("PersonDeletedEvent", p, count=2) == {"sent": 1}
    assert c.recv_event() == ("PersonDeletedEvent", [p])
    assert c.recv_event() == ("PersonDeletedEvent", [p])
    server.emit("Weird", args=["a", 1, None])
    assert c.recv_event() == ("Weird", ["a", 1, None])


def test_wrong_or_missing_token_gets_a_nestjs_exception(server):
    c = SioClient(server.port, auth={"token": server.token})
    c.emit("activities", headers("wrong"))
    assert c.recv() == '42["exception",{"status":"error","message":"Unauthorized"}]'
    c.emit("activities", {})
    assert c.recv() == '42["exception",{"status":"error","message":"Unauthorized"}]'
    st = server.stats()
    assert st["subscriptions"]["activities"] == 0 and st["exceptions"]["activities"] == 2
    assert [e["authorized"] for e in st["emitsReceived"]] == [False, False]
    # the connection stays open, a good token works afterwards
    c.emit("activities", headers(server.token))
    server.wait_subscribed(1)


@pytest.mark.parametrize("event,key", [("activities-by-person", "_personID"),
                                       ("activities-by-organization", "_organizationID")])
def test_browse_replies(server, event, key):
    c = SioClient(server.port, auth={"token": server.token})
    arg = {key: "5f8d0d55b54764421b7156aa", **headers(server.token)}
    c.emit(event, arg, ack_id=7)                       # ack mode (default)
    reply = c.recv()
    assert reply.startswith("437[")
    (lst,) = json.loads(reply[3:])
    assert 2 <= len(lst) <= 3
    field = "_personIDs" if key == "_personID" else "_organizationIDs"
    assert all(a[field] == ["5f8d0d55b54764421b7156aa"] for a in lst)
    assert server.stats()["browseReplies"][-1]["reply"] == lst
    c.emit(event, arg)                                 # no ack id: an event
    assert c.recv_event() == (event, [lst])
    server.config(browse_reply="event")
    c.emit(event, arg, ack_id=8)
    assert c.recv_event() == (event, [lst])
    server.config(browse_reply="both", browse_delay_ms=300)
    t0 = time.monotonic()
    c.emit(event, arg, ack_id=9)
    assert c.recv().startswith("439[")
    assert time.monotonic() - t0 >= 0.25
    assert c.recv_event() == (event, [lst])
    server.config(browse_reply="none", browse_delay_ms=0)
    c.emit(event, arg, ack_id=10)
    with pytest.raises(HarnessTimeout):
        c.recv(0.5)
    c.emit(event, {key: "x", **headers("bad")}, ack_id=11)
    assert c.recv_event() == ("exception", [{"status": "error", "message": "Unauthorized"}])


def test_import_stream(server):
    c = SioClient(server.port, path=IMP, auth={"token": server.token})
    other = subscribed_client(server)
    c.emit("connectImportID", {"_importID": "imp-1", **headers(server.token)})
    server.wait_subscribed(1, stream="import")
    assert server.stats()["rooms"]["import:imp-1"] == 1
    r = server.import_("imp-1", steps=3)
    assert r["sent"] == 1
    got = [c.recv_event() for _ in range(4)]
    assert [g[0] for g in got] == ["imported", "imported", "imported", "importFinished"]
    assert [g[1][0]["progress"] for g in got[:3]] == [1 / 3, 2 / 3, 1]
    assert [[e["payload"]] for e in r["events"]] == [g[1] for g in got]
    r = server.import_("imp-1", steps=1, fail=True)
    got = [c.recv_event() for _ in range(2)]
    assert [g[0] for g in got] == ["imported", "importError"]
    assert "ungültige" in got[1][1][0]["message"]
    assert server.emit("imported", {"_importID": "imp-1"}, stream="import", import_id="imp-1")["sent"] == 1
    assert c.recv_event() == ("imported", [{"_importID": "imp-1"}])
    # nothing of this reached the activities client
    with pytest.raises(HarnessTimeout):
        other.recv(0.3)


def test_raw_frames_are_written_verbatim(server):
    c = subscribed_client(server)
    for frame in ["42[broken", "4", "xyz", ""]:
        assert server.raw(frame) == 1
        assert c.ws.recv(2) == ("text", frame)
    assert server.raw(binary=b"\x00\xff\xfe\x04") == 1
    assert c.ws.recv(2) == ("binary", b"\x00\xff\xfe\x04")
    # a real binary event: placeholder text frame, then the attachment
    server.emit("ActivityAddedEvent", {"_id": "b1"}, binary=b"\x01\x02")
    assert c.ws.recv(2) == ("text", '451-["ActivityAddedEvent",{"_id":"b1"},{"_placeholder":true,"num":0}]')
    assert c.ws.recv(2) == ("binary", b"\x01\x02")
    assert server.raw("x", stream="import") == 0


def test_drop_ends_tcp_without_close_frame(server):
    c = subscribed_client(server)
    assert server.drop() == 1
    frames, close = frames_until_closed(c)
    assert frames == [] and close.reason == "EOF"
    server.wait_stats(lambda s: s["connections"]["activities"] == 0, 5)


def test_disconnect_sends_41_then_an_empty_close_frame(server):
    c = subscribed_client(server)
    assert server.disconnect() == 1
    frames, close = frames_until_closed(c)
    assert frames == [("text", "41")]
    assert close.reason == "" and close.code is None     # close frame, no status code
    assert server.stats()["disconnects"][-1]["reason"] == "server namespace disconnect"


def test_sigterm_closes_clients_and_exits_0(server):
    c = subscribed_client(server)
    assert server.stop() == 0
    frames, close = frames_until_closed(c)
    assert frames == [] and close.reason == ""           # no 41: just a close frame


def test_connect_error_mode(server):
    server.config(auth_mode="connect_error")
    c = SioClient(server.port, connect=False)
    assert c.connect({"token": "wrong"}) == '44{"message":"unauthorized"}'
    c2 = SioClient(server.port, connect=False)
    assert c2.connect(None) == '44{"message":"unauthorized"}'
    # the Engine.IO connection stays open; a second CONNECT may succeed
    server.config(token="t2")
    assert c.connect({"token": "t2"}).startswith('40{"sid":')
    st = server.stats()
    assert st["rejected"]["activities"] == 2 and st["connects"]["activities"] == 3
    assert [a["authorized"] for a in st["connectAuth"]] == [False, False, True]


@pytest.mark.parametrize("mode,status", [("http", 401), ("http403", 403)])
def test_http_auth_modes_refuse_the_upgrade(server, mode, status):
    server.config(auth_mode=mode)
    ws = RawWebSocket(server.port, ACT + "?EIO=4&transport=websocket")
    assert ws.status == status
    ws = RawWebSocket(server.port, IMP + "?EIO=4&transport=websocket")
    assert ws.status == status
    assert server.stats()["httpRefused"] == {"activities": 1, "import": 1}
    server.config(auth_mode="exception")
    SioClient(server.port, auth={"token": server.token})


def test_unknown_paths(server):
    assert RawWebSocket(server.port, "/api/activities/socket.io?EIO=4&transport=websocket").status == 404
    assert RawWebSocket(server.port, "/socket.io/?EIO=4&transport=websocket").status == 404
    with pytest.raises(harness.HarnessError, match="HTTP 404"):
        server.request("GET", "/_test/nope")
    with pytest.raises(harness.HarnessError, match="HTTP 400"):
        server.config(auth_mode="bogus")


def test_protocol_violations_close_the_connection(server):
    # Engine.IO 4: a client ping ("2") is the wrong direction
    c = SioClient(server.port, auth={"token": server.token})
    c.send("2")
    assert frames_until_closed(c)[0] == []
    # a second CONNECT on a connected namespace
    c = SioClient(server.port, auth={"token": server.token})
    c.send("40")
    assert frames_until_closed(c)[0] == []
    # an EVENT before the CONNECT reply
    c = SioClient(server.port, connect=False)
    c.send('42["activities",{}]')
    assert frames_until_closed(c)[0] == []
    # Engine.IO 3 on a server without allowEIO3: a 101, then an HTTP 400
    # written into the WebSocket stream (an engine.io quirk)
    ws = RawWebSocket(server.port, ACT + "?EIO=3&transport=websocket")
    assert ws.status == 101
    with pytest.raises(WebSocketClosed):
        ws.recv(2)


@pytest.mark.server_args(ping_interval_ms=300, ping_timeout_ms=200)
def test_heartbeat_v4(server):
    c = SioClient(server.port, auth={"token": server.token})
    t0 = time.monotonic()
    assert c.ws.recv(2) == ("text", "2")
    assert 0.2 < time.monotonic() - t0 < 1.0
    # not answering: the server closes after pingTimeout
    frames, close = frames_until_closed(c, 3)
    assert frames == []
    assert server.stats()["disconnects"][-1]["reason"] == "ping timeout"


@pytest.mark.server_args(ping_interval_ms=300, ping_timeout_ms=200)
def test_ping_silence_existing_then_thaw(server):
    c = subscribed_client(server)
    server.config(ping_silence="existing")
    server.emit("ActivityAddedEvent")                     # swallowed
    with pytest.raises(HarnessTimeout):
        c.ws.recv(1.2)
    # new connections are not affected
    c2 = subscribed_client(server)
    r = server.emit("ActivityAddedEvent")
    assert c2.recv_event()[1] == r["payloads"]
    server.config(ping_silence=False)
    assert c.ws.recv(2) == ("text", "2")                  # pings again
    assert server.stats()["connections"]["activities"] == 2


@pytest.mark.server_args(ping_interval_ms=300, ping_timeout_ms=200)
def test_ping_silence_all(server):
    server.config(ping_silence=True)
    c = SioClient(server.port, connect=False)             # the open packet still comes
    c.send('40{"token":"%s"}' % server.token)
    with pytest.raises(HarnessTimeout):
        c.recv(1)                                         # no CONNECT reply
    server.config(ping_silence=False)
    frames, close = frames_until_closed(c)                # dropped on thaw
    assert close.reason == "EOF"


@pytest.mark.server_args(recovery_ms=60000)
def test_connection_state_recovery(server):
    c = subscribed_client(server)
    sid, pid = (json.loads(c.connect_reply[2:])[k] for k in ("sid", "pid"))
    r = server.emit("ActivityAddedEvent")
    name, args = c.recv_event()
    payload, offset = args
    assert payload == r["payloads"][0] and isinstance(offset, str)
    # events sent to one socket (here NestJS' exception) carry an offset too,
    # and are replayed on recovery like the rest
    c.emit("activities", headers("bad"))
    name, args = c.recv_event()
    assert name == "exception" and len(args) == 2 and isinstance(args[1], str)
    offset = args[1]
    server.drop()
    frames_until_closed(c)
    missed = server.emit("ActivityEditedEvent", count=2)["payloads"]
    c2 = SioClient(server.port, connect=False)
    c2.send("40" + json.dumps({"token": server.token, "pid": pid, "offset": offset}))
    # the missed events come FIRST, then the CONNECT reply (same sid and pid)
    e1, e2, reply = c2.recv(), c2.recv(), c2.recv()
    assert [json.loads(e[2:])[1] for e in (e1, e2)] == missed
    assert json.loads(reply[2:]) == {"sid": sid, "pid": pid}
    st = server.stats()
    assert st["recovered"] == 1 and st["rooms"] == {"activities": 1}
    assert st["connectAuth"][-1]["pid"] == pid and st["connectAuth"][-1]["offset"] == offset
    # an unknown offset: no recovery, a fresh session
    c3 = SioClient(server.port, connect=False)
    c3.send("40" + json.dumps({"token": server.token, "pid": pid, "offset": "nope"}))
    assert json.loads(c3.recv()[2:])["sid"] != sid


@pytest.mark.server_args(eio3=True)
def test_engine_io_3(server):
    c = SioClient(server.port, eio=3)
    assert c.connect_reply == "40"                       # sent unasked, no JSON
    c.emit("activities", headers(server.token))
    server.wait_subscribed(1)
    c.send("2")                                          # v3: the client pings
    assert c.ws.recv(2) == ("text", "3")
    r = server.emit("ActivityAddedEvent")
    assert c.recv_event()[1] == r["payloads"]
    # sending "40" for "/" again closes the connection
    c.send("40")
    assert frames_until_closed(c)[0] == []
    # Engine.IO 4 clients still work on the same server
    c4 = SioClient(server.port, auth={"token": server.token})
    assert c4.connect_reply.startswith('40{"sid":')


@pytest.mark.server_args(demo=True, demo_interval_ms=50)
def test_demo_mode(server):
    c = subscribed_client(server)
    names = [c.recv_event()[0] for _ in range(16)]
    kinds = list(harness.ACTIVITY_EVENTS)
    assert all(n in kinds or n in ("ActivityPinnedEvent", "DealStageChangedEvent", "CommentAddedEvent")
               for n in names)
    assert set(kinds) <= set(names)
    assert any(n not in kinds for n in names)
    harness.wait_until(lambda: server.log().count("demo: ") >= 16, 5, what="16 demo log lines")


def test_tls(tmp_path):
    cert, key = harness.make_tls_cert(tmp_path)
    s = harness.Server(tls_cert=cert, tls_key=key)
    try:
        assert s.url.startswith("https://127.0.0.1:")
        c = SioClient(s.port, auth={"token": s.token}, tls=True)
        c.emit("activities", headers(s.token))
        s.wait_subscribed(1)
        r = s.emit("TaskDeletedEvent")
        assert c.recv_event() == ("TaskDeletedEvent", r["payloads"])
    finally:
        s.cleanup()


def test_restart_on_same_port_after_sigkill(server):
    c = subscribed_client(server)
    port = server.port
    server.kill(signal.SIGKILL)
    frames, close = frames_until_closed(c)
    assert close.reason == "EOF"
    server.start()
    assert server.port == port
    assert server.stats()["connects"]["activities"] == 0   # a fresh process
    subscribed_client(server)
