"""Service builder for ``smtp``: MX/relay listener, submission listener, delivery and queue."""

from __future__ import annotations

import dataclasses
import ipaddress
import socket
from pathlib import Path

from twisted.logger import Logger

from twisted_netapps.addresses import parse_host_port
from twisted_netapps.auth import make_portal
from twisted_netapps.connections import StreamSettings
from twisted_netapps.context import ServiceContext
from twisted_netapps.errors import ConfigError
from twisted_netapps.mail.store.commit import GroupCommitter
from twisted_netapps.mail.smtp.delivery import Deliverer
from twisted_netapps.mail.store.maildir import MailStore
from twisted_netapps.mail.smtp.mx import MXResolver, system_nameservers
from twisted_netapps.mail.smtp.policy import POSTMASTER, MailPolicy
from twisted_netapps.mail.store.queue import QueueStore
from twisted_netapps.mail.smtp.queue_runner import QueueRunner, RunnerSettings
from twisted_netapps.mail.smtp.core import SessionConfig
from twisted_netapps.mail.smtp.protocol import TOO_MANY_CONNECTIONS, SMTPFactory, SubmitterRealm
from twisted_netapps.mail.smtp.syntax import valid_domain
from twisted_netapps.mail.plaintext import ALWAYS, plaintext_auth_setting
from twisted_netapps.tls import check_cert_key_pair, server_tls_options
from twisted_netapps.periodic import PeriodicTask
from twisted_netapps.settings import setting

log = Logger(namespace="netapps.smtp")

QUEUE_DIR = "smtp-queue"
MAIL_DIR = "mail"
TMP_SWEEP_INTERVAL = 6 * 3600.0  # seconds; the first sweep runs at start-up


# What this service's counters count (twisted_netapps.stats; netapps stats --explain).
COUNTERS: dict[str, str] = {
    "requests": "messages whose DATA was received (accepted or not)",
    "messages": "messages accepted (250 after DATA): delivered to Maildirs and/or queued for relay",
    "errors": "error replies sent (4xx/5xx): refused commands, unknown recipients, refused messages",
    "auth_failures": "AUTH attempts that failed",
    "timeouts": "sessions closed after command_timeout or data_timeout",
    "deadlines_passed": "sessions closed at a command, DATA or login deadline (slowloris)",
    "auth_refused": "AUTH attempts refused at once: the address is over its login failure budget",
    "relayed": "recipients delivered to a remote mail host by the queue",
    "deferred": "relay attempts deferred for a retry (4xx, connection failures)",
    "bounced": "recipients bounced to the sender (5xx, or queue_lifetime over)",
}

# This service logs users in (SMTP AUTH) and delivers to accounts: the daemon
# makes sure one exists (the demo account) when it runs.
USES_ACCOUNTS = True

@dataclasses.dataclass(frozen=True)
class Settings(StreamSettings):
    listen: list[str] = setting(["tcp:2525:interface=127.0.0.1"], "SMTP (MX) listeners")
    submission_listen: list[str] = setting(
        ["tcp:2587:interface=127.0.0.1"], "submission listeners (RFC 6409: AUTH required before MAIL)"
    )
    hostname: str = setting("", "our name in the greeting, Received: and bounces ('' = this host's name)")
    local_domains: list[str] = setting(["example.test", "localhost"], "domains delivered here")
    aliases: dict[str, list[str]] = setting(
        {},
        "local part (any local domain) or full address -> accounts and/or remote addresses "
        "(postmaster without an alias: the mailbox 'postmaster')",
    )
    relay_networks: list[str] = setting([], "client networks allowed to relay without AUTH (CIDR)")
    plaintext_auth: str = plaintext_auth_setting("tls", "AUTH PLAIN and LOGIN")
    allow_plaintext_auth: bool = setting(False, 'older spelling of plaintext_auth = "always" (true wins)')
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
    command_deadline: float = setting(
        60.0, "seconds from a command line's first byte to its end (slowloris: however it trickles)", positive=True
    )
    data_deadline: float = setting(600.0, "seconds from the 354 to the end of the message", positive=True)
    login_deadline: float = setting(
        120.0, "seconds from the greeting to a successful AUTH on the submission port", positive=True
    )
    auth_failure_delay: float = setting(1.0, "seconds before a failed AUTH is answered", minimum=0)
    resolver: str = setting("", "DNS server ADDR[:PORT] for MX lookups ('' = the system's resolver)")
    resolver_timeout: float = setting(
        10.0, "seconds for one MX lookup (MX, then the hosts' A/AAAA) before the delivery is retried later",
        positive=True,
    )
    relay_port: int = setting(25, "port of the mail hosts we relay to", minimum=1, maximum=65535)
    relay_timeout: float = setting(60.0, "seconds per relay connection step", positive=True)
    relay_tls: bool = setting(True, "use STARTTLS when a relay host offers it (opportunistic, unverified)")
    relay_source_address: str = setting(
        "", "local IP address relay connections come from, like Postfix's smtp_bind_address ('' = the kernel's choice)"
    )
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
        if self.resolver.strip():
            try:
                parse_host_port(self.resolver, 53)
            except ValueError as e:
                raise ConfigError(f"{where}.resolver: expected ADDRESS[:PORT], {e}") from None
        if self.relay_source_address:
            try:
                ipaddress.ip_address(self.relay_source_address)
            except ValueError:
                raise ConfigError(
                    f"{where}.relay_source_address: {self.relay_source_address!r} is not an IP address"
                ) from None


