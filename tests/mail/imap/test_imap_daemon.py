"""imap in the real daemon, driven by imaplib and curl."""

import imaplib
import re
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

PASSWORD = "imap pw"

PLAIN = (
    b"Received: from relay.example.test by mx.example.test; Mon, 2 Nov 2026 10:00:01 +0000\n"
    b"Received: from client.example.test by relay.example.test; Mon, 2 Nov 2026 10:00:00 +0000\n"
    b"From: Bob Example <bob@example.test>\n"
    b"To: Alice <alice@example.test>\n"
    b"Cc: carol@example.test\n"
    b"Subject: plain one\n"
    b"Date: Mon, 2 Nov 2026 10:00:00 +0000\n"
    b"Message-ID: <plain1@example.test>\n"
    b"\n"
    b"Hello Alice,\n"
    b"this is the first message.\n"
)
MULTI = (
    b"From: carol@example.test\n"
    b"To: alice@example.test\n"
    b"Subject: =?utf-8?q?caf=C3=A9?= multipart\n"
    b"Date: Tue, 3 Nov 2026 09:00:00 +0100\n"
    b"MIME-Version: 1.0\n"
    b"Content-Type: multipart/mixed; boundary=\"b1\"\n"
    b"\n"
    b"preamble\n"
    b"--b1\n"
    b"Content-Type: text/plain; charset=us-ascii\n"
    b"\n"
    b"the text part\n"
    b"--b1\n"
    b"Content-Type: application/octet-stream; name=data.bin\n"
    b"Content-Transfer-Encoding: base64\n"
    b"\n"
    b"AAECAwQ=\n"
    b"--b1--\n"
)


