# SPDX-License-Identifier: MIT
"""Where the token comes from and how it stays valid: the systemd
credential, TokenFile=, TokenCommand=, renewal at AuthURL= with a refresh
token, TokenExpiry, and that no token ever shows up in the daemon's log.

Run:
    SAMDOCK_EVENTD=build/samdock-eventd /usr/bin/python3 -m pytest tests/integration/test_tokens.py -q

The renewal endpoint (POST /token/refresh) is a small HTTP(S) server in
this file, on 127.0.0.1, since the Socket.IO test server has none.
"""

import base64
import http.server
import json
import os
import ssl
import stat
import threading
import time
from pathlib import Path

import pytest

import harness
from harness import IFACE, OBJECT_PATH, STREAM_IFACE, STREAM_PATH_PREFIX

ACTIVITIES = STREAM_PATH_PREFIX + "activities"

# Every secret a test hands out is registered here; no daemon log may hold
# any of them (checked after each test and once more at the end).
SECRETS = set()
ALL_LOGS = []


def secret(value):
    SECRETS.add(value)
    return value


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(exp, tag):
    """An unsigned JWT (the daemon reads exp only) with a unique subject."""
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64url(json.dumps({"sub": f"user-{tag}", "exp": exp, "iat": int(time.time()),
                                 "jti": os.urandom(6).hex()}).encode())
    return secret(f"{header}.{payload}.{b64url(os.urandom(16))}")


def opaque(tag):
    return secret(f"tok-{tag}-{os.urandom(8).hex()}")


def write_secret_file(path, value, mode=0o600):
    path = Path(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    os.chmod(path, mode)
    return path


def write_script(path, body):
    path = Path(path)
    path.write_text("#!/bin/sh\n" + body)
    os.chmod(path, 0o700)
    return path


def prop(signals, name, path=OBJECT_PATH, iface=IFACE):
    return signals.get_property(path, iface, name)


def wait_prop(signals, name, pred, timeout=15, path=OBJECT_PATH, iface=IFACE, what=None):
    last = [None]

    def check():
        last[0] = signals.get_property(path, iface, name)
        return pred(last[0])
    try:
        harness.wait_until(check, timeout, 0.05, what or f"{name}")
    except harness.HarnessTimeout as e:
        raise harness.HarnessTimeout(f"{e}; last {name} = {last[0]!r}") from None
    return last[0]


def wait_online(server, signals, subscriptions=1, timeout=15):
    server.wait_subscribed(subscriptions, timeout=timeout)
    wait_prop(signals, "State", lambda v: v == "online", timeout, what="State == online")


def wait_auth_failed(signals, timeout=15):
    wait_prop(signals, "State", lambda v: v == "auth-failed", timeout,
              what="State == auth-failed")
    return prop(signals, "LastError", ACTIVITIES, STREAM_IFACE)


def deliver(server, signals, n=3):
    """Emits n events and checks each arrives once as a signal."""
    mark = signals.mark()
    ids = []
    for _ in range(n):
        _id = os.urandom(12).hex()
        ids.append(_id)
        assert server.emit("ActivityAddedEvent", {"_id": _id, "n": len(ids)})["sent"] == 1
    signals.wait_for(n, 10, "ActivityAdded", since=mark)
    signals.settle(0.2)
    assert [s.args[0] for s in signals.of("ActivityAdded", mark)] == ids


def subscription_emits(stats):
    return [e for e in stats["emitsReceived"]
            if e["stream"] == "activities" and e["event"] == "activities"]


def check_no_secret(text, where):
    for s in SECRETS:
        assert s not in text, f"a token appears in {where}"


@pytest.fixture
def daemons(bus, server):
    """Starts daemons with harness.Daemon(bus, server, ...); after the test
    each one's log is checked for every secret handed out."""
    started = []

    def start(**kw):
        kw.setdefault("wait", True)
        d = harness.Daemon(bus, server, **kw)
        started.append(d)
        return d
    yield start
    try:
        for d in started:
            died = d.returncode()
            if died is not None and not d.stopped_by_test:
                pytest.fail(f"samdock-eventd died during the test with status {died}; "
                            f"log tail:\n{d.log()[-4000:]}", pytrace=False)
            if d.alive():
                assert d.stop(timeout=10) == 0, f"unclean exit; log tail:\n{d.log()[-4000:]}"
            log = d.log()
            ALL_LOGS.append(log)
            check_no_secret(log, f"the daemon's log ({d.log_path})")
    finally:
        for d in started:
            try:
                if d.alive():
                    d.stop(timeout=10)
            except harness.HarnessError:
                pass
            d.cleanup()
        harness.kill_strays()


def command_args(command):
    """TokenCommand= alone: the harness always passes --token-file, so
    reset it (an empty value means the default, unset)."""
    return ["--token-file=", "--token-command", str(command)]


# ---------------------------------------------------------------------------
# the renewal endpoint

class RefreshServer:
    """POST /token/refresh on 127.0.0.1 (optionally over TLS). answer(body)
    returns (status, json); every request is recorded."""

    def __init__(self, answer, tls_cert=None, tls_key=None):
        self.answer = answer
        self.requests = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw.decode())
                except ValueError:
                    body = None
                owner.requests.append({"path": self.path, "body": body, "at": time.time(),
                                       "content_type": self.headers.get("Content-Type")})
                status, reply = owner.answer(body) if self.path == "/token/refresh" \
                    else (404, {"message": "Not Found"})
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.tls = tls_cert is not None
        if self.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(tls_cert), str(tls_key))
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def refresh_servers():
    made = []

    def make(answer, **kw):
        r = RefreshServer(answer, **kw)
        made.append(r)
        return r
    yield make
    for r in made:
        r.close()


