"""Every command of the README's probe blocks, run verbatim against the real daemon.

A probe block is the literal block that follows an RST comment line starting
with ``.. probes`` (invisible on a rendered page). Each of its commands (a
line ending in ``\\`` continues on the next) is run with ``bash -c``, stdin
closed, after two substitutions only: every default port of the embedded
configuration becomes the port the test daemon listens on instead, and
``PASSWORD`` becomes the demo account's password. A command must exit 0 by
itself within PROBE_TIMEOUT seconds (one that waits for input, or for a
server to close, fails here) and print the TEXT of a trailing ``-> TEXT``
comment. Lines starting with ``twistd`` start the daemon (the test runs its
own) and are skipped; interactive examples belong outside probe blocks.

The daemon runs every service of the embedded default with every named
listener moved to a free port, and the data directory where the per-user
default points (``$XDG_DATA_HOME/netapps``), so ``netapps`` commands find it
without ``--data-dir``, as a new user's do. A service added to the embedded
default gets its README probes tested by writing them in this form.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import require_tool
from dns_peers import free_udp_tcp_port
from netapps_daemon import start_daemon

from twisted_netapps.config import load_config

README = Path(__file__).resolve().parents[1] / "README.rst"
BIN = Path(sys.executable).parent
PROBE_TIMEOUT = 30.0
# Keys of the embedded default that name another listener's port.
PORT_KEYS = {"resolver.upstream_port": 5300}
SHELL_BUILTINS = {"echo", "printf", "cd", "test", "true"}
_ENDPOINT_PORT = re.compile(r"^(?P<scheme>[a-z0-9]+):(?P<port>\d+)(?=:|$)")


@dataclass(frozen=True)
class Probe:
    line: int
    command: str
    expect: str | None


def probes(text: str) -> list[Probe]:
    """The commands of every probe block of *text*, in order."""
    lines = text.splitlines()
    found: list[Probe] = []
    i = 0
    while i < len(lines):
        if not lines[i].startswith(".. probes"):
            i += 1
            continue
        i += 1
        while i < len(lines) and not lines[i].rstrip().endswith("::"):
            i += 1
        i += 1
        while i < len(lines) and not lines[i].strip():
            i += 1
        pending, start = "", 0
        while i < len(lines) and (not lines[i].strip() or lines[i].startswith(" ")):
            line = lines[i].strip()
            if line and not pending:
                start = i + 1
            pending = f"{pending} {line}".strip() if pending else line
            i += 1
            if pending.endswith("\\"):
                pending = pending[:-1].rstrip()
                continue
            if pending and not pending.startswith(("#", "twistd ")):
                match = re.search(r"#[^#]*->\s*(.+?)\s*$", pending)
                found.append(Probe(start, pending, match.group(1) if match else None))
            pending = ""
    return found


def test_probe_blocks_are_found():
    found = probes(README.read_text())
    assert len(found) >= 30, found
    assert all("nc " not in p.command or "-N" in p.command or "-w" in p.command for p in found), (
        "a probe with nc must close by itself (-N for TCP, -w for UDP)"
    )


def _port_plan():
    """(--listen items, {default port: test port}) for every named listener of the embedded default."""
    config = load_config()
    hosts_by_port: dict[int, set[str]] = {}
    for service in config.enabled:
        for _name, (_path, endpoints) in config.listeners(service).items():
            for endpoint in endpoints:
                port = int(_ENDPOINT_PORT.match(endpoint).group("port"))
                host = re.search(r"interface=([0-9.]+)", endpoint)
                hosts_by_port.setdefault(port, set()).add(host.group(1) if host else "127.0.0.1")
    mapping: dict[int, int] = {}
    for port, hosts in sorted(hosts_by_port.items()):
        while True:
            candidate = free_udp_tcp_port(sorted(hosts))
            if candidate not in mapping.values() and candidate not in hosts_by_port:
                break
        mapping[port] = candidate
    listen: dict[str, list[str]] = {}
    for service in config.enabled:
        for name, (_path, endpoints) in config.listeners(service).items():
            listen[name] = [
                _ENDPOINT_PORT.sub(lambda m: f"{m.group('scheme')}:{mapping[int(m.group('port'))]}", e)
                for e in endpoints
            ]
    return listen, mapping


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The daemon on the embedded default (ports moved), with the environment probes run in."""
    home = tmp_path_factory.mktemp("readme")
    xdg = home / "xdg"
    listen, mapping = _port_plan()
    sets = [f"{key}={mapping[port]}" for key, port in PORT_KEYS.items()]
    env = {**os.environ, "XDG_DATA_HOME": str(xdg), "HOME": str(home), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env.pop("NETAPPS_DATA_DIR", None)
    daemon = start_daemon(None, xdg / "netapps", listen=listen, sets=sets, env=env)
    try:
        password = daemon.log.split("created account 'demo' with password ")[1].split()[0]
        yield daemon, mapping, password, env, home
    finally:
        daemon.stop()


def _substitute(command: str, mapping: dict[int, int], password: str) -> str:
    for default, actual in mapping.items():
        command = re.sub(rf"(?<![\d.]){default}(?!\d)", str(actual), command)
    return command.replace("PASSWORD", password)


def _programs(command: str) -> list[str]:
    """The programs a shell command line runs (the first word of each pipeline stage)."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    programs, first = [], True
    for token in lexer:
        if token in ("|", "||", "&&", ";", "&"):
            first = True
        elif first:
            first = False
            if token not in SHELL_BUILTINS and token != "netapps":
                programs.append(token)
    return programs


@pytest.mark.interop
@pytest.mark.parametrize("probe", probes(README.read_text()), ids=lambda p: f"README.rst:{p.line}")
def test_readme_probe(demo, probe):
    daemon, mapping, password, env, home = demo
    for program in _programs(probe.command):
        require_tool(program)
    command = _substitute(probe.command, mapping, password)
    try:
        result = subprocess.run(
            ["bash", "-c", command], stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=PROBE_TIMEOUT, env=env, cwd=home,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"README.rst:{probe.line}: did not return by itself within {PROBE_TIMEOUT}s: {probe.command}")
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"README.rst:{probe.line}: exit {result.returncode}: {command}\n{output}"
    if probe.expect is not None:
        assert probe.expect in output, f"README.rst:{probe.line}: no {probe.expect!r} in the output of {command}\n{output}"