@pytest.fixture
def imap(netapps_daemon, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    AccountStore(data).add("alice", PASSWORD, log2_n=10)
    store = MailStore(data / "mail")
    store.deliver("alice", PLAIN)
    store.deliver("alice", MULTI)
    daemon = netapps_daemon(
        ["imap"], data_dir=data, listen={"imap": ["tcp:0:interface=127.0.0.1"]},
        sets=["imap.poll_interval=0.2", "imap.login_failure_delay=0.3"],
    )
    daemon.store = store
    return daemon


def login(daemon):
    m = imaplib.IMAP4(*daemon.address("imap"), timeout=10)
    m.login("alice", PASSWORD)
    return m


def test_capabilities_and_login(imap):
    m = imaplib.IMAP4(*imap.address("imap"), timeout=10)
    for cap in ("IMAP4REV1", "IDLE", "MOVE", "STARTTLS", "AUTH=PLAIN", "NAMESPACE", "UNSELECT"):
        assert cap in m.capabilities
    started = time.monotonic()
    with pytest.raises(imaplib.IMAP4.error):
        m.login("alice", "wrong")
    assert time.monotonic() - started >= 0.25
    assert m.login("alice", PASSWORD)[0] == "OK"
    m.logout()


def test_authenticate_plain(imap):
    m = imaplib.IMAP4(*imap.address("imap"), timeout=10)
    typ, _ = m.authenticate("PLAIN", lambda _: b"\0alice\0" + PASSWORD.encode())
    assert typ == "OK"
    m.logout()


def test_folders(imap):
    m = login(imap)
    assert m.create("Archive")[0] == "OK"
    assert m.create("Archive.2026")[0] == "OK"
    assert m.create("Projekte.&ANw-berblick")[0] == "OK"  # "Projekte.Überblick" in modified UTF-7
    assert (imap.data_dir / "mail" / "alice" / ".Projekte.&ANw-berblick" / "cur").is_dir()
    assert m.create("Archive")[0] == "NO"
    typ, listing = m.list()
    names = [re.search(rb'"\." (.*)$', line).group(1).strip(b'"') for line in listing]
    assert b"INBOX" in names and b"Archive" in names and b"Archive.2026" in names
    assert b"Projekte" in names and b"Projekte.&ANw-berblick" in names
    assert m.subscribe("Archive")[0] == "OK"
    typ, lsub = m.lsub()
    assert len(lsub) == 1 and lsub[0].endswith(b'"Archive"')
    assert m.rename("Archive", "Old")[0] == "OK"
    typ, listing = m.list('""', "Old*")
    assert sorted(line.rsplit(b" ", 1)[1] for line in listing) == [b'"Old"', b'"Old.2026"']
    assert m.delete("Old")[0] == "NO"  # has a child
    assert m.delete("Old.2026")[0] == "OK" and m.delete("Old")[0] == "OK"
    assert m.delete("INBOX")[0] == "NO"
    typ, status = m.status("INBOX", "(MESSAGES UNSEEN UIDNEXT UIDVALIDITY RECENT)")
    assert b"MESSAGES 2" in status[0] and b"UNSEEN 2" in status[0] and b"UIDNEXT 3" in status[0]
    m.logout()


def test_select_fetch_envelope_bodystructure_partial(imap):
    m = login(imap)
    typ, data = m.select("INBOX")
    assert typ == "OK" and data == [b"2"]
    assert m.response("UIDVALIDITY")[1][0].isdigit()
    typ, data = m.fetch("1", "(FLAGS INTERNALDATE RFC822.SIZE ENVELOPE)")
    line = data[0]
    assert b'"plain one"' in line and b'(("Bob Example" NIL "bob" "example.test"))' in line
    assert b"RFC822.SIZE %d" % len(PLAIN.replace(b"\n", b"\r\n")) in line
    typ, data = m.fetch("2", "(BODYSTRUCTURE)")
    assert b'("text" "plain" ("charset" "us-ascii")' in data[0]
    assert b'"application" "octet-stream"' in data[0] and b'"mixed"' in data[0]
    typ, data = m.fetch("1", "(BODY.PEEK[HEADER])")
    header = data[0][1]
    assert header.count(b"Received:") == 2 and header.endswith(b"\r\n\r\n")  # byte-exact, duplicates kept
    typ, data = m.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)])")
    assert data[0][1] == b"From: Bob Example <bob@example.test>\r\nSubject: plain one\r\n\r\n"
    typ, data = m.fetch("1", "(BODY.PEEK[]<10.20>)")
    assert data[0][0].endswith(b"BODY[]<10> {20}") and data[0][1] == PLAIN.replace(b"\n", b"\r\n")[10:30]
    typ, data = m.fetch("2", "(BODY.PEEK[2] BODY.PEEK[1.MIME])")
    assert data[0][1] == b"AAECAwQ=" and data[1][1] == b"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
    typ, data = m.fetch("1:*", "(FLAGS)")
    assert all(b"\\Seen" not in d for d in data)  # PEEK sets nothing
    typ, data = m.fetch("1", "(BODY[TEXT])")
    assert data[0][1] == b"Hello Alice,\r\nthis is the first message.\r\n"
    assert b"\\Seen" in data[1] or b"\\Seen" in data[0][0]
    typ, data = m.uid("FETCH", "1:*", "(UID RFC822.SIZE)")
    assert [re.search(rb"UID (\d+)", d).group(1) for d in data] == [b"1", b"2"]
    m.logout()


def test_store_persisted_across_sessions(imap):
    m = login(imap)
    m.select("INBOX")
    assert m.store("2", "+FLAGS", "(\\Flagged \\Answered)")[0] == "OK"
    m.logout()
    cur = {mf.flags for mf in MaildirFolder(imap.store.maildir("alice")).scan()}
    assert "FR" in cur  # Maildir info flags on disk
    m = login(imap)
    m.select("INBOX")
    typ, data = m.fetch("2", "(FLAGS UID)")
    assert b"\\Flagged" in data[0] and b"\\Answered" in data[0] and b"UID 2" in data[0]
    assert m.store("2", "-FLAGS", "(\\Flagged)")[0] == "OK"
    typ, data = m.fetch("2", "(FLAGS)")
    assert b"\\Flagged" not in data[0]
    m.logout()