# ---------------------------------------------------------------------------
# sources and their order

def test_credential_beats_token_file(server, signals, daemons, tmp_path):
    good = opaque("cred")
    server.set_token(good)
    creds = tmp_path / "creds"
    creds.mkdir()
    write_secret_file(creds / "samdock-token", good, 0o400)
    d = daemons(token=opaque("file"), env={"CREDENTIALS_DIRECTORY": str(creds)})
    wait_online(server, signals)
    assert all(e["authorized"] for e in subscription_emits(server.stats()))
    deliver(server, signals)
    assert "credential samdock-token" in d.log()


def test_credential_beats_token_command(server, signals, daemons, tmp_path):
    good = opaque("cred")
    server.set_token(good)
    creds = tmp_path / "creds"
    creds.mkdir()
    write_secret_file(creds / "samdock-token", good, 0o400)
    ran = tmp_path / "command-ran"
    helper = write_script(tmp_path / "helper", f"touch {ran}\necho {opaque('cmd')}\n")
    daemons(env={"CREDENTIALS_DIRECTORY": str(creds)}, extra_args=command_args(helper))
    wait_online(server, signals)
    signals.settle(1.5)
    assert not ran.exists(), "TokenCommand= ran although the credential is there"


def test_token_file_beats_token_command(server, signals, daemons, tmp_path):
    """Sources in order: with TokenFile= and TokenCommand= both set, the
    file's token is used and the command never runs."""
    ran = tmp_path / "command-ran"
    helper = write_script(tmp_path / "helper", f"touch {ran}\necho {opaque('cmd')}\n")
    # The harness passes --token-file; add the command beside it.
    daemons(token=server.token, extra_args=["--token-command", str(helper)])
    wait_online(server, signals)
    signals.settle(1.5)
    assert not ran.exists(), "TokenCommand= ran although TokenFile= is set"
    assert signals.get_property(OBJECT_PATH, IFACE, "State") == "online"


def test_world_readable_token_file_is_refused(server, signals, daemons):
    d = daemons(token=server.token, token_file_mode=0o644)
    error = wait_auth_failed(signals)
    assert "may be read by group or others" in error and "chmod 600" in error
    assert str(d.token_path) in error
    assert "chmod 600" in d.log() and str(d.token_path) in d.log()
    assert server.stats()["connects"]["activities"] == 0
    # Fixing the mode is enough: the directory watch sees the chmod.
    os.chmod(d.token_path, 0o600)
    wait_online(server, signals)
    deliver(server, signals)


