"""The dns service in the real daemon, driven by dnspython, dig and kdig."""

from __future__ import annotations

import re
import signal
import sys
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.zone
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from conftest import require_tool  # noqa: E402
from dnstestlib import dig, write_config  # noqa: E402
from netapps_daemon import run_twistd, wait_for  # noqa: E402

from twisted_netapps.config import DEFAULT_CONFIG_NAME, load_config  # noqa: E402
from twisted_netapps.dns.service import zone_base_dir  # noqa: E402


@pytest.fixture
def dns_daemon(netapps_daemon, tmp_path):
    def start(**kwargs):
        sets = kwargs.pop("sets", [])
        config = write_config(tmp_path, **kwargs)
        return netapps_daemon(["dns"], config=str(config), sets=sets)
    return start


def udp_query(daemon, name, rdtype="A", **kwargs):
    q = dns.message.make_query(name, rdtype, **kwargs)
    return dns.query.udp(q, daemon.address("dns", "udp")[0], port=daemon.port("dns", "udp"), timeout=5)


def tcp_query(daemon, name, rdtype="A", **kwargs):
    q = dns.message.make_query(name, rdtype, **kwargs)
    return dns.query.tcp(q, daemon.address("dns", "tcp")[0], port=daemon.port("dns", "tcp"), timeout=5)


def test_answers_over_udp_and_tcp(dns_daemon):
    d = dns_daemon()
    for ask in (udp_query, tcp_query):
        r = ask(d, "www.example.test")
        assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA
        assert [rd.to_text() for rd in r.answer[0]] == ["127.0.0.1"]
        r = ask(d, "nope.example.test")
        assert r.rcode() == dns.rcode.NXDOMAIN and r.authority[0].rdtype == dns.rdatatype.SOA


def test_several_queries_on_one_tcp_connection(dns_daemon):
    import socket
    import struct
    d = dns_daemon()
    queries = [dns.message.make_query(n, "A") for n in ("www.example.test", "mail.example.test", "nope.example.test")]
    with socket.create_connection(d.address("dns", "tcp"), timeout=5) as s:
        s.sendall(b"".join(struct.pack(">H", len(w)) + w for w in (q.to_wire() for q in queries)))
        f = s.makefile("rb")
        replies = []
        for _ in queries:
            (n,) = struct.unpack(">H", f.read(2))
            replies.append(dns.message.from_wire(f.read(n)))
    assert sorted(r.id for r in replies) == sorted(q.id for q in queries)


def test_views_bind_zones_to_listeners(dns_daemon):
    d = dns_daemon(views=[(["udp:0:interface=127.0.0.2"], ["."]),
                          (["udp:0:interface=127.0.0.3"], ["test."])])
    root = next(l for l in d.listeners if l["host"] == "127.0.0.2")
    q = dns.message.make_query("www.example.test", "A")
    r = dns.query.udp(q, "127.0.0.2", port=root["port"], timeout=5)
    assert not r.flags & dns.flags.AA and r.authority[0].name.to_text() == "test."
    assert [rd.to_text() for rd in r.additional[0]] == ["127.0.0.3"]
    tld = next(l for l in d.listeners if l["host"] == "127.0.0.3")
    r = dns.query.udp(q, "127.0.0.3", port=tld["port"], timeout=5)
    assert r.authority[0].name.to_text() == "example.test."
    r = dns.query.udp(dns.message.make_query("www.example.org", "A"), "127.0.0.3", port=tld["port"], timeout=5)
    assert r.rcode() == dns.rcode.REFUSED


def test_axfr_with_dnspython(dns_daemon):
    d = dns_daemon()
    zone = dns.zone.from_xfr(dns.query.xfr("127.0.0.1", "example.test", port=d.port("dns", "tcp"), timeout=5))
    assert zone.get_rdataset("www", "A")[0].to_text() == "127.0.0.1"
    assert zone.get_rdataset("_imap._tcp", "SRV") is not None  # from the $INCLUDE


@pytest.mark.interop
def test_dig_nxdomain_soa_axfr_and_tc_retry(dns_daemon, tmp_path):
    tool = require_tool("dig")
    big = "".join(f'big IN TXT "{"x" * 100} {i}"\n' for i in range(30))
    d = dns_daemon()
    zone_file = tmp_path / "zones" / "lab.example.test.zone"
    assert zone_file.exists()
    server = d.address("dns", "udp")
    out = dig(tool, server, "nope.example.test", "A")
    assert "status: NXDOMAIN" in out and "flags: qr aa rd" in out
    assert re.search(r"example\.test\.\s+300\s+IN\s+SOA\s+ns1\.example\.test\.", out)
    out = dig(tool, server, "example.test", "AXFR")
    assert "XFR size: 33 records" in out and "*.wild.example.test." in out
    # TC: a big answer over UDP, dig retries over TCP by itself
    zone_file.write_text(zone_file.read_text() + big)
    wait_for(lambda: "x" * 100 in dig(tool, server, "big.lab.example.test", "TXT", "+short", "+tcp"),
             timeout=15, what="reload with the big RRset")
    out = dig(tool, server, "big.lab.example.test", "TXT", "+bufsize=1232")
    assert "Truncated, retrying in TCP mode" in out and "ANSWER: 30" in out
    out = dig(tool, server, "big.lab.example.test", "TXT", "+ignore", "+bufsize=1232")
    assert "flags: qr aa tc" in out


