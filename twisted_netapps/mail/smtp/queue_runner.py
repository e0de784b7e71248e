"""Delivering the queue: MX lookup, relay, retry with backoff, bounce on failure or expiry.

A :class:`QueueRunner` scans the queue every ``interval`` seconds (and at
once when a message is queued or ``netapps mail flush`` asks), and attempts
each due entry: recipients grouped by domain, mail hosts in MX order, each
host's addresses in turn until one answers. Per recipient the outcome is
delivered (removed), permanent (bounced now) or temporary (kept; next try
after an exponentially growing delay). When an entry outlives the maximum
queue lifetime its remaining recipients are bounced. All state lives in the
queue directory, so a restarted daemon simply carries on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from twisted.application import service
from twisted.internet import defer, error, ssl, threads
from twisted.logger import Logger

from twisted_netapps.mail.smtp.bounce import FailedRecipient, build_dsn
from twisted_netapps.mail.smtp.mx import MXLookupError
from twisted_netapps.mail.store.queue import QueueEntry, QueueStore, Recipient, retry_delay
from twisted_netapps.mail.smtp.relay_client import ProtocolProblem, relay_message
from twisted_netapps.periodic import PeriodicTask
from twisted_netapps.mail.smtp.syntax import SyntaxProblem, parse_mailbox

log = Logger(namespace="netapps.smtp")

# Failures of a whole connection attempt: try the next address/host, then retry later.
CONNECTION_FAILURES = (
    error.ConnectError, error.ConnectionLost, error.ConnectionDone, defer.TimeoutError,
    ProtocolProblem, OSError,
)


FLUSH_CHECK_INTERVAL = 1.0  # seconds between looks for a flush request (one stat each)


@dataclass(frozen=True)
class RunnerSettings:
    hostname: str
    relay_port: int = 25
    interval: float = 30.0
    retry_base: float = 60.0
    retry_max: float = 3600.0
    lifetime: float = 5 * 86400.0
    max_parallel: int = 10
    timeout: float = 60.0
    relay_tls: bool = True
    source_address: str = ""  # local address relay connections come from ("" = the kernel's choice)


class QueueRunner(service.Service):
    def __init__(
        self,
        store: QueueStore,
        settings: RunnerSettings,
        reactor,
        *,
        lookup: Callable[[str], defer.Deferred],
        send_bounce: Callable,
        stats=None,
        run_blocking: Callable | None = None,
        relay: Callable | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.reactor = reactor
        self.lookup = lookup  # domain -> Deferred[list[MailHost]] (MXLookupError on failure)
        self.send_bounce = send_bounce  # (Address, bytes) -> Deferred
        self.stats = stats
        self.relay = relay or self._relay
        self.tls_options = None  # built on first use: opportunistic STARTTLS, no certificate checks
        self.run_blocking = run_blocking or self._in_thread
        self.in_flight: dict[str, defer.Deferred] = {}
        # PeriodicTasks: a failed run is one log line, and the schedule goes on
        self._loop = PeriodicTask("smtp: queue run", settings.interval, self.tick, reactor, now=True)
        # `netapps mail flush` should not wait for a whole queue_interval
        self._flush_watch = PeriodicTask("smtp: flush request check", FLUSH_CHECK_INTERVAL, self._check_flush, reactor)
        self._scanning = False
        self._rescan = False
        self._saturated = False

    # -- lifecycle ---------------------------------------------------------------

    def startService(self) -> None:
        service.Service.startService(self)
        self._loop.startService()
        self._flush_watch.startService()

    def stopService(self):
        service.Service.stopService(self)
        for loop in (self._loop, self._flush_watch):
            if loop.running:
                loop.stopService()
        # Do not wait for slow remote hosts at shutdown: an interrupted attempt
        # leaves its entry as it was, and the next start tries again.
        for attempt in list(self.in_flight.values()):
            attempt.cancel()
        return None

    def _check_flush(self) -> None:
        if self.store.flush_requested():
            self.tick()

    def kick(self) -> None:
        """A message was queued: look at the queue now rather than at the next tick."""
        if self.running:
            self.reactor.callLater(0, self.tick)

    def _in_thread(self, f, *args):
        return threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), f, *args)

    def _count(self, name: str, amount: int = 1) -> None:
        if self.stats is not None:
            self.stats.incr(name, amount)

    # -- scanning ----------------------------------------------------------------

    @defer.inlineCallbacks
    def tick(self):
        if self._scanning:
            self._rescan = True  # something was queued during this scan: look again after it
            return
        self._scanning = True
        try:
            force = yield self.run_blocking(self.store.take_flush_request)
            entries = yield self.run_blocking(self.store.entries)
        except OSError as e:  # keep the LoopingCall alive: the next tick tries again
            log.error("smtp: cannot read the queue {root}: {error}", root=str(self.store.root), error=e)
            return
        finally:
            self._scanning = False
            if self._rescan and self.running:
                self._rescan = False
                self.reactor.callLater(0, self.tick)
        now = self.reactor.seconds()
        if force:
            log.info("smtp: queue flush requested: {n} entries", n=len(entries))
        for entry in entries:
            if len(self.in_flight) >= self.settings.max_parallel:
                self._saturated = True  # due entries left over: scan again when a slot frees
                break
            if entry.id in self.in_flight or (entry.next_attempt > now and not force):
                continue
            d = defer.ensureDeferred(self.attempt(entry))
            self.in_flight[entry.id] = d
            d.addErrback(self._attempt_failed, entry.id)
            d.addBoth(self._attempt_done, entry.id)

    def _attempt_failed(self, failure, entry_id: str) -> None:
        if failure.check(defer.CancelledError):
            log.info("smtp: queue entry {id}: attempt interrupted by shutdown", id=entry_id)
        else:  # a bug or a disk error: the entry stays queued and is retried at the next scan
            log.failure("smtp: queue entry {id}: attempt failed", failure, id=entry_id)

    def _attempt_done(self, result, entry_id: str) -> None:
        self.in_flight.pop(entry_id, None)
        if self._saturated:
            self._saturated = False
            self.kick()

    # -- one attempt ---------------------------------------------------------------

    async def attempt(self, entry: QueueEntry) -> None:
        message = await self.run_blocking(self.store.message, entry.id)
        by_domain: dict[str, list[Recipient]] = {}
        for rcpt in entry.recipients:
            by_domain.setdefault(rcpt.address.rpartition("@")[2].lower(), []).append(rcpt)
        delivered: set[str] = set()
        permanent: dict[str, str] = {}
        temporary: dict[str, str] = {}
        for domain, rcpts in by_domain.items():
            done, perm, temp = await self._deliver_domain(entry, domain, [r.address for r in rcpts], message)
            delivered |= done
            permanent.update(perm)
            temporary.update(temp)
        await self.finish(entry, message, delivered, permanent, temporary)

    async def _deliver_domain(self, entry, domain, recipients, message):
        delivered: set[str] = set()
        permanent: dict[str, str] = {}
        try:
            hosts = await self.lookup(domain)
        except MXLookupError as e:
            target = permanent if e.permanent else {}
            reason = f"{'5.1.2' if e.permanent else '4.4.3'} {e}"
            if e.permanent:
                return delivered, {r: reason for r in recipients}, {}
            return delivered, target, {r: reason for r in recipients}
        pending = list(recipients)
        temporary: dict[str, str] = {r: "4.4.1 no mail host answered" for r in recipients}
        for host in hosts:
            for address in host.addresses:
                if not pending:
                    break
                try:
                    outcome = await self.relay(address, host.name, entry.sender, pending, message)
                except CONNECTION_FAILURES as e:
                    log.info("smtp: {id}: {host}[{addr}]: {error}", id=entry.id, host=host.name, addr=address, error=e)
                    for r in pending:
                        temporary[r] = f"4.4.1 {host.name}[{address}]: {e.__class__.__name__}: {e}"
                    continue
                delivered |= set(outcome.delivered)
                permanent.update({r: f"{outcome.host}: {t}" for r, t in outcome.permanent.items()})
                for r, t in outcome.temporary.items():
                    temporary[r] = f"{outcome.host}: {t}"
                pending = [r for r in pending if r in outcome.temporary]
                for r in outcome.delivered:
                    log.info("smtp: {id}: delivered to <{rcpt}> via {host}{tls}", id=entry.id, rcpt=r,
                             host=outcome.host, tls=" (TLS)" if outcome.tls else "")
        temporary = {r: t for r, t in temporary.items() if r not in delivered and r not in permanent}
        return delivered, permanent, temporary

    def _relay(self, address, host_name, sender, recipients, message):
        s = self.settings
        if s.relay_tls and self.tls_options is None:
            self.tls_options = ssl.CertificateOptions()
        return defer.ensureDeferred(relay_message(
            self.reactor, address, s.relay_port, helo=s.hostname, sender=sender,
            recipients=recipients, message=message, timeout=s.timeout, host_name=host_name,
            tls_options=self.tls_options if s.relay_tls else None, source_address=s.source_address,
        ))

    async def finish(self, entry: QueueEntry, message: bytes, delivered, permanent, temporary) -> None:
        now = self.reactor.seconds()
        self._count("relayed", len(delivered))
        remaining = [r for r in entry.recipients if r.address in temporary]
        for r in remaining:
            r.attempts += 1
            r.last_error = temporary[r.address]
        failures = [FailedRecipient(a, t) for a, t in permanent.items()]
        expired = remaining and now - entry.created >= self.settings.lifetime
        if expired:
            failures += [
                FailedRecipient(r.address, f"message expired after {int(now - entry.created)}s in queue; "
                                           f"last error: {r.last_error}", status="4.4.7")
                for r in remaining
            ]
            remaining = []
        if failures:
            await self._bounce(entry, message, failures, now)
        if not remaining:
            await self.run_blocking(self.store.remove, entry.id)
            return
        entry.recipients = remaining
        entry.attempts += 1
        entry.last_error = remaining[0].last_error
        entry.next_attempt = now + retry_delay(entry.attempts, self.settings.retry_base, self.settings.retry_max)
        log.info(
            "smtp: {id}: {n} recipients deferred ({error}); next attempt in {delay:.0f}s",
            id=entry.id, n=len(remaining), error=entry.last_error, delay=entry.next_attempt - now,
        )
        self._count("deferred")
        await self.run_blocking(self.store.update, entry)

    async def _bounce(self, entry: QueueEntry, message: bytes, failures: list[FailedRecipient], now: float):
        self._count("bounced", len(failures))
        for failure in failures:
            log.info("smtp: {id}: <{rcpt}> failed: {why}", id=entry.id, rcpt=failure.address, why=failure.diagnostic)
        if not entry.sender:
            log.info("smtp: {id}: not bouncing a bounce (null sender)", id=entry.id)
            return
        try:
            sender = parse_mailbox(entry.sender)
        except SyntaxProblem:
            log.warn("smtp: {id}: cannot bounce to unparseable sender {s}", id=entry.id, s=entry.sender)
            return
        dsn = build_dsn(
            reporting_mta=self.settings.hostname, original_sender=entry.sender, original_id=entry.id,
            arrival=entry.created, failures=failures, original=message, now=now,
        )
        await self.send_bounce(sender, dsn)
