# SPDX-License-Identifier: MIT
"""The documentation against the code: data/dbus/app.samdock.Events.xml
against what the running daemon introspects, every configuration key and
option and every D-Bus member against the man pages, the man pages against
man -l, and the bus examples in app.samdock.Events(5) against the daemon.

Run:
    SAMDOCK_EVENTD=build/samdock-eventd /usr/bin/python3 -m pytest -q \
        tests/integration/test_docs.py
"""

import os
import re
import shlex
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import harness
from harness import IFACE, OBJECT_PATH, REPO_ROOT, STREAM_IFACE, STREAM_PATH_PREFIX

XML_FILE = REPO_ROOT / "data" / "dbus" / "app.samdock.Events.xml"
DEFAULTS_FILE = REPO_ROOT / "data" / "eventd.conf"
MAN_DIR = REPO_ROOT / "man"
PAGES = ["samdock-eventd.8", "samdock-eventd.conf.5", "samdock-eventctl.1",
         "app.samdock.Events.5"]
ERROR_NAMES = ["NotConnected", "Timeout", "InvalidArgument", "AuthFailed", "ServerError"]
EMITS_CHANGED = "org.freedesktop.DBus.Property.EmitsChangedSignal"


# ---------------------------------------------------------------------------
# interfaces

def interface_table(root, name):
    """One <interface> as plain data: members with their arguments (name,
    type, direction), properties with type, access and EmitsChangedSignal."""
    found = [i for i in root.iter("interface") if i.get("name") == name]
    assert len(found) == 1, f"{len(found)} interfaces named {name}"
    iface = found[0]

    def args(element, default_direction):
        return [(a.get("name"), a.get("type"), a.get("direction", default_direction))
                for a in element.findall("arg")]

    def emits(prop):
        notes = {a.get("name"): a.get("value") for a in prop.findall("annotation")}
        return notes.get(EMITS_CHANGED, "true")

    return {
        "methods": {m.get("name"): args(m, "in") for m in iface.findall("method")},
        "signals": {s.get("name"): args(s, "out") for s in iface.findall("signal")},
        "properties": {p.get("name"): (p.get("type"), p.get("access"), emits(p))
                       for p in iface.findall("property")},
    }


def shipped_xml():
    return ET.parse(XML_FILE).getroot()


def introspected(signals, path):
    return ET.fromstring(signals.introspect(path))


def test_shipped_xml_has_exactly_our_two_interfaces():
    names = [i.get("name") for i in shipped_xml().iter("interface")]
    assert names == [IFACE, STREAM_IFACE]
    # a file that D-Bus tools accept as it is
    assert XML_FILE.read_text().startswith("<!DOCTYPE node PUBLIC")


@pytest.mark.parametrize("path,name", [(OBJECT_PATH, IFACE),
                                       (STREAM_PATH_PREFIX + "activities", STREAM_IFACE),
                                       (STREAM_PATH_PREFIX + "import", STREAM_IFACE)])
def test_shipped_xml_matches_the_running_daemon(server, signals, daemon, path, name):
    live = interface_table(introspected(signals, path), name)
    shipped = interface_table(shipped_xml(), name)
    for kind in ("methods", "signals", "properties"):
        missing = sorted(set(live[kind]) - set(shipped[kind]))
        extra = sorted(set(shipped[kind]) - set(live[kind]))
        assert not missing and not extra, \
            f"{name} {kind}: not in the XML: {missing}; only in the XML: {extra}"
        for member, value in live[kind].items():
            assert shipped[kind][member] == value, \
                f"{name}.{member}: the daemon says {value}, the XML {shipped[kind][member]}"


def test_object_manager_is_on_the_main_object(server, signals, daemon):
    names = [i.get("name") for i in introspected(signals, OBJECT_PATH).iter("interface")]
    assert "org.freedesktop.DBus.ObjectManager" in names


# ---------------------------------------------------------------------------
# man pages

