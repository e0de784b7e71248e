"""Origins by name: resolved through a DNS server of the daemon's own (proxy.dns = "ADDR:PORT")."""

from __future__ import annotations

import http.client
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from netapps_daemon import free_port, start_daemon  # noqa: E402
from proxy_origin import Reply, TestOrigin  # noqa: E402

ZONE = """$ORIGIN proxytest.test.
$TTL 60
@    IN SOA ns1 hostmaster ( 1 1h 15m 1w 5m )
     IN NS  ns1
ns1  IN A   127.0.0.1
www  IN A   127.0.0.1
"""


def test_origin_names_resolved_by_our_dns_service(tmp_path):
    dns_port = free_port()
    (tmp_path / "proxytest.zone").write_text(ZONE)
    with TestOrigin() as origin:
        origin.script("/named", Reply(200, [("Cache-Control", "max-age=60")], b"found by name"))
        config = tmp_path / "netapps.toml"
        config.write_text(f"""
[netapps]
services = ["dns", "proxy"]

[dns]
listen = ["udp:{dns_port}:interface=127.0.0.1", "tcp:{dns_port}:interface=127.0.0.1"]
[[dns.zones]]
name = "proxytest.test."
file = "{tmp_path / 'proxytest.zone'}"

[proxy]
listen = ["tcp:0:interface=127.0.0.1"]
allowed_ports = [{origin.port}]
dns = "127.0.0.1:{dns_port}"
""")
        daemon = start_daemon(None, tmp_path / "data", config=str(config))
        try:
            conn = http.client.HTTPConnection(*daemon.address("proxy"), timeout=10)
            conn.request("GET", f"http://www.proxytest.test:{origin.port}/named")
            response = conn.getresponse()
            assert (response.status, response.read()) == (200, b"found by name")
            assert origin.requests("/named")[0].headers["host"] == f"www.proxytest.test:{origin.port}"
            conn.request("GET", f"http://nowhere.proxytest.test:{origin.port}/named")
            response = conn.getresponse()
            assert response.status == 502 and b"cannot resolve" in response.read()
        finally:
            daemon.stop()
