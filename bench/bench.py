#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""samdock-eventd's benchmark: runs every phase on this machine, on
127.0.0.1 and a private dbus-daemon, prints a table and writes the same
figures as JSON. bench/run builds what this needs and then calls it; see
bench/README.md for what each figure means.

Processes (all started here, all stopped here by pid):
    dbus-daemon          private bus, session-like policy, no activation
    bench-server.js      Socket.IO server that sends the events
    samdock-eventd       the release build under test (also under callgrind)
    bench-ceiling        sd-bus emitter straight onto the bus
    py-bridge.py         the Python reference bridge
    bench-subscriber     counts signals, checks sequence numbers, latency

Clocks: senders stamp CLOCK_MONOTONIC ns into each payload and the
subscriber reads the same clock on arrival; this script uses
time.monotonic_ns(), the same clock again.
"""

import argparse
import datetime
import json
import os
import platform
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")

FULL = dict(events=200000, repeat=3, py_events=200000, callgrind_events=20000,
            latency_seconds=30, rate=1000, mem_events=1000000, reconnects=100,
            stall_seconds=5, stall_rate=20000, idle_seconds=3, quiet_wait=120)
QUICK = dict(events=50000, repeat=1, py_events=10000, callgrind_events=5000,
             latency_seconds=10, rate=1000, mem_events=200000, reconnects=20,
             stall_seconds=3, stall_rate=20000, idle_seconds=2, quiet_wait=30)

BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC
 "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={path}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
    <allow own="*"/>
  </policy>
  <!-- the limits of Debian's session.conf -->
  <limit name="max_incoming_bytes">1000000000</limit>
  <limit name="max_outgoing_bytes">1000000000</limit>
  <limit name="max_message_size">1000000000</limit>
</busconfig>
"""


class BenchError(Exception):
    pass


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# processes and /proc

class Procs:
    """Every child, so that each is stopped (by its pid) however we leave."""

    def __init__(self):
        self.children = []

    def start(self, cmd, env, log_path=None, stdout=None):
        err = open(log_path, "ab") if log_path else subprocess.DEVNULL
        p = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL,
                             stdout=stdout if stdout is not None else err, stderr=err,
                             start_new_session=True)
        self.children.append(p)
        return p

    def stop(self, p, sig=signal.SIGTERM, timeout=10):
        if p.poll() is None:
            try:
                os.kill(p.pid, signal.SIGCONT)
                os.kill(p.pid, sig)
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(5)
            except ProcessLookupError:
                pass
        if p in self.children:
            self.children.remove(p)
        return p.returncode

    def stop_all(self):
        for p in list(reversed(self.children)):
            self.stop(p, timeout=5)


def read_line(p, timeout, what):
    """The first line a child prints, within timeout seconds."""
    deadline = time.monotonic() + timeout
    buf = b""
    fd = p.stdout.fileno()
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0 or p.poll() is not None:
            raise BenchError(f"{what} did not start (exit status {p.poll()})")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                raise BenchError(f"{what} closed its output")
            buf += chunk
    return buf.split(b"\n", 1)[0].decode()


def cpu_usec(pid, which="both"):
    """utime + stime (or one of them) of the whole process, from
    /proc/PID/stat, in µs."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    user, system = int(fields[11]), int(fields[12])
    ticks = {"both": user + system, "user": user, "system": system}[which]
    return ticks * 1e6 / CLK_TCK


def sched_usec(pid):
    """Time on CPU in µs at ns resolution (/proc/PID/schedstat), summed over
    threads; None where the kernel does not keep it."""
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return total / 1000


def machine_busy_usec():
    """CPU time all processes on the machine spent, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) * 1e6 / CLK_TCK


