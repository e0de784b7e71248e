"""Unbound resolving through our dns as the authoritative servers of the whole hierarchy.

Unbound iterates to port 53 only, so the demo hierarchy (root, test.,
example.test., lab.example.test.) is served by our views on port 53 of four
random 127.x.y.z addresses (needs root; Twisted binds them without aliases),
with the zones' glue rewritten to those addresses. Unbound starts from hints
naming our root and must walk every referral to answer.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from conftest import require_tool  # noqa: E402
from dns_peers import Hierarchy, demo_zones_on, random_loopback_addresses, unbound  # noqa: E402
from dnstestlib import ZONES, write_config  # noqa: E402

pytestmark = pytest.mark.interop


@pytest.fixture
def unbound_over_our_hierarchy(netapps_daemon, tmp_path):
    require_tool("unbound")
    if os.geteuid() != 0:
        pytest.skip("needs root (port 53 on loopback addresses: Unbound iterates to port 53 only)")
    addresses = random_loopback_addresses(4, 53)
    demo_zones_on(addresses, tmp_path)
    views = [([f"udp:53:interface={a}", f"tcp:53:interface={a}"], [origin])
             for a, (origin, _) in zip(addresses, ZONES)]
    config = write_config(tmp_path, views=views)  # uses the rewritten zones/ beside it
    ours = netapps_daemon(["dns"], config=str(config))
    process, port = unbound(tmp_path / "unbound", Hierarchy(*addresses, 53, tmp_path, named=None))
    try:
        yield ("127.0.0.1", port), ours
    finally:
        process.stop()


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
