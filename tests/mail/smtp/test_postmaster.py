"""Postmaster is always accepted (RFC 5321 4.5.1); aliases to missing accounts are caught at start-up."""

from __future__ import annotations

import smtplib
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require_tool
from netapps_daemon import run_twistd
from smtp_doubles import SMTP_LISTEN, maildir_messages, smtp_sets

from twisted_netapps.accounts import AccountStore
from twisted_netapps.mail.smtp.policy import MailPolicy, Route
from twisted_netapps.mail.smtp.syntax import Address

NETAPPS = str(Path(sys.executable).parent / "netapps")


def policy(tmp_path, aliases, *users):
    store = AccountStore(tmp_path)
    for user in users:
        store.add(user, "pw", log2_n=4)
    return MailPolicy(store, local_domains=["example.test"], aliases=aliases, relay_networks=[])


@pytest.mark.parametrize("address", [Address("postmaster", ""), Address("PostMaster", "example.test")])
def test_postmaster_without_alias_or_account_is_its_own_mailbox(tmp_path, address):
    assert policy(tmp_path, {}, "alice").route(address) == Route(("postmaster",))


def test_postmaster_alias_to_a_missing_account_falls_back(tmp_path):
    p = policy(tmp_path, {"postmaster": ["demo"], "abuse": ["postmaster"], "team": ["ghost"]}, "alice")
    assert p.route(Address("postmaster", "example.test")) == Route(("postmaster",))
    assert p.route(Address("abuse", "example.test")) == Route(("postmaster",))
    assert sorted(p.unreachable_aliases()) == [("postmaster", "demo"), ("team", "ghost")]


def test_postmaster_account_and_alias_win(tmp_path):
    assert policy(tmp_path, {}, "Postmaster").route(Address("postmaster", "")) == Route(("Postmaster",))
    (tmp_path / "x").mkdir()
    assert policy(tmp_path / "x", {"postmaster": ["alice"]}, "alice").route(Address("postmaster", "")) == Route(("alice",))


@pytest.mark.interop
def test_postmaster_delivered_after_user_add_on_a_fresh_data_dir(netapps_daemon, tmp_path):
    swaks = require_tool("swaks")
    data = tmp_path / "data"
    added = subprocess.run([NETAPPS, "user", "add", "alice", "--data-dir", str(data)], input=b"alice-pw\n",
                           capture_output=True, timeout=30)
    assert added.returncode == 0, added.stderr
    d = netapps_daemon(["smtp"], data_dir=data, listen=SMTP_LISTEN, sets=smtp_sets())
    assert "created account 'demo'" not in d.log  # alice exists: no demo
    host, port = d.address("smtp")
    out = subprocess.run([swaks, "--to", "postmaster@example.test", "--from", "x@remote.test",
                          "--server", f"{host}:{port}"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    with smtplib.SMTP(host, port, timeout=10) as c:
        c.ehlo("client.test")
        c.mail("x@remote.test")
        assert c.rcpt("postmaster")[0] == 250  # RCPT TO:<postmaster>, no domain
        c.data(b"Subject: bare\r\n\r\nbare postmaster\r\n")
    assert len(maildir_messages(d.data_dir, "postmaster")) == 2


def test_alias_warnings_and_errors_at_start_up(netapps_daemon, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    AccountStore(data).add("alice", "alice-pw", log2_n=10)
    d = netapps_daemon(["smtp"], data_dir=data, listen=SMTP_LISTEN,
                       sets=smtp_sets('smtp.aliases={postmaster=["demo"]}'))
    assert "smtp.aliases.postmaster: 'demo' is not an account: mail to postmaster goes to the mailbox" in d.log
    with smtplib.SMTP(*d.address("smtp"), timeout=10) as c:
        c.sendmail("x@remote.test", ["postmaster@example.test"], b"Subject: pm\r\n\r\nhi\r\n")
    assert len(maildir_messages(d.data_dir, "postmaster")) == 1
    d.stop()
    result = run_twistd(["smtp"], data, listen=SMTP_LISTEN, sets=smtp_sets('smtp.aliases={abuse=["demo"]}'))
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0 and len(lines) == 1, result.stderr
    assert lines[0].startswith("--set smtp.aliases={abuse=[\"demo\"]}: smtp.aliases.abuse: 'demo' is not an account")
