"""The real daemon's resolver walking a hierarchy served by BIND; dig and Unbound as peers.

Needs root: BIND only listens on interface addresses, so the hierarchy's
random 127.x addresses are added to ``lo`` for the module (and removed), and
Unbound iterates to port 53 only, so the hierarchy listens there.
"""

from __future__ import annotations

import json
import os
import subprocess
import time

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from conftest import require_tool
from netapps_daemon import wait_for
from dns_peers import LoopbackAliases, bind_hierarchy, free_udp_tcp_port, random_loopback_addresses, unbound

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def hierarchy(tmp_path_factory):
    require_tool("named")
    require_tool("ip")
    if os.geteuid() != 0:
        pytest.skip("needs root (named on port 53 of extra loopback addresses)")
    addresses = random_loopback_addresses(4, 53)
    with LoopbackAliases(addresses):
        h = bind_hierarchy(tmp_path_factory.mktemp("bind"), addresses=addresses, port=53)
        try:
            yield h
        finally:
            h.stop()


def start_resolver(netapps_daemon, hierarchy, tmp_path, sets=()):
    hints = hierarchy.write_hints(tmp_path / "test.hints")
    port = free_udp_tcp_port(["127.0.0.1"])  # one number for both: dig retries TC answers on the same port
    return netapps_daemon(
        ["resolver"],
        listen={"resolver": [f"udp:{port}:interface=127.0.0.1", f"tcp:{port}:interface=127.0.0.1"]},
        sets=[f"resolver.root_hints={json.dumps(str(hints))}", "resolver.upstream_port=53",
              "resolver.log_queries=true", *sets],
    )


def resolver_stats(daemon) -> dict:
    try:
        return daemon.stats().get("resolver", {})
    except (FileNotFoundError, ValueError):  # not written yet
        return {}


def ask(address, name, rdtype="A", tcp=False, **kwargs):
    query = dns.message.make_query(name, rdtype, **kwargs)
    send = dns.query.tcp if tcp else dns.query.udp
    return send(query, address[0], port=address[1], timeout=10)


def records(response):
    return sorted(f"{r.name} {dns.rdatatype.to_text(r.rdtype)} {rd}" for r in response.answer for rd in r)


def test_resolves_the_chain_with_ra_and_caches_with_ttl_counting_down(netapps_daemon, hierarchy, tmp_path):
    d = start_resolver(netapps_daemon, hierarchy, tmp_path)
    address = d.address("resolver", "udp")
    first = ask(address, "www.example.test.")
    assert first.rcode() == dns.rcode.NOERROR
    assert first.flags & dns.flags.RA and first.flags & dns.flags.RD and not first.flags & dns.flags.AA
    assert records(first) == ["www.example.test. A 192.0.2.80"]
    assert first.answer[0].ttl == 600
    started = time.monotonic()
    wait_for(lambda: time.monotonic() - started >= 1.1, what="1.1 s to pass")
    second = ask(address, "www.example.test.")
    assert records(second) == records(first)
    assert second.answer[0].ttl < first.answer[0].ttl
    stats = wait_for(lambda: resolver_stats(d).get("cache_hits") and resolver_stats(d), 15, what="stats.json")
    assert stats["cache_hits"] >= 1 and stats["upstream_queries"] == 3

    # glue-less out-of-bailiwick delegation, cross-zone CNAME, MX, over TCP too
    assert records(ask(address, "www.other.test.")) == ["www.other.test. A 192.0.2.81"]
    assert records(ask(d.address("resolver", "tcp"), "ext.example.test.", tcp=True)) == [
        "ext.example.test. CNAME www.other.test.", "www.other.test. A 192.0.2.81"]
    assert records(ask(address, "example.test.", "MX")) == ["example.test. MX 10 mail.example.test."]
    assert records(ask(address, "anything.wild.example.test.")) == ["anything.wild.example.test. A 192.0.2.99"]


def test_nxdomain_and_nodata_carry_the_soa(netapps_daemon, hierarchy, tmp_path):
    d = start_resolver(netapps_daemon, hierarchy, tmp_path)
    address = d.address("resolver", "udp")
    nx = ask(address, "missing.example.test.")
    assert nx.rcode() == dns.rcode.NXDOMAIN and nx.flags & dns.flags.RA
    (soa,) = nx.authority
    assert soa.rdtype == dns.rdatatype.SOA and str(soa.name) == "example.test." and soa.ttl <= 60
    nodata = ask(address, "www.example.test.", "AAAA")
    assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer
    assert [r.rdtype for r in nodata.authority] == [dns.rdatatype.SOA]
    broken = ask(address, "www.broken.test.")
    assert broken.rcode() == dns.rcode.SERVFAIL


