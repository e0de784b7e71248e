"""Accepting a message: local Maildir delivery and the outgoing queue, durably, in one commit.

The SMTP adapter hands over each accepted message; :meth:`Deliverer.accept`
returns a Deferred of the reply to send, which is 250 only after every local
copy is in ``new/`` and every remote recipient's queue entry is on disk, all
fsynced (group commit, off the reactor thread).
"""

from __future__ import annotations

from typing import Callable

from twisted.internet import defer
from twisted.logger import Logger

from twisted_netapps.connections import LogBudget
from twisted_netapps.mail.store.commit import GroupCommitter
from twisted_netapps.mail.smtp.envelope import Envelope, new_message_id, received_header, return_path_header
from twisted_netapps.mail.store.maildir import MailStore, normalise_crlf
from twisted_netapps.mail.smtp.policy import MailPolicy
from twisted_netapps.mail.store.queue import QueueEntry, QueueStore, Recipient
from twisted_netapps.mail.smtp.core import Reply
from twisted_netapps.mail.smtp.syntax import Address

log = Logger(namespace="netapps.smtp")

TEMPORARY_FAILURE = Reply(451, "4.3.0", "Local error in processing, try again later")


class Deliverer:
    def __init__(
        self,
        store: MailStore,
        queue: QueueStore,
        policy: MailPolicy,
        committer: GroupCommitter,
        *,
        hostname: str,
        clock,
        on_queued: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.queue = queue
        self.policy = policy
        self.committer = committer
        self.hostname = hostname
        self.clock = clock
        self.on_queued = on_queued
        # A full disk fails every delivery until space returns: one warning per
        # failure, but at most one a second after a burst, with a count of the rest.
        self.failure_log = LogBudget(rate=1.0, burst=10)

    def split(self, recipients: list[Address]) -> tuple[list[str], list[Address]]:
        """Local users and remote addresses for *recipients* (aliases expanded, deduplicated)."""
        users: list[str] = []
        remote: list[Address] = []
        for rcpt in recipients:
            route = self.policy.route(rcpt)
            if route is None:  # accepted at RCPT, gone since (account removed): dropped, logged
                log.warn("smtp: recipient {rcpt} no longer exists; not delivered", rcpt=str(rcpt))
                continue
            users += [u for u in route.local_users if u not in users]
            remote += [a for a in route.remote if a not in remote]
        return users, remote

    def accept(self, envelope: Envelope, data: bytes) -> defer.Deferred:
        """Store *data* for all of *envelope*'s recipients; fires with the SMTP reply."""
        users, remote = self.split(envelope.recipients)
        single = envelope.recipients[0] if len(envelope.recipients) == 1 else None
        trace = received_header(envelope, self.hostname, single)
        return self._store(envelope.message_id, envelope.mail_from, users, remote, trace + data, envelope)

    def _store(self, message_id, sender: Address, users, remote, message: bytes, envelope=None) -> defer.Deferred:
        local_copy = return_path_header(envelope) if envelope else f"Return-Path: {sender.bracketed()}\r\n".encode()
        store, queue, now = self.store, self.queue, self.clock.seconds()

        def job(dirs: set) -> None:
            if users:
                data = normalise_crlf(local_copy + message)
                for user in users:
                    box = store.maildir(user)
                    try:
                        tmp_path, name = box.write_tmp(data)
                    except FileNotFoundError:  # the Maildir was removed since we created it
                        store.forget(box)
                        box = store.maildir(user)
                        tmp_path, name = box.write_tmp(data)
                    box.publish(tmp_path, name, fsync_dir=False)
                    dirs.add(box.new)
            if remote:
                entry = QueueEntry(
                    id=message_id, sender=str(sender),
                    recipients=[Recipient(str(a)) for a in remote], created=now, next_attempt=now,
                )
                queue.add(entry, normalise_crlf(message), dirs)

        d = self.committer.submit(job)

        def stored(_):
            # one log line per message is written by the protocol; this is the detail
            log.debug(
                "smtp: {id} from <{sender}> stored: {local} local, {remote} queued",
                id=message_id, sender=str(sender), local=len(users), remote=len(remote),
            )
            if remote:
                self.on_queued()
            return Reply(250, "2.0.0", f"OK: queued as {message_id}")

        def failed(failure):
            if failure.check(OSError):  # ENOSPC, EDQUOT, EIO...: the 451 says try later
                if self.failure_log.allow():
                    suppressed = self.failure_log.take_suppressed()
                    log.warn(
                        "smtp: {id}: cannot store message, answered 451: {error}{more}",
                        id=message_id, error=failure.value,
                        more=f" ({suppressed} more such failures not logged)" if suppressed else "",
                    )
            else:
                log.failure("smtp: {id}: cannot store message", failure, id=message_id)
            return TEMPORARY_FAILURE

        return d.addCallbacks(stored, failed)

    def send_bounce(self, recipient: Address, message: bytes) -> defer.Deferred:
        """Deliver a DSN (null sender) to *recipient*, locally or through the queue."""
        null = Address("", "")
        route = self.policy.route(recipient)
        if route is None:
            log.warn("smtp: bounce for unknown local sender {rcpt} dropped", rcpt=str(recipient))
            return defer.succeed(None)
        bounce_id = new_message_id()
        log.info("smtp: bounce {id} to <{rcpt}>", id=bounce_id, rcpt=str(recipient))
        return self._store(bounce_id, null, list(route.local_users), list(route.remote), message)
