"""The mail clients people run, against pop3 and imap in the real daemon (issue 15).

fetchmail, getmail6 and mpop download the 20-message mailbox of
:mod:`mail_corpus` (a 5 MB message, raw UTF-8 header fields, a multipart
with an attachment) over POP3, and fetchmail and getmail6 over IMAP, with and
without deleting; what each hands to its MDA must be the stored messages
byte for byte (SHA-256; line ends as LF, which is how every one of them
delivers, and without the one header getmail adds, ``Return-Path``). mbsync
syncs both ways through a restart; neomutt (under tmux: it needs a
terminal) moves a message between folders; offlineimap3 pulls and pushes.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

import mail_corpus
from conftest import require_tool
from netapps_daemon import wait_for
from twisted_netapps.accounts import AccountStore
from twisted_netapps.mail.store.mailbox import MaildirFolder, UserMailboxes
from twisted_netapps.mail.store.maildir import MailStore

pytestmark = pytest.mark.interop

PASSWORD = "client pw"
LISTEN = {"pop3": ["tcp:0:interface=127.0.0.1"], "imap": ["tcp:0:interface=127.0.0.1"]}


def start(netapps_daemon, data: Path, *, with_utf8: bool = True):
    daemon = netapps_daemon(["pop3", "imap"], data_dir=data, listen=LISTEN, sets=["imap.poll_interval=0.2"])
    daemon.store = MailStore(data / "mail")
    daemon.sent = mail_corpus.messages(with_utf8=with_utf8)
    return daemon


@pytest.fixture
def mail(netapps_daemon, tmp_path):
    return _mailbox(netapps_daemon, tmp_path, with_utf8=True)


def _mailbox(netapps_daemon, tmp_path, *, with_utf8: bool):
    data = tmp_path / "data"
    data.mkdir()
    AccountStore(data).add("alice", PASSWORD, log2_n=10)
    store = MailStore(data / "mail")
    for message in mail_corpus.messages(with_utf8=with_utf8):
        store.deliver("alice", message)
    return start(netapps_daemon, data, with_utf8=with_utf8)


def inbox(daemon) -> MaildirFolder:
    return MaildirFolder(daemon.store.maildir("alice"))


def folder(daemon, name: str) -> MaildirFolder:
    return UserMailboxes(daemon.store, "alice").folder(name)


def message_ids(folder_: MaildirFolder) -> set[bytes]:
    ids = set()
    for m in folder_.scan():
        for line in folder_.read(m).split(b"\r\n"):
            if line.lower().startswith(b"message-id:"):
                ids.add(line.split(b":", 1)[1].strip())
                break
    return ids


def mda(tmp_path: Path) -> tuple[Path, Path]:
    """An MDA script that stores each message it is given as one file; (script, output dir)."""
    out = tmp_path / "delivered"
    out.mkdir()
    script = tmp_path / "mda.sh"
    script.write_text(f'#!/bin/sh\ncat > "$(mktemp {out}/msg.XXXXXX)"\n')
    script.chmod(0o700)
    return script, out


def run(argv, *, env=None, timeout=120) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, (argv, result.returncode, result.stdout[-3000:], result.stderr[-3000:])
    return result


# ------------------------------------------------------------ downloaders


def fetchmail(daemon, tmp_path, protocol: str, delete: bool):
    binary = require_tool("fetchmail")
    script, out = mda(tmp_path)
    host, port = daemon.address(protocol.lower())
    rc = tmp_path / "fetchmailrc"
    rc.write_text(
        f'poll {host} service {port} protocol {protocol} no dns\n'
        f'  user "alice" password "{PASSWORD}" is "alice" here\n'
        f'  sslproto "" {"nokeep" if delete else "keep"} fetchall\n'
        f'  mda "{script}"\n'
    )
    rc.chmod(0o600)
    env = {**os.environ, "HOME": str(tmp_path), "FETCHMAILHOME": str(tmp_path)}
    # --invisible: no Received: line of fetchmail's own in the delivered copy.
    run([binary, "-f", str(rc), "--nodetach", "--invisible", "--pidfile", str(tmp_path / "fetchmail.pid")], env=env)
    return out, ()


def getmail(daemon, tmp_path, protocol: str, delete: bool):
    binary = require_tool("getmail")
    script, out = mda(tmp_path)
    host, port = daemon.address(protocol.lower())
    home = tmp_path / "getmail"
    home.mkdir()
    (home / "rc").write_text(textwrap.dedent(f"""\
        [retriever]
        type = Simple{protocol}Retriever
        server = {host}
        port = {port}
        username = alice
        password = {PASSWORD}
        {"record_mailbox = false" if protocol == "IMAP" else ""}

        [destination]
        type = MDA_external
        path = {script}
        allow_root_commands = true

        [options]
        read_all = true
        delete = {str(delete).lower()}
        delivered_to = false
        received = false
        message_log_syslog = false
        """))
    run([binary, f"--getmaildir={home}", "--rcfile=rc", "--quiet"])
    return out, (b"Return-Path",)


def mpop(daemon, tmp_path, protocol: str, delete: bool):
    binary = require_tool("mpop")
    script, out = mda(tmp_path)
    host, port = daemon.address("pop3")
    rc = tmp_path / "mpoprc"
    rc.write_text(textwrap.dedent(f"""\
        account default
        host {host}
        port {port}
        user alice
        password {PASSWORD}
        auth user
        tls off
        delivery mda {script}
        keep {"off" if delete else "on"}
        uidls_file {tmp_path}/mpop-uidls
        received_header off
        """))
    rc.chmod(0o600)
    run([binary, "-C", str(rc), "-a", "-q"])
    return out, ()


DOWNLOADS = [
    ("fetchmail", "POP3"), ("fetchmail", "IMAP"), ("getmail", "POP3"), ("getmail", "IMAP"), ("mpop", "POP3"),
]


@pytest.mark.parametrize("delete", [False, True], ids=["keep", "delete"])
@pytest.mark.parametrize("client,protocol", DOWNLOADS, ids=[f"{c}-{p}" for c, p in DOWNLOADS])
def test_download_is_byte_exact(mail, tmp_path, client, protocol, delete):
    out, added = {"fetchmail": fetchmail, "getmail": getmail, "mpop": mpop}[client](mail, tmp_path, protocol, delete)
    delivered = sorted(mail_corpus.digest(mail_corpus.strip_added_headers(p.read_bytes(), added)) for p in out.iterdir())
    assert delivered == sorted(mail_corpus.digest(m) for m in mail.sent)
    left = inbox(mail).scan()
    if delete:
        assert left == []
    else:
        assert len(left) == 20


# ------------------------------------------------------------ mbsync


def mbsync_config(daemon, tmp_path: Path) -> tuple[Path, Path]:
    host, port = daemon.address("imap")
    local = tmp_path / "mbsync-local"
    local.mkdir(exist_ok=True)
    rc = tmp_path / "mbsyncrc"
    rc.write_text(textwrap.dedent(f"""\
        IMAPAccount netapps
        Host {host}
        Port {port}
        User alice
        Pass "{PASSWORD}"
        SSLType None
        AuthMechs LOGIN

        IMAPStore remote
        Account netapps

        MaildirStore local
        Path {local}/
        Inbox {local}/INBOX
        SubFolders Verbatim

        Channel sync
        Far :remote:
        Near :local:
        Patterns *
        Create Both
        Expunge Both
        SyncState *
        """))
    return rc, local


def snapshot(*roots: Path) -> list[str]:
    """Every message file (name = unique name + flags) under *roots*: what a sync may change."""
    return sorted(str(p) for root in roots for p in root.rglob("*")
                  if p.is_file() and p.parent.name in ("cur", "new"))


def local_file(local: Path, box: str, message_id: bytes) -> Path:
    for path in (local / box).glob("*/*"):
        if path.parent.name in ("cur", "new") and message_id in path.read_bytes():
            return path
    raise LookupError(message_id)


def test_mbsync_two_way_sync_through_a_restart(mail, netapps_daemon, tmp_path):
    binary = require_tool("mbsync")
    rc, local = mbsync_config(mail, tmp_path)
    sync = lambda: run([binary, "-q", "-c", str(rc), "-a"])  # exit 0 every time
    server = mail.data_dir / "mail" / "alice"

    sync()  # pull: the 20 messages, byte-exact but for the X-TUID line mbsync adds to its own copies
    pulled = [mail_corpus.strip_added_headers(p.read_bytes(), (b"X-TUID",))
              for p in (local / "INBOX").glob("*/*") if p.parent.name in ("cur", "new")]
    assert sorted(mail_corpus.digest(m) for m in pulled) == sorted(mail_corpus.digest(m) for m in mail.sent)

    # push: a new local message and a new local folder (mbsync 1.4.4 needs UIDPLUS for both)
    (local / "INBOX" / "new" / "1800000000.1.local").write_bytes(
        b"From: me@local.test\nSubject: pushed\nMessage-ID: <pushed@local.test>\n\nlocal body\n")
    for sub in ("cur", "new", "tmp"):
        (local / "Projects" / sub).mkdir(parents=True, exist_ok=True)
    (local / "Projects" / "new" / "1800000000.2.local").write_bytes(
        b"From: me@local.test\nSubject: in a new folder\nMessage-ID: <folder@local.test>\n\nx\n")
    sync()
    assert b"<pushed@local.test>" in message_ids(inbox(mail))
    assert message_ids(folder(mail, "Projects")) == {b"<folder@local.test>"}

    # flags both ways: \Flagged set locally, \Answered set on the server
    path = local_file(local, "INBOX", b"<m1@example.test>")
    path.rename(path.parent.parent / "cur" / (path.name.split(":")[0] + ":2,FS"))
    remote = {m.uid: m for m in inbox(mail).scan()}
    m2 = next(m for m in remote.values() if b"<m2@example.test>" in inbox(mail).read(m))
    inbox(mail).set_flags(m2, "RS")
    sync()
    assert any("F" in m.flags for m in inbox(mail).scan() if b"<m1@example.test>" in inbox(mail).read(m))
    assert local_file(local, "INBOX", b"<m2@example.test>").name.endswith(":2,RS")

    # expunge both ways: deleted locally, and removed on the server
    path = local_file(local, "INBOX", b"<m3@example.test>")
    path.rename(path.parent.parent / "cur" / (path.name.split(":")[0] + ":2,ST"))
    m4 = next(m for m in inbox(mail).scan() if b"<m4@example.test>" in inbox(mail).read(m))
    inbox(mail).remove(m4)
    sync()
    ids = message_ids(inbox(mail))
    assert b"<m3@example.test>" not in ids and b"<m4@example.test>" not in ids
    with pytest.raises(LookupError):
        local_file(local, "INBOX", b"<m4@example.test>")

    # a run with nothing to do moves nothing
    before = snapshot(local, server)
    sync()
    assert snapshot(local, server) == before

    # a restart: same UIDVALIDITY and UIDs, so again nothing to do
    mail.stop()
    again = start(netapps_daemon, mail.data_dir)
    rc, _ = mbsync_config(again, tmp_path)
    sync()
    assert snapshot(local, server) == before


# ------------------------------------------------------------ neomutt


def test_neomutt_moves_a_message_between_folders(mail, tmp_path):
    neomutt = require_tool("neomutt")
    tmux = require_tool("tmux")
    host, port = mail.address("imap")
    UserMailboxes(mail.store, "alice").create("Archive")
    rc = tmp_path / "muttrc"
    rc.write_text(textwrap.dedent(f"""\
        set imap_user = "alice"
        set imap_pass = "{PASSWORD}"
        set folder = "imap://{host}:{port}/"
        set spoolfile = "+INBOX"
        set ssl_starttls = no
        set ssl_force_tls = no
        set confirmappend = no
        set delete = yes
        set quit = yes
        set move = no
        set record = ""
        set header_cache = ""
        set message_cachedir = ""
        set imap_idle = no
        set wait_key = no
        """))
    finished = tmp_path / "finished"
    keys = "/~i m5@example<enter><save-message>=Archive<enter><sync-mailbox><quit>"
    command = f"TERM=xterm {neomutt} -n -F {rc} -e 'push \"{keys}\"'; echo $? > {finished}"
    server = f"netapps-test-{os.getpid()}-{time.monotonic_ns()}"
    subprocess.run([tmux, "-L", server, "new-session", "-d", "-x", "160", "-y", "40", command], check=True, timeout=30)
    try:
        wait_for(finished.exists, timeout=60, what="neomutt to finish")
    finally:
        subprocess.run([tmux, "-L", server, "kill-server"], capture_output=True, timeout=30)
    assert finished.read_text().strip() == "0"
    assert message_ids(folder(mail, "Archive")) == {b"<m5@example.test>"}
    ids = message_ids(inbox(mail))
    assert b"<m5@example.test>" not in ids and len(ids) == 19


# ------------------------------------------------------------ offlineimap3


def test_offlineimap_pulls_and_pushes(netapps_daemon, tmp_path):
    binary = require_tool("offlineimap")
    mail = _mailbox(netapps_daemon, tmp_path, with_utf8=False)  # its own bug, on Dovecot too
    host, port = mail.address("imap")
    local = tmp_path / "offlineimap-mail"
    rc = tmp_path / "offlineimaprc"
    rc.write_text(textwrap.dedent(f"""\
        [general]
        accounts = test
        metadata = {tmp_path}/offlineimap-meta

        [Account test]
        localrepository = local
        remoterepository = remote

        [Repository local]
        type = Maildir
        localfolders = {local}

        [Repository remote]
        type = IMAP
        remotehost = {host}
        remoteport = {port}
        remoteuser = alice
        remotepass = {PASSWORD}
        ssl = no
        starttls = no
        """))
    sync = lambda: run([binary, "-c", str(rc), "-o", "-u", "quiet"])
    sync()
    pulled = [p.read_bytes() for p in (local / "INBOX").glob("*/*")]
    assert sorted(mail_corpus.digest(m) for m in pulled) == sorted(mail_corpus.digest(m) for m in mail.sent)
    (local / "INBOX" / "new" / "1800000001.1.local").write_bytes(
        b"From: me@local.test\nSubject: pushed\nMessage-ID: <pushed@local.test>\n\nbody\n")
    sync()
    stored = [inbox(mail).read(m) for m in inbox(mail).scan() if b"<pushed@local.test>" in inbox(mail).read(m)]
    assert len(stored) == 1
    # With UIDPLUS it learns the new UID from APPENDUID: no X-OfflineIMAP header written into the message.
    assert b"X-OfflineIMAP" not in stored[0]