def test_search(imap):
    m = login(imap)
    m.select("INBOX")
    assert m.search(None, "ALL") == ("OK", [b"1 2"])
    assert m.search(None, 'FROM "carol"') == ("OK", [b"2"])
    assert m.search("UTF-8", b"SUBJECT", '"CAFÉ"'.encode()) == ("OK", [b"2"])  # RFC 2047 decoded, case-folded
    assert m.search("UTF-8", "SUBJECT", '"plain"') == ("OK", [b"1"])
    assert m.search(None, "UNSEEN") == ("OK", [b"1 2"])
    m.store("1", "+FLAGS", "(\\Seen)")
    assert m.search(None, "SEEN") == ("OK", [b"1"])
    assert m.search(None, "NOT", "SEEN") == ("OK", [b"2"])
    assert m.search(None, "OR", "SEEN", 'BODY "text part"') == ("OK", [b"1 2"])
    assert m.search(None, "SENTBEFORE", "3-Nov-2026") == ("OK", [b"1"])
    assert m.search(None, "LARGER", "400") == ("OK", [b"1"])  # 407 and 390 octets
    assert m.search(None, "SMALLER", "400") == ("OK", [b"2"])
    assert m.search(None, 'HEADER Message-ID "plain1"') == ("OK", [b"1"])
    assert m.uid("SEARCH", "UID", "2:*") == ("OK", [b"2"])
    with pytest.raises(imaplib.IMAP4.error):
        m.search(None, "NONSENSE")
    m.logout()


def test_copy_move_expunge(imap):
    m = login(imap)
    m.create("Archive")
    m.select("INBOX")
    assert m.copy("1", "Archive")[0] == "OK"
    typ, data = m.copy("1", "Nowhere")
    assert typ == "NO" and b"TRYCREATE" in data[0]
    typ, data = m._simple_command("MOVE", "2", "Archive")
    assert typ == "OK" and m.response("EXPUNGE")[1] == [b"2"]
    assert m.store("1", "+FLAGS", "(\\Deleted)")[0] == "OK"
    typ, data = m.expunge()
    assert data == [b"1"]
    typ, data = m.select("Archive")
    assert data == [b"2"]
    typ, data = m.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    subjects = sorted(d[1] for d in data if isinstance(d, tuple))
    assert subjects[1].startswith(b"Subject: plain one")
    assert m.uid("MOVE", "1", "INBOX")[0] == "OK"
    m.logout()
    assert len(MaildirFolder(imap.store.maildir("alice")).scan()) == 1


def test_append(imap):
    m = login(imap)
    m.create("Sent")
    m.select("INBOX")
    typ, _ = m.append("Sent", "(\\Seen)", imaplib.Time2Internaldate(1_700_000_000), b"Subject: sent\r\n\r\nhi\r\n")
    assert typ == "OK"
    assert m.append("Missing", None, None, b"x\r\n")[0] == "NO"
    typ, data = m.status("Sent", "(MESSAGES UNSEEN)")
    assert b"MESSAGES 1" in data[0] and b"UNSEEN 0" in data[0]
    m.select("Sent")
    typ, data = m.fetch("1", "(INTERNALDATE FLAGS)")
    assert b"14-Nov-2023" in data[0] and b"\\Seen" in data[0]
    m.logout()


def test_new_delivery_shows_up_on_noop_and_idle(imap):
    m = login(imap)
    m.select("INBOX")
    imap.store.deliver("alice", b"Subject: later\n\nnew mail\n")

    def exists():
        m.noop()
        return m.response("EXISTS")[1][-1:] == [b"3"]

    wait_for(exists, what="EXISTS 3 after NOOP")
    # IDLE: the server pushes EXISTS while idling
    tag = m._new_tag()
    m.send(tag + b" IDLE\r\n")
    assert m.readline().startswith(b"+")
    imap.store.deliver("alice", b"Subject: during idle\n\nx\n")
    sock = m.socket()
    sock.settimeout(10)
    pushed = m.readline()
    assert pushed == b"* 4 EXISTS\r\n"
    m.send(b"DONE\r\n")
    lines = []
    while True:
        line = m.readline()
        lines.append(line)
        if line.startswith(tag):
            break
    assert lines[-1].startswith(tag + b" OK")
    m.logout()


