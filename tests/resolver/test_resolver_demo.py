"""``--services=dns,resolver``: our resolver walking our own demo hierarchy.

The embedded default config (demo hints: root on 127.0.0.2; the dns views
on 127.0.0.2-5), with only the port numbers moved to free ones; and, as a
peer, Unbound resolving the same hierarchy (moved to port 53 of random
127.x addresses, since Unbound iterates to port 53 only) with the answers
compared.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from conftest import require_tool
from netapps_daemon import wait_for
from dns_peers import Hierarchy, demo_zones_on, free_udp_tcp_port, random_loopback_addresses, unbound

DEMO = Path(__file__).resolve().parents[2] / "twisted_netapps" / "data" / "zones"
LEVELS = [(".", "root.zone"), ("test.", "test.zone"), ("example.test.", "example.test.zone"),
          ("lab.example.test.", "lab.example.test.zone")]


def ask(address, name, rdtype="A", tcp=False):
    query = dns.message.make_query(name, rdtype)
    return (dns.query.tcp if tcp else dns.query.udp)(query, address[0], port=address[1], timeout=10)


def records(response):
    return sorted(f"{r.name} {dns.rdatatype.to_text(r.rdtype)} {rd}" for r in response.answer for rd in r)


def views_value(addresses, port):
    tables = [
        f'{{listen=["udp:{port}:interface={a}", "tcp:{port}:interface={a}"], zones=["{origin}"]}}'
        for a, (origin, _) in zip(addresses, LEVELS)
    ]
    return "[" + ", ".join(tables) + "]"


def test_default_config_dns_and_resolver_walk_the_demo_chain(netapps_daemon):
    demo = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
    upstream = free_udp_tcp_port(["127.0.0.1", *demo])
    port = free_udp_tcp_port(["127.0.0.1"])
    netapps_daemon(
        ["dns", "resolver"],
        listen={"dns": ["udp:0:interface=127.0.0.1"],
                "resolver": [f"udp:{port}:interface=127.0.0.1", f"tcp:{port}:interface=127.0.0.1"]},
        sets=[f"dns.views={views_value(demo, upstream)}", f"resolver.upstream_port={upstream}"],
    )
    address = ("127.0.0.1", port)
    first = ask(address, "www.example.test.")
    assert first.rcode() == dns.rcode.NOERROR and first.flags & dns.flags.RA
    assert records(first) == ["www.example.test. A 127.0.0.1"]
    started = time.monotonic()
    wait_for(lambda: time.monotonic() - started >= 1.1, what="1.1 s to pass")
    second = ask(address, "www.example.test.")
    assert records(second) == records(first) and second.answer[0].ttl < first.answer[0].ttl

    nx = ask(address, "missing.example.test.")
    assert nx.rcode() == dns.rcode.NXDOMAIN
    assert [(str(r.name), r.rdtype) for r in nx.authority] == [("example.test.", dns.rdatatype.SOA)]
    # four levels: root -> test. -> example.test. -> lab.example.test.
    assert records(ask(address, "bench.lab.example.test.")) == ["bench.lab.example.test. A 127.0.0.32"]
    chain = ask(address, "alias2.example.test.", tcp=True)
    assert [r.rdtype for r in chain.answer] == [dns.rdatatype.CNAME, dns.rdatatype.CNAME, dns.rdatatype.A]

    # the trace command shows the chain hop by hop
    out = subprocess.run(
        [sys.executable, "-m", "twisted_netapps.cli", "dns", "trace", "printer.lab.example.test", "--port", str(upstream)],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    hops = re.findall(r"@(127\.0\.0\.\d):\d+\s+udp\s+[\d.]+ ms\s+\S+ A: (\w+)", out.stdout)
    assert hops == [("127.0.0.2", "referral"), ("127.0.0.3", "referral"), ("127.0.0.4", "referral"),
                    ("127.0.0.5", "answer")], out.stdout
    assert "printer.lab.example.test. 1800 IN A 127.0.0.31" in out.stdout


def test_each_udp_listener_answers_from_its_own_address(netapps_daemon):
    # Two UDP listeners: each reply must leave from the address and port asked
    # (dnspython drops a reply from any other source, as stub resolvers do).
    ports = [free_udp_tcp_port([host]) for host in ("127.0.0.1", "127.0.0.2")]
    d = netapps_daemon(
        ["resolver"],
        listen={"resolver": [f"udp:{ports[0]}:interface=127.0.0.1", f"udp:{ports[1]}:interface=127.0.0.2",
                             f"tcp:{ports[0]}:interface=127.0.0.1"]},
    )
    for _ in range(2):
        for host, port in (("127.0.0.1", ports[0]), ("127.0.0.2", ports[1])):
            query = dns.message.make_query("www.example.test.", "A")
            query.flags &= ~dns.flags.RD  # answered from the cache only: REFUSED at once, no upstream
            reply = dns.query.udp(query, host, port=port, timeout=5)
            assert reply.rcode() == dns.rcode.REFUSED and reply.id == query.id
    assert "Traceback" not in d.log


@pytest.mark.interop
def test_unbound_and_our_resolver_agree_on_our_hierarchy(netapps_daemon, tmp_path):
    require_tool("unbound")
    if os.geteuid() != 0:
        pytest.skip("needs root (port 53: Unbound iterates to port 53 only)")
    addresses = random_loopback_addresses(4, 53)
    zones = demo_zones_on(addresses, tmp_path)
    hints = tmp_path / "hints"
    hints.write_text(f". 3600000 NS a.root-servers.test.\na.root-servers.test. 3600000 A {addresses[0]}\n")
    port = free_udp_tcp_port(["127.0.0.1"])
    config = tmp_path / "netapps.toml"
    zone_tables = "".join(f'[[dns.zones]]\nname = "{origin}"\nfile = "{zones / file}"\n\n' for origin, file in LEVELS)
    config.write_text(
        '[netapps]\nservices = ["dns", "resolver"]\n\n'
        '[dns]\nlisten = ["udp:0:interface=127.0.0.1"]\n'
        f"views = {views_value(addresses, 53)}\n\n{zone_tables}"
        f'[resolver]\nlisten = ["udp:{port}:interface=127.0.0.1", "tcp:{port}:interface=127.0.0.1"]\n'
        f"root_hints = {json.dumps(str(hints))}\nupstream_port = 53\n"
    )
    netapps_daemon(None, config=str(config))
    ours = ("127.0.0.1", port)
    hierarchy = Hierarchy(*addresses, 53, tmp_path, named=None)
    process, unbound_port = unbound(tmp_path / "unbound", hierarchy)
    try:
        theirs = ("127.0.0.1", unbound_port)
        for name, rdtype in [
            ("www.example.test.", "A"), ("alias2.example.test.", "A"), ("example.test.", "MX"),
            ("missing.example.test.", "A"), ("www.example.test.", "SRV"), ("x.wild.example.test.", "TXT"),
            ("bench.lab.example.test.", "TXT"), ("nowhere.lab.example.test.", "A"), ("deep.example.test.", "A"),
            ("pool.example.test.", "A"), ("_smtp._tcp.example.test.", "SRV"),
        ]:
            mine, other = ask(ours, name, rdtype, tcp=True), ask(theirs, name, rdtype, tcp=True)
            assert (mine.rcode(), records(mine)) == (other.rcode(), records(other)), (name, rdtype)
            soa = [str(r.name) for r in mine.authority if r.rdtype == dns.rdatatype.SOA]
            assert soa == [str(r.name) for r in other.authority if r.rdtype == dns.rdatatype.SOA], (name, rdtype)
    finally:
        process.stop()
