"""pop3 in the real daemon, driven by poplib, curl and fetchmail."""

import os
import poplib
import socket
import ssl
import subprocess
import time

import pytest

from conftest import require_tool
from netapps_daemon import wait_for
from twisted_netapps.accounts import AccountStore
from twisted_netapps.mail.store.mailbox import MaildirFolder
from twisted_netapps.mail.store.maildir import MailStore

PASSWORD = "s3cret pw"


@pytest.fixture
def pop3(netapps_daemon, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    AccountStore(data).add("alice", PASSWORD, log2_n=10)
    AccountStore(data).add("bob", "bobpw", log2_n=10)
    store = MailStore(data / "mail")
    names = [
        store.deliver("alice", b"From: bob@example.test\nSubject: message %d\n\nline one\n.dotted line\nend %d\n" % (i, i))
        for i in range(1, 4)
    ]
    daemon = netapps_daemon(
        ["pop3"], data_dir=data, listen={"pop3": ["tcp:0:interface=127.0.0.1"]},
        sets=["pop3.login_failure_delay=0.5"],
    )
    daemon.store = store
    daemon.names = names
    return daemon


def client(daemon, user="alice", password=PASSWORD):
    c = poplib.POP3(*daemon.address("pop3"), timeout=10)
    c.user(user)
    c.pass_(password)
    return c


def test_stat_list_uidl_top_retr(pop3):
    c = client(pop3)
    count, size = c.stat()
    assert count == 3
    resp, listing, _ = c.list()
    sizes = {int(n): int(s) for n, s in (line.split() for line in listing)}
    assert sum(sizes.values()) == size
    resp, uidls, _ = c.uidl()
    assert [line.split()[1].decode() for line in uidls] == pop3.names
    assert c.uidl(2) == b"+OK 2 " + pop3.names[1].encode()
    for n in (1, 2, 3):
        resp, lines, octets = c.retr(n)
        assert resp == b"+OK %d octets" % sizes[n]
        # poplib un-stuffs dots and strips CRLF: rebuild the octets LIST promised
        assert sum(len(line) + 2 for line in lines) == sizes[n]
        assert b".dotted line" in lines
    resp, lines, _ = c.top(1, 0)
    assert lines[-1] == b"" and b"Subject: message 1" in lines and b"line one" not in lines
    c.quit()


def test_deletions_only_after_quit(pop3):
    c = client(pop3)
    c.dele(1)
    c.dele(3)
    folder = MaildirFolder(pop3.store.maildir("alice"))
    assert len(folder.scan()) == 3  # still there in the TRANSACTION phase
    c.quit()
    remaining = folder.scan()
    assert [m.uid for m in remaining] == [pop3.names[1]]
    assert remaining[0].flags == ""  # never retrieved: not marked seen


def test_drop_without_quit_keeps_mail_and_frees_the_lock(pop3):
    c = client(pop3)
    c.dele(1)
    c.dele(2)
    c.sock.shutdown(socket.SHUT_RDWR)  # connection dropped: no UPDATE phase
    c.close()
    folder = MaildirFolder(pop3.store.maildir("alice"))

    def relogin():
        try:
            return client(pop3)
        except poplib.error_proto as e:
            assert b"IN-USE" in e.args[0]
            return None

    c2 = wait_for(relogin, what="lock released")
    assert c2.stat()[0] == 3 and len(folder.scan()) == 3
    c2.quit()


def _big_message(size: int) -> bytes:
    """A message of about *size* bytes with lines that need dot-stuffing and binary-ish base64."""
    import base64
    import hashlib

    lines = [b"From: bob@example.test", b"Subject: big", b"MIME-Version: 1.0", b""]
    seed = b"x"
    total = 0
    i = 0
    while total < size:
        seed = hashlib.sha256(seed).digest()
        line = base64.b64encode(seed * 2)[:76] if i % 7 else b"." + base64.b64encode(seed)[:40]
        lines.append(line)
        total += len(line) + 2
        i += 1
    return b"\r\n".join(lines) + b"\r\n"


@pytest.mark.parametrize("size", [1 << 20, 20 << 20], ids=["1MB", "20MB"])
def test_big_message_streams_byte_exact_through_a_real_socket(pop3, size):
    import hashlib

    message = _big_message(size)
    pop3.store.deliver("alice", message)
    c = client(pop3)
    c.sock.settimeout(30)
    count, _ = c.stat()
    started = time.monotonic()
    resp, lines, octets = c.retr(count)
    elapsed = time.monotonic() - started
    assert resp.startswith(b"+OK")
    got = b"\r\n".join(lines) + b"\r\n"  # poplib un-stuffs the dots
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(message).hexdigest()
    assert c.noop().startswith(b"+OK")  # the session goes on after the stream
    c.quit()
    assert elapsed < 20


def test_client_killed_mid_retr_frees_the_lock_at_once(pop3):
    pop3.store.deliver("alice", _big_message(20 << 20))
    c = client(pop3)
    count, _ = c.stat()
    c.sock.sendall(b"RETR %d\r\n" % count)
    assert c.sock.recv(65536).startswith(b"+OK")  # the stream has begun; the client stops reading
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    c.file.close()  # poplib's file object holds the socket open: close both
    c.sock.close()  # RST, as when a client is killed
    deadline = time.monotonic() + 1.0

    def relogin():
        try:
            return client(pop3)
        except poplib.error_proto as e:
            assert b"IN-USE" in e.args[0]
            return None

    c2 = wait_for(relogin, timeout=1.0, what="lock released after the client vanished")
    assert time.monotonic() <= deadline + 0.2
    assert c2.stat()[0] == count  # nothing deleted: no UPDATE phase
    c2.quit()
    wait_for(lambda: "closed" in pop3.log, what="the closed line")


def test_client_that_half_closes_mid_retr_gets_the_whole_message(pop3):
    import hashlib

    message = _big_message(2 << 20)
    pop3.store.deliver("alice", message)
    with socket.create_connection(pop3.address("pop3"), timeout=20) as s:
        s.sendall(b"USER alice\r\nPASS %s\r\nRETR 4\r\nQUIT\r\n" % PASSWORD.encode())
        s.shutdown(socket.SHUT_WR)
        data = bytearray()
        while chunk := s.recv(1 << 20):
            data += chunk
    body = data.split(b"+OK %d octets\r\n" % len(message), 1)[1]
    stuffed, rest = body.split(b"\r\n.\r\n", 1)
    unstuffed = b"\r\n".join(l[1:] if l.startswith(b"..") else l for l in stuffed.split(b"\r\n")) + b"\r\n"
    assert hashlib.sha256(unstuffed).digest() == hashlib.sha256(message).digest()
    assert rest.startswith(b"+OK")


def test_exclusive_lock(pop3):
    c = client(pop3)
    with pytest.raises(poplib.error_proto, match="IN-USE"):
        client(pop3)
    c.quit()
    client(pop3).quit()


def test_retrieved_messages_marked_seen_after_quit(pop3):
    c = client(pop3)
    c.retr(2)
    c.quit()
    flags = {m.uid: m.flags for m in MaildirFolder(pop3.store.maildir("alice")).scan()}
    assert flags[pop3.names[1]] == "S" and flags[pop3.names[0]] == ""


def test_bad_login_is_slow_and_errors_keep_the_connection(pop3):
    c = poplib.POP3(*pop3.address("pop3"), timeout=10)
    c.user("alice")
    started = time.monotonic()
    with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
        c.pass_("wrong")
    assert time.monotonic() - started >= 0.45
    with pytest.raises(poplib.error_proto):
        c._shortcmd("STAT")  # not in TRANSACTION: -ERR, connection stays
    c.user("alice")
    c.pass_(PASSWORD)
    with pytest.raises(poplib.error_proto):
        c.user("bob")  # USER is not valid in TRANSACTION
    assert c.stat()[0] == 3
    c.quit()


def test_capa_and_pipelining(pop3):
    c = poplib.POP3(*pop3.address("pop3"), timeout=10)
    caps = c.capa()
    for cap in ("TOP", "UIDL", "USER", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "STLS"):
        assert cap in caps
    c.quit()
    with socket.create_connection(pop3.address("pop3"), timeout=10) as s:
        f = s.makefile("rb")
        f.readline()
        s.sendall(f"USER alice\r\nPASS {PASSWORD}\r\nSTAT\r\nUIDL 1\r\nQUIT\r\n".encode())
        replies = [f.readline() for _ in range(5)]
        assert replies[0].startswith(b"+OK") and replies[2] == b"+OK 3 %d\r\n" % client_size(pop3)
        assert replies[3] == b"+OK 1 " + pop3.names[0].encode() + b"\r\n"
        assert replies[4] == b"+OK Bye\r\n"


def client_size(daemon):
    folder = MaildirFolder(daemon.store.maildir("alice"))
    return sum(folder.size(m) for m in folder.scan())


def test_stls(pop3):
    c = poplib.POP3(*pop3.address("pop3"), timeout=10)
    context = ssl.create_default_context(cafile=str(pop3.data_dir / "tls" / "cert.pem"))
    context.check_hostname = False
    c.stls(context)
    assert isinstance(c.sock, ssl.SSLSocket)
    assert "STLS" not in c.capa()
    c.user("alice")
    c.pass_(PASSWORD)
    assert c.stat()[0] == 3
    c.quit()
    assert oct(os.stat(pop3.data_dir / "tls" / "key.pem").st_mode & 0o777) == "0o600"


@pytest.mark.interop
def test_curl_pop3(pop3):
    curl = require_tool("curl")
    host, port = pop3.address("pop3")
    url = f"pop3://{host}:{port}/"
    out = subprocess.run([curl, "-sS", "--max-time", "20", "-u", f"alice:{PASSWORD}", url],
                         capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].startswith(b"1 ")
    out = subprocess.run([curl, "-sS", "--max-time", "20", "-u", f"alice:{PASSWORD}", url + "2"],
                         capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert b"Subject: message 2" in out.stdout and b"\r\n.dotted line\r\n" in out.stdout
    # curl's STLS path, certificate not verified (self-signed)
    out = subprocess.run([curl, "-sS", "--max-time", "20", "--ssl-reqd", "-k", "-u", f"alice:{PASSWORD}", url + "1"],
                         capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert b"Subject: message 1" in out.stdout


@pytest.mark.interop
def test_fetchmail_downloads_and_deletes(pop3, tmp_path):
    fetchmail = require_tool("fetchmail")
    host, port = pop3.address("pop3")
    mda_out = tmp_path / "fetched"
    mda_out.mkdir()
    mda = tmp_path / "mda.sh"
    mda.write_text(f'#!/bin/sh\ncat > "$(mktemp {mda_out}/msg.XXXXXX)"\n')
    mda.chmod(0o700)
    rc = tmp_path / "fetchmailrc"
    rc.write_text(
        f'poll {host} service {port} protocol POP3 uidl no dns\n'
        f'  user "alice" password "{PASSWORD}" is "alice" here\n'
        f'  sslproto "" fetchall\n'
        f'  mda "{mda}"\n'
    )
    rc.chmod(0o600)
    env = {**os.environ, "HOME": str(tmp_path), "FETCHMAILHOME": str(tmp_path)}
    out = subprocess.run([fetchmail, "-f", str(rc), "--nodetach", "-v", "--idfile", str(tmp_path / "ids"), "--pidfile", str(tmp_path / "pid")],
                         capture_output=True, timeout=60, env=env, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stdout + out.stderr
    fetched = sorted(p.read_bytes() for p in mda_out.iterdir())
    assert len(fetched) == 3, out.stdout + out.stderr
    assert all(b".dotted line" in m for m in fetched)
    assert MaildirFolder(pop3.store.maildir("alice")).scan() == []  # fetchmail DELE'd + QUIT


def test_stls_drops_commands_pipelined_in_the_clear(pop3):
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(pop3.address("pop3"), timeout=10) as raw:
        f = raw.makefile("rb")
        f.readline()
        raw.sendall(b"STLS\r\nUSER alice\r\n")
        assert f.readline().startswith(b"+OK Begin TLS")
        with context.wrap_socket(raw) as tls:
            tls.sendall(b"PASS " + PASSWORD.encode() + b"\r\n")
            reply = tls.recv(4096)
            assert reply.startswith(b"-ERR USER first"), reply  # the clear-text USER was dropped


def test_half_closed_session_is_answered_in_full(pop3):
    # What `printf '...' | nc -N` does: all commands, then FIN before any reply.
    with socket.create_connection(pop3.address("pop3"), timeout=10) as s:
        s.sendall(f"USER alice\r\nPASS {PASSWORD}\r\nSTAT\r\nDELE 1\r\nQUIT\r\n".encode())
        s.shutdown(socket.SHUT_WR)
        replies = b""
        while chunk := s.recv(4096):
            replies += chunk
    lines = replies.split(b"\r\n")
    assert lines[0].startswith(b"+OK POP3") and lines[2].startswith(b"+OK Logged in")
    assert lines[3].startswith(b"+OK 3 ") and lines[-2] == b"+OK Bye"
    assert len(MaildirFolder(pop3.store.maildir("alice")).scan()) == 2


def test_stats(pop3):
    c = client(pop3)
    c.retr(1)
    c.dele(2)
    c.quit()
    with pytest.raises(poplib.error_proto):
        client(pop3, password="wrong")

    def counted():
        try:
            stats = pop3.stats().get("pop3", {})
        except (FileNotFoundError, ValueError):  # written every few seconds
            return None
        return stats.get("login_failures") == 1 and stats.get("messages_deleted") == 1 and stats
    stats = wait_for(counted, timeout=15, what="pop3 counters in stats.json")
    assert stats["logins"] == 1 and stats["messages_retrieved"] == 1 and stats["connections"] == 2


def test_apop_secret_set_with_the_cli_logs_in(netapps_daemon, tmp_path):
    import poplib
    import subprocess
    import sys
    from pathlib import Path

    from twisted_netapps.accounts import AccountStore

    netapps = str(Path(sys.executable).parent / "netapps")
    data = tmp_path / "apopdata"
    data.mkdir(mode=0o700)
    AccountStore(data).add("carol", "pw", log2_n=10)
    out = subprocess.run([netapps, "user", "--data-dir", str(data), "apop", "carol"], input=b"apop-secret\n",
                         capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
    secrets = data / "mail" / "apop-secrets"
    assert secrets.stat().st_mode & 0o777 == 0o600
    out = subprocess.run([netapps, "user", "--data-dir", str(data), "apop", "nobody"], input=b"x\n",
                         capture_output=True, timeout=30)
    assert out.returncode == 1 and b"no such user" in out.stderr
    d = netapps_daemon(["pop3"], data_dir=data, listen={"pop3": ["tcp:0:interface=127.0.0.1"]})
    client = poplib.POP3(*d.address("pop3"), timeout=10)
    try:
        assert client.timestamp.search(client.welcome)  # APOP offered now that a secret exists
        assert client.apop("carol", "apop-secret").startswith(b"+OK")
        assert client.stat() == (0, 0)
    finally:
        client.quit()
    out = subprocess.run([netapps, "user", "--data-dir", str(data), "apop", "--remove", "carol"],
                         capture_output=True, timeout=30)
    assert out.returncode == 0 and "carol" not in secrets.read_text()