def check_aliases(policy: MailPolicy, where: str, mail_root: Path) -> None:
    """At start-up: an alias that reaches no account is a mistake, said in one line.

    Postmaster is the exception (RFC 5321 4.5.1: it must always be accepted):
    a warning, and its mail goes to the ``postmaster`` mailbox meanwhile.
    """
    for alias, target in policy.unreachable_aliases():
        local = alias.split("@", 1)[0]
        if local == POSTMASTER:
            log.warn(
                "{where}.aliases.{alias}: {target!r} is not an account: mail to postmaster goes to the "
                "mailbox 'postmaster' ({mailbox}) until it is (netapps user add {target})",
                where=where.rpartition(": ")[2], alias=alias, target=target,
                mailbox=str(mail_root / POSTMASTER),
            )
            continue
        raise ConfigError(
            f"{where}.aliases.{alias}: {target!r} is not an account (add it with 'netapps user add {target}', "
            "or change the alias)"
        )


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
    check_aliases(policy, where, context.data_dir / MAIL_DIR)
    store = MailStore(context.subdir(MAIL_DIR))
    queue = QueueStore(context.subdir(QUEUE_DIR))
    committer = GroupCommitter(reactor, run=context.pools.disk)
    deliverer = Deliverer(store, queue, policy, committer, hostname=hostname, clock=reactor)
    # On the reactor, no thread: a dead DNS server must not hold threads that
    # deliveries and logins need (see mx.py).
    nameservers = [parse_host_port(s.resolver, 53)] if s.resolver.strip() else system_nameservers()
    resolver = MXResolver(reactor, nameservers, timeout=s.resolver_timeout)

    runner = QueueRunner(
        queue,
        RunnerSettings(
            hostname=hostname, relay_port=s.relay_port, interval=s.queue_interval, retry_base=s.retry_base,
            retry_max=s.retry_max, lifetime=s.queue_lifetime, max_parallel=s.max_relay_parallel,
            timeout=s.relay_timeout, relay_tls=s.relay_tls, source_address=s.relay_source_address,
        ),
        reactor, lookup=resolver.lookup_hosts, send_bounce=deliverer.send_bounce, stats=context.stats,
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
            starttls_available=True, plaintext_auth=ALWAYS if s.allow_plaintext_auth else s.plaintext_auth,
            auth_required=submission,
        )
        return SMTPFactory(
            config=config, check_recipient=policy.check_recipient, deliverer=deliverer, portal=portal,
            tls_options=tls_options, stats=context.stats, reactor=reactor, command_timeout=s.command_timeout,
            data_timeout=s.data_timeout, command_deadline=s.command_deadline, data_deadline=s.data_deadline,
            login_deadline=s.login_deadline, auth_failure_delay=s.auth_failure_delay,
            logins=context.logins, recent=context.recent,
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
    context.views.add("queue", "Queue (remote deliveries, with retry times)", lambda: context.pools.disk(_queue_view, queue))
    context.views.add("mailboxes", "Mailboxes", lambda: context.pools.disk(store.mailbox_counts))
    return context.named_service([runner, sweeper, *listeners])


def _queue_view(queue: QueueStore) -> list[dict]:
    """The queue as the status page shows it (blocking: a directory scan)."""
    return [
        {"id": e.id, "from": e.sender or "<>", "to": ", ".join(r.address for r in e.recipients),
         "size": e.size, "attempts": e.attempts, "next_attempt": e.next_attempt, "last_error": e.last_error}
        for e in sorted(queue.entries(), key=lambda e: e.next_attempt)[:500]
    ]