def test_expunge_by_another_session_is_reported(imap):
    a = login(imap)
    a.select("INBOX")
    b = login(imap)
    b.select("INBOX")
    b.store("1", "+FLAGS", "(\\Deleted)")
    b.expunge()
    a.noop()
    assert a.response("EXPUNGE")[1] == [b"1"]
    typ, data = a.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert b"multipart" in data[0][1]
    a.logout()
    b.logout()


def test_examine_is_read_only(imap):
    m = login(imap)
    typ, _ = m.select("INBOX", readonly=True)
    assert typ == "OK"
    typ, data = m.store("1", "+FLAGS", "(\\Seen)")
    assert typ == "NO" and b"READ-ONLY" in data[0]
    m.fetch("1", "(BODY[])")  # must not set \Seen in a read-only mailbox
    m.logout()
    assert all("S" not in mf.flags for mf in MaildirFolder(imap.store.maildir("alice")).scan())


def test_uidvalidity_and_uids_stable_across_restart(imap, netapps_daemon):
    m = login(imap)
    m.select("INBOX")
    validity = m.response("UIDVALIDITY")[1][0]
    typ, before = m.uid("FETCH", "1:*", "(UID)")
    m.logout()
    imap.stop()
    again = netapps_daemon(["imap"], data_dir=imap.data_dir, listen={"imap": ["tcp:0:interface=127.0.0.1"]})
    m = login(again)
    m.select("INBOX")
    assert m.response("UIDVALIDITY")[1][0] == validity
    assert m.uid("FETCH", "1:*", "(UID)")[1] == before
    m.logout()


def test_starttls(imap):
    m = imaplib.IMAP4(*imap.address("imap"), timeout=10)
    context = ssl.create_default_context(cafile=str(imap.data_dir / "tls" / "cert.pem"))
    context.check_hostname = False
    assert m.starttls(context)[0] == "OK"
    assert "STARTTLS" not in m.capabilities
    assert m.login("alice", PASSWORD)[0] == "OK"
    m.logout()


def test_bounded_literal_and_line(imap):
    m = login(imap)
    tag = m._new_tag()
    m.send(tag + b" APPEND INBOX {999999999999}\r\n")
    reply = m.readline()
    assert reply.startswith(tag + b" BAD") and b"TOOBIG" in reply
    m.logout()
    with socket.create_connection(imap.address("imap"), timeout=10) as s:
        f = s.makefile("rb")
        f.readline()
        s.sendall(b"a1 NOOP " + b"x" * 70000 + b"\r\n")
        assert f.readline() == b"* BYE line too long\r\n"


@pytest.mark.interop
def test_curl_imap(imap):
    curl = require_tool("curl")
    host, port = imap.address("imap")
    base = f"imap://{host}:{port}"
    run = lambda *args: subprocess.run([curl, "-sS", "--max-time", "20", "-u", f"alice:{PASSWORD}", *args],
                                       capture_output=True, timeout=30)
    out = run(base + "/")
    assert out.returncode == 0, out.stderr
    assert b"INBOX" in out.stdout
    out = run(base + "/INBOX;UID=1")
    assert out.returncode == 0, out.stderr
    assert out.stdout == PLAIN.replace(b"\n", b"\r\n")
    out = run(base + "/INBOX?SUBJECT%20plain")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == b"* SEARCH 1"
    out = run("--ssl-reqd", "-k", base + "/INBOX;UID=2;SECTION=1")
    assert out.returncode == 0, out.stderr
    assert out.stdout == b"the text part"


