"""The status service against the real daemon: API, /metrics, live events, logins, a real browser."""

from __future__ import annotations

import base64
import json
import smtplib
import socket
import urllib.error
import urllib.request

import dns.message
import dns.query
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import require_tool
from dns_peers import free_udp_tcp_port
from netapps_daemon import run_twistd, wait_for
from twisted_netapps.accounts import AccountStore

LISTEN = {
    "status": ["tcp:0:interface=127.0.0.1"],
    "smtp": ["tcp:0:interface=127.0.0.1"],
    "uppercase": ["tcp:0:interface=127.0.0.1"],
}


@pytest.fixture
def status(netapps_daemon, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    AccountStore(data).add("alice", "s3cret", log2_n=10)
    demo = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
    upstream = free_udp_tcp_port(["127.0.0.1", *demo])  # the demo hierarchy, moved off its fixed port
    listen = {**LISTEN, "dns": ["udp:0:interface=127.0.0.1"], "resolver": ["udp:0:interface=127.0.0.1"]}
    daemon = netapps_daemon("status,uppercase,dns,resolver,smtp", data_dir=data, listen=listen,
                            sets=["smtp.submission_listen=[]", f"dns.views={views_value(demo, upstream)}",
                                  f"resolver.upstream_port={upstream}"])
    daemon.base = f"http://127.0.0.1:{daemon.port('status')}"
    return daemon


LEVELS = [".", "test.", "example.test.", "lab.example.test."]


def views_value(addresses, port):
    tables = [f'{{listen=["udp:{port}:interface={a}", "tcp:{port}:interface={a}"], zones=["{origin}"]}}'
              for a, origin in zip(addresses, LEVELS)]
    return "[" + ", ".join(tables) + "]"


def get(url, **headers):
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, response.headers, response.read()


def get_json(url):
    return json.loads(get(url)[2])


def dig(daemon, name="www.example.test"):
    host, port = daemon.address("resolver", "udp")
    return dns.query.udp(dns.message.make_query(name, "A"), host, port=port, timeout=5)


def send_mail(daemon, subject="hello"):
    with smtplib.SMTP(*daemon.address("smtp"), timeout=10) as s:
        s.sendmail("bob@remote.test", ["alice@example.test"],
                   f"Subject: {subject}\r\nReceived: from relay.remote.test by mx.remote.test\r\n\r\nhi\r\n")


def test_overview_lists_every_service_with_its_listeners(status):
    doc = get_json(status.base + "/api/overview")
    names = [s["name"] for s in doc["services"]]
    assert names == ["status", "uppercase", "dns", "resolver", "smtp"]
    upper = next(s for s in doc["services"] if s["name"] == "uppercase")
    assert upper["listeners"] == [f"tcp 127.0.0.1:{status.port('uppercase')}"]
    assert doc["pid"] == status.proc.pid and doc["uptime"] >= 0


def test_service_detail_shows_recent_events_and_views(status):
    dig(status)
    send_mail(status)
    smtp = get_json(status.base + "/api/service/smtp")
    delivery = smtp["recent"][-1]
    assert delivery["kind"] == "delivery" and delivery["code"] == 250
    assert delivery["received"] == ["from relay.remote.test by mx.remote.test"]
    assert {v["name"] for v in smtp["views"]} == {"queue", "mailboxes"}
    boxes = get_json(status.base + "/api/view/smtp/mailboxes")["data"]
    assert {"account": "alice", "folder": "INBOX", "new": 1, "seen_or_read": 0} in boxes
    resolver = get_json(status.base + "/api/service/resolver")
    assert resolver["recent"][-1]["question"] == "www.example.test. A"
    cache = get_json(status.base + "/api/view/resolver/cache")["data"]
    assert any(row["name"] == "www.example.test." and 0 < row["ttl_left"] <= 3600 for row in cache)


def test_live_trace_walks_the_demo_hierarchy(status):
    steps = get_json(status.base + "/api/view/resolver/trace?name=www.example.test&type=A")["data"]
    assert [s["zone"] for s in steps[:-1]] == [".", "test.", "example.test."]
    assert steps[-1]["outcome"] == "NOERROR"
    with pytest.raises(urllib.error.HTTPError) as bad:
        get(status.base + "/api/view/resolver/trace?name=bad..name")
    assert bad.value.code == 400


def test_read_only_and_unknown_paths(status):
    request = urllib.request.Request(status.base + "/api/overview", data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 405 and refused.value.headers["allow"] == "GET, HEAD"
    for path in ("/nope", "/api/service/nosuch", "/api/view/smtp/nosuch"):
        with pytest.raises(urllib.error.HTTPError) as missing:
            get(status.base + path)
        assert missing.value.code == 404
    _, headers, page = get(status.base + "/")
    assert b"<title>netapps status</title>" in page and "default-src 'self'" in headers["content-security-policy"]


def test_metrics_parse_and_move_with_traffic(status):
    def sample(name):
        text = get(status.base + "/metrics")[2].decode()
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == name:
                    return s.value
        return None

    before = sample("netapps_smtp_messages_total") or 0
    send_mail(status)
    assert sample("netapps_smtp_messages_total") == before + 1
    assert sample("netapps_uppercase_active_connections") == 0


def test_events_stream_pushes_new_events_without_a_reload(status):
    with socket.create_connection(("127.0.0.1", status.port("status")), timeout=10) as s:
        s.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
        stream = s.makefile("rb")
        assert stream.readline().startswith(b"HTTP/1.1 200")
        dig(status, "mail.example.test")
        send_mail(status, "streamed")

        def seen():
            buffer = b""
            while b'"kind":"delivery"' not in buffer or b"mail.example.test" not in buffer:
                buffer += stream.read1(65536)
            return True

        assert seen()


def test_login_always_asks_everyone_and_throttles_guessing(netapps_daemon, tmp_path):
    data = tmp_path / "d"
    data.mkdir()
    AccountStore(data).add("alice", "s3cret", log2_n=10)
    daemon = netapps_daemon("status", data_dir=data, listen={"status": ["tcp:0:interface=127.0.0.1"]},
                            sets=['status.login="always"', "netapps.login_failures_per_address=2",
                                  "netapps.login_max_delay=0.1"])
    base = f"http://127.0.0.1:{daemon.port('status')}/api/overview"
    with pytest.raises(urllib.error.HTTPError) as anonymous:
        get(base)
    assert anonymous.value.code == 401 and "Basic" in anonymous.value.headers["www-authenticate"]
    good = "Basic " + base64.b64encode(b"alice:s3cret").decode()
    bad = "Basic " + base64.b64encode(b"alice:guess").decode()
    assert get(base, Authorization=good)[0] == 200
    codes = []
    for _ in range(3):
        try:
            get(base, Authorization=bad)
        except urllib.error.HTTPError as e:
            codes.append(e.code)
    assert codes == [401, 401, 429]


def test_status_off_loopback_needs_ssl(tmp_path):
    result = run_twistd("status", tmp_path / "d", listen={"status": ["tcp:0:interface=0.0.0.0"]})
    assert result.returncode != 0
    assert "reachable from other hosts: serve the status page there only over ssl:" in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1


@pytest.mark.interop
def test_the_page_in_a_real_browser_updates_live(status, tmp_path, request):
    from browser import Browser

    chromium = require_tool("chromium", "chromium-browser")
    chromedriver = require_tool("chromedriver")
    with Browser(chromium, chromedriver) as browser:
        browser.get(status.base + "/")
        browser.wait_js("return document.querySelectorAll('#services tbody tr').length === 5",
                        what="the services table")
        browser.wait_js("return document.getElementById('live').className === 'on'", what="the live stream")
        send_mail(status, "seen in the browser")
        dig(status, "ns1.example.test")
        text = browser.wait_js(
            "const t = document.getElementById('events').innerText;"
            "return t.includes('delivery') && t.includes('ns1.example.test') ? t : null",
            what="the delivery and the DNS query in the live events")
        assert "bob@remote.test" in text
        browser.js("document.querySelector('#services tbody tr[data-service=\"smtp\"]').click()")
        browser.wait_js("return document.getElementById('detail-title').textContent === 'smtp'", what="detail")
        artefacts = request.config.rootpath / "test-artefacts"
        artefacts.mkdir(exist_ok=True)
        shot = browser.screenshot(artefacts / "status-page.png")
        assert shot.stat().st_size > 10_000


def test_ftp_sessions_and_transfers_show_on_the_status_page(netapps_daemon, tmp_path):
    import ftplib
    import io

    data = tmp_path / "ftpdata"
    data.mkdir()
    AccountStore(data).add("alice", "s3cret", log2_n=10)
    daemon = netapps_daemon("status,ftp", data_dir=data,
                            listen={"status": ["tcp:0:interface=127.0.0.1"], "ftp": ["tcp:0:interface=127.0.0.1"]})
    base = f"http://127.0.0.1:{daemon.port('status')}"
    ftp = ftplib.FTP()
    ftp.connect(*daemon.address("ftp"), timeout=10)
    ftp.login("alice", "s3cret")
    ftp.storbinary("STOR hello.txt", io.BytesIO(b"hello" * 1000))
    sessions = get_json(base + "/api/view/ftp/sessions")["data"]
    assert sessions and sessions[0]["user"] == "alice" and sessions[0]["directory"] == "/"
    recent = get_json(base + "/api/service/ftp")["recent"]
    kinds = [(e["kind"], e.get("path")) for e in recent]
    assert ("login", None) in kinds and ("transfer", "/hello.txt") in kinds
    transfer = next(e for e in recent if e["kind"] == "transfer")
    assert transfer["bytes"] == 5000 and transfer["outcome"] == "complete"
    ftp.quit()


def test_netapps_status_in_a_terminal_shows_the_live_overview(status):
    import subprocess
    import sys
    from pathlib import Path

    send_mail(status, "for the terminal")
    netapps_cli = str(Path(sys.executable).parent / "netapps")

    def shown():
        out = subprocess.run([netapps_cli, "status", "--data-dir", str(status.data_dir)],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        return out.stdout if "live, from the status service" in out.stdout else None

    text = wait_for(shown, what="the live overview").split("live, from the status service", 1)[1]
    smtp_line = next(line for line in text.splitlines() if line.strip().startswith("smtp "))
    assert "messages=1" in smtp_line


def test_tracker_and_bittorrent_views_on_the_status_page(netapps_daemon, tmp_path):
    """The demo torrent seeded by our peer and announced to our tracker shows on the page."""
    import socket as _socket

    with _socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        tracker_port = probe.getsockname()[1]
    daemon = netapps_daemon(
        "status,tracker,bittorrent",
        listen={"status": ["tcp:0:interface=127.0.0.1"], "tracker": [f"tcp:{tracker_port}:interface=127.0.0.1"],
                "bittorrent": ["tcp:0:interface=127.0.0.1"]},
        sets=[f'bittorrent.demo_tracker="http://127.0.0.1:{tracker_port}/announce"'],
    )
    base = f"http://127.0.0.1:{daemon.port('status')}"
    # The torrent shows as soon as it is added, at 0% while its data is re-checked: wait for the check.
    torrents = wait_for(lambda: [t for t in get_json(base + "/api/view/bittorrent/torrents")["data"]
                                 if t["progress"] == "100.0%"], what="the demo torrent, checked")
    swarms = wait_for(lambda: [s for s in get_json(base + "/api/view/tracker/swarms")["data"] if s["seeders"] == 1],
                      what="the seeding swarm on the tracker")
    assert swarms[0]["info_hash"] == torrents[0]["info_hash"]
    peers = get_json(base + f"/api/view/tracker/peers?info_hash={swarms[0]['info_hash']}")["data"]
    assert peers[0]["seed"] is True
    pieces = get_json(base + f"/api/view/bittorrent/pieces?torrent={torrents[0]['torrent']}")["data"]
    assert pieces and all(p["have"] for p in pieces)
    events = get_json(base + "/api/service/tracker")["recent"]
    assert events and events[0]["kind"] == "announce" and events[0]["event"] == "started"