@pytest.mark.parametrize("atomic", [False, True], ids=["in-place", "rename"])
def test_rewritten_token_file_is_used_without_reconnect_or_loss(server, signals, daemons,
                                                                 atomic):
    old = opaque("old")
    new = opaque("new")
    server.set_token(old)
    d = daemons(token=old)
    wait_online(server, signals)
    mark = signals.mark()
    sent = []

    def emit(k):
        _id = f"{k:024x}"
        sent.append(_id)
        assert server.emit("ActivityAddedEvent", {"_id": _id})["sent"] == 1

    for k in range(20):
        emit(k)
    # The server takes only the new token from now on; the daemon must
    # subscribe again with it, on the same connection.
    server.config(token=new)
    for k in range(20, 40):
        emit(k)
    d.write_token(new, atomic=atomic)
    for k in range(40, 60):
        emit(k)
    st = server.wait_stats(lambda s: s["subscriptions"]["activities"] >= 2, 10,
                           "a second subscription")
    for k in range(60, 80):
        emit(k)
    signals.wait_for(len(sent), 10, "ActivityAdded", since=mark)
    signals.settle(0.3)
    assert [s.args[0] for s in signals.of("ActivityAdded", mark)] == sent
    st = server.stats()
    assert st["connects"]["activities"] == 1, "the daemon reconnected for a new token"
    subs = subscription_emits(st)
    assert len(subs) == 2 and subs[-1]["authorized"] is True
    assert prop(signals, "State") == "online"


# ---------------------------------------------------------------------------
# TokenCommand=

def test_token_command_gives_the_token_with_a_minimal_environment(server, signals, daemons,
                                                                  tmp_path):
    good = opaque("cmd")
    server.set_token(good)
    envdump = tmp_path / "env"
    helper = write_script(tmp_path / "helper", f"env > {envdump}\necho '  {good}  '\n")
    daemons(extra_args=command_args(helper),
            env={"SAMDOCK_SECRET_SHOULD_NOT_LEAK": "x", "LANG": "C.UTF-8"})
    wait_online(server, signals)
    deliver(server, signals)
    names = {line.split("=", 1)[0] for line in envdump.read_text().splitlines() if "=" in line}
    # /bin/sh adds PWD (and maybe OLDPWD) itself.
    assert names - {"PWD", "OLDPWD"} <= {"PATH", "HOME", "LANG", "CREDENTIALS_DIRECTORY"}
    assert {"PATH", "HOME", "LANG"} <= names
    assert good not in envdump.read_text()


def test_token_command_runs_again_before_a_reconnect(server, signals, daemons, tmp_path):
    first, second = opaque("first"), opaque("second")
    server.set_token(first)
    source = write_secret_file(tmp_path / "vault", first)
    runs = tmp_path / "runs"
    helper = write_script(tmp_path / "helper", f"echo run >> {runs}\ncat {source}\n")
    daemons(extra_args=command_args(helper))
    wait_online(server, signals)
    before = len(runs.read_text().splitlines())
    # The helper now hands out another token, which is the only one the
    # server takes; the connection drops and the daemon comes back.
    write_secret_file(source, second)
    server.config(token=second)
    server.drop()
    wait_online(server, signals, subscriptions=2, timeout=20)
    assert len(runs.read_text().splitlines()) > before
    assert subscription_emits(server.stats())[-1]["authorized"] is True
    deliver(server, signals)


SLOW_HELPER_FAST_RETRY = {"Reconnect": {"InitialDelaySec": "0.1", "MaxDelaySec": "0.2"}}


@pytest.mark.parametrize("renewed", [True, False], ids=["new-token", "same-token"])
def test_reconnect_waits_for_a_slow_token_command(server, signals, daemons, tmp_path,
                                                  renewed):
    """The backoff (at most 0.2 s) ends long before the helper (1 s) does:
    the daemon waits for it rather than offering the server a token the
    helper is about to replace, and goes on once the helper is done, also
    when it hands out the same token again."""
    first = opaque("slow-first")
    server.set_token(first)
    source = write_secret_file(tmp_path / "vault", first)
    runs = tmp_path / "runs"
    helper = write_script(tmp_path / "helper", f"sleep 1\necho run >> {runs}\ncat {source}\n")
    daemons(extra_args=command_args(helper), config=SLOW_HELPER_FAST_RETRY)
    wait_online(server, signals)
    time.sleep(1.2)                     # past the once-a-second limit on runs
    runs_before = len(runs.read_text().splitlines())
    if renewed:
        second = opaque("slow-second")
        write_secret_file(source, second)
        server.config(token=second)
    server.drop()
    wait_online(server, signals, subscriptions=2, timeout=20)
    st = server.stats()
    offered = [c["authorized"] for c in st["connectAuth"] if c["stream"] == "activities"]
    assert offered == [True, True], "a CONNECT carried the token being replaced"
    assert [e["authorized"] for e in subscription_emits(st)] == [True, True]
    assert len(runs.read_text().splitlines()) == runs_before + 1
    deliver(server, signals)