def render_roff(page, tmp_path):
    """scdoc's roff for page, built from man/PAGE.scd."""
    scdoc = shutil.which("scdoc")
    if not scdoc:
        pytest.fail("scdoc not found (apt-get install scdoc)")
    out = tmp_path / page
    with open(MAN_DIR / f"{page}.scd", "rb") as src, open(out, "wb") as dst:
        r = subprocess.run([scdoc], stdin=src, stdout=dst, stderr=subprocess.PIPE,
                           timeout=30)
    assert r.returncode == 0, f"scdoc refused {page}.scd: {r.stderr.decode()}"
    return out


def man_text(roff):
    """What man -l shows, as plain text, without hyphenation breaks."""
    env = harness._clean_env({"MANWIDTH": "250", "LC_ALL": "C.UTF-8", "MANPAGER": "cat",
                              "PAGER": "cat"})
    r = subprocess.run(["man", "--warnings", "-l", str(roff)], env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, f"man -l {roff.name} failed: {r.stderr}"
    assert r.stderr == "", f"man -l {roff.name} warns: {r.stderr}"
    text = re.sub("[\u2010\u2011\u2212]", "-", r.stdout)
    text = re.sub(r"-\n\s*", "", text)               # words hyphenated at a line end
    return text.replace("\u2019", "'").replace("\u2018", "'")


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("man")
    return {page: man_text(render_roff(page, tmp)) for page in PAGES}


def words(text):
    return re.sub(r"\s+", " ", text)


@pytest.mark.parametrize("page", PAGES)
def test_man_page_renders(pages, page):
    name, section = page.rsplit(".", 1)
    text = pages[page]
    head = text.lstrip().splitlines()[0]
    assert head.startswith(f"{name}({section})") and head.endswith(f"{name}({section})")
    for heading in ("NAME", "DESCRIPTION", "SEE ALSO"):
        assert re.search(rf"^{heading}$", text, re.M), f"{page} has no {heading}"
    assert re.search(rf"^NAME\n\s+{re.escape(name)} - \S", text, re.M)


@pytest.mark.parametrize("page", PAGES)
def test_meson_builds_the_man_page(page, tmp_path):
    """meson (with scdoc) builds every page, and it renders; a page built
    after its source was last changed is exactly scdoc's output."""
    build = os.environ.get("SAMDOCK_BUILD_DIR")
    if not build:
        pytest.skip("not run by meson test (no SAMDOCK_BUILD_DIR)")
    built = Path(build) / "man" / page
    assert built.exists(), f"meson did not build {built}"
    man_text(built)
    if built.stat().st_mtime >= (MAN_DIR / f"{page}.scd").stat().st_mtime:
        assert built.read_bytes() == render_roff(page, tmp_path).read_bytes()


def test_see_also_points_only_at_pages_that_exist(pages):
    ours = {p.rsplit(".", 1)[0] for p in PAGES}
    for page, text in pages.items():
        see_also = text.split("\nSEE ALSO\n", 1)[1]
        for name, section in re.findall(r"([\w.-]+)\((\d)\)", see_also):
            if name.startswith(("samdock", "app.samdock")):
                assert name in ours and f"{name}.{section}" in PAGES, (page, name)


# ---------------------------------------------------------------------------
# configuration keys and options

def help_keys():
    """(section, key, option) from samdock-eventd --help."""
    out = subprocess.run([str(harness.daemon_binary()), "--help"], capture_output=True,
                         text=True, timeout=10).stdout
    found = re.findall(r"^\s+--([a-z-]+)(?:=VALUE)?\s.*\((\w+) (\w+)=\)$", out, re.M)
    assert len(found) >= 10, out
    return [(section, key, option) for option, section, key in found], out


def defaults_file_keys():
    """{(section, key): default} from the commented defaults file."""
    keys, section = {}, None
    for line in DEFAULTS_FILE.read_text().splitlines():
        m = re.fullmatch(r"\[(\w+)\]", line.strip())
        if m:
            section = m.group(1)
            continue
        m = re.fullmatch(r"#(\w+)=(.*)", line.strip())
        if m and section:
            keys[(section, m.group(1))] = m.group(2)
    return keys


def test_defaults_file_and_help_list_the_same_keys():
    from_help = {(s, k) for s, k, _ in help_keys()[0]}
    from_file = set(defaults_file_keys())
    # Bus= is chosen with --system/--session, so it has no twin in --help
    assert from_file - from_help == {("Bus", "Bus")}
    assert from_help <= from_file, from_help - from_file


def conf_page_entries(text):
    """{(section, key): description} from the OPTIONS of samdock-eventd.conf(5):
    "[Section]" subheadings, each key on a line of its own, then its text."""
    options = text.split("\nOPTIONS\n", 1)[1]
    options = re.split(r"\n[A-Z][A-Z ]+\n", options, maxsplit=1)[0]
    entries, section, current = {}, None, None
    for line in options.splitlines():
        m = re.fullmatch(r" {3}\[(\w+)\]", line)
        if m:
            section, current = m.group(1), None
            continue
        m = re.fullmatch(r" {7}(\w+)=", line)
        if m and section:
            current = (section, m.group(1))
            entries[current] = ""
        elif current:
            entries[current] += " " + line.strip()
    return {k: words(v) for k, v in entries.items()}


def test_every_key_is_documented_with_its_default(pages):
    entries = conf_page_entries(pages["samdock-eventd.conf.5"])
    keys = defaults_file_keys()
    missing = sorted(set(keys) - set(entries))
    assert not missing, f"keys not in samdock-eventd.conf(5): {missing}"
    for (section, key), default in keys.items():
        text = entries[(section, key)]
        if default:
            assert f"Default: {default}." in text, (section, key, default, text)
        else:
            assert "Default: unset" in text, (section, key, text)
    for section, key, option in help_keys()[0]:
        assert f"--{option}" in entries[(section, key)], (key, option)


def test_every_daemon_option_is_in_its_man_page(pages):
    text = pages["samdock-eventd.8"]
    keys, out = help_keys()
    options = re.findall(r"(?<![\w-])(--[a-z-]+|-[a-z]\b)", out)
    for option in options:
        assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text), \
            f"{option} is not in samdock-eventd(8)"
    for section, key, option in keys:
        assert re.search(rf"--{option} .*\[{section}\] {key}=", text), (option, key)
    assert "[Bus] Bus=" in text


