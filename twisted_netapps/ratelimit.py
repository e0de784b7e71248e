"""Rate limits: a sans-I/O token bucket, and Twisted helpers that apply it.

:class:`TokenBucket` is plain arithmetic over a time the caller passes in:
*rate* tokens (bytes) a second, at most *burst* saved up. Several buckets can
govern one stream (a global cap, a per-torrent cap, a per-connection cap): a
chunk goes out when every bucket allows it and is charged to every bucket.

Sending (:class:`ThrottledConsumer`) behaves like a link of that rate: a chunk
leaves once the balance covers it, and a bucket saves nothing up while no
sender has data (:meth:`TokenBucket.begin_backlog`). So from the moment data
is waiting, at most ``rate * elapsed`` bytes go out -- a transfer never runs
ahead of its cap, which the distribution experiment relies on (a measured
time below the bound would be a wrong measurement) -- and while data keeps
waiting, the burst makes up for timers that fire late, so a long transfer
measures the configured rate to well under 1%.

Receiving (:class:`ThrottledReader`) can only react to data already read: it
uses *debt*, taking a read's whole size even if the balance goes negative,
and pauses the transport until the debt is repaid. Bytes read by a time are
at most ``burst + rate * elapsed`` plus one read; "the link delivered the
last byte" is when the debt is repaid (:func:`wait_time`).

The Twisted side:

- :class:`ThrottledConsumer` sits between a producer and a consumer (usually
  a transport): ``write()`` queues, the queue drains at the buckets' rate, the
  upstream producer is paused while more than ``high_water`` bytes wait, and
  the consumer's own back-pressure (a full socket buffer) pauses the drain.
- :class:`ThrottledReader` caps what a transport *receives*: the protocol
  reports each read with :meth:`~ThrottledReader.received`, and the transport
  stops reading (``pauseProducing``) until the debt is repaid, so TCP flow
  control slows the sender down.
"""

from __future__ import annotations

from collections import deque
from typing import Iterable, Sequence

from twisted.internet.interfaces import IConsumer, IPushProducer
from zope.interface import implementer

MIN_BURST = 16 * 1024  # one BitTorrent block / one typical write


def default_burst(rate: float) -> float:
    """One 16 KiB chunk plus a twentieth of a second at *rate*: a sender needs a
    whole chunk's worth to send one, and what a late timer missed is kept (up to
    50 ms worth) rather than lost."""
    return MIN_BURST + rate / 20


class TokenBucket:
    """*rate* bytes (or anything) per second, up to *burst* saved up; ``rate == 0`` is no limit."""

    def __init__(self, rate: float, burst: float | None = None, now: float = 0.0) -> None:
        if rate < 0:
            raise ValueError("rate must be >= 0")
        self.rate = float(rate)
        self.burst = float(burst) if burst is not None else default_burst(rate)
        self.tokens = self.burst
        self.stamp = now
        self.backlogged = 0  # senders with data waiting (see begin_backlog)

    @property
    def unlimited(self) -> bool:
        return self.rate == 0

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def set_rate(self, rate: float, now: float, burst: float | None = None) -> None:
        self._refill(now)
        self.rate = float(rate)
        self.burst = float(burst) if burst is not None else default_burst(rate)
        self.tokens = min(self.tokens, self.burst)

    def available(self, now: float) -> float:
        """The balance now (negative while in debt); infinite when unlimited."""
        if self.unlimited:
            return float("inf")
        self._refill(now)
        return self.tokens

    def consume(self, amount: float, now: float) -> None:
        """Take *amount* (the balance may go negative: debt)."""
        if self.unlimited:
            return
        self._refill(now)
        self.tokens -= amount

    def wait_time(self, now: float, amount: float = 0.0) -> float:
        """Seconds until the balance reaches *amount* (0 if it already has)."""
        if self.unlimited:
            return 0.0
        self._refill(now)
        missing = min(amount, self.burst) - self.tokens
        return missing / self.rate if missing > 0 else 0.0

    def begin_backlog(self, now: float) -> None:
        """A sender has data waiting again. If no other sender had, the bucket was
        idle, and a link saves nothing up while idle: the balance drops to at most
        zero (a debt still owed stays owed)."""
        if self.unlimited:
            return
        if self.backlogged == 0:
            self._refill(now)
            self.tokens = min(self.tokens, 0.0)
        self.backlogged += 1

    def end_backlog(self) -> None:
        """A sender has nothing waiting any more."""
        if self.backlogged > 0:
            self.backlogged -= 1

    def try_consume(self, amount: float, now: float) -> bool:
        """Take *amount* only if the balance covers it."""
        if self.wait_time(now, amount) > 0:
            return False
        self.consume(amount, now)
        return True


def wait_time(buckets: Iterable[TokenBucket], now: float, amount: float = 0.0) -> float:
    """Seconds until every bucket's balance covers *amount* (0: is out of debt)."""
    return max((b.wait_time(now, amount) for b in buckets), default=0.0)


def consume(buckets: Iterable[TokenBucket], amount: float, now: float) -> None:
    for b in buckets:
        b.consume(amount, now)