@pytest.mark.interop
def test_fetchmail_imap(imap, tmp_path):
    fetchmail = require_tool("fetchmail")
    host, port = imap.address("imap")
    out_dir = tmp_path / "fetched"
    out_dir.mkdir()
    mda = tmp_path / "mda.sh"
    mda.write_text(f'#!/bin/sh\ncat > "$(mktemp {out_dir}/msg.XXXXXX)"\n')
    mda.chmod(0o700)
    rc = tmp_path / "fetchmailrc"
    rc.write_text(
        f'poll {host} service {port} protocol IMAP no dns\n'
        f'  user "alice" password "{PASSWORD}" is "alice" here\n'
        f'  sslproto "" keep fetchall\n'
        f'  mda "{mda}"\n'
    )
    rc.chmod(0o600)
    env = {**__import__("os").environ, "HOME": str(tmp_path), "FETCHMAILHOME": str(tmp_path)}
    out = subprocess.run([fetchmail, "-f", str(rc), "--nodetach", "-v", "--pidfile", str(tmp_path / "pid")],
                         capture_output=True, timeout=60, env=env, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stdout + out.stderr
    fetched = sorted(p.read_bytes() for p in out_dir.iterdir())
    assert len(fetched) == 2, out.stdout + out.stderr
    assert any(b"the text part" in m for m in fetched)
    # "keep": still there, now \Seen (fetchmail fetched the bodies with BODY[])
    files = MaildirFolder(imap.store.maildir("alice")).scan()
    assert len(files) == 2 and all("S" in f.flags for f in files)


def test_starttls_drops_commands_pipelined_in_the_clear(imap):
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(imap.address("imap"), timeout=10) as raw:
        f = raw.makefile("rb")
        f.readline()
        raw.sendall(b"a STARTTLS\r\nb LOGIN alice \"" + PASSWORD.encode() + b"\"\r\n")
        assert f.readline().startswith(b"a OK")
        with context.wrap_socket(raw) as tls:
            # Had "b LOGIN" run, this SELECT would wait for it (commands queue
            # behind a LOGIN) and succeed; "b OK" would come first.
            tls.sendall(b"c SELECT INBOX\r\n")
            replies = tls.makefile("rb")
            line = replies.readline()
            assert line.startswith(b"c BAD"), line  # not logged in: "b LOGIN" was never run


def test_search_with_a_literal(imap):
    m = login(imap)
    m.select("INBOX")
    m.literal = "café".encode()
    assert m.search("UTF-8", "SUBJECT") == ("OK", [b"2"])
    m.literal = b'say "hi"'
    assert m.search(None, "OR", "SUBJECT", "plain", "BODY") == ("OK", [b"1"])  # OR x {literal}
    m.logout()


def test_half_closed_session_is_answered_in_full(imap):
    with socket.create_connection(imap.address("imap"), timeout=10) as s:
        s.sendall(f'a LOGIN alice "{PASSWORD}"\r\nb SELECT INBOX\r\nc FETCH 1:* (FLAGS)\r\nd LOGOUT\r\n'.encode())
        s.shutdown(socket.SHUT_WR)
        replies = b""
        while chunk := s.recv(4096):
            replies += chunk
    for tag in (b"a OK", b"b OK", b"c OK", b"d OK"):
        assert b"\r\n" + tag in replies, replies


def test_big_fetch_is_byte_exact_and_a_client_that_hangs_up_mid_fetch_costs_nothing(imap):
    big = b"Subject: big\r\n\r\n" + b"0123456789abcde\n" * (20 * 1024 * 1024 // 16)
    big = big.replace(b"\n", b"\r\n").replace(b"\r\r\n", b"\r\n")
    imap.store.deliver("alice", big)
    m = login(imap)
    m.select("INBOX", readonly=True)
    typ, data = m.fetch("3", "(BODY.PEEK[])")
    assert typ == "OK" and data[0][1] == big
    m.logout()
    with socket.create_connection(imap.address("imap"), timeout=10) as s:
        s.sendall(f'a LOGIN alice "{PASSWORD}"\r\nb EXAMINE INBOX\r\nc FETCH 1:* (BODY.PEEK[])\r\n'.encode())
        got = b""
        while b"* 3 FETCH" not in got:
            got += s.recv(65536)
    # the server stops at once: another session is served straight away
    started = time.monotonic()
    m = login(imap)
    assert m.noop()[0] == "OK" and time.monotonic() - started < 2
    m.logout()
    assert "Traceback" not in imap.log and "Unhandled" not in imap.log
