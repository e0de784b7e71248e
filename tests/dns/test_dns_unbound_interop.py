"""Unbound resolving through our dns as the authoritative servers of the whole hierarchy.

Unbound iterates to port 53 only, so the demo hierarchy (root, test.,
example.test., lab.example.test.) is served by our views on port 53 of four
random 127.x.y.z addresses (needs root; Twisted binds them without aliases),
with the zones' glue rewritten to those addresses. Unbound starts from hints
naming our root and must walk every referral to answer.
"""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from conftest import require_tool  # noqa: E402
from dnstestlib import DEMO, ZONES, free_port_both, write_config  # noqa: E402
from netapps_daemon import wait_for  # noqa: E402

pytestmark = pytest.mark.interop


def port_free(address: str, port: int) -> bool:
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind((address, port))
            except OSError:
                return False
    return True


def loopback_hierarchy_addresses() -> list[str]:
    rng = random.SystemRandom()
    for _ in range(50):
        base = f"127.{rng.randint(60, 250)}.{rng.randint(1, 250)}"
        addresses = [f"{base}.{i}" for i in range(2, 6)]
        if all(port_free(a, 53) for a in addresses):
            return addresses
    raise RuntimeError("no free loopback addresses on port 53")


def rewrite_glue(zones_dir: Path, addresses: list[str]) -> None:
    """127.0.0.2..5 in the demo zones -> the hierarchy's addresses."""
    mapping = {str(i): addresses[i - 2] for i in range(2, 6)}
    for path in zones_dir.iterdir():
        text = path.read_text()
        path.write_text(re.sub(r"\b127\.0\.0\.([2-5])\b", lambda m: mapping[m.group(1)], text))


@pytest.fixture
def unbound_over_our_hierarchy(netapps_daemon, tmp_path):
    unbound = require_tool("unbound")
    if os.geteuid() != 0:
        pytest.skip("needs root (port 53 on loopback addresses: Unbound iterates to port 53 only)")
    addresses = loopback_hierarchy_addresses()
    (tmp_path / "zones").mkdir()
    for _, file in ZONES:
        (tmp_path / "zones" / file).write_text((DEMO / file).read_text())
    (tmp_path / "zones" / "example.test.services.inc").write_text((DEMO / "example.test.services.inc").read_text())
    rewrite_glue(tmp_path / "zones", addresses)
    views = [([f"udp:53:interface={a}", f"tcp:53:interface={a}"], [origin])
             for a, (origin, _) in zip(addresses, ZONES)]
    config = write_config(tmp_path, views=views)
    ours = netapps_daemon(["dns"], config=str(config))

    workdir = tmp_path / "unbound"
    workdir.mkdir()
    port = free_port_both()
    hints = workdir / "hints"
    hints.write_text(f".  3600000 NS a.root-servers.test.\na.root-servers.test. 3600000 A {addresses[0]}\n")
    conf = workdir / "unbound.conf"
    conf.write_text(f"""
server:
    interface: 127.0.0.1@{port}
    port: {port}
    do-daemonize: no
    use-syslog: no
    logfile: "{workdir}/unbound.log"
    verbosity: 1
    username: ""
    chroot: ""
    directory: "{workdir}"
    pidfile: "{workdir}/unbound.pid"
    num-threads: 1
    do-ip6: no
    access-control: 127.0.0.0/8 allow
    root-hints: "{hints}"
    do-not-query-localhost: no
    module-config: "iterator"
    local-zone: "test." nodefault
remote-control:
    control-enable: no
""")
    with open(workdir / "unbound.stderr", "wb") as log:
        proc = subprocess.Popen([unbound, "-d", "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    try:
        def listening():
            if proc.poll() is not None:
                raise RuntimeError(f"unbound exited: {(workdir / 'unbound.stderr').read_text()}")
            return not port_free("127.0.0.1", port)

        wait_for(listening, timeout=20, what="unbound to listen")
        yield ("127.0.0.1", port), ours
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def resolve(server, name, rdtype="A"):
    q = dns.message.make_query(name, rdtype)
    return dns.query.udp(q, server[0], port=server[1], timeout=10)


def test_unbound_walks_our_hierarchy(unbound_over_our_hierarchy):
    server, ours = unbound_over_our_hierarchy
    r = resolve(server, "www.example.test")
    assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.RA
    assert [rd.to_text() for rr in r.answer for rd in rr] == ["127.0.0.1"]
    # the delegated child: one more referral (example.test. -> lab.example.test.)
    r = resolve(server, "printer.lab.example.test")
    assert [rd.to_text() for rr in r.answer for rd in rr] == ["127.0.0.31"]
    # CNAME chain, wildcard, MX, round-robin pool
    r = resolve(server, "alias2.example.test")
    assert [rd.to_text() for rr in r.answer for rd in rr][-1] == "127.0.0.1"
    assert [rd.to_text() for rr in resolve(server, "q.wild.example.test").answer for rd in rr] == ["127.0.0.9"]
    assert [rd.to_text() for rr in resolve(server, "example.test", "MX").answer for rd in rr] == ["10 mail.example.test."]
    assert len(resolve(server, "pool.example.test").answer[0]) == 4
    # negative answers as Unbound understands them: NXDOMAIN and NODATA with our SOA
    r = resolve(server, "nope.example.test")
    assert r.rcode() == dns.rcode.NXDOMAIN and r.authority[0].name.to_text() == "example.test."
    r = resolve(server, "www.example.test", "MX")
    assert r.rcode() == dns.rcode.NOERROR and not r.answer and r.authority[0].name.to_text() == "example.test."
    r = resolve(server, "missing.lab.example.test")
    assert r.rcode() == dns.rcode.NXDOMAIN and r.authority[0].name.to_text() == "lab.example.test."