@implementer(IConsumer, IPushProducer)
class ThrottledConsumer:
    """A consumer that passes writes on to *consumer* no faster than *buckets* allow.

    Register it as the streaming producer of *consumer* is done here; register
    your own producer with this object (``registerProducer``) to be paused
    while over ``high_water`` bytes are queued and resumed below ``low_water``.
    """

    def __init__(
        self,
        consumer,
        buckets: Sequence[TokenBucket],
        clock,
        *,
        chunk_size: int = 16 * 1024,
        high_water: int = 256 * 1024,
        low_water: int | None = None,
    ) -> None:
        self.consumer = consumer
        self.buckets = list(buckets)
        self.clock = clock
        self.chunk_size = chunk_size
        self.high_water = high_water
        self.low_water = high_water // 2 if low_water is None else low_water
        self.queue: deque[bytes | memoryview] = deque()
        self.queued = 0
        self.producer = None
        self.streaming = True
        self._producer_paused = False
        self._consumer_paused = False
        self._timer = None
        self._closed = False
        self._backlogged = False  # counted in the buckets' backlog
        self._drain_waiters: list = []
        consumer.registerProducer(self, True)

    # -- IConsumer (for the upstream producer) --------------------------------
    def registerProducer(self, producer, streaming: bool) -> None:
        self.producer, self.streaming = producer, streaming
        self._producer_paused = False
        if not streaming:
            producer.resumeProducing()

    def unregisterProducer(self) -> None:
        self.producer = None

    def write(self, data: bytes) -> None:
        if self._closed or not data:
            return
        if not self._backlogged and self.buckets:
            self._backlogged = True
            now = self.clock.seconds()
            for bucket in self.buckets:
                bucket.begin_backlog(now)
        self.queue.append(data)
        self.queued += len(data)
        self._pump()
        if self.queued > self.high_water and self.producer is not None and self.streaming \
                and not self._producer_paused:
            self._producer_paused = True
            self.producer.pauseProducing()

    # -- IPushProducer (for the downstream consumer's back-pressure) ---------
    def pauseProducing(self) -> None:
        self._consumer_paused = True

    def resumeProducing(self) -> None:
        self._consumer_paused = False
        self._pump()

    def stopProducing(self) -> None:
        self.close()

    def when_drained(self):
        """A Deferred that fires once everything written so far has been passed on
        (at once if nothing is queued): close a connection only after that."""
        from twisted.internet import defer

        if not self.queue or self._closed:
            return defer.succeed(None)
        d = defer.Deferred()
        self._drain_waiters.append(d)
        return d

    def close(self) -> None:
        """Drop whatever is queued and stop timers (the connection is gone)."""
        self._closed = True
        self.queue.clear()
        self.queued = 0
        self._end_backlog()
        waiters, self._drain_waiters = self._drain_waiters, []
        for d in waiters:
            d.callback(None)
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self.producer is not None:
            self.producer.stopProducing()
            self.producer = None

    def _pump(self) -> None:
        if self._timer is not None:
            return  # a timer is already waiting for tokens
        now = self.clock.seconds()
        while self.queue and not self._consumer_paused and not self._closed:
            data = self.queue[0]
            if len(data) > self.chunk_size and self.buckets:
                view = memoryview(data)  # the rest stays a view: no quadratic copying
                self.queue[0] = view[self.chunk_size:]
                self.queue.appendleft(view[:self.chunk_size])
                data = self.queue[0]
            wait = wait_time(self.buckets, now, len(data))
            if wait > 0:
                self._timer = self.clock.callLater(wait, self._timer_fired)
                break
            self.queue.popleft()
            if isinstance(data, memoryview):
                data = data.tobytes()
            self.queued -= len(data)
            consume(self.buckets, len(data), now)
            self.consumer.write(data)
        if not self.queue and self._drain_waiters:
            waiters, self._drain_waiters = self._drain_waiters, []
            for d in waiters:
                d.callback(None)
        if self.producer is not None and self.queued <= self.low_water:
            if self.streaming and self._producer_paused:
                self._producer_paused = False
                self.producer.resumeProducing()
            elif not self.streaming and not self.queue:
                self.producer.resumeProducing()
        if not self.queue and not self._closed:
            self._end_backlog()  # (after the producer had its chance to write more)

    def _end_backlog(self) -> None:
        if self._backlogged:
            self._backlogged = False
            for bucket in self.buckets:
                bucket.end_backlog()

    def _timer_fired(self) -> None:
        self._timer = None
        self._pump()


class ThrottledReader:
    """Caps the receive rate of *transport* by pausing its reads while in debt."""

    def __init__(self, transport, buckets: Sequence[TokenBucket], clock) -> None:
        self.transport = transport
        self.buckets = list(buckets)
        self.clock = clock
        self._timer = None

    def received(self, amount: int) -> None:
        now = self.clock.seconds()
        consume(self.buckets, amount, now)
        wait = wait_time(self.buckets, now)
        if wait > 0 and self._timer is None:
            self.transport.pauseProducing()
            self._timer = self.clock.callLater(wait, self._resume)

    def _resume(self) -> None:
        self._timer = None
        wait = wait_time(self.buckets, self.clock.seconds())
        if wait > 0:
            self._timer = self.clock.callLater(wait, self._resume)
        else:
            self.transport.resumeProducing()

    def stop(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
