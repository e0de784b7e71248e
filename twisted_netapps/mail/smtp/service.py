"""Service builder for ``smtp``: MX/relay listener, submission listener, delivery and queue."""

from __future__ import annotations

import dataclasses
import socket

from twisted.internet import threads

from twisted_netapps.auth import make_portal
from twisted_netapps.connections import StreamSettings
from twisted_netapps.context import ServiceContext
from twisted_netapps.errors import ConfigError
from twisted_netapps.mail.store.commit import GroupCommitter
from twisted_netapps.mail.smtp.delivery import Deliverer
from twisted_netapps.mail.store.maildir import MailStore
from twisted_netapps.mail.smtp.mx import lookup_hosts, make_resolver, parse_nameserver
from twisted_netapps.mail.smtp.policy import MailPolicy
from twisted_netapps.mail.store.queue import QueueStore
from twisted_netapps.mail.smtp.queue_runner import QueueRunner, RunnerSettings
from twisted_netapps.mail.smtp.core import SessionConfig
from twisted_netapps.mail.smtp.protocol import TOO_MANY_CONNECTIONS, SMTPFactory, SubmitterRealm
from twisted_netapps.mail.smtp.syntax import valid_domain
from twisted_netapps.mail.tls import check_cert_key_pair, server_tls_options
from twisted_netapps.periodic import PeriodicTask
from twisted_netapps.settings import setting

QUEUE_DIR = "smtp-queue"
MAIL_DIR = "mail"
TMP_SWEEP_INTERVAL = 6 * 3600.0  # seconds; the first sweep runs at start-up


@dataclasses.dataclass(frozen=True)
class Settings(StreamSettings):
    listen: list[str] = setting(["tcp:2525:interface=127.0.0.1"], "SMTP (MX) listeners")
    submission_listen: list[str] = setting(
        ["tcp:2587:interface=127.0.0.1"], "submission listeners (RFC 6409: AUTH required before MAIL)"
    )
    hostname: str = setting("", "our name in the greeting, Received: and bounces ('' = this host's name)")
    local_domains: list[str] = setting(["example.test", "localhost"], "domains delivered here")
    aliases: dict[str, list[str]] = setting(
        {"postmaster": ["demo"], "abuse": ["demo"]},
        "local part (any local domain) or full address -> accounts and/or remote addresses",
    )
    relay_networks: list[str] = setting([], "client networks allowed to relay without AUTH (CIDR)")
    allow_plaintext_auth: bool = setting(False, "offer AUTH before STARTTLS (only for tests and loopback)")
    tls_cert: str = setting("", "PEM certificate for STARTTLS ('' = self-signed in <data_dir>/tls)")
    tls_key: str = setting("", "PEM private key for tls_cert")
    max_message_size: int = setting(25 * 1024 * 1024, "largest message accepted (SIZE), in bytes", minimum=1)
    max_recipients: int = setting(100, "recipients per message; more get 452", minimum=1)
    max_line: int = setting(
        1000, "longest DATA line in octets including CRLF (RFC 5321)", minimum=100, maximum=1_000_000
    )
    max_command_line: int = setting(2048, "longest command line in octets", minimum=512)
    max_errors: int = setting(20, "error replies before the session is closed with 421", minimum=1)
    max_hops: int = setting(
        50, "Received: headers beyond which a message is refused as looping (554 5.4.6)", minimum=1
    )
    command_timeout: float = setting(300.0, "seconds to wait for a command", positive=True)
    data_timeout: float = setting(600.0, "seconds to wait for more DATA", positive=True)
    auth_failure_delay: float = setting(1.0, "seconds before a failed AUTH is answered", minimum=0)
    resolver: str = setting("", "DNS server ADDR[:PORT] for MX lookups ('' = the system's resolver)")
    relay_port: int = setting(25, "port of the mail hosts we relay to", minimum=1, maximum=65535)
    relay_timeout: float = setting(60.0, "seconds per relay connection step", positive=True)
    relay_tls: bool = setting(True, "use STARTTLS when a relay host offers it (opportunistic, unverified)")
    max_relay_parallel: int = setting(10, "queue entries delivered at once", minimum=1)
    queue_interval: float = setting(30.0, "seconds between queue scans", positive=True)
    retry_base: float = setting(60.0, "first retry delay; doubles each attempt", positive=True)
    retry_max: float = setting(3600.0, "longest retry delay", positive=True)
    queue_lifetime: float = setting(5 * 86400.0, "seconds before undeliverable mail is bounced", positive=True)

    def validate(self, where: str) -> None:
        for domain in self.local_domains:
            if not valid_domain(domain):
                raise ConfigError(f"{where}.local_domains: bad domain {domain!r}")
        check_cert_key_pair(self.tls_cert, self.tls_key, where)
        try:
            parse_nameserver(self.resolver)
        except ValueError as e:
            raise ConfigError(f"{where}.resolver: expected ADDRESS[:PORT], {e}") from None


