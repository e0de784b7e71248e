"""ratelimit: the token bucket's arithmetic and the Twisted throttles, on a fake clock."""

import pytest
from hypothesis import assume, given, settings, strategies as st
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from twisted_netapps.ratelimit import ThrottledConsumer, ThrottledReader, TokenBucket


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


def test_throttled_reader_pauses_the_transport_while_in_debt():
    clock = Clock()
    transport = StringTransport()
    reader = ThrottledReader(transport, [TokenBucket(10_000, burst=10_000, now=0)], clock)
    reader.received(5_000)
    assert transport.producerState == "producing"
    reader.received(15_000)
    assert transport.producerState == "paused"
    clock.advance(0.5)  # 10 000 bytes of debt at 10 000 bytes/s
    assert transport.producerState == "paused"
    clock.advance(0.5)
    assert transport.producerState == "producing"
