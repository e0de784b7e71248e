"""ratelimit: the token bucket's arithmetic and the Twisted throttles, on a fake clock."""

import pytest
from hypothesis import assume, given, settings, strategies as st
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from twisted_netapps.ratelimit import ThrottledConsumer, ThrottledReceiver, TokenBucket


def test_bucket_refills_at_rate_up_to_burst():
    b = TokenBucket(1000, burst=500, now=0)
    assert b.available(0) == 500
    b.consume(800, 0)
    assert b.available(0) == -300 and b.wait_time(0) == pytest.approx(0.3)
    assert b.available(0.3) == pytest.approx(0)
    assert b.available(100) == 500
    assert b.try_consume(400, 100) and not b.try_consume(400, 100)


def test_unlimited():
    b = TokenBucket(0)
    b.consume(10**12, 0)
    assert b.wait_time(0) == 0 and b.available(0) == float("inf")


@given(rate=st.integers(1000, 10**8), chunk=st.integers(1, 65536), seconds=st.integers(5, 50))
@settings(max_examples=50)
def test_a_greedy_sender_gets_the_rate(rate, chunk, seconds):
    assume(rate * seconds / chunk < 20_000)  # keep the loop short
    b = TokenBucket(rate, now=0)
    now, sent = 0.0, 0
    while True:
        now += b.wait_time(now)
        if now >= seconds:
            break
        b.consume(chunk, now)
        sent += chunk
    assert rate * seconds - chunk <= sent <= rate * seconds + b.burst + chunk


class _Producer:
    def __init__(self):
        self.paused = 0
        self.resumed = 0

    def pauseProducing(self):
        self.paused += 1

    def resumeProducing(self):
        self.resumed += 1

    def stopProducing(self):
        pass


def test_throttled_consumer_holds_the_rate():
    clock = Clock()
    transport = StringTransport()
    rate = 100_000
    writer = ThrottledConsumer(transport, [TokenBucket(rate, now=0)], clock)
    producer = _Producer()
    writer.registerProducer(producer, True)
    writer.write(b"x" * 3_000_000)
    assert producer.paused == 1
    clock.pump([0.01] * 1000)
    delivered = len(transport.value())
    # at most the burst and one chunk ahead, never a chunk behind: 3% over 10 s at 100 kB/s
    assert -16384 <= delivered - rate * 10 <= 2 * 16384
    assert producer.resumed == 0  # still far above the low-water mark
    clock.pump([0.01] * 2500)
    assert len(transport.value()) == 3_000_000 and producer.resumed == 1


def test_throttled_consumer_respects_transport_backpressure():
    clock = Clock()
    transport = StringTransport()
    writer = ThrottledConsumer(transport, [], clock)
    writer.pauseProducing()
    writer.write(b"abc")
    assert transport.value() == b""
    writer.resumeProducing()
    assert transport.value() == b"abc"


def test_global_and_per_stream_buckets_both_apply():
    clock = Clock()
    global_bucket = TokenBucket(50_000, now=0)
    a, b = StringTransport(), StringTransport()
    wa = ThrottledConsumer(a, [global_bucket, TokenBucket(40_000, now=0)], clock)
    wb = ThrottledConsumer(b, [global_bucket, TokenBucket(40_000, now=0)], clock)
    wa.write(b"x" * 1_000_000)
    wb.write(b"x" * 1_000_000)
    clock.pump([0.01] * 1000)
    total = len(a.value()) + len(b.value())
    assert -16384 <= total - 500_000 <= 3 * 16384  # the burst plus one chunk in flight per stream
    assert len(a.value()) <= 40_000 * 10 + 40_000


def test_throttled_receiver_hands_bytes_on_at_the_rate_and_pauses_reading():
    clock = Clock()
    transport = StringTransport()
    taken = []
    receiver = ThrottledReceiver(transport, [TokenBucket(100_000, now=0)], clock, taken.append)
    clock.advance(10)  # idle: nothing saved up
    receiver.received(b"x" * 50_000)
    assert taken == [] and transport.producerState == "producing"
    receiver.received(b"y" * 50_000)  # over the high-water mark: stop reading
    assert transport.producerState == "paused"
    delivered = receiver.when_delivered()
    for step in range(1, 121):
        clock.advance(0.01)
        got = sum(map(len, taken))
        assert min(100_000, 100_000 * step * 0.01 - 16384) <= got <= 100_000 * step * 0.01 + 1e-6  # the link's pace
    assert sum(map(len, taken)) == 100_000 and delivered.called
    assert transport.producerState == "producing"
    receiver.received(b"z")
    receiver.transport_closed()
    receiver.stop()  # a closed connection: nothing more is handed on, the transport is not touched
    clock.advance(1)
    assert sum(map(len, taken)) == 100_000 and transport.producerState == "producing"