def test_failing_token_command_is_an_auth_failure(server, signals, daemons, tmp_path):
    helper = write_script(tmp_path / "helper", "echo 'vault: the vault is sealed' >&2\n"
                                               "echo 'second line' >&2\nexit 3\n")
    d = daemons(extra_args=command_args(helper))
    error = wait_auth_failed(signals)
    assert "vault: the vault is sealed" in error and "status 3" in error
    assert "second line" not in error
    assert "vault: the vault is sealed" in d.log()
    assert server.stats()["connects"]["activities"] == 0
    with pytest.raises(harness.DBusCallError) as e:
        signals.call("Reconnect")
    assert e.value.name == "app.samdock.Events.Error.AuthFailed"


def test_token_command_that_prints_without_end_is_stopped_at_the_limit(server, signals, daemons,
                                                                      tmp_path):
    """More than 16384 bytes on stdout is no token, however it goes on:
    the command is killed then, not 30 s later."""
    helper = write_script(tmp_path / "helper", "exec yes aaaaaaaaaaaaaaaa\n")
    t0 = time.monotonic()
    d = daemons(extra_args=command_args(helper))
    error = wait_auth_failed(signals, timeout=20)
    assert error == "TokenCommand= printed more than 16384 bytes; killed it", error
    assert time.monotonic() - t0 < harness.scaled(10), "not stopped before the time limit"
    assert server.stats()["connects"]["activities"] == 0
    assert d.alive()


@pytest.mark.parametrize("output", [b"abcdefgh\0", b"ab\0cdefghijklmnopqrstuvwxyz0123456789\n"],
                         ids=["nul-after", "nul-inside"])
def test_token_command_output_with_a_nul_is_refused(server, signals, daemons, tmp_path,
                                                     output):
    """A NUL byte is not printable ASCII: the output is refused, not cut
    short at the NUL and sent (and the daemon reads nothing out of bounds,
    which the sanitizer run checks)."""
    (tmp_path / "out").write_bytes(output)
    helper = write_script(tmp_path / "helper", f"cat {tmp_path / 'out'}\n")
    d = daemons(extra_args=command_args(helper))
    error = wait_auth_failed(signals)
    assert "more than one word of printable ASCII" in error, error
    assert server.stats()["connects"]["activities"] == 0
    assert d.alive()


# (the helper's stderr line, what LastError shows of it, the secret in it)
STDERR_LINES = [
    ("bad password for secret=abcdefghijklmnopqrstuvwxyzABCDEF",
     "bad password for [withheld]", "abcdefghijklmnopqrstuvwxyzABCDEF"),
    ("rejected: token=ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef", "rejected: [withheld]",
     "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef"),
    ("Bearer hunter2hunter2 was refused", "Bearer [withheld] was refused", "hunter2hunter2"),
    ("password: Tr0ub4dorTr0ub4dor", "password: [withheld]", "Tr0ub4dorTr0ub4dor"),
    ("api_key=k3y-1234 is revoked", "api_key=[withheld] is revoked", "k3y-1234"),
    ("password: 'Hunter2Hunter2'", "password: '[withheld]'", "Hunter2Hunter2"),
    ('error: token: "qwertyuiop12345"', 'error: token: "[withheld]"', "qwertyuiop12345"),
    ('{"access_token":"Xy7Qp2Lm9Rt4","expires_in":3600}',
     '{"access_token":"[withheld]","expires_in":3600}', "Xy7Qp2Lm9Rt4"),
    ("token=(Xy7Qp2Lm9Rt4)", "token=([withheld])", "Xy7Qp2Lm9Rt4"),
    ("Authorization:\tBearer\tabcdefgh12345678", "Authorization:?Bearer?[withheld]",
     "abcdefgh12345678"),
    ("token file /run/secrets/samdock-token is missing",
     "token file /run/secrets/samdock-token is missing", None),
    ("password incorrect for user admin", "password incorrect for user admin", None),
    ("vault: the vault is sealed", "vault: the vault is sealed", None),
]