def test_every_eventctl_command_and_option_is_in_its_man_page(pages):
    out = subprocess.run([str(harness.daemon_binary().parent / "samdock-eventctl"), "--help"],
                         capture_output=True, text=True, timeout=10)
    if out.returncode != 0 and "SAMDOCK_BUILD_DIR" in os.environ:
        out = subprocess.run([os.environ["SAMDOCK_BUILD_DIR"] + "/samdock-eventctl", "--help"],
                             capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, out
    text = pages["samdock-eventctl.1"]
    commands = re.findall(r"^  ([a-z][a-z-]+) ", out.stdout.split("Commands:")[1]
                          .split("Options:")[0], re.M)
    assert len(commands) == 6, commands
    for command in commands:
        assert re.search(rf"^\s+{command}\b", text, re.M), command
    for option in re.findall(r"(?<![\w-])(--[a-z-]+|-[a-z]\b)", out.stdout):
        assert option in text, option
    status = text.split("\nEXIT STATUS\n", 1)[1].split("\nENVIRONMENT\n")[0]
    assert re.findall(r"^\s+(\d)$", status, re.M) == [str(i) for i in range(7)]


# ---------------------------------------------------------------------------
# the bus API page

def test_every_dbus_member_is_documented(server, signals, daemon, pages):
    text = words(pages["app.samdock.Events.5"])
    for path, name in [(OBJECT_PATH, IFACE), (STREAM_PATH_PREFIX + "activities", STREAM_IFACE)]:
        live = interface_table(introspected(signals, path), name)
        for member, args in list(live["methods"].items()) + list(live["signals"].items()):
            ins = ", ".join(f"{t} {n}" for n, t, d in args if d == "in")
            outs = ", ".join(f"{t} {n}" for n, t, d in args if d == "out")
            if member in live["methods"]:
                form = f"{member}({ins}) -> ({outs})"
            else:
                form = f"{member}({outs})"
            assert form in text, f"{form} is not in app.samdock.Events(5)"
        for prop, (sig, _, _) in live["properties"].items():
            assert re.search(rf"(?<![\w.]){prop} {re.escape(sig)} ", text), \
                f"property {prop} {sig} is not in app.samdock.Events(5)"
    for error in ERROR_NAMES:
        assert f"app.samdock.Events.Error.{error}" in text
    for state in ["online", "degraded", "connecting", "offline", "auth-failed", "idle",
                  "connected", "backoff", "stopped"]:
        assert state in text


def test_the_pages_agree_on_states_and_exit_codes(pages):
    daemon_page = words(pages["samdock-eventd.8"])
    for state in ["idle", "connecting", "connected", "backoff", "auth-failed", "stopped",
                  "online", "degraded", "offline"]:
        assert re.search(rf"(?<![\w-]){state} ", daemon_page), state
    assert re.search(r"EXIT STATUS 0 .* 1 .* 78 ", daemon_page)
    for sig in ["SIGTERM", "SIGHUP"]:
        assert sig in daemon_page


def example_commands(text):
    """The busctl and gdbus command lines in the EXAMPLES of a page, with
    their continuation lines joined."""
    examples = text.split("\nEXAMPLES\n", 1)[1].split("\nSEE ALSO\n")[0]
    commands, current = [], None
    for line in examples.splitlines():
        line = line.strip()
        if current is not None:
            current += " " + line
        elif line.startswith(("$ busctl", "$ gdbus")):
            current = line[2:]
        if current is not None and current.endswith("\\"):
            current = current[:-1].rstrip()
        elif current is not None:
            commands.append(current)
            current = None
    return commands


def test_bus_examples_in_the_api_page_work(server, signals, daemon, bus, pages):
    server.wait_subscribed(1)
    harness.wait_until(lambda: signals.get_property(OBJECT_PATH, IFACE, "State") == "online",
                       10, what="online")
    commands = [c for c in example_commands(pages["app.samdock.Events.5"])
                if " monitor" not in c]
    assert len(commands) >= 8, commands
    env = harness._clean_env({"DBUS_SESSION_BUS_ADDRESS": bus.address, "LC_ALL": "C.UTF-8",
                              "SYSTEMD_PAGER": "cat", "PAGER": "cat"})
    # Reconnect last: browsing needs the connection it drops
    for command in sorted(commands, key=lambda c: "Reconnect" in c):
        r = subprocess.run(shlex.split(command), env=env, capture_output=True, text=True,
                           timeout=harness.scaled(30))
        assert r.returncode == 0, f"{command}\n{r.stderr}"
        if "WatchImport" not in command and "Reconnect" not in command:
            assert r.stdout.strip(), command
    assert "imp-4711" in signals.get_property(OBJECT_PATH, IFACE, "WatchedImports")


def test_monitor_example_in_the_api_page_sees_the_signal(server, signals, daemon, bus, pages):
    """The busctl monitor example follows exactly the import it names."""
    line = next(c for c in example_commands(pages["app.samdock.Events.5"])
                if c.startswith("busctl") and " monitor" in c)
    server.wait_subscribed(1)
    env = harness._clean_env({"DBUS_SESSION_BUS_ADDRESS": bus.address, "LC_ALL": "C.UTF-8"})
    proc = harness._track(subprocess.Popen(shlex.split(line) + ["--json=short"], env=env,
                                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                           text=True, start_new_session=True))
    try:
        signals.call("WatchImport", ("imp-4711",))
        signals.call("WatchImport", ("imp-other",))
        server.wait_subscribed(2, stream="import")
        # busctl has no "ready" to wait for: give it time to become a
        # monitor (a loaded machine needs more than a moment).
        time.sleep(harness.scaled(2.0))
        server.import_("imp-other", steps=1)
        server.import_("imp-4711", steps=1)
        signals.wait_for(2, member="ImportFinished")
        signals.settle(0.5)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    seen = [line for line in out.splitlines() if '"ImportFinished"' in line]
    assert len(seen) == 1 and "imp-4711" in seen[0], out
