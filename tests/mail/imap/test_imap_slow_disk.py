"""A slow disk holds up only the folder it is slow for (issue 13): folder scans and UID map
writes run in the thread pool, so the reactor keeps serving every other connection."""

import dataclasses
import imaplib
import threading
import time

import pytest_twisted
from twisted.cred.portal import Portal
from twisted.internet import reactor, threads

from imap_harness import Passwords
from twisted_netapps.mail.imap.account import ImapRealm
from twisted_netapps.mail.imap.mailbox import FolderRegistry
from twisted_netapps.mail.imap.protocol import ImapFactory
from twisted_netapps.mail.imap.service import Settings
from twisted_netapps.mail.store.mailbox import MaildirFolder, UserMailboxes
from twisted_netapps.mail.store.maildir import MailStore
from twisted_netapps.stats import ServiceStats

DELAY = 1.5


def session(port: int, folder: str) -> float:
    """Log in, SELECT *folder*, FETCH its flags, log out; seconds taken (runs in a thread)."""
    started = time.monotonic()
    client = imaplib.IMAP4("127.0.0.1", port, timeout=10)
    client.login("alice", "pw")
    assert client.select(folder)[0] == "OK"
    assert client.fetch("1:*", "(FLAGS)")[0] == "OK"
    client.logout()
    return time.monotonic() - started


@pytest_twisted.ensureDeferred
async def test_a_slow_folder_scan_does_not_stall_other_connections(tmp_path, monkeypatch):
    store = MailStore(tmp_path / "mail")
    store.deliver("alice", b"Subject: fast\r\n\r\nx\r\n")
    UserMailboxes(store, "alice").create("Slow")
    store.deliver("alice", b"Subject: slow\r\n\r\nx\r\n", folder="Slow")
    scanning_slow = threading.Event()
    real_scan = MaildirFolder.scan

    def scan(self):
        if self.path.name == ".Slow":
            scanning_slow.set()
            time.sleep(DELAY)  # the injected slow disk, in whatever thread scans
        return real_scan(self)

    monkeypatch.setattr(MaildirFolder, "scan", scan)
    registry = FolderRegistry(reactor, poll_interval=60)  # the real thread pool
    factory = ImapFactory(
        portal=Portal(ImapRealm(store, registry), [Passwords()]), stats=ServiceStats("imap"), reactor=reactor,
        tls_options=None, settings=dataclasses.replace(Settings(), login_failure_delay=0), registry=registry,
    )
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    number = port.getHost().port
    try:
        slow = threads.deferToThread(session, number, "Slow")
        assert await threads.deferToThread(scanning_slow.wait, 10)
        fast = await threads.deferToThread(session, number, "INBOX")
        assert not slow.called  # the slow SELECT is still waiting for its disk...
        assert fast < DELAY / 3, fast  # ...and meanwhile another client logged in, selected, fetched
        assert await slow >= DELAY
    finally:
        await port.stopListening()
