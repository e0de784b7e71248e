"""A DNS server that never answers must not slow local mail, POP3 or IMAP (issue 14, item 1).

The real daemon (smtp, pop3, imap) is pointed at a UDP socket that reads
every query and drops it, and ten messages to remote domains are queued, so
ten MX lookups hang at once. Meanwhile a local delivery (250 after DATA),
a POP3 login and an IMAP login must each finish in under a second: the
lookups wait on the reactor, not in the thread pool that fsyncs deliveries
and hashes passwords.
"""

from __future__ import annotations

import imaplib
import poplib
import smtplib
import socket
import threading
import time

import pytest
from netapps_daemon import wait_for

from twisted_netapps.accounts import AccountStore

ANY_PORT = ["tcp:0:interface=127.0.0.1"]
QUEUED = 10
LIMIT = 1.0  # seconds


class DeadResolver:
    """A UDP socket on loopback that reads every query and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.address = self.sock.getsockname()
        self.queries = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drop, name="dead-resolver", daemon=True)
        self._thread.start()

    def _drop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sock.recv(65535)
            except socket.timeout:
                continue
            self.queries += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@pytest.fixture
def dead_resolver():
    server = DeadResolver()
    yield server
    server.close()


def timed(action) -> float:
    started = time.monotonic()
    action()
    return time.monotonic() - started


def test_dead_resolver_does_not_stall_local_mail_pop3_or_imap(netapps_daemon, dead_resolver, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    AccountStore(data).add("alice", "alice-pw", log2_n=10)
    host, port = dead_resolver.address
    d = netapps_daemon(
        ["smtp", "pop3", "imap"], data_dir=data,
        listen={"smtp": ANY_PORT, "pop3": ANY_PORT, "imap": ANY_PORT},
        sets=['smtp.submission_listen=["tcp:0:interface=127.0.0.1"]', f'smtp.resolver="{host}:{port}"',
              'smtp.relay_networks=["127.0.0.0/8"]', "smtp.queue_interval=0.2", "smtp.retry_base=0.2",
              f"smtp.max_relay_parallel={QUEUED}"],
    )
    with smtplib.SMTP(*d.address("smtp"), timeout=30) as c:
        for i in range(QUEUED):
            c.sendmail("alice@example.test", [f"bob@far{i}.test"], f"Subject: remote {i}\r\n\r\nbody\r\n".encode())
    wait_for(lambda: dead_resolver.queries >= QUEUED, timeout=15, what=f"{QUEUED} MX lookups in flight")

    def local_delivery():
        with smtplib.SMTP(*d.address("smtp"), timeout=30) as c:
            c.sendmail("carol@remote.test", ["alice@example.test"], b"Subject: local\r\n\r\nhello\r\n")

    def pop3_login():
        pop = poplib.POP3(*d.address("pop3"), timeout=30)
        pop.user("alice")
        pop.pass_("alice-pw")
        pop.quit()

    def imap_login():
        imap = imaplib.IMAP4(*d.address("imap"), timeout=30)
        imap.login("alice", "alice-pw")
        imap.logout()

    timings = {name: [timed(action) for _ in range(3)]
               for name, action in (("smtp 250", local_delivery), ("pop3 login", pop3_login),
                                    ("imap login", imap_login))}
    in_flight = dead_resolver.queries
    print({name: [round(t, 3) for t in ts] for name, ts in timings.items()}, f"{in_flight} queries dropped")
    assert all(t < LIMIT for ts in timings.values() for t in ts), timings
    assert in_flight >= QUEUED  # the lookups were still hanging (retried) while we measured
    assert "Unhandled" not in d.log and "Traceback" not in d.log