def test_an_idle_bucket_saves_nothing_up():
    # A link idle for a minute is not faster afterwards: from the moment data
    # waits, at most rate * elapsed goes out (never ahead), and at most a chunk behind.
    clock = Clock()
    rate = 100_000
    transport = StringTransport()
    writer = ThrottledConsumer(transport, [TokenBucket(rate, now=0)], clock)
    clock.advance(60)
    writer.write(b"x" * 500_000)
    assert transport.value() == b""  # not even the first chunk: it takes 0.16 s to "transmit"
    for step in range(1, 400):
        clock.advance(0.01)
        delivered = len(transport.value())
        assert rate * step * 0.01 - 16384 <= delivered <= rate * step * 0.01 + 1e-6


def test_a_shared_bucket_is_idle_only_when_every_sender_is():
    clock = Clock()
    bucket = TokenBucket(100_000, now=0)
    a, b = StringTransport(), StringTransport()
    wa = ThrottledConsumer(a, [bucket], clock)
    wb = ThrottledConsumer(b, [bucket], clock)
    wa.write(b"x" * 200_000)
    clock.pump([0.01] * 100)  # wa busy for 1 s
    assert bucket.backlogged == 1
    wb.write(b"y" * 10)  # wb joins a busy bucket: the tokens wa saved up (late timers) stay
    clock.pump([0.01] * 200)
    assert len(a.value()) == 200_000 and len(b.value()) == 10 and bucket.backlogged == 0
    total = len(a.value()) + len(b.value())
    assert total <= 100_000 * 3  # never ahead of the rate over the whole busy period


@given(
    writes=st.lists(st.tuples(st.floats(0, 2), st.integers(1, 60_000)), min_size=1, max_size=12),
    rate=st.integers(10_000, 1_000_000),
    step=st.sampled_from([0.001, 0.007, 0.02]),
)
@settings(max_examples=40, deadline=None)
def test_never_ahead_of_the_rate_in_a_busy_period(writes, rate, step):
    """Whatever the write pattern and timer granularity: within a busy period
    (data waiting all along) the bytes sent never exceed rate * its length."""
    clock = Clock()
    transport = StringTransport()
    writer = ThrottledConsumer(transport, [TokenBucket(rate, now=0)], clock)
    busy_since = None
    sent_before = 0
    pending = sorted(writes)
    t = 0.0
    while pending or writer.queue:
        while pending and pending[0][0] <= t:
            if busy_since is None:
                busy_since, sent_before = t, len(transport.value())
            writer.write(b"z" * pending.pop(0)[1])
        clock.advance(step)
        t += step
        if busy_since is not None:
            assert len(transport.value()) - sent_before <= rate * (t - busy_since) + 1e-6
        if not writer.queue:
            busy_since = None


def test_a_fair_bucket_serves_its_senders_in_turn():
    # Without turns one connection could be served whole before the next; in a
    # fair bucket N transfers progress together at rate/N each.
    clock = Clock()
    bucket = TokenBucket(100_000, now=0, fair=True)
    transports = [StringTransport() for _ in range(3)]
    writers = [ThrottledConsumer(t, [bucket], clock) for t in transports]
    for w in writers:
        w.write(b"x" * 150_000)
    for step in range(1, 451):
        clock.advance(0.01)
        sizes = [len(t.value()) for t in transports]
        assert max(sizes) - min(sizes) <= 16384, (step, sizes)  # never more than a chunk apart
        assert sum(sizes) <= 100_000 * step * 0.01 + 1e-6
    clock.pump([0.01] * 20)
    assert [len(t.value()) for t in transports] == [150_000] * 3 and not bucket.turns


def test_a_blocked_sender_does_not_hold_up_a_fair_bucket():
    clock = Clock()
    bucket = TokenBucket(100_000, now=0, fair=True)
    a, b = StringTransport(), StringTransport()
    wa, wb = ThrottledConsumer(a, [bucket], clock), ThrottledConsumer(b, [bucket], clock)
    wa.write(b"a" * 100_000)
    wb.write(b"b" * 100_000)
    clock.pump([0.01] * 20)
    wa.pauseProducing()  # a's socket is full
    before = len(b.value())
    clock.pump([0.01] * 50)
    assert len(b.value()) - before >= 100_000 * 0.5 - 2 * 16384  # b gets the whole rate meanwhile
    wa.resumeProducing()
    clock.pump([0.01] * 200)
    assert len(a.value()) == len(b.value()) == 100_000


def test_one_fair_bucket_per_stream():
    with pytest.raises(ValueError, match="one fair bucket"):
        ThrottledConsumer(StringTransport(), [TokenBucket(1, fair=True), TokenBucket(2, fair=True)], Clock())