@pytest.mark.parametrize("line,shown,hidden", STDERR_LINES, ids=range(len(STDERR_LINES)))
def test_failing_token_command_withholds_what_looks_like_a_secret(server, signals, daemons,
                                                                  tmp_path, line, shown, hidden):
    """The documented rules, line by line; an ordinary message stays whole.
    (The fixture also checks that no secret reached the daemon's log.)"""
    if hidden:
        secret(hidden)
    (tmp_path / "msg").write_text(line + "\n")
    helper = write_script(tmp_path / "helper", f"cat {tmp_path / 'msg'} >&2\nexit 2\n")
    d = daemons(extra_args=command_args(helper))
    error = wait_auth_failed(signals)
    assert error == f"TokenCommand= failed with status 2: {shown}", error
    assert shown in d.log()


def test_withholding_that_lengthens_the_line_stays_in_bounds(server, signals, daemons,
                                                             tmp_path):
    """"[withheld]" is longer than a 4-character value: a full 1 KiB line of
    them grows past its first size, and must neither overrun (the
    sanitizer run checks) nor show a value."""
    value = secret("Zq9x")
    (tmp_path / "msg").write_text(f"token={value} " * 93 + "\n")
    helper = write_script(tmp_path / "helper", f"cat {tmp_path / 'msg'} >&2\nexit 2\n")
    d = daemons(extra_args=command_args(helper))
    error = wait_auth_failed(signals)
    assert error.startswith("TokenCommand= failed with status 2: token=[withheld] "
                            "token=[withheld]"), error
    assert value not in error
    assert d.alive()


@pytest.mark.parametrize("tail", [b" \xff", "é".encode() * 80], ids=["not-utf8", "cut"])
def test_failing_token_command_shows_no_credential_from_its_stderr(server, signals, daemons,
                                                                   tmp_path, tail):
    """The first stderr line goes to LastError and the log, but a
    credential the helper names there does not; paths stay readable, and a
    line that is not UTF-8 or too long still reaches the bus, cut between
    characters."""
    leaked = secret(f"eyJhbGciOiJIUzI1NiJ9.{b64url(os.urandom(24))}.{os.urandom(16).hex()}")
    path = "/run/user/1000/vault-4f2a9c1e8d7b6a5f0e3d"
    (tmp_path / "msg").write_bytes(f"{path}: token {leaked} refused".encode() + tail)
    helper = write_script(tmp_path / "helper", f"cat {tmp_path / 'msg'} >&2\nexit 4\n")
    d = daemons(extra_args=command_args(helper))
    error = wait_auth_failed(signals)
    assert error.startswith(f"TokenCommand= failed with status 4: {path}: token [withheld] "
                            "refused"), error
    assert leaked not in error and leaked[:16] not in error
    if tail == b" \xff":
        assert error.endswith(" refused ?"), error
    else:
        assert len(error.encode()) - len("TokenCommand= failed with status 4: ") <= 200
        assert error.endswith("é") and "\ufffd" not in error, error
    assert "[withheld]" in d.log()


@pytest.mark.time_limit(90)
def test_hanging_token_command_is_killed_and_the_bus_stays_responsive(server, signals, daemons,
                                                                      tmp_path):
    pids = tmp_path / "pids"
    helper = write_script(tmp_path / "helper",
                          f"echo $$ > {pids}\nsleep 300 &\necho $! >> {pids}\nwait\n")
    d = daemons(extra_args=command_args(helper))
    harness.wait_until(lambda: pids.exists() and len(pids.read_text().split()) == 2, 10,
                       what="the helper and its child to start")
    started = time.monotonic()
    helper_pids = [int(p) for p in pids.read_text().split()]
    # Meanwhile the daemon answers on the bus at once.
    for _ in range(5):
        t = time.monotonic()
        assert prop(signals, "State") == "connecting"      # as at any start-up
        assert prop(signals, "Version")
        assert time.monotonic() - t < 1.0, "a property Get took over a second"
        # wanted, and waiting for the helper's token (not "idle")
        assert prop(signals, "State", ACTIVITIES, STREAM_IFACE) == "backoff"
        assert prop(signals, "NextRetry", ACTIVITIES, STREAM_IFACE) == 0
        time.sleep(0.5)
    error = wait_auth_failed(signals, timeout=45)
    assert time.monotonic() - started >= 25, "killed long before the 30 s limit"
    assert "did not finish within 30 s" in error
    # The whole process group is gone, the backgrounded sleep included.
    for pid in helper_pids:
        harness.wait_until(lambda: not Path(f"/proc/{pid}").exists()
                           or "zombie" in Path(f"/proc/{pid}/status").read_text().lower(),
                           5, what=f"process {pid} to be killed")
    assert d.alive()