@pytest.mark.interop
def test_kdig_answers(dns_daemon):
    tool = require_tool("kdig")
    d = dns_daemon()
    out = dig(tool, d.address("dns", "udp"), "example.test", "MX")
    assert "10 mail.example.test." in out and "NOERROR" in out
    assert re.search(r"mail\.example\.test\.\s+3600\s+IN\s+A\s+127\.0\.0\.1", out)  # additional
    out = dig(tool, d.address("dns", "tcp"), "+tcp", "printer.lab.example.test", "A", "+norec")
    assert "Flags: qr aa;" in out and re.search(r"printer\.lab\.example\.test\.\s+1800\s+IN\s+A\s+127\.0\.0\.31", out)
    out = dig(tool, d.address("dns", "udp"), "missing.lab.example.test", "A")
    assert "NXDOMAIN" in out and "lab.example.test." in out and "SOA" in out


def test_zone_reload_on_change_and_broken_edit_keeps_serving(dns_daemon, tmp_path):
    d = dns_daemon(extra="reload_interval = 0.2")
    path = tmp_path / "zones" / "lab.example.test.zone"
    text = path.read_text()
    path.write_text(text.replace("2026112101", "2026112102").replace("127.0.0.31", "127.0.0.131"))
    wait_for(lambda: udp_query(d, "printer.lab.example.test").answer[0][0].to_text() == "127.0.0.131",
             timeout=15, what="reload")
    assert "serial 2026112101 -> 2026112102" in d.log
    path.write_text(path.read_text() + "broken IN A not-an-address\n")
    wait_for(lambda: "not reloaded" in d.log, timeout=15, what="reload error in the log")
    assert re.search(rf"{re.escape(str(path))}:\d+: ", d.log)
    assert "still serving serial 2026112102" in d.log
    assert udp_query(d, "printer.lab.example.test").answer[0][0].to_text() == "127.0.0.131"


def test_reload_on_sighup(dns_daemon, tmp_path):
    d = dns_daemon(extra="reload_interval = 0.0")
    path = tmp_path / "zones" / "lab.example.test.zone"
    path.write_text(path.read_text().replace("2026112101", "2026112105").replace("127.0.0.31", "127.0.0.77"))
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: udp_query(d, "printer.lab.example.test").answer[0][0].to_text() == "127.0.0.77",
             timeout=15, what="SIGHUP reload")
    assert d.proc.poll() is None


def test_broken_zone_at_startup_is_one_line(tmp_path):
    config = write_config(tmp_path)
    (tmp_path / "zones" / "test.zone").write_text("$TTL 1h\n@ IN SOA ns1 h 1 2 3 4 5\n@ IN NS ns1\nx IN A 999\n")
    result = run_twistd(["dns"], tmp_path / "data", config=str(config))
    assert result.returncode != 0
    lines = [l for l in (result.stdout + result.stderr).splitlines() if "test.zone" in l]
    assert lines and re.search(r"dns: zone test\.: .*test\.zone:\d+: ", lines[0]), result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_embedded_default_config_zone_paths_work_on_a_fresh_install(netapps_daemon):
    config = load_config(None, services="dns")
    base = zone_base_dir(DEFAULT_CONFIG_NAME)
    zones = config.services["dns"].zones
    assert [z.name for z in zones] == [".", "test.", "example.test.", "lab.example.test."]
    assert all((base / z.file).is_file() for z in zones)
    # the real daemon on the embedded default (ports moved to 0, views off)
    d = netapps_daemon(["dns"], listen={"dns": ["udp:0:interface=127.0.0.1"]}, sets=["dns.views=[]"])
    r = udp_query(d, "mail.example.test")
    assert [rd.to_text() for rd in r.answer[0]] == ["127.0.0.1"]


def test_query_logging_when_configured(dns_daemon):
    d = dns_daemon(extra="log_queries = true")
    udp_query(d, "nope.example.test")
    tcp_query(d, "www.example.test", "AAAA")
    wait_for(lambda: "tcp www.example.test. AAAA: NOERROR" in d.log, timeout=10, what="query log line")
    assert "udp nope.example.test. A: NXDOMAIN" in d.log


def test_ipv6_listeners_and_transfer_acl(dns_daemon):
    import socket
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    d = dns_daemon(listen=["udp6:0:interface=\\:\\:1", "tcp6:0:interface=\\:\\:1"])
    host, port = d.address("dns", "udp")
    assert host == "::1"
    r = dns.query.udp(dns.message.make_query("www.example.test", "AAAA"), "::1", port=port, timeout=5)
    assert [rd.to_text() for rd in r.answer[0]] == ["::1"]
    # ::1 is not in allow_transfer (127.0.0.0/8): refused over IPv6
    tcp_port = d.port("dns", "tcp")
    r = dns.query.tcp(dns.message.make_query("example.test", "AXFR"), "::1", port=tcp_port, timeout=5)
    assert r.rcode() == dns.rcode.REFUSED
