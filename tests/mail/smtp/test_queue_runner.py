"""Queue storage and the runner's retry/bounce scheduling, on a task.Clock."""

from __future__ import annotations

import email

import pytest
from twisted.internet import defer, error, task

from twisted_netapps.mail.smtp.bounce import FailedRecipient, build_dsn
from twisted_netapps.mail.smtp.mx import MailHost, MXLookupError
from twisted_netapps.mail.store.queue import QueueEntry, QueueStore, Recipient, retry_delay
from twisted_netapps.mail.smtp.queue_runner import QueueRunner, RunnerSettings
from twisted_netapps.mail.smtp.relay_client import RelayOutcome


def test_retry_delay_doubles_and_caps():
    assert [retry_delay(n, 60, 1000) for n in range(1, 7)] == [60, 120, 240, 480, 960, 1000]


def test_queue_store_round_trip_and_flush(tmp_path):
    store = QueueStore(tmp_path / "q")
    entry = QueueEntry("ABC1", "a@b.test", [Recipient("x@y.test")], created=5.0, next_attempt=5.0)
    store.add(entry, b"Subject: x\r\n\r\nbody\r\n")
    [loaded] = store.entries()
    assert loaded == entry and loaded.size == len(b"Subject: x\r\n\r\nbody\r\n")
    assert store.message("ABC1").endswith(b"body\r\n")
    assert oct((tmp_path / "q" / "ABC1.eml").stat().st_mode & 0o777) == "0o600"
    assert not store.take_flush_request()
    store.request_flush()
    assert store.take_flush_request() and not store.take_flush_request()
    store.remove("ABC1")
    assert store.entries() == []
    with pytest.raises(ValueError):
        store.message("../etc/passwd")


class Harness:
    """A runner on a Clock with scripted DNS and relay outcomes."""

    def __init__(self, tmp_path, hosts=None, outcomes=None, lifetime=1000.0):
        self.clock = task.Clock()
        self.clock.advance(1000)
        self.store = QueueStore(tmp_path / "q")
        self.hosts = hosts if hosts is not None else [MailHost("mx1.y.test", 10, ("127.0.0.6",)),
                                                      MailHost("mx2.y.test", 20, ("127.0.0.7",))]
        self.outcomes = list(outcomes or [])
        self.relayed = []
        self.bounces = []
        self.runner = QueueRunner(
            self.store, RunnerSettings(hostname="mx.test", interval=10, retry_base=60, retry_max=600, lifetime=lifetime),
            self.clock, lookup=self.lookup, send_bounce=self.bounce, run_blocking=defer.maybeDeferred,
            relay=self.relay,
        )

    def lookup(self, domain):
        if isinstance(self.hosts, Exception):
            return defer.fail(self.hosts)
        return defer.succeed(self.hosts)

    def relay(self, address, host_name, sender, recipients, message):
        self.relayed.append((address, list(recipients)))
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            return defer.fail(outcome)
        return defer.succeed(outcome(address, recipients))

    def bounce(self, to, message):
        self.bounces.append((str(to), message))
        return defer.succeed(None)

    def queue(self, sender="s@local.test", rcpts=("r@y.test",)):
        now = self.clock.seconds()
        entry = QueueEntry("E1", sender, [Recipient(r) for r in rcpts], created=now, next_attempt=now)
        self.store.add(entry, b"Subject: hi\r\n\r\nbody\r\n")


def delivered(address, recipients):
    return RelayOutcome(address, delivered=list(recipients))


def temporary(address, recipients):
    return RelayOutcome(address, temporary={r: "451 4.3.0 later" for r in recipients})


def permanent(address, recipients):
    return RelayOutcome(address, permanent={r: "550 5.1.1 no such user" for r in recipients})


def test_delivery_goes_to_next_mx_after_connection_failure(tmp_path):
    h = Harness(tmp_path, outcomes=[error.ConnectionRefusedError(), delivered])
    h.queue()
    h.runner.startService()
    assert [a for a, _ in h.relayed] == ["127.0.0.6", "127.0.0.7"]
    assert h.store.entries() == [] and h.bounces == []
    h.runner.stopService()


def test_temporary_failure_backs_off_exponentially_then_delivers(tmp_path):
    h = Harness(tmp_path, outcomes=[temporary, temporary, temporary, temporary, delivered])
    h.queue()
    h.runner.startService()  # attempt 1: both MX hosts say 451
    [entry] = h.store.entries()
    assert entry.attempts == 1 and entry.next_attempt == 1060 and "451 4.3.0" in entry.recipients[0].last_error
    h.clock.advance(50)  # tick at 1010, 1050: not due yet
    assert len(h.relayed) == 2
    h.clock.advance(10)  # 1060: attempt 2, both hosts 451 again -> next in 120 s
    assert len(h.relayed) == 4
    [entry] = h.store.entries()
    assert entry.attempts == 2 and entry.next_attempt == 1060 + 120
    h.clock.advance(120)
    assert len(h.relayed) == 5 and h.store.entries() == []
    h.runner.stopService()