# ---------------------------------------------------------------------------
# expiry and renewal

def test_token_expiry_is_the_jwt_exp(server, signals, daemons):
    exp = 2000000000
    token = make_jwt(exp, "far")
    server.set_token(token)
    daemons(token=token)
    wait_online(server, signals)
    assert prop(signals, "TokenExpiry") == exp * 1000000


def test_opaque_token_has_unknown_expiry(server, signals, daemons):
    daemons()
    wait_online(server, signals)
    assert prop(signals, "TokenExpiry") == 0


def test_token_that_cannot_be_renewed_is_warned_about(server, signals, daemons):
    exp = int(time.time()) + 4
    token = make_jwt(exp, "short")
    server.set_token(token)
    d = daemons(token=token)
    wait_online(server, signals)
    harness.wait_until(lambda: "nothing can renew it; put a new one in place" in d.log(), 5,
                       what="the expiry warning")
    harness.wait_until(lambda: "expired at" in d.log(), 10, what="the expired error")


def refresh_config(server_url, refresh_file, auth_url):
    return {"Auth": {"RefreshTokenFile": str(refresh_file), "AuthURL": auth_url}}


def test_short_lived_token_is_renewed_before_it_expires(server, signals, daemons,
                                                        refresh_servers, tmp_path):
    exp1 = int(time.time()) + 8
    access1 = make_jwt(exp1, "a1")
    refresh1, refresh2, refresh3 = opaque("r1"), opaque("r2"), opaque("r3")
    exp2 = int(time.time()) + 3600
    access2 = make_jwt(exp2, "a2")
    access3 = make_jwt(exp2 + 60, "a3")
    answers = {refresh1: (access2, refresh2), refresh2: (access3, refresh3)}

    def answer(body):
        pair = answers.get((body or {}).get("refreshToken"))
        if not pair:
            return 401, {"statusCode": 401, "message": "Unauthorized"}
        # From the moment it is handed out, only the new token is accepted.
        server.config(token=pair[0])
        return 201, {"accessToken": pair[0], "refreshToken": pair[1]}

    auth = refresh_servers(answer)
    server.set_token(access1)
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    refresh_file = write_secret_file(tmp_path / "refresh-token", refresh1)
    d = daemons(token=access1, env={"STATE_DIRECTORY": str(state)},
                config=refresh_config(server.url, refresh_file, auth.url))
    wait_online(server, signals)
    assert prop(signals, "TokenExpiry") == exp1 * 1000000

    harness.wait_until(lambda: auth.requests, 10, what="a renewal request")
    req = auth.requests[0]
    assert req["path"] == "/token/refresh" and req["body"] == {"refreshToken": refresh1}
    assert req["content_type"] == "application/json"
    assert req["at"] < exp1, "renewed only after the token had expired"

    # The next subscription carries the new token, on the same connection.
    server.wait_stats(lambda s: s["subscriptions"]["activities"] >= 2, 10,
                      "the subscription with the new token")
    st = server.stats()
    assert st["connects"]["activities"] == 1
    assert subscription_emits(st)[-1]["authorized"] is True
    wait_prop(signals, "TokenExpiry", lambda v: v == exp2 * 1000000, 5)
    deliver(server, signals)

    # The renewed refresh token is kept, private, in the state directory.
    kept = state / "refresh-token"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    text = kept.read_text()
    assert refresh2 in text.split() and refresh1 not in text
    assert [p.name for p in state.iterdir()] == ["refresh-token"], "a temporary file was left"
    # One renewal only: the new token lives an hour.
    signals.settle(1.0)
    assert len(auth.requests) == 1

    # After a restart the kept refresh token is the one used: the token
    # file's access token is about to expire, so renewal comes at once.
    d.stop()
    d.start()
    harness.wait_until(lambda: len(auth.requests) >= 2, 15, what="a renewal after restart")
    assert auth.requests[1]["body"] == {"refreshToken": refresh2}
    harness.wait_until(lambda: refresh3 in kept.read_text().split(), 5,
                       what="the newest refresh token to be kept")
    wait_prop(signals, "TokenExpiry", lambda v: v == (exp2 + 60) * 1000000, 10)


