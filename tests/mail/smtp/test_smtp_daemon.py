"""The real daemon's SMTP service against real clients (smtplib, raw sockets, swaks)."""

from __future__ import annotations

import email
import smtplib
import socket
import ssl
import stat
import subprocess

import pytest
from conftest import require_tool
from netapps_daemon import wait_for
from smtp_doubles import SMTP_LISTEN, maildir_messages, smtp_sets

from twisted_netapps.accounts import AccountStore


@pytest.fixture
def smtp_daemon(netapps_daemon, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    store = AccountStore(data)
    store.add("alice", "alice-pw", log2_n=10)
    store.add("demo", "demo-pw", log2_n=10)

    def start(*sets: str):
        return netapps_daemon(["smtp"], data_dir=data, listen=SMTP_LISTEN, sets=smtp_sets(*sets))

    return start


def no_verify() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def test_ehlo_features_and_local_delivery_to_maildir(smtp_daemon):
    d = smtp_daemon()
    with smtplib.SMTP(*d.address("smtp"), timeout=10) as c:
        code, features = c.ehlo("client.test")
        assert code == 250
        for word in (b"PIPELINING", b"SIZE 26214400", b"8BITMIME", b"ENHANCEDSTATUSCODES", b"STARTTLS"):
            assert word in features
        assert b"AUTH" not in features  # not before STARTTLS
        assert c.noop()[0] == 250
        assert c.verify("alice")[0] == 252
        c.sendmail("sender@remote.test", ["alice@example.test"],
                   b"Subject: hello\n\nline one\n.leading dot\nlast line")
    [path] = maildir_messages(d.data_dir, "alice")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    raw = path.read_bytes()
    assert raw.count(b"\n") == raw.count(b"\r\n")  # CRLF only
    assert raw.startswith(b"Return-Path: <sender@remote.test>\r\nReceived: from client.test ([127.0.0.1])\r\n")
    msg = email.message_from_bytes(raw)
    assert "for <alice@example.test>;" in msg["Received"] and "with ESMTP id" in msg["Received"]
    assert msg.get_payload() == "line one\r\n.leading dot\r\nlast line\r\n"
    assert f",S={len(raw)}" in path.name


def test_unknown_local_user_and_open_relay_refused(smtp_daemon):
    d = smtp_daemon()
    with smtplib.SMTP(*d.address("smtp"), timeout=10) as c:
        c.ehlo("client.test")
        c.mail("x@remote.test")
        assert c.rcpt("nobody@example.test")[0] == 550
        code, text = c.rcpt("victim@elsewhere.test")
        assert code == 554 and b"5.7.1" in text
        assert c.rcpt("postmaster@example.test")[0] == 250  # alias -> demo
        c.rset()
    assert list((d.data_dir / "smtp-queue").glob("*.json")) == []


def test_size_limit_announced_and_enforced(smtp_daemon):
    d = smtp_daemon("smtp.max_message_size=2000")
    with smtplib.SMTP(*d.address("smtp"), timeout=10) as c:
        c.ehlo("client.test")
        assert c.esmtp_features["size"] == "2000"
        assert c.mail("x@remote.test", ["SIZE=5000"])[0] == 552
        c.mail("x@remote.test")
        c.rcpt("alice@example.test")
        code, _ = c.data(b"Subject: big\r\n\r\n" + (b"x" * 78 + b"\r\n") * 40)
        assert code == 552
        assert c.noop()[0] == 250
    assert maildir_messages(d.data_dir, "alice") == []


def test_overlong_data_line_cannot_inject_commands(smtp_daemon):
    d = smtp_daemon()
    with socket.create_connection(d.address("smtp"), timeout=10) as s:
        f = s.makefile("rb")
        f.readline()
        s.sendall(b"EHLO c\r\nMAIL FROM:<x@r.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
        while not f.readline().startswith(b"354"):
            pass
        s.sendall(b"Subject: x\r\n\r\n" + b"A" * 20000 + b"\r\nMAIL FROM:<evil@r.test>\r\nRCPT TO:<demo@example.test>\r\n"
                  b"DATA\r\ninjected\r\n.\r\nQUIT\r\n")
        rest = f.read()
    assert rest.startswith(b"554 5.6.0") and rest.endswith(b"221 2.0.0 " + rest.split(b"221 2.0.0 ")[1])
    assert rest.count(b"\r\n") == 2  # exactly: 554 for the message, 221 for QUIT
    assert maildir_messages(d.data_dir, "alice") == [] and maildir_messages(d.data_dir, "demo") == []


def test_pipelined_session_in_one_write(smtp_daemon):
    d = smtp_daemon()
    with socket.create_connection(d.address("smtp"), timeout=10) as s:
        f = s.makefile("rb")
        f.readline()
        s.sendall(b"EHLO c\r\nMAIL FROM:<x@r.test>\r\nRCPT TO:<alice@example.test>\r\nRCPT TO:<demo@example.test>\r\n"
                  b"DATA\r\nSubject: p\r\n\r\nbody\r\n.\r\nNOOP\r\nQUIT\r\n")
        out = f.read().decode()
    codes = [line[:3] for line in out.split("\r\n") if line[3:4] == " "]
    assert codes == ["250", "250", "250", "250", "354", "250", "250", "221"]
    assert len(maildir_messages(d.data_dir, "alice")) == 1 and len(maildir_messages(d.data_dir, "demo")) == 1
    # two recipients: no "for <...>" (would disclose Bcc)
    assert b"for <" not in maildir_messages(d.data_dir, "demo")[0].read_bytes().split(b"\r\n\r\n")[0]


def test_half_closing_client_gets_every_reply(smtp_daemon):
    """`printf '...' | nc -N`: the client's FIN comes right after its commands; the message is
    stored and every reply, up to the 221, still reaches it."""
    d = smtp_daemon()
    with socket.create_connection(d.address("smtp"), timeout=10) as s:
        s.sendall(b"EHLO c\r\nMAIL FROM:<x@r.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n"
                  b"Subject: fin\r\n\r\nbody\r\n.\r\nQUIT\r\n")
        s.shutdown(socket.SHUT_WR)
        out = s.makefile("rb").read().decode()
    codes = [line[:3] for line in out.split("\r\n") if line[3:4] == " "]
    assert codes == ["220", "250", "250", "250", "354", "250", "221"]
    assert len(maildir_messages(d.data_dir, "alice")) == 1


def test_starttls_auth_and_relay_rules_on_submission(smtp_daemon):
    d = smtp_daemon()
    host, sub_port = d.address("smtp", "tcp", 1)
    assert (d.data_dir / "tls" / "cert.pem").exists()
    with smtplib.SMTP(host, sub_port, timeout=10) as c:
        c.ehlo("client.test")
        assert c.mail("alice@example.test")[0] == 530  # submission: AUTH first
        c.rset()
        c.starttls(context=no_verify())
        c.ehlo("client.test")
        assert "PLAIN" in c.esmtp_features["auth"] and "LOGIN" in c.esmtp_features["auth"]
        with pytest.raises(smtplib.SMTPAuthenticationError) as bad:
            c.login("alice", "wrong")
        assert bad.value.smtp_code == 535
        c.login("alice", "alice-pw")
        c.sendmail("alice@example.test", ["demo@example.test"], b"Subject: sub\r\n\r\nhi\r\n")
    [path] = maildir_messages(d.data_dir, "demo")
    assert b"with ESMTPSA id" in path.read_bytes()


def test_auth_refused_before_tls_unless_configured(smtp_daemon):
    d = smtp_daemon()
    with smtplib.SMTP(*d.address("smtp"), timeout=10) as c:
        c.ehlo("c")
        assert c.docmd("AUTH", "PLAIN AGFsaWNlAGFsaWNlLXB3")[0] == 538
    d.stop()
    d = smtp_daemon("smtp.plaintext_auth=always")
    with smtplib.SMTP(*d.address("smtp"), timeout=10) as c:
        c.login("alice", "alice-pw")


def test_stats_count_messages(smtp_daemon):
    d = smtp_daemon()
    with smtplib.SMTP(*d.address("smtp"), timeout=10) as c:
        c.sendmail("a@r.test", ["alice@example.test"], b"Subject: s\r\n\r\nx\r\n")
    def counted():
        try:
            stats = d.stats()
        except FileNotFoundError:
            return None
        return stats if stats.get("smtp", {}).get("messages") else None

    stats = wait_for(counted, timeout=20, what="stats.json with the message counted")
    assert stats["smtp"]["messages"] == 1


@pytest.mark.interop
def test_swaks_interop_with_tls_and_auth(smtp_daemon):
    swaks = require_tool("swaks")
    d = smtp_daemon()
    host, port = d.address("smtp")
    out = subprocess.run([swaks, "--to", "demo@example.test", "--from", "x@remote.test", "--server", f"{host}:{port}",
                          "--pipeline", "--h-Subject", "swaks plain"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    host, sub = d.address("smtp", "tcp", 1)
    out = subprocess.run([swaks, "--to", "alice@example.test", "--from", "demo@example.test", "--server",
                          f"{host}:{sub}", "-tls", "--auth", "LOGIN", "--auth-user", "demo", "--auth-password",
                          "demo-pw", "--h-Subject", "swaks tls"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "250 2.0.0 OK: queued as" in out.stdout
    assert len(maildir_messages(d.data_dir, "demo")) == 1 and len(maildir_messages(d.data_dir, "alice")) == 1


def test_idle_session_times_out_with_421(smtp_daemon):
    d = smtp_daemon("smtp.command_timeout=0.5")
    with socket.create_connection(d.address("smtp"), timeout=10) as s:
        f = s.makefile("rb")
        assert f.readline().startswith(b"220")
        assert f.readline().startswith(b"421 4.4.2")
        assert f.readline() == b""


def test_received_header_for_ipv6_client(netapps_daemon, tmp_path):
    data = tmp_path / "data6"
    data.mkdir()
    AccountStore(data).add("alice", "alice-pw", log2_n=10)
    try:
        d = netapps_daemon(["smtp"], data_dir=data, listen={"smtp": ["tcp6:0:interface=\\:\\:1"]}, sets=smtp_sets())
    except RuntimeError as e:
        pytest.skip(f"no IPv6 loopback: {e}")
    with smtplib.SMTP("::1", d.port("smtp", "tcp", 0), timeout=10) as c:
        c.sendmail("a@r.test", ["alice@example.test"], b"Subject: v6\r\n\r\nx\r\n")
    [path] = maildir_messages(data, "alice")
    assert b"([IPv6:::1])" in path.read_bytes()


def test_smtp_then_pop3_reads_it_back(netapps_daemon, tmp_path):
    import poplib

    from twisted_netapps import registry

    if "pop3" not in registry.SERVICES:
        pytest.skip("pop3 service not built yet")
    data = tmp_path / "data"
    data.mkdir()
    AccountStore(data).add("demo", "demo-pw", log2_n=10)
    d = netapps_daemon(["smtp", "pop3"], data_dir=data,
                       listen={**SMTP_LISTEN, "pop3": ["tcp:0:interface=127.0.0.1"]}, sets=smtp_sets())
    with smtplib.SMTP(*d.address("smtp"), timeout=10) as c:
        c.sendmail("x@remote.test", ["demo@example.test"], b"Subject: round trip\r\n\r\n..dot\r\nbody\r\n")
    pop = poplib.POP3(*d.address("pop3"), timeout=10)
    try:
        pop.user("demo")
        pop.pass_("demo-pw")
        count, size = pop.stat()
        assert count == 1
        _, lines, octets = pop.retr(1)
        assert lines[0].startswith(b"Return-Path: <x@remote.test>") and lines[1].startswith(b"Received: from ")
        assert b"..dot" in lines  # smtplib and POP3 stuffed it, SMTP and poplib unstuffed it
        assert int(pop.list(1).split()[2]) == sum(len(line) + 2 for line in lines)
    finally:
        pop.quit()


def test_connection_limit_answers_421(smtp_daemon):
    d = smtp_daemon("smtp.max_connections=1")
    with socket.create_connection(d.address("smtp"), timeout=10) as first:
        assert first.makefile("rb").readline().startswith(b"220")
        with socket.create_connection(d.address("smtp"), timeout=10) as second:
            f = second.makefile("rb")
            assert f.readline().startswith(b"421 4.3.2")
            assert f.readline() == b""