def build(context: ServiceContext):
    s: Settings = context.settings
    where = f"{context.config.source}: {context.name}"
    reactor = context.reactor
    # gethostname, not getfqdn: no DNS lookup (that may hang) at start-up
    hostname = s.hostname or socket.gethostname() or "localhost"
    policy = MailPolicy(
        context.accounts, local_domains=s.local_domains, aliases=s.aliases,
        relay_networks=s.relay_networks, where=where,
    )
    store = MailStore(context.subdir(MAIL_DIR))
    queue = QueueStore(context.subdir(QUEUE_DIR))
    committer = GroupCommitter(reactor, run=context.pools.disk)
    deliverer = Deliverer(store, queue, policy, committer, hostname=hostname, clock=reactor)
    resolver = make_resolver(parse_nameserver(s.resolver), s.relay_timeout)

    def lookup(domain: str):
        return threads.deferToThreadPool(reactor, reactor.getThreadPool(), lookup_hosts, domain, resolver)

    runner = QueueRunner(
        queue,
        RunnerSettings(
            hostname=hostname, relay_port=s.relay_port, interval=s.queue_interval, retry_base=s.retry_base,
            retry_max=s.retry_max, lifetime=s.queue_lifetime, max_parallel=s.max_relay_parallel,
            timeout=s.relay_timeout, relay_tls=s.relay_tls,
        ),
        reactor, lookup=lookup, send_bounce=deliverer.send_bounce, stats=context.stats,
        run_blocking=context.pools.disk,
    )
    deliverer.on_queued = runner.kick
    tls_options = server_tls_options(context.data_dir, s.tls_cert, s.tls_key, where)
    portal = make_portal(SubmitterRealm(), context.accounts, run=context.pools.cpu)

    def factory(submission: bool) -> SMTPFactory:
        config = SessionConfig(
            hostname=hostname, max_message_size=s.max_message_size, max_recipients=s.max_recipients,
            max_command_line=s.max_command_line, max_data_line=s.max_line, max_errors=s.max_errors,
            max_hops=s.max_hops,
            starttls_available=True, auth_requires_tls=not s.allow_plaintext_auth, auth_required=submission,
        )
        return SMTPFactory(
            config=config, check_recipient=policy.check_recipient, deliverer=deliverer, portal=portal,
            tls_options=tls_options, stats=context.stats, reactor=reactor, command_timeout=s.command_timeout,
            data_timeout=s.data_timeout, auth_failure_delay=s.auth_failure_delay,
            logins=context.logins,
        )

    # Maildir asks for tmp/ files older than 36 h to be removed (they are
    # deliveries that crashed before their 250); off the reactor thread.
    sweeper = PeriodicTask("smtp: sweep of stale Maildir tmp files", TMP_SWEEP_INTERVAL,
                           lambda: context.pools.disk(store.clean_stale_tmp), reactor, now=True)

    listeners = context.listeners(factory(False), refuse=TOO_MANY_CONNECTIONS)
    submission = context.listeners(factory(True), setting="submission_listen", refuse=TOO_MANY_CONNECTIONS)
    for listener in submission:  # service names must be unique within the parent
        listener.name = f"{context.name}-submission:{listener.description}"
    listeners += submission
    return context.named_service([runner, sweeper, *listeners])
