"""Service builder for ``imap``: IMAP4rev1 access to the accounts' Maildir++ folders."""

from __future__ import annotations

import dataclasses

from twisted_netapps.auth import make_portal
from twisted_netapps.connections import StreamSettings
from twisted_netapps.context import ServiceContext
from twisted_netapps.mail.imap.account import ImapRealm
from twisted_netapps.mail.imap.mailbox import FolderRegistry
from twisted_netapps.mail.imap.protocol import TOO_MANY_CONNECTIONS, ImapFactory
from twisted_netapps.mail.store.maildir import MailStore
from twisted_netapps.mail.plaintext import plaintext_auth_setting
from twisted_netapps.tls import check_cert_key_pair, server_tls_options
from twisted_netapps.settings import setting

COUNTERS: dict[str, str] = {
    "connections": "IMAP connections accepted",
    "active_connections": "IMAP connections open now",
    "requests": "commands received (well-formed or not)",
    "errors": "commands answered NO or BAD, and lines too long",
    "bytes_in": "octets received from clients",
    "bytes_out": "octets sent to clients",
    "logins": "successful LOGIN/AUTHENTICATE",
    "login_failures": "failed LOGIN/AUTHENTICATE",
}


# What this service's counters count (twisted_netapps.stats; netapps stats --explain).
COUNTERS: dict[str, str] = {
    "requests": "commands received",
    "errors": "commands answered BAD or NO, and server-side failures",
    "logins": "successful logins (LOGIN, AUTHENTICATE PLAIN)",
    "login_failures": "failed logins",
}

# This service logs users in: the daemon makes sure an account exists.
USES_ACCOUNTS = True

@dataclasses.dataclass(frozen=True)
class Settings(StreamSettings):
    listen: list[str] = setting(["tcp:1143:interface=127.0.0.1"], "TCP endpoint strings")
    idle_timeout: float = setting(
        1800.0, "seconds a logged-in session may stay silent (RFC 3501: at least 30 minutes)", positive=True
    )
    login_timeout: float = setting(60.0, "seconds to log in after connecting", positive=True)
    max_line: int = setting(
        65536, "longest command line in bytes (long UID sets); longer gets BYE", minimum=1024
    )
    max_message_size: int = setting(
        50 * 1024 * 1024, "largest APPEND literal in bytes (larger: BAD [TOOBIG])", minimum=1
    )
    poll_interval: float = setting(
        1.0, "seconds between checks of a selected folder for new mail / changes", positive=True
    )
    login_failure_delay: float = setting(
        2.0, "seconds before a failed login's NO (slows down guessing)", minimum=0
    )
    plaintext_auth: str = plaintext_auth_setting("loopback", "LOGIN and AUTHENTICATE PLAIN")
    tls: bool = setting(True, "offer STARTTLS")
    tls_cert: str = setting("", "PEM certificate for STARTTLS (default: <data_dir>/tls/cert.pem, self-signed if absent)")
    tls_key: str = setting("", "PEM private key for tls_cert (default: <data_dir>/tls/key.pem)")

    def validate(self, where: str) -> None:
        check_cert_key_pair(self.tls_cert, self.tls_key, where)


def build(context: ServiceContext):
    s: Settings = context.settings
    store = MailStore(context.subdir("mail"))
    registry = FolderRegistry(context.reactor, s.poll_interval, run_blocking=context.pools.disk)
    portal = make_portal(ImapRealm(store, registry), context.accounts, run=context.pools.cpu)
    tls_options = None
    if s.tls:
        tls_options = server_tls_options(context.data_dir, s.tls_cert, s.tls_key, f"{context.config.source}: {context.name}")
    factory = ImapFactory(
        portal=portal,
        stats=context.stats,
        reactor=context.reactor,
        tls_options=tls_options,
        settings=s,
        registry=registry,
        logins=context.logins,
    )
    return context.named_service(context.listeners(factory, refuse=TOO_MANY_CONNECTIONS))