def test_permanent_failure_bounces_once_and_removes(tmp_path):
    h = Harness(tmp_path, outcomes=[permanent])
    h.queue(rcpts=("r@y.test",))
    h.runner.startService()
    assert h.store.entries() == []
    [(to, dsn)] = h.bounces
    assert to == "s@local.test"
    msg = email.message_from_bytes(dsn)
    assert msg.get_content_type() == "multipart/report"
    assert b"Status: 5.1.1" in dsn and b"Final-Recipient: rfc822; r@y.test" in dsn
    h.runner.stopService()


def test_expiry_bounces_remaining_recipients(tmp_path):
    h = Harness(tmp_path, outcomes=[temporary] * 20, lifetime=100)
    h.queue()
    h.runner.startService()
    h.clock.advance(60)
    assert h.store.entries() and not h.bounces
    h.clock.pump([10] * 20)
    assert h.store.entries() == []
    [(to, dsn)] = h.bounces
    assert b"Status: 4.4.7" in dsn and b"expired" in dsn
    h.runner.stopService()


def test_bounce_of_a_bounce_is_not_sent(tmp_path):
    h = Harness(tmp_path, outcomes=[permanent])
    h.queue(sender="")
    h.runner.startService()
    assert h.store.entries() == [] and h.bounces == []
    h.runner.stopService()


def test_dns_failures_temporary_or_permanent(tmp_path):
    h = Harness(tmp_path, hosts=MXLookupError("timeout", permanent=False))
    h.queue()
    h.runner.startService()
    [entry] = h.store.entries()
    assert entry.attempts == 1 and "4.4.3" in entry.last_error
    h.runner.stopService()

    h = Harness(tmp_path / "2", hosts=MXLookupError("no such domain", permanent=True))
    h.queue()
    h.runner.startService()
    assert h.store.entries() == [] and b"Status: 5.1.2" in h.bounces[0][1]
    h.runner.stopService()


def test_mixed_outcomes_per_recipient(tmp_path):
    def mixed(address, recipients):
        return RelayOutcome(address, delivered=["a@y.test"], temporary={"b@y.test": "452 4.2.2 full"},
                            permanent={"c@y.test": "550 5.1.1 unknown"})

    h = Harness(tmp_path, hosts=[MailHost("mx.y.test", 0, ("127.0.0.6",))], outcomes=[mixed, delivered])
    h.queue(rcpts=("a@y.test", "b@y.test", "c@y.test"))
    h.runner.startService()
    [entry] = h.store.entries()
    assert [r.address for r in entry.recipients] == ["b@y.test"]
    assert len(h.bounces) == 1 and b"c@y.test" in h.bounces[0][1] and b"b@y.test" not in h.bounces[0][1]
    h.clock.advance(60)
    assert h.relayed[-1] == ("127.0.0.6", ["b@y.test"]) and h.store.entries() == []
    h.runner.stopService()


def test_flush_request_retries_before_due(tmp_path):
    h = Harness(tmp_path, outcomes=[temporary, temporary, delivered])
    h.queue()
    h.runner.startService()
    assert h.store.entries()
    h.store.request_flush()
    h.clock.advance(1)  # the flush watch, well before the next 10 s scan
    assert h.store.entries() == []
    h.runner.stopService()


def test_dsn_has_rfc3464_parts():
    dsn = build_dsn(reporting_mta="mx.test", original_sender="s@x.test", original_id="ID1", arrival=0, now=10,
                    failures=[FailedRecipient("r@y.test", "RCPT TO: 550 5.7.1 go away", remote_mta="mx.y.test")],
                    original=b"Subject: orig\r\nFrom: s@x.test\r\n\r\nsecret body\r\n")
    msg = email.message_from_bytes(dsn)
    parts = msg.get_payload()
    assert [p.get_content_type() for p in parts] == ["text/plain", "message/delivery-status", "text/rfc822-headers"]
    assert b"secret body" not in dsn and b"Subject: orig" in dsn
    assert b"Status: 5.7.1" in dsn and b"Remote-MTA: dns; mx.y.test" in dsn and msg["To"] == "<s@x.test>"


def test_parallel_limit_then_next_entries_without_waiting_for_a_scan(tmp_path):
    h = Harness(tmp_path, outcomes=[delivered] * 3)
    pending = []

    def slow_relay(address, host_name, sender, recipients, message):
        d = defer.Deferred()
        pending.append((d, address, recipients))
        return d

    h.runner.relay = slow_relay
    h.runner.settings = RunnerSettings(hostname="mx.test", interval=10, max_parallel=1)
    for n in range(3):
        now = h.clock.seconds()
        h.store.add(QueueEntry(f"E{n}", "s@local.test", [Recipient("r@y.test")], created=now + n, next_attempt=now),
                    b"x\r\n")
    h.runner.startService()
    assert len(pending) == 1
    for _ in range(3):
        d, address, recipients = pending.pop(0)
        d.callback(RelayOutcome(address, delivered=list(recipients)))
        h.clock.advance(0)  # the kick after a freed slot, not the 10 s scan
    assert h.store.entries() == [] and pending == []
    h.runner.stopService()
