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

Receiving (:class:`ThrottledReceiver`) follows the same rule: what the
socket gives is held and handed on at the buckets' rate, and the socket is not
read while a backlog waits.

The Twisted side:

- :class:`ThrottledConsumer` sits between a producer and a consumer (usually
  a transport): ``write()`` queues, the queue drains at the buckets' rate, the
  upstream producer is paused while more than ``high_water`` bytes wait, and
  the consumer's own back-pressure (a full socket buffer) pauses the drain.
- :class:`ThrottledReceiver` caps what a transport *receives*: the protocol
  passes each read to :meth:`~ThrottledReceiver.received` and gets the bytes
  back through its *deliver* callable at the capped rate; the transport stops
  reading (``pauseProducing``) while a backlog waits, so TCP flow control
  slows the sender down.
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

    def __init__(self, rate: float, burst: float | None = None, now: float = 0.0, *, fair: bool = False) -> None:
        if rate < 0:
            raise ValueError("rate must be >= 0")
        self.rate = float(rate)
        self.burst = float(burst) if burst is not None else default_burst(rate)
        self.tokens = self.burst
        self.stamp = now
        self.backlogged = 0  # senders with data waiting (see begin_backlog)
        # fair: the senders sharing the bucket take turns, a chunk each (see my_turn)
        self.fair = fair
        self.turns: dict = {}  # the senders ready to send, in turn order

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

    # -- taking turns (a fair bucket) -------------------------------------------
    # Without turns, whichever sender's timer fires first takes the tokens, and
    # one connection can be served whole before the next starts. A link shared
    # fairly gives each waiting sender a chunk in turn (round-robin), so N
    # transfers progress together at rate/N each -- the seeds' server sending
    # to N clients at once.

    def my_turn(self, sender) -> bool:
        """Whether *sender* (ready to send) goes next; it joins the line if new."""
        if sender not in self.turns:
            self.turns[sender] = None
        return next(iter(self.turns)) is sender

    def took_turn(self, sender) -> None:
        """*sender* sent a chunk: to the back of the line; the next one is told."""
        if self.turns.pop(sender, self) is not self:
            self.turns[sender] = None
        self._tell_next(sender)

    def leave(self, sender) -> None:
        """*sender* has nothing to send now (or cannot: paused, closed)."""
        was_first = bool(self.turns) and next(iter(self.turns)) is sender
        if self.turns.pop(sender, self) is not self and was_first:
            self._tell_next(sender)

    def _tell_next(self, sender) -> None:
        first = next(iter(self.turns), None)
        if first is not None and first is not sender:
            first.your_turn()

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
        fair = [b for b in self.buckets if b.fair and not b.unlimited]
        if len(fair) > 1:
            raise ValueError("a stream can take turns in one fair bucket only")
        self._fair = fair[0] if fair else None
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
        if self._fair is not None:
            self._fair.leave(self)  # a blocked socket does not hold up the others

    def your_turn(self) -> None:
        """Called by a fair bucket: this stream goes next (soon: no recursion)."""
        if self._timer is None:
            self._timer = self.clock.callLater(0, self._timer_fired)

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
        if self._fair is not None:
            self._fair.leave(self)
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
        fair = self._fair
        while self.queue and not self._consumer_paused and not self._closed:
            if fair is not None and not fair.my_turn(self):
                break  # told by the bucket when it is our turn
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
            if fair is not None:
                fair.took_turn(self)
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
            if fair is not None:
                fair.leave(self)

    def _end_backlog(self) -> None:
        if self._backlogged:
            self._backlogged = False
            for bucket in self.buckets:
                bucket.end_backlog()

    def _timer_fired(self) -> None:
        self._timer = None
        self._pump()


@implementer(IConsumer)
class _Deliver:
    """The consumer a :class:`ThrottledReceiver` hands data on to: a callable."""

    def __init__(self, deliver) -> None:
        self.write = deliver

    def registerProducer(self, producer, streaming: bool) -> None:
        pass

    def unregisterProducer(self) -> None:
        pass


class ThrottledReceiver:
    """Caps what a transport *receives*, like a link of the buckets' rate.

    Each read goes to :meth:`received`; the bytes are handed on to *deliver*
    no faster than the buckets allow (the same rule as sending: never ahead of
    ``rate * elapsed`` from the moment data waits), and the transport stops
    reading while more than *high_water* bytes wait, so TCP flow control
    slows the sender down.
    """

    def __init__(self, transport, buckets: Sequence[TokenBucket], clock, deliver, *,
                 high_water: int = 64 * 1024) -> None:
        self.transport = transport
        self._queue = ThrottledConsumer(_Deliver(deliver), buckets, clock, high_water=high_water)
        self._queue.registerProducer(transport, True)

    def received(self, data: bytes) -> None:
        self._queue.write(data)

    def when_delivered(self):
        """A Deferred that fires once every byte received so far has been handed on."""
        return self._queue.when_drained()

    def transport_closed(self) -> None:
        """No more reads will come; what waits is still handed on at the rate."""
        self._queue.unregisterProducer()

    def stop(self) -> None:
        """The connection is gone: drop what waits, stop the timers."""
        self._queue.unregisterProducer()  # (closing must not stop the transport: it is ours to close)
        self._queue.close()
