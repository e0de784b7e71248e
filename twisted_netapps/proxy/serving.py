"""Answering a request from a stored response (RFC 9111 4; RFC 9110 13, 14).

The fast path -- a small body in memory, no preconditions, no Range -- is a
prepared head and the body written back to back, synchronously.

Otherwise: the client's own If-None-Match / If-Modified-Since may turn the
answer into a 304 (4.3.2); a single byte range becomes a 206; a small body
not yet in memory is read (and checked) in the disk pool first; a large one
is checked once per run and then streamed from disk in chunks as the client
reads. A body that turns out corrupt is removed and the request handled as
if it had never been stored -- before anything was sent, or, if the damage
shows only while streaming, by cutting the connection (so the client never
takes a damaged body for a complete one).
"""

from __future__ import annotations

from twisted.logger import Logger

from twisted_netapps.proxy import responses
from twisted_netapps.proxy.policy.validation import CLIENT_VALIDATORS, client_not_modified
from twisted_netapps.proxy.ranges import UNSATISFIABLE, requested_range
from twisted_netapps.proxy.store.entry import CorruptEntry, Entry

log = Logger(namespace="netapps.proxy")

CHUNK = 65536


def serve_entry(exchange, entry: Entry, x_cache: bytes) -> None:
    engine = exchange.engine
    cache = engine.cache
    headers = exchange.head.headers
    cache.touch(entry)
    exchange.x_cache = x_cache
    exchange.source = "cache"
    exchange.response_status = entry.status
    now = engine.now()
    age = entry.freshness.age(now)
    mode = exchange.connection_mode()
    names = headers.names() if len(headers) > 1 else frozenset()
    if entry.status == 200 and CLIENT_VALIDATORS & names and client_not_modified(headers, entry.headers, entry.date):
        exchange.response_status = 304
        exchange.send_head(responses.not_modified_head(entry, age, engine.via, mode, x_cache))
        exchange.finish(0)
        return
    if exchange.method == b"HEAD":
        exchange.send_head(responses.hit_head(entry, age, engine.via, mode, x_cache))
        exchange.finish(0)
        return
    span = requested_range(headers, entry.headers, entry.body_length) if entry.status == 200 and b"range" in names else None
    body = cache.cached_body(entry)
    if body is None and entry.body_length:
        if cache.memory.fits(entry.body_length):
            d = cache.load_body(entry)
            d.addCallback(_loaded, exchange, entry, x_cache)
        else:
            d = cache.verify(entry)
            d.addCallback(_verified, exchange, entry, x_cache, span)
        return
    body = body or b""
    if span is not None:
        _send_range(exchange, entry, age, span, body)
        return
    exchange.send_head(responses.hit_head(entry, age, engine.via, mode, x_cache))
    exchange.connection.write(body)
    exchange.finish(len(body))


def _loaded(body, exchange, entry: Entry, x_cache: bytes) -> None:
    if exchange.finished:
        return
    if body is None:  # corrupt: removed from the cache; now it is a miss
        exchange.through_cache()
    else:
        serve_entry(exchange, entry, x_cache)


def _verified(ok: bool, exchange, entry: Entry, x_cache: bytes, span) -> None:
    if exchange.finished:
        return
    if not ok:
        exchange.through_cache()
        return
    engine = exchange.engine
    age = entry.freshness.age(engine.now())
    if span is not None:
        _send_range(exchange, entry, age, span, None)
        return
    exchange.send_head(responses.hit_head(entry, age, engine.via, exchange.connection_mode(), x_cache))
    DiskSender(exchange, entry, 0, entry.body_length).start()


def _send_range(exchange, entry: Entry, age: float, span, body: bytes | None) -> None:
    engine = exchange.engine
    fields = responses.stored_fields(entry, int(age), engine.via)
    mode = exchange.connection_mode()
    if span == UNSATISFIABLE:
        exchange.response_status = 416
        fields.add(b"Content-Range", b"bytes */%d" % entry.body_length)
        exchange.send_head(responses.finish_head(416, b"Range Not Satisfiable", fields, x_cache=exchange.x_cache,
                                                 length=0, chunked=False, connection=mode))
        exchange.finish(0)
        return
    first, last = span
    exchange.response_status = 206
    fields.add(b"Content-Range", b"bytes %d-%d/%d" % (first, last, entry.body_length))
    exchange.send_head(responses.finish_head(206, b"Partial Content", fields, x_cache=exchange.x_cache,
                                             length=last - first + 1, chunked=False, connection=mode))
    if body is not None:
        exchange.connection.write(body[first:last + 1])
        exchange.finish(last - first + 1)
    else:
        DiskSender(exchange, entry, first, last + 1).start()


class DiskSender:
    """Streams part of a stored body from disk, one chunk read ahead, paced by the client."""

    def __init__(self, exchange, entry: Entry, start: int, end: int) -> None:
        self.exchange = exchange
        self.entry = entry
        self.position = start
        self.end = end
        self.paused = False
        self.reading = False
        self.stopped = False
        self.sent = 0

    def start(self) -> None:
        self.exchange._sender = self
        self.exchange.connection.stream_from(self.exchange)
        self._next()

    def _next(self) -> None:
        if self.stopped or self.paused or self.reading:
            return
        if self.position >= self.end:
            self.stopped = True
            self.exchange._sender = None
            self.exchange.finish(self.sent)
            return
        self.reading = True
        size = min(CHUNK, self.end - self.position)
        d = self.exchange.engine.cache.disk.read_range(self.entry, self.position, size)
        d.addCallbacks(self._read, self._failed)

    def _read(self, data: bytes) -> None:
        self.reading = False
        if self.stopped:
            return
        self.position += len(data)
        self.sent += len(data)
        self.exchange.connection.write(data)
        self._next()

    def _failed(self, failure) -> None:
        self.reading = False
        if self.stopped:
            return
        self.stopped = True
        failure.trap(CorruptEntry, OSError)
        self.exchange.engine.cache.corrupt(self.entry, failure.getErrorMessage())
        self.exchange.connection.abort()

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        self._next()

    def stop(self) -> None:
        self.stopped = True