def test_refresh_token_alone_fetches_the_first_access_token(server, signals, daemons,
                                                            refresh_servers, tmp_path):
    exp = int(time.time()) + 3600
    access = make_jwt(exp, "only")
    refresh1 = opaque("r1")

    def answer(body):
        if (body or {}).get("refreshToken") != refresh1:
            return 401, {"message": "Unauthorized"}
        return 200, {"accessToken": access}
    auth = refresh_servers(answer)
    server.set_token(access)
    refresh_file = write_secret_file(tmp_path / "refresh-token", refresh1)
    daemons(token=None, extra_args=["--token-file="],
            env={"STATE_DIRECTORY": str(tmp_path)},
            config=refresh_config(server.url, refresh_file, auth.url))
    wait_online(server, signals)
    assert prop(signals, "TokenExpiry") == exp * 1000000
    deliver(server, signals)


def test_refused_renewal_is_an_auth_failure(server, signals, daemons, refresh_servers,
                                            tmp_path):
    exp1 = int(time.time()) + 6
    access1 = make_jwt(exp1, "a1")
    auth = refresh_servers(lambda body: (401, {"statusCode": 401, "message": "Unauthorized"}))
    server.set_token(access1)
    refresh_file = write_secret_file(tmp_path / "refresh-token", opaque("revoked"))
    d = daemons(token=access1, env={"STATE_DIRECTORY": str(tmp_path / "state")},
                config=refresh_config(server.url, refresh_file, auth.url))
    wait_online(server, signals)
    error = wait_auth_failed(signals, timeout=15)
    assert "refused the refresh token (HTTP 401)" in error
    assert prop(signals, "TokenExpiry") == 0
    # Refused is final: no retry storm against the auth service.
    signals.settle(3.0)
    assert len(auth.requests) == 1
    assert d.alive()


def test_renewal_over_tls_verifies_the_certificate(server, signals, daemons, refresh_servers,
                                                   tmp_path):
    certs = tmp_path / "certs"
    certs.mkdir()
    cert, key = harness.make_tls_cert(certs)
    other = tmp_path / "other"
    other.mkdir()
    other_cert, _ = harness.make_tls_cert(other)
    exp1 = int(time.time()) + 6
    access1 = make_jwt(exp1, "a1")
    access2 = make_jwt(int(time.time()) + 3600, "a2")
    refresh1 = opaque("r1")

    def answer(body):
        server.config(token=access2)
        return 200, {"accessToken": access2, "refreshToken": opaque("r2")}
    auth = refresh_servers(answer, tls_cert=cert, tls_key=key)
    server.set_token(access1)
    refresh_file = write_secret_file(tmp_path / "refresh-token", refresh1)

    # A CA that did not sign the auth service's certificate: no request
    # ever reaches it, the token stays until it can be renewed.
    config = refresh_config(server.url, refresh_file, auth.url)
    config["Server"] = {"CAFile": str(other_cert)}
    d = daemons(token=access1, env={"STATE_DIRECTORY": str(tmp_path / "s1")}, config=config)
    wait_online(server, signals)
    harness.wait_until(lambda: "Cannot renew the token" in d.log(), 10,
                       what="a failed renewal")
    assert auth.requests == []
    d.stop()

    # The right CA: renewed.
    config["Server"] = {"CAFile": str(cert)}
    server.reset_stats()
    daemons(token=access1, env={"STATE_DIRECTORY": str(tmp_path / "s2")}, config=config)
    harness.wait_until(lambda: auth.requests, 10, what="a renewal request over TLS")
    server.wait_stats(lambda s: any(e["authorized"] for e in subscription_emits(s)
                                    if e["at"] >= auth.requests[0]["at"] * 1000), 10,
                      "a subscription with the renewed token")


# ---------------------------------------------------------------------------

def test_zz_no_token_in_any_daemon_log():
    """The whole run: every daemon log seen so far holds none of the tokens
    handed out (access and refresh tokens alike)."""
    if not ALL_LOGS:
        pytest.skip("no daemon ran in this session (run the whole file)")
    for i, log in enumerate(ALL_LOGS):
        check_no_secret(log, f"daemon log #{i}")
