"""Test doubles for the SMTP relay: a remote mail host (aiosmtpd) and helpers.

The remote host runs in its own thread (aiosmtpd's Controller) on a chosen
127.x address, records every message it accepts, and can be told to answer
RCPT with temporary or permanent failures.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field

from aiosmtpd.controller import Controller


@dataclass
class Received:
    sender: str
    recipients: list[str]
    data: bytes
    peer: str


@dataclass
class RemoteHandler:
    rcpt_reply: str | None = None  # e.g. "451 4.3.0 try later", "550 5.1.1 no such user"; None accepts
    temporary_failures: int = 0  # answer RCPT with 451 this many times, then accept
    messages: list[Received] = field(default_factory=list)
    rcpt_attempts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with self.lock:
            self.rcpt_attempts += 1
            if self.temporary_failures > 0:
                self.temporary_failures -= 1
                return "451 4.3.0 Temporary failure, try again later"
        if self.rcpt_reply is not None:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content,
                                          session.peer[0]))
        return "250 2.0.0 Message accepted"


class RemoteHost:
    """An aiosmtpd server on *host*:*port*; use as a context manager."""

    def __init__(self, host: str, port: int, handler: RemoteHandler | None = None) -> None:
        self.handler = handler or RemoteHandler()
        self.controller = Controller(self.handler, hostname=host, port=port, ready_timeout=10)

    def __enter__(self) -> "RemoteHost":
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.controller.stop()


def port_free_on(hosts: list[str]) -> int:
    """A TCP port that is free on every address in *hosts* (relay_port is one number for all)."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind((hosts[0], 0))
            port = first.getsockname()[1]
            ok = True
            for host in hosts[1:]:
                with socket.socket() as other:
                    try:
                        other.bind((host, port))
                    except OSError:
                        ok = False
                        break
            if ok:
                return port
    raise RuntimeError("no common free port")


SMTP_LISTEN = {"smtp": ["tcp:0:interface=127.0.0.1"]}


def smtp_sets(*extra: str) -> list[str]:
    """``--set`` options for a test daemon: submission on port 0, fast failed logins."""
    return ['smtp.submission_listen=["tcp:0:interface=127.0.0.1"]', "smtp.auth_failure_delay=0.1", *extra]


def maildir_messages(data_dir, user: str) -> list:
    """Paths of the messages in *user*'s INBOX new/ (sorted by name)."""
    new = data_dir / "mail" / user / "new"
    return sorted(new.iterdir()) if new.is_dir() else []