def test_dig_probes(netapps_daemon, hierarchy, tmp_path):
    dig = require_tool("dig")
    d = start_resolver(netapps_daemon, hierarchy, tmp_path)
    host, port = d.address("resolver", "udp")

    def run(*args):
        return subprocess.run([dig, f"@{host}", "-p", str(port), "+tries=1", "+time=5", *args],
                              capture_output=True, text=True, timeout=30).stdout

    out = run("www.example.test")
    assert "status: NOERROR" in out and "flags: qr rd ra;" in out
    assert "192.0.2.80" in out
    out = run("nothing.example.test")
    assert "status: NXDOMAIN" in out and "SOA" in out
    # 60 TXT records do not fit in UDP: TC, dig retries over TCP and gets them all
    out = run("big.example.test", "TXT")
    assert "Truncated, retrying in TCP mode" in out and "ANSWER: 60," in out
    out = run("+tcp", "alias.example.test")
    assert "alias.example.test." in out and "CNAME" in out and "192.0.2.80" in out


def test_clients_outside_allow_get_refused(netapps_daemon, hierarchy, tmp_path):
    d = start_resolver(netapps_daemon, hierarchy, tmp_path, sets=['resolver.allow=["10.0.0.0/8"]'])
    response = ask(d.address("resolver", "udp"), "www.example.test.")
    assert response.rcode() == dns.rcode.REFUSED and not response.flags & dns.flags.RA
    assert not response.answer
    stats = wait_for(lambda: resolver_stats(d).get("refused") and resolver_stats(d), 15, what="stats.json")
    assert stats.get("upstream_queries", 0) == 0


NAMES = [
    ("www.example.test.", "A"), ("alias.example.test.", "A"), ("ext.example.test.", "A"),
    ("www.other.test.", "A"), ("example.test.", "MX"), ("missing.example.test.", "A"),
    ("www.example.test.", "AAAA"), ("x.wild.example.test.", "A"), ("big.example.test.", "TXT"),
    ("nothing.test.", "A"), ("example.test.", "DS"), ("example.test.", "NS"), ("test.", "SOA"),
]


def summary(response):
    soa = [str(r.name) for r in response.authority if r.rdtype == dns.rdatatype.SOA]
    return dns.rcode.to_text(response.rcode()), records(response), soa


@pytest.fixture
def unbound_resolver(hierarchy, tmp_path):
    require_tool("unbound")
    process, port = unbound(tmp_path / "unbound", hierarchy)
    try:
        yield port
    finally:
        process.stop()


def test_same_answers_as_unbound(netapps_daemon, hierarchy, tmp_path, unbound_resolver):
    d = start_resolver(netapps_daemon, hierarchy, tmp_path)
    ours = d.address("resolver", "tcp")
    for name, rdtype in NAMES:
        mine = summary(ask(ours, name, rdtype, tcp=True))
        theirs = summary(ask(("127.0.0.1", unbound_resolver), name, rdtype, tcp=True))
        assert mine == theirs, (name, rdtype)


def test_unbound_forwarding_to_us_and_us_forwarding_to_unbound(netapps_daemon, hierarchy, tmp_path, unbound_resolver):
    d = start_resolver(netapps_daemon, hierarchy, tmp_path)
    host, port = d.address("resolver", "udp")
    # Unbound as a forwarding cache in front of our resolver
    process, front = unbound(tmp_path / "front", hierarchy, extra=(
        f'forward-zone:\n    name: "."\n    forward-addr: {host}@{port}\n'))
    try:
        response = ask(("127.0.0.1", front), "ext.example.test.")
        assert records(response) == ["ext.example.test. CNAME www.other.test.", "www.other.test. A 192.0.2.81"]
    finally:
        process.stop()
    # our resolver in forwarding mode, with Unbound as the upstream
    fwd = netapps_daemon(
        ["resolver"], listen={"resolver": ["udp:0:interface=127.0.0.1"]},
        sets=[f'resolver.forwarders=["127.0.0.1:{unbound_resolver}"]'],
    )
    address = fwd.address("resolver", "udp")
    assert records(ask(address, "alias.example.test.")) == [
        "alias.example.test. CNAME www.example.test.", "www.example.test. A 192.0.2.80"]
    nx = ask(address, "missing.example.test.")
    assert nx.rcode() == dns.rcode.NXDOMAIN and nx.authority
    # Unbound answers SERVFAIL for the broken delegation: it must stay SERVFAIL, not NXDOMAIN
    assert ask(("127.0.0.1", unbound_resolver), "www.broken.test.").rcode() == dns.rcode.SERVFAIL
    assert ask(address, "www.broken.test.").rcode() == dns.rcode.SERVFAIL
