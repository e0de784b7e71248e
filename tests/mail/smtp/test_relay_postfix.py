"""Interop: our relay delivers to a private Postfix instance found by MX through our dns."""

from __future__ import annotations

import email
import os
import smtplib
import sys
from pathlib import Path

import pytest
from conftest import require_tool
from netapps_daemon import free_port, wait_for
from smtp_doubles import SMTP_LISTEN, smtp_sets

from twisted_netapps.accounts import AccountStore

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))
from smtp_peers import PrivatePostfix  # noqa: E402

ZONE = """\
$ORIGIN pfx.test.
$TTL 60
@       IN SOA ns.pfx.test. hostmaster.pfx.test. 1 3600 600 86400 60
@       IN NS  ns.pfx.test.
ns      IN A   127.0.0.1
@       IN MX  10 mail.pfx.test.
mail    IN A   127.0.0.1
"""


@pytest.mark.interop
def test_relay_to_postfix_by_mx(netapps_daemon, tmp_path):
    require_tool("postfix")
    require_tool("script")
    if os.geteuid() != 0:
        pytest.skip("a private Postfix instance needs root")
    data = tmp_path / "data"
    data.mkdir()
    AccountStore(data).add("alice", "alice-pw", log2_n=10)
    (tmp_path / "pfx.test.zone").write_text(ZONE)
    dns_port = free_port()
    with PrivatePostfix(domain="pfx.test", mailbox="bob") as postfix:
        config = tmp_path / "netapps.toml"
        config.write_text(f"""
[dns]
listen = ["udp:{dns_port}:interface=127.0.0.1", "tcp:{dns_port}:interface=127.0.0.1"]
[[dns.zones]]
name = "pfx.test."
file = "pfx.test.zone"
[smtp]
resolver = "127.0.0.1:{dns_port}"
relay_port = {postfix.port}
queue_interval = 0.2
plaintext_auth = "always"
""")
        d = netapps_daemon(["dns", "smtp"], data_dir=data, config=str(config), listen=SMTP_LISTEN, sets=smtp_sets())
        with smtplib.SMTP(*d.address("smtp"), timeout=10) as c:
            c.login("alice", "alice-pw")
            c.sendmail("alice@example.test", ["bob@pfx.test"],
                       b"Subject: to postfix\r\n\r\n.dot line\r\nbody\r\n")
        wait_for(lambda: postfix.delivered() == 1, timeout=30, what="message in Postfix's Maildir")
        [path] = list((postfix.maildir / "new").iterdir())
        msg = email.message_from_bytes(path.read_bytes())
        assert msg["Subject"] == "to postfix"
        assert msg.get_payload().replace("\r\n", "\n") == ".dot line\nbody\n"
        received = msg.get_all("Received")
        assert any("twisted-netapps" in r and "ESMTPA" in r for r in received)
        assert msg["Return-Path"] == "<alice@example.test>"  # added by Postfix at its final delivery
        wait_for(lambda: not list((data / "smtp-queue").glob("*.json")), what="our queue emptied")