def mem_kib(pid, pss=False):
    """VmRSS and its parts from /proc/PID/status; with pss, also the
    proportional set size, which shares library pages out fairly."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                out[key] = int(value.split()[0])
    if pss:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        out["Pss"] = int(line.split()[1])
        except OSError:
            pass
    return out


class RssSampler:
    """Samples VmRSS of some processes every interval, in a thread."""

    def __init__(self, pids, interval=0.02):
        self.pids = pids
        self.interval = interval
        self.peak = {name: 0 for name in pids}
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop_event.is_set():
            for name, pid in self.pids.items():
                try:
                    self.peak[name] = max(self.peak[name], mem_kib(pid)["VmRSS"])
                except (OSError, KeyError):
                    pass
            self.stop_event.wait(self.interval)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        self.thread.join(5)


# ---------------------------------------------------------------------------
# the bench server's control API (127.0.0.1 only, never through a proxy)

_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def control(port, method, path, body=None, timeout=10):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with _opener.open(req, timeout=timeout) as r:
        return json.loads(r.read())


def wait_until(pred, timeout, what, interval=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise BenchError(f"timed out after {timeout:g} s waiting for {what}")


# ---------------------------------------------------------------------------
# the run

class Bench:
    def __init__(self, args):
        self.args = args
        self.procs = Procs()
        self.tmp = Path(tempfile.mkdtemp(prefix="samdock-bench."))
        self.build = Path(args.build_dir).resolve()
        self.env = self.clean_env()
        self.results = {}
        self.server = None
        self.port = None
        self.skip = set(args.skip.split(",")) if args.skip else set()

    def clean_env(self):
        env = dict(os.environ)
        for k in list(env):
            if k.lower() in ("http_proxy", "https_proxy", "all_proxy", "no_proxy") or k in (
                    "DBUS_SYSTEM_BUS_ADDRESS", "NOTIFY_SOCKET", "WATCHDOG_USEC",
                    "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID", "CREDENTIALS_DIRECTORY"):
                del env[k]
        return env

    def logfile(self, name):
        return self.tmp / f"{name}.log"

    # -- fixtures -----------------------------------------------------------

    def start_bus(self):
        conf = self.tmp / "bus.conf"
        conf.write_text(BUS_CONFIG.format(path=self.tmp / "bus"))
        self.bus = self.procs.start(["dbus-daemon", f"--config-file={conf}", "--nofork",
                                     "--print-address=1"], self.env,
                                    self.logfile("dbus-daemon"), stdout=subprocess.PIPE)
        address = read_line(self.bus, 15, "dbus-daemon")
        self.env["DBUS_SESSION_BUS_ADDRESS"] = address

    def start_server(self):
        token = self.tmp / "token"
        fd = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            # made up here; the bench server expects it, nothing else sees it
            f.write("bench-" + os.urandom(12).hex() + "\n")
        self.token_file = token
        self.server = self.procs.start(
            ["node", str(BENCH / "bench-server.js"), "--port", "0", "--token-file", str(token)],
            self.env, self.logfile("bench-server"), stdout=subprocess.PIPE)
        ready = json.loads(read_line(self.server, 30, "bench-server.js"))
        self.port = ready["port"]

    def stats(self):
        return control(self.port, "GET", "/_test/stats")

    def wait_subscribed(self, timeout, after=0):
        return wait_until(lambda: (lambda s: s if s["subscribers"] >= 1 and
                                   s["subscriptions"] > after else None)(self.stats()),
                          timeout, "the bridge to subscribe")

    def start_daemon(self, wrapper=(), timeout=20):
        conf = self.tmp / "eventd.conf"
        conf.write_text("")
        cmd = [*wrapper, str(self.build / "samdock-eventd"), "--session",
               "--config", str(conf), "--url", f"http://127.0.0.1:{self.port}",
               "--token-file", str(self.token_file),
               # quick reconnects, so that 100 of them take seconds, not minutes
               "--initial-delay", "50ms", "--max-delay", "200ms"]
        before = self.stats()["subscriptions"]
        p = self.procs.start(cmd, self.env, self.logfile("samdock-eventd"))
        self.wait_subscribed(timeout, before)
        return p

    def start_py_bridge(self, timeout=30):
        before = self.stats()["subscriptions"]
        p = self.procs.start(["/usr/bin/python3", str(BENCH / "py-bridge.py"), "--url",
                              f"http://127.0.0.1:{self.port}", "--token-file",
                              str(self.token_file)], self.env, self.logfile("py-bridge"))
        self.wait_subscribed(timeout, before)
        return p

    def subscriber(self, count, latency=False, resumed=0, idle_timeout=30):
        cmd = [str(self.build / "bench-subscriber"), "--count", str(count),
               "--idle-timeout", str(idle_timeout), "--timeout", "3600"]
        if latency:
            cmd.append("--latency")
        if resumed:
            cmd += ["--resumed", str(resumed)]
        p = self.procs.start(cmd, self.env, self.logfile("subscriber"), stdout=subprocess.PIPE)
        if read_line(p, 15, "bench-subscriber") != "ready":
            raise BenchError("bench-subscriber said something odd")
        return p

    def subscriber_result(self, p, timeout=600):
        out, _ = p.communicate(timeout=timeout)
        self.procs.children.remove(p)
        lines = [ln for ln in out.decode().splitlines() if ln.startswith("{")]
        if not lines:
            raise BenchError(f"bench-subscriber printed no result (status {p.returncode})")
        return json.loads(lines[-1])

    # -- sending ------------------------------------------------------------

    def server_send(self, count, rate=0):
        """Starts a send job on the server; returns its start time (ns)."""
        r = control(self.port, "POST", "/_bench/send",
                    {"count": count, "rate": rate, "startSeq": 0})
        if not r["started"]:
            raise BenchError("the bench server has no subscriber to send to")
        return int(r["startNs"])

    def server_status(self):
        return control(self.port, "GET", "/_bench/status")

    def wait_quiet(self):
        """On a shared machine (CI, other sessions' tests) waits, up to
        --quiet-wait seconds, for a second in which other work took less than
        --quiet-below percent of the CPUs; our own processes are idle here."""
        a = self.args
        deadline = time.monotonic() + a.quiet_wait
        while True:
            b0 = machine_busy_usec()
            time.sleep(0.5)
            load = (machine_busy_usec() - b0) / (0.5e6 * (os.cpu_count() or 1)) * 100
            if load < a.quiet_below or time.monotonic() >= deadline:
                return load
            log(f"waiting for a quieter machine (other work: {load:.0f}% of the CPUs)")
            time.sleep(2)

    def run_through(self, sender_pid, count, rate=0, latency=False, ceiling=False):
        """One measured run: a fresh subscriber, N events through the bridge
        (or the ceiling emitter), CPU of every process involved."""
        if count >= 1000:
            self.wait_quiet()
        sub = self.subscriber(count, latency=latency)
        pids = {"bus": self.bus.pid, "subscriber": sub.pid}
        if sender_pid:
            pids["bridge"] = sender_pid
        if not ceiling:
            pids["server"] = self.server.pid
        busy0, t0 = machine_busy_usec(), time.monotonic()
        cpu0 = {k: cpu_usec(v) for k, v in pids.items()}
        split0 = {w: cpu_usec(sender_pid, w) for w in ("user", "system")} if sender_pid else {}
        sched0 = {k: sched_usec(v) for k, v in pids.items()}
        if ceiling:
            cmd = [str(self.build / "bench-ceiling"), "--count", str(count)]
            if rate:
                cmd += ["--rate", str(rate)]
            em = self.procs.start(cmd, self.env, self.logfile("ceiling"), stdout=subprocess.PIPE)
            pids["bridge"] = em.pid
            # the emitter reports its own CPU (getrusage) as it exits
            cpu0["bridge"] = 0.0
            out, _ = em.communicate(timeout=600)
            self.procs.children.remove(em)
            if em.returncode != 0:
                raise BenchError(f"bench-ceiling failed with status {em.returncode}")
            emitted = json.loads(out.decode().strip().splitlines()[-1])
            start_ns = emitted["start_ns"]
        else:
            start_ns = self.server_send(count, rate)
        res = self.subscriber_result(sub)
        cpu1, sched1 = {}, {}
        for k, v in pids.items():
            if k == "subscriber" or (ceiling and k == "bridge"):
                continue
            cpu1[k], sched1[k] = cpu_usec(v), sched_usec(v)
        busy1, t1 = machine_busy_usec(), time.monotonic()
        sub_cpu = res.get("cpu_usec", 0)
        if ceiling:
            cpu1["bridge"] = emitted["cpu_usec"]
        ours = sum(cpu1[k] - cpu0[k] for k in cpu1) + sub_cpu
        # Other work on the machine (other users' tests, say) during the run,
        # in percent of all CPUs: the figures are only comparable when low.
        foreign = max(0.0, (busy1 - busy0 - ours) / ((t1 - t0) * 1e6 * (os.cpu_count() or 1)))
        split = {w: round((cpu_usec(sender_pid, w) - split0[w]) / max(res["received"], 1), 2)
                 for w in split0}
        n = res["received"]
        elapsed = (res["last_ns"] - start_ns) / 1e9 if n else float("nan")
        out = {
            "events": count, "received": n, "missing": res["missing"],
            "duplicates": res["duplicates"], "out_of_order": res["out_of_order"],
            "timed_out": res["timed_out"], "seconds": round(elapsed, 3),
            "events_per_sec": round(n / elapsed, 1) if n else 0,
            "mean_payload_bytes": res["mean_payload_bytes"],
            "other_load_percent": round(100 * foreign, 1),
            "cpu_usec_per_event": {**{k: round((cpu1[k] - cpu0[k]) / max(n, 1), 2)
                                      for k in cpu1},
                                   "subscriber": round(sub_cpu / max(n, 1), 2)},
            "bridge_user_system_usec_per_event": split,
            "sched_usec_per_event": {k: round((sched1[k] - sched0[k]) / max(n, 1), 2)
                                     for k in sched1 if sched1[k] is not None
                                     and sched0[k] is not None},
        }
        if latency:
            out["latency_us"] = res.get("latency_us")
        if not ceiling:
            st = self.server_status()
            out["server"] = {"drain_waits": st.get("drainWaits"),
                             "max_buffered_bytes": st.get("maxBufferedBytes")}
        if n != count or res["missing"] or res["duplicates"]:
            out["error"] = f"lost or duplicated events: {res}"
        return out

    # -- phases -------------------------------------------------------------

    def phase_daemon(self):
        a = self.args
        r = self.results.setdefault("samdock_eventd", {})
        log("samdock-eventd: start, idle RSS")
        d = self.start_daemon()
        time.sleep(a.idle_seconds)
        r["rss_idle_kib"] = mem_kib(d.pid, pss=True)
        self.run_through(d.pid, 2000)       # warm-up, not reported

        # Bridge and ceiling take turns, so that both see the same machine:
        # on a shared VM the bus' pace drifts by tens of percent over minutes.
        with_ceiling = "ceiling" not in self.skip
        runs, ceiling_runs = [], []
        for i in range(a.repeat):
            log(f"throughput {i + 1}/{a.repeat}: samdock-eventd, {a.events} events")
            runs.append(self.run_through(d.pid, a.events))
            if with_ceiling:
                log(f"throughput {i + 1}/{a.repeat}: ceiling, {a.events} events")
                ceiling_runs.append(self.run_through(None, a.events, ceiling=True))
        r["throughput_runs"] = runs
        r["throughput"] = median_run(runs)

        log(f"latency at {a.rate}/s for {a.latency_seconds} s: samdock-eventd")
        r["latency"] = self.run_through(d.pid, a.rate * a.latency_seconds, rate=a.rate,
                                        latency=True)
        if with_ceiling:
            c = self.results.setdefault("ceiling", {})
            c["throughput_runs"] = ceiling_runs
            c["throughput"] = median_run(ceiling_runs)
            log(f"latency at {a.rate}/s for {a.latency_seconds} s: ceiling")
            c["latency"] = self.run_through(None, a.rate * a.latency_seconds, rate=a.rate,
                                            latency=True, ceiling=True)

        log(f"samdock-eventd: memory over {a.mem_events} events")
        r["memory"] = self.memory(d)

        log(f"samdock-eventd: {a.reconnects} reconnects")
        r["reconnects"] = self.reconnects(d)

        log(f"samdock-eventd: backpressure, subscriber stopped {a.stall_seconds} s")
        r["stall_subscriber"] = self.stall(d, "subscriber")
        log(f"samdock-eventd: backpressure, dbus-daemon stopped {a.stall_seconds} s")
        r["stall_bus"] = self.stall(d, "bus")
        r["rss_end_kib"] = mem_kib(d.pid, pss=True)
        r["counters"] = self.counters()

        t0 = time.monotonic()
        status = self.procs.stop(d)
        r["sigterm"] = {"exit_status": status, "seconds": round(time.monotonic() - t0, 3)}

    def counters(self):
        out = {}
        for prop in ("EventsEmitted", "EventsDropped"):
            p = subprocess.run(["busctl", "--user", "get-property", "app.samdock.Events",
                                "/app/samdock/Events", "app.samdock.Events", prop],
                               env=self.env, capture_output=True, text=True, timeout=10)
            m = re.match(r"t (\d+)", p.stdout)
            out[prop] = int(m.group(1)) if m else None
        return out

    def memory(self, d):
        a = self.args
        batches = 10
        per = max(a.mem_events // batches, 1)
        samples = []
        before = mem_kib(d.pid)
        sub = self.subscriber(per * batches, idle_timeout=60)
        for i in range(batches):
            r = control(self.port, "POST", "/_bench/send",
                        {"count": per, "startSeq": i * per})
            if not r["started"]:
                raise BenchError("no subscriber")
            wait_until(lambda: not self.server_status()["sending"], 600, "a batch to go out",
                       interval=0.1)
            samples.append({"events": (i + 1) * per, **mem_kib(d.pid)})
        res = self.subscriber_result(sub)
        time.sleep(1.5)     # let the last signals and the counter flush go out
        after = mem_kib(d.pid, pss=True)
        out = {"events": per * batches, "received": res["received"],
               "missing": res["missing"], "samples": samples,
               "rss_before_kib": before["VmRSS"], "hwm_before_kib": before["VmHWM"],
               "rss_after_kib": after["VmRSS"], "hwm_after_kib": after["VmHWM"],
               "detail_after": after,
               # VmRSS swings by a megabyte or two as malloc hands pages back
               # and takes them again (the sd-bus queue fills to its 4096
               # messages now and then); a leak shows as a peak that keeps
               # rising after the runs before this phase set it.
               "growth_kib": after["VmHWM"] - before["VmHWM"]}
        if res["missing"] or res["received"] != per * batches:
            out["error"] = f"lost events: {res}"
        return out

    def reconnects(self, d):
        a = self.args
        per = 10
        before_rss = mem_kib(d.pid)["VmRSS"]
        sub = self.subscriber(a.reconnects * per, resumed=a.reconnects, idle_timeout=60)
        t0 = time.monotonic()
        for i in range(a.reconnects):
            subs = self.stats()["subscriptions"]
            control(self.port, "POST", "/_test/drop")
            self.wait_subscribed(30, subs)
            control(self.port, "POST", "/_bench/send", {"count": per, "startSeq": i * per})
            wait_until(lambda: not self.server_status()["sending"], 30, "events to go out")
        seconds = time.monotonic() - t0
        res = self.subscriber_result(sub)
        time.sleep(1.5)
        after = mem_kib(d.pid, pss=True)
        out = {"reconnects": a.reconnects, "seconds": round(seconds, 2),
               "resumed_signals": res["resumed"], "events_between": res["received"],
               "missing": res["missing"], "rss_before_kib": before_rss,
               "rss_after_kib": after["VmRSS"], "detail_after": after,
               "growth_kib": after["VmRSS"] - before_rss}
        if res["resumed"] != a.reconnects or res["missing"]:
            out["error"] = f"reconnects incomplete: {res}"
        return out

    def stall(self, d, who):
        """Events at a steady stall_rate; after 1 s the subscriber or the bus
        is stopped for stall_seconds. Nothing may be lost, the daemon's
        memory must stay bounded (it pauses reading the WebSocket while
        sd-bus' queue is long) and the server must not drop the connection
        (the stall is shorter than its ping deadline)."""
        a = self.args
        count = a.stall_rate * (a.stall_seconds + 4)
        sub = self.subscriber(count, idle_timeout=a.stall_seconds + 30)
        target = sub.pid if who == "subscriber" else self.bus.pid
        connects = self.stats()["connects"]
        rss_before = mem_kib(d.pid)["VmRSS"]
        with RssSampler({"daemon": d.pid, "bus": self.bus.pid}) as sampler:
            start_ns = self.server_send(count, rate=a.stall_rate)
            time.sleep(1)
            sent_at_stop = self.server_status()["sent"]
            os.kill(target, signal.SIGSTOP)
            try:
                time.sleep(a.stall_seconds / 2)
                rss_mid = mem_kib(d.pid)["VmRSS"]
                time.sleep(a.stall_seconds / 2)
                sent_at_cont = self.server_status()["sent"]
                rss_end = mem_kib(d.pid)["VmRSS"]
            finally:
                os.kill(target, signal.SIGCONT)
            res = self.subscriber_result(sub)
        st = self.server_status()
        out = {"stalled": who, "stall_seconds": a.stall_seconds, "rate": a.stall_rate,
               "events": count, "received": res["received"], "missing": res["missing"],
               "duplicates": res["duplicates"], "out_of_order": res["out_of_order"],
               # what the server could write while the far end was stopped:
               # rate x stall when nothing pushes back, far less when it does
               "sent_during_stall": sent_at_cont - sent_at_stop,
               "seconds": round((res["last_ns"] - start_ns) / 1e9, 2),
               "rss_before_kib": rss_before, "rss_mid_stall_kib": rss_mid,
               "rss_end_of_stall_kib": rss_end, "rss_peak_kib": sampler.peak["daemon"],
               "bus_rss_peak_kib": sampler.peak["bus"],
               "server_drain_waits": st.get("drainWaits"),
               "server_max_buffered_bytes": st.get("maxBufferedBytes"),
               "reconnected": self.stats()["connects"] != connects}
        if res["missing"] or res["duplicates"] or res["received"] != count:
            out["error"] = f"lost events: {res}"
        elif out["reconnected"]:
            out["error"] = "the server dropped the bridge during the stall"
        return out

    def phase_callgrind(self):
        a = self.args
        if not shutil.which("valgrind"):
            self.results["callgrind"] = {"error": "valgrind is not installed"}
            return
        log(f"callgrind: {a.callgrind_events} events through samdock-eventd under callgrind")
        out_file = self.tmp / "callgrind.out"
        wrapper = ["valgrind", "--tool=callgrind", "--dump-instr=no",
                   f"--callgrind-out-file={out_file}"]
        d = self.start_daemon(wrapper=wrapper, timeout=120)
        self.run_through(d.pid, 500)     # first-use paths out of the way
        time.sleep(1)
        ctl = lambda *o: subprocess.run(["callgrind_control", *o, str(d.pid)],  # noqa: E731
                                        capture_output=True, text=True, timeout=60)
        if ctl("-z").returncode != 0:
            raise BenchError("callgrind_control --zero failed")
        run = self.run_through(d.pid, a.callgrind_events)
        if ctl("--dump=bench").returncode != 0:
            raise BenchError("callgrind_control --dump failed")
        self.procs.stop(d, timeout=60)
        dumps = sorted(self.tmp.glob("callgrind.out*"), key=lambda p: p.stat().st_mtime)
        dump = next((p for p in dumps if "bench" in p.read_text(errors="replace")[:2000]),
                    None)
        if not dump:
            raise BenchError("no callgrind dump found")
        total = callgrind_total(dump)
        n = run["received"]
        rows = callgrind_functions(dump)
        per = lambda key: [  # noqa: E731
            {"function": r["function"], "object": r["object"],
             "ir_per_event": round(r[key] / max(n, 1)),
             "percent": round(100 * r[key] / total, 1)}
            for r in sorted(rows, key=lambda r: -r[key])[:30]]
        self.results["callgrind"] = {
            "events": n, "instructions": total,
            "instructions_per_event": round(total / max(n, 1)),
            "self_top": per("self"), "inclusive_top": per("inclusive"),
        }
        if a.keep:
            self.results["callgrind"]["dump"] = str(dump)

    def phase_python(self):
        a = self.args
        r = self.results.setdefault("python", {})
        log("python bridge: start")
        p = self.start_py_bridge()
        time.sleep(a.idle_seconds)
        r["rss_idle_kib"] = mem_kib(p.pid, pss=True)
        self.run_through(p.pid, 500)
        log(f"python bridge: throughput, {a.py_events} events")
        r["throughput"] = self.run_through(p.pid, a.py_events)
        r["rss_after_kib"] = mem_kib(p.pid)
        if a.py_latency:
            log(f"python bridge: latency at {a.rate}/s for {a.latency_seconds} s")
            r["latency"] = self.run_through(p.pid, a.rate * a.latency_seconds, rate=a.rate,
                                            latency=True)
        self.procs.stop(p)

    # -- driver -------------------------------------------------------------

    def run(self):
        phases = [("daemon", self.phase_daemon), ("callgrind", self.phase_callgrind),
                  ("python", self.phase_python)]
        skip = self.skip
        started = time.monotonic()
        try:
            self.start_bus()
            self.start_server()
            for name, fn in phases:
                if name in skip:
                    continue
                try:
                    fn()
                except (BenchError, OSError, subprocess.SubprocessError, ValueError) as e:
                    log(f"{name}: FAILED: {e}")
                    self.results.setdefault("errors", []).append(f"{name}: {e}")
        finally:
            self.procs.stop_all()
            self.results["wall_seconds"] = round(time.monotonic() - started, 1)
        return self.results

    def cleanup(self):
        if self.args.keep:
            log(f"logs kept in {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


def median_run(runs):
    ok = [r for r in runs if "error" not in r] or runs
    ok = sorted(ok, key=lambda r: r["events_per_sec"])
    return ok[len(ok) // 2]


def callgrind_total(path):
    for line in Path(path).read_text(errors="replace").splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise BenchError(f"no totals in {path}")


def callgrind_functions(path):
    """Self and inclusive Ir per function from a callgrind dump, read here
    rather than through callgrind_annotate, whose 3.19 release puts all of
    a dump without debug information under __libc_start_main. Inclusive is
    self plus the calls made, recursion folded (approximate across cycles)."""
    names = {"ob": {}, "fn": {}}
    kinds = {"ob": "ob", "cob": "ob", "fn": "fn", "cfn": "fn"}

    def resolve(kind, text):
        m = re.match(r"\((\d+)\)(?:\s+(.*))?$", text)
        if not m:
            return text
        if m.group(2) is not None:
            names[kind][m.group(1)] = m.group(2)
        return names[kind].get(m.group(1), text)

    def fold(name):
        return re.sub(r"'\d+$", "", name)

    self_ir, calls_ir = {}, {}
    ob = cob = None
    fn = callee = None
    in_call = False
    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            key, eq, rest = line.partition("=")
            if eq and key in kinds:
                value = resolve(kinds[key], rest)
                if key == "ob":
                    ob = cob = value
                elif key == "cob":
                    cob = value
                elif key == "fn":
                    fn, cob = (fold(value), ob), ob
                else:
                    callee = (fold(value), cob)
                continue
            if key == "calls" and eq:
                in_call = True
                continue
            if not line or not (line[0].isdigit() or line[0] in "+-*"):
                continue
            parts = line.split()
            cost = int(parts[1]) if len(parts) > 1 else 0
            if in_call:
                if callee != fn:
                    calls_ir[fn] = calls_ir.get(fn, 0) + cost
                in_call = False
                cob = ob
            else:
                self_ir[fn] = self_ir.get(fn, 0) + cost
    rows = []
    for key in set(self_ir) | set(calls_ir):
        name, obj = key
        rows.append({"function": name, "object": os.path.basename(obj or "?"),
                     "self": self_ir.get(key, 0),
                     "inclusive": self_ir.get(key, 0) + calls_ir.get(key, 0)})
    return rows


# ---------------------------------------------------------------------------
# machine, table, JSON

def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except subprocess.SubprocessError:
        return ""


def machine():
    model = sh("lscpu | sed -n 's/^Model name: *//p'")
    return {
        "cpus": os.cpu_count(), "cpu_model": model,
        "hypervisor": sh("lscpu | sed -n 's/^Hypervisor vendor: *//p'"),
        "memory": sh("free -h | awk '/^Mem:/ {print $2}'"),
        "kernel": platform.release(),
        "os": sh(". /etc/os-release && echo \"$PRETTY_NAME\""),
        "debian_version": sh("cat /etc/debian_version"),
        "versions": {
            "libwebsockets": sh("dpkg-query -W -f='${Version}' libwebsockets17"),
            "libsystemd": sh("dpkg-query -W -f='${Version}' libsystemd0"),
            "json-c": sh("dpkg-query -W -f='${Version}' libjson-c5"),
            "dbus-daemon": sh("dpkg-query -W -f='${Version}' dbus"),
            "node": sh("node --version"),
            "python3-socketio": sh("dpkg-query -W -f='${Version}' python3-socketio"),
            "valgrind": sh("valgrind --version"),
        },
    }


def source_commit():
    """The commit the daemon was built from, "+changes" when src/ differs."""
    head = sh(f"git -C '{REPO}' rev-parse --short HEAD 2>/dev/null")
    if not head:
        return None
    dirty = sh(f"git -C '{REPO}' status --porcelain -- src meson.build 2>/dev/null")
    return head + ("+changes" if dirty else "")


def fmt(v, spec="{:,.0f}"):
    if v is None:
        return "–"
    try:
        return spec.format(v)
    except (ValueError, TypeError):
        return str(v)


def summarize(res):
    """The headline figures and whether each target holds."""
    d = res.get("samdock_eventd", {})
    c = res.get("ceiling", {})
    p = res.get("python", {})
    g = res.get("callgrind", {})
    s = {}
    get = lambda dct, *path: _dig(dct, path)  # noqa: E731
    s["bridge_eps_runs"] = [r["events_per_sec"] for r in d.get("throughput_runs", [])]
    s["ceiling_eps_runs"] = [r["events_per_sec"] for r in c.get("throughput_runs", [])]
    s["other_load_percent_max"] = max(
        [r.get("other_load_percent", 0) for r in d.get("throughput_runs", []) +
         c.get("throughput_runs", []) + [d.get("latency", {}), c.get("latency", {})]
         if isinstance(r, dict)] or [None], key=lambda v: v or 0)
    s["bridge_eps"] = get(d, "throughput", "events_per_sec")
    s["ceiling_eps"] = get(c, "throughput", "events_per_sec")
    s["python_eps"] = get(p, "throughput", "events_per_sec")
    s["fraction_of_ceiling"] = (round(s["bridge_eps"] / s["ceiling_eps"], 3)
                                if s["bridge_eps"] and s["ceiling_eps"] else None)
    s["times_python"] = (round(s["bridge_eps"] / s["python_eps"], 1)
                         if s["bridge_eps"] and s["python_eps"] else None)
    s["daemon_cpu_usec_per_event"] = get(d, "throughput", "cpu_usec_per_event", "bridge")
    s["python_cpu_usec_per_event"] = get(p, "throughput", "cpu_usec_per_event", "bridge")
    s["instructions_per_event"] = get(g, "instructions_per_event")
    for who, src in (("bridge", d), ("ceiling", c), ("python", p)):
        for q in ("p50", "p99", "max"):
            s[f"{who}_latency_{q}_us"] = get(src, "latency", "latency_us", q)
    if s["bridge_latency_p99_us"] is not None and s["ceiling_latency_p99_us"] is not None:
        s["added_latency_p99_us"] = round(s["bridge_latency_p99_us"] -
                                          s["ceiling_latency_p99_us"], 1)
    else:
        s["added_latency_p99_us"] = None
    s["rss_idle_kib"] = get(d, "rss_idle_kib", "VmRSS")
    s["rss_after_mem_kib"] = get(d, "memory", "rss_after_kib")
    s["rss_growth_mem_kib"] = get(d, "memory", "growth_kib")
    s["rss_after_reconnects_kib"] = get(d, "reconnects", "rss_after_kib")
    s["python_rss_idle_kib"] = get(p, "rss_idle_kib", "VmRSS")
    holds = {}
    if s["fraction_of_ceiling"] is not None:
        holds["throughput >= 0.7 of ceiling"] = s["fraction_of_ceiling"] >= 0.7
    if s["times_python"] is not None:
        holds[">= 20x Python"] = s["times_python"] >= 20
    if s["daemon_cpu_usec_per_event"] is not None:
        holds["CPU < 6 us/event"] = s["daemon_cpu_usec_per_event"] < 6
    if s["added_latency_p99_us"] is not None and s["added_latency_p99_us"] >= 0:
        # a ceiling slower than the bridge means the runs were disturbed
        holds["added p99 < 1 ms"] = s["added_latency_p99_us"] < 1000
    if s["rss_idle_kib"] is not None:
        holds["RSS idle < 8 MiB"] = s["rss_idle_kib"] < 8192
    if s["rss_growth_mem_kib"] is not None:
        # 256 KiB allows for malloc's trimming moving a few pages either way
        holds["no growth after warm-up"] = s["rss_growth_mem_kib"] <= 256
    for k in ("stall_subscriber", "stall_bus"):
        if k in d:
            holds[f"{k}: nothing lost, no drop"] = "error" not in d[k]
    s["targets"] = holds
    return s


def _dig(dct, path):
    for k in path:
        if not isinstance(dct, dict) or k not in dct:
            return None
        dct = dct[k]
    return dct


def table(res, args):
    s = res["summary"]
    d = res.get("samdock_eventd", {})
    yes = lambda k: {True: "yes", False: "**no**"}.get(s["targets"].get(k), "–")  # noqa: E731
    mib = lambda k: fmt(k / 1024 if k is not None else None, "{:.1f} MiB")  # noqa: E731
    lat = lambda who: " / ".join(fmt(s[f"{who}_latency_{q}_us"], "{:,.0f}")  # noqa: E731
                                 for q in ("p50", "p99", "max")) + " µs"
    spread = lambda runs: (f", runs {fmt(min(runs))}–{fmt(max(runs))}"  # noqa: E731
                           if len(runs) > 1 else "")
    rows = [
        ("throughput, events/s (N=%s)" % f"{args.events:,}",
         f"{fmt(s['bridge_eps'])} ({fmt(s['fraction_of_ceiling'], '{:.2f}')} of ceiling"
         f"{spread(s['bridge_eps_runs'])})",
         ">= 0.7 of ceiling", yes("throughput >= 0.7 of ceiling")),
        ("ceiling: sd-bus emitter, events/s",
         fmt(s["ceiling_eps"]) + (f" (runs {fmt(min(s['ceiling_eps_runs']))}–"
                                  f"{fmt(max(s['ceiling_eps_runs']))})"
                                  if len(s["ceiling_eps_runs"]) > 1 else ""), "", ""),
        ("Python bridge, events/s (N=%s)" % f"{args.py_events:,}",
         f"{fmt(s['python_eps'])} (bridge is {fmt(s['times_python'], '{:.1f}')}x)",
         ">= 20x", yes(">= 20x Python")),
        ("daemon CPU per event", fmt(s["daemon_cpu_usec_per_event"], "{:.2f} µs")
         + f" (Python: {fmt(s['python_cpu_usec_per_event'], '{:.0f} µs')})",
         "< 6 µs", yes("CPU < 6 us/event")),
        ("instructions per event (callgrind)", fmt(s["instructions_per_event"]), "", ""),
        (f"latency p50 / p99 / max at {args.rate}/s, bridge", lat("bridge"), "", ""),
        (f"latency p50 / p99 / max at {args.rate}/s, ceiling", lat("ceiling"), "", ""),
        ("added p99 latency (bridge - ceiling)", fmt(s["added_latency_p99_us"], "{:,.0f} µs"),
         "< 1 ms", yes("added p99 < 1 ms")),
        ("RSS idle after start", mib(s["rss_idle_kib"]) + " (PSS "
         + mib(_dig(d, ("rss_idle_kib", "Pss"))) + ")", "< 8 MiB", yes("RSS idle < 8 MiB")),
        (f"RSS after {args.mem_events:,} more events", mib(s["rss_after_mem_kib"])
         + f" (peak grew {fmt(s['rss_growth_mem_kib'], '{:+,} KiB')})",
         "no growth", yes("no growth after warm-up")),
        (f"RSS after {args.reconnects} reconnects", mib(s["rss_after_reconnects_kib"]), "", ""),
    ]
    for k, what in (("stall_subscriber", "subscriber"), ("stall_bus", "dbus-daemon")):
        st = d.get(k)
        if not st:
            continue
        rows.append((f"{what} stopped {st.get('stall_seconds')} s at {st.get('rate'):,}/s",
                     f"lost {st.get('missing')}, RSS {mib(st.get('rss_before_kib'))} -> peak "
                     f"{mib(st.get('rss_peak_kib'))}, server sent "
                     f"{fmt(st.get('sent_during_stall'))} during it, "
                     f"dropped: {'yes' if st.get('reconnected') else 'no'}",
                     "nothing lost, bounded", yes(f"{k}: nothing lost, no drop")))
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    w2 = max(len(r[2]) for r in rows)
    lines = [f"| {'measure'.ljust(w0)} | {'result'.ljust(w1)} | {'target'.ljust(w2)} | holds |",
             f"|{'-' * (w0 + 2)}|{'-' * (w1 + 2)}|{'-' * (w2 + 2)}|-------|"]
    for r in rows:
        lines.append(f"| {r[0].ljust(w0)} | {r[1].ljust(w1)} | {r[2].ljust(w2)} | {r[3]} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", required=True, help="where samdock-eventd and the "
                    "bench helpers were built (bench/run passes it)")
    ap.add_argument("--quick", action="store_true",
                    help="smaller counts and shorter phases (about 75 seconds)")
    for key, help_text in (("events", "events per throughput run"),
                           ("repeat", "throughput runs per bridge (the median is reported)"),
                           ("py-events", "events through the Python bridge"),
                           ("callgrind-events", "events counted under callgrind"),
                           ("latency-seconds", "length of each latency run"),
                           ("rate", "events/s in the latency runs"),
                           ("mem-events", "events in the memory phase"),
                           ("reconnects", "dropped connections in the memory phase"),
                           ("stall-seconds", "how long the subscriber / bus is stopped"),
                           ("stall-rate", "events/s while the subscriber / bus is stopped"),
                           ("idle-seconds", "settling time before the idle RSS")):
        ap.add_argument(f"--{key}", type=int, help=help_text)
    ap.add_argument("--quiet-wait", type=float,
                    help="seconds to wait before each run for other work to calm down "
                    "(120, --quick: 30)")
    ap.add_argument("--quiet-below", type=float, default=10,
                    help="percent of the CPUs that other work may take for a run to start")
    ap.add_argument("--py-latency", action="store_true",
                    help="also measure the Python bridge's latency")
    ap.add_argument("--skip", default="", help="comma-separated phases to leave out: "
                    "daemon, callgrind, ceiling (runs between the daemon's), python")
    ap.add_argument("--out", help="JSON file (default bench/results-DATE.json)")
    ap.add_argument("--keep", action="store_true", help="keep the logs and callgrind dumps")
    args = ap.parse_args()

    defaults = QUICK if args.quick else FULL
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    today = datetime.date.today().isoformat()
    if not args.out:
        args.out = str(BENCH / f"results-{today}{'-quick' if args.quick else ''}.json")

    bench = Bench(args)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        results = bench.run()
    finally:
        bench.cleanup()
    doc = {
        "date": today, "mode": "quick" if args.quick else "full", "commit": source_commit(),
        "settings": {k: getattr(args, k) for k in FULL}, "machine": machine(),
        **results,
    }
    doc["summary"] = summarize(doc)
    Path(args.out).write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    m = doc["machine"]
    print(f"\nsamdock-eventd {doc['commit'] or ''} benchmark, {today}, {m['cpus']} CPUs "
          f"({m['cpu_model']}, "
          f"{m['hypervisor'] or 'bare metal'}), {m['memory']} RAM, {m['os']}, "
          f"kernel {m['kernel']}\n")
    print(table(doc, args))
    load = doc["summary"].get("other_load_percent_max")
    if load is not None:
        print(f"\nOther work on the machine during the measured runs: up to {load:.0f}% of "
              "its CPUs (the figures compare fairly only when this is low).")
    print(f"\nJSON: {args.out}")
    top = doc.get("callgrind", {}).get("self_top")
    if top:
        print("\ncallgrind, instructions per event by function (self):")
        for r in top[:12]:
            print(f"  {r['ir_per_event']:>8,}  {r['percent']:5.1f}%  {r['function']} "
                  f"({r['object']})")
    if doc.get("errors"):
        print("\nerrors:\n  " + "\n  ".join(doc["errors"]))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
