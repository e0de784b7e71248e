"""Service builder for ``pop3``: RFC 1939 mail access to the accounts' INBOX Maildirs."""

from __future__ import annotations

import dataclasses

from twisted_netapps.auth import make_portal
from twisted_netapps.connections import StreamSettings
from twisted_netapps.context import ServiceContext
from twisted_netapps.mail.plaintext import plaintext_auth_setting
from twisted_netapps.mail.pop3.apop import SECRETS_FILE, ApopSecretChecker, ApopSecrets
from twisted_netapps.mail.pop3.maildrop import Pop3Realm
from twisted_netapps.mail.pop3.protocol import TOO_MANY_CONNECTIONS, Pop3Factory
from twisted_netapps.mail.store.maildir import MailStore
from twisted_netapps.tls import check_cert_key_pair, server_tls_options
from twisted_netapps.settings import setting

__all__ = ["COUNTERS", "Settings", "build"]

COUNTERS: dict[str, str] = {
    "logins": "successful logins (mailbox opened and locked)",
    "login_failures": "wrong user name or password (answered after the login guard's delay)",
    "login_refused": "logins refused at once: the client's address is over its failure budget",
    "messages_retrieved": "RETR replies sent in full",
    "read_waits": "RETRs that waited for a read in the disk pool (the message was not in the kernel's caches)",
    "messages_deleted": "messages removed in the UPDATE phase",
    "timeouts": "connections closed for silence (idle_timeout)",
    "deadlines_passed": "connections closed at a command or login deadline (slowloris)",
}


# What this service's counters count (twisted_netapps.stats; netapps stats --explain).
COUNTERS: dict[str, str] = {
    "requests": "commands answered",
    "errors": "commands answered -ERR (unknown, malformed, out of sequence, failed)",
    "logins": "successful logins (USER/PASS, APOP, AUTH PLAIN)",
    "login_failures": "failed logins",
    "login_refused": "logins refused at once: the address is over its login failure budget",
    "messages_retrieved": "messages sent by RETR or TOP",
    "messages_deleted": "messages removed at QUIT (after DELE)",
}

# This service logs users in: the daemon makes sure an account exists.
USES_ACCOUNTS = True

@dataclasses.dataclass(frozen=True)
class Settings(StreamSettings):
    listen: list[str] = setting(["tcp:1110:interface=127.0.0.1"], "TCP endpoint strings")
    hostname: str = setting("", "name in the APOP timestamp (default: the host name)")
    idle_timeout: float = setting(
        600.0, "seconds a session may stay silent (RFC 1939: at least 10 minutes)", positive=True
    )
    command_deadline: float = setting(
        60.0, "seconds from a command line's first byte to its end (slowloris: however it trickles)", positive=True
    )
    login_deadline: float = setting(120.0, "seconds from the greeting to a successful login", positive=True)
    max_line: int = setting(
        4096, "longest command line in bytes; longer gets -ERR and is discarded", minimum=255  # RFC 2449
    )
    max_bad_commands: int = setting(10, "bad commands before the connection is closed", minimum=1)
    max_login_failures: int = setting(3, "failed logins before the connection is closed", minimum=1)
    login_failure_delay: float = setting(
        2.0, "seconds before a failed login's -ERR (slows down guessing)", minimum=0
    )
    plaintext_auth: str = plaintext_auth_setting("loopback", "USER/PASS and AUTH PLAIN")
    apop: bool = setting(True, "offer APOP when <data_dir>/mail/apop-secrets holds secrets")
    tls: bool = setting(True, "offer STLS")
    tls_cert: str = setting("", "PEM certificate for STLS (default: <data_dir>/tls/cert.pem, self-signed if absent)")
    tls_key: str = setting("", "PEM private key for tls_cert (default: <data_dir>/tls/key.pem)")

    def validate(self, where: str) -> None:
        check_cert_key_pair(self.tls_cert, self.tls_key, where)


def build(context: ServiceContext):
    s: Settings = context.settings
    store = MailStore(context.subdir("mail"))
    portal = make_portal(Pop3Realm(store), context.accounts, run=context.pools.cpu)
    apop_path = store.root / SECRETS_FILE
    portal.registerChecker(ApopSecretChecker(apop_path, run=context.pools.disk))
    tls_options = None
    if s.tls:
        tls_options = server_tls_options(context.data_dir, s.tls_cert, s.tls_key, f"{context.config.source}: {context.name}")
    factory = Pop3Factory(
        portal=portal,
        stats=context.stats,
        reactor=context.reactor,
        tls_options=tls_options,
        apop_secrets=ApopSecrets(apop_path, context.reactor, run=context.pools.disk),
        settings=s,
        run_blocking=context.pools.disk,
        logins=context.logins,
    )
    return context.named_service(context.listeners(factory, refuse=TOO_MANY_CONNECTIONS))
