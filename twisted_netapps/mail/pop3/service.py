"""Service builder for ``pop3``: RFC 1939 mail access to the accounts' INBOX Maildirs."""

from __future__ import annotations

import dataclasses

from twisted_netapps.auth import make_portal
from twisted_netapps.connections import StreamSettings
from twisted_netapps.context import ServiceContext
from twisted_netapps.mail.store.maildir import MailStore
from twisted_netapps.mail.pop3.apop import SECRETS_FILE, ApopSecretChecker
from twisted_netapps.mail.pop3.protocol import TOO_MANY_CONNECTIONS, Pop3Factory, Pop3Realm
from twisted_netapps.mail.tls import check_cert_key_pair, server_tls_options
from twisted_netapps.settings import setting

PLAINTEXT_POLICIES = ("always", "loopback", "tls")


@dataclasses.dataclass(frozen=True)
class Settings(StreamSettings):
    listen: list[str] = setting(["tcp:1110:interface=127.0.0.1"], "TCP endpoint strings")
    hostname: str = setting("", "name in the APOP timestamp (default: the host name)")
    idle_timeout: float = setting(
        600.0, "seconds a session may stay silent (RFC 1939: at least 10 minutes)", positive=True
    )
    max_line: int = setting(
        4096, "longest command line in bytes; longer gets -ERR and is discarded", minimum=255  # RFC 2449
    )
    max_bad_commands: int = setting(10, "bad commands before the connection is closed", minimum=1)
    max_login_failures: int = setting(3, "failed logins before the connection is closed", minimum=1)
    login_failure_delay: float = setting(
        2.0, "seconds before a failed login's -ERR (slows down guessing)", minimum=0
    )
    plaintext_auth: str = setting(
        "loopback", 'USER/PASS and AUTH PLAIN: "always", "loopback" (or after STLS), "tls" (only after STLS)',
        choices=PLAINTEXT_POLICIES,
    )
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
    portal.registerChecker(ApopSecretChecker(apop_path))
    tls_options = None
    if s.tls:
        tls_options = server_tls_options(context.data_dir, s.tls_cert, s.tls_key, f"{context.config.source}: {context.name}")
    factory = Pop3Factory(
        portal=portal,
        stats=context.stats,
        reactor=context.reactor,
        tls_options=tls_options,
        apop_secrets_path=apop_path,
        settings=s,
        run_blocking=context.pools.disk,
        logins=context.logins,
    )
    return context.named_service(context.listeners(factory, refuse=TOO_MANY_CONNECTIONS))
