"""One request to the origin on behalf of one or more clients (request collapsing).

A :class:`Fetch` is started by the first client needing the origin for a
cache key; clients arriving for the same key before the response head joins
it instead of sending their own request (RFC 9111 4 permits collapsing when
the response can be used for them). When the head arrives:

- a 304 to our validation freshens the stored response (4.3.4), which every
  waiting client is then served from;
- a storable response starts an entry: the body goes to a temp file and to
  every client that can use it as it arrives; the rest send their own
  requests (the response was private, say, or Vary does not match them);
- anything else goes to the client that asked, only.

Clients that arrive after the head wait for the entry to complete and are
then served from the store (or go to the origin if it was not stored).

The body is passed on as it arrives; when any client cannot keep up, reading
from the origin pauses (flow control from the slowest reader), so nothing
piles up in memory. A body over ``max_object_size`` stops being stored but
keeps flowing to the clients.
"""

from __future__ import annotations

import zlib

from twisted.logger import Logger

from twisted_netapps.http.body import LENGTH, NO_BODY
from twisted_netapps.http.fields import Headers
from twisted_netapps.proxy.policy.directives import parse_response_directives
from twisted_netapps.proxy.policy.reuse import STALE_IF_ERROR_STATUSES
from twisted_netapps.proxy.policy.storability import fields_to_store, refusal
from twisted_netapps.proxy.policy.validation import selects
from twisted_netapps.proxy.policy.vary import secondary_key, vary_names
from twisted_netapps.proxy.store.entry import Entry

log = Logger(namespace="netapps.proxy")


class Fetch:
    __slots__ = (
        "engine", "key", "method", "request_headers", "request_directives", "validating", "store", "upstream",
        "request_time", "leader", "followers", "completion_waiters", "streaming", "_paused_by", "head", "framing",
        "entry", "writer", "_memory", "_memory_size", "received", "done", "invalidated", "collapsible",
        "not_stored",
    )

    def __init__(self, engine, key: bytes, method: bytes, request_headers: Headers, request_directives,
                 *, validating: Entry | None, store: bool) -> None:
        self.engine = engine
        self.key = key
        self.method = method
        self.request_headers = request_headers  # the leading client's, for storability and Vary
        self.request_directives = request_directives
        self.validating = validating
        self.store = store
        self.upstream = None
        self.request_time = 0.0
        self.leader = None
        self.followers: list = []  # joined before the head
        self.completion_waiters: list = []  # joined after it
        self.streaming: list = []  # consumers receiving the body
        self._paused_by: set = set()
        self.head = None
        self.framing = None
        self.entry: Entry | None = None
        self.writer = None
        self._memory: list[bytes] | None = None
        self._memory_size = 0
        self.received = 0
        self.done = False
        self.invalidated = False
        self.collapsible = True
        self.not_stored: str | None = None  # why the response was not stored (for the status page)

    # -- joining ------------------------------------------------------------

    def join(self, consumer) -> None:
        if self.head is None:
            self.followers.append(consumer)
        else:
            self.completion_waiters.append(consumer)

    def leave(self, consumer) -> None:
        for group in (self.followers, self.completion_waiters, self.streaming):
            if consumer in group:
                group.remove(consumer)
        if consumer is self.leader:
            self.leader = None
        self._paused_by.discard(consumer)
        self._maybe_resume()
        if self.head is not None and not self.done and not self.streaming and self.entry is None:
            self.cancel()  # nobody wants an unstorable response any more

    # -- events from the origin --------------------------------------------

    def interim(self, head) -> None:
        if self.leader is not None:
            self.leader.fetch_interim(head)

    def response(self, head, framing) -> None:
        self.head, self.framing = head, framing
        self.collapsible = False
        now = self.engine.now()
        if head.status == 304 and self.validating is not None:
            self._not_modified(head, now)
            return
        self._start_entry(head, framing, now)
        consumers = ([self.leader] if self.leader is not None else []) + self.followers
        followers, self.followers = self.followers, []
        for consumer in consumers:
            if head.status in STALE_IF_ERROR_STATUSES and consumer.fetch_error_response(self):
                continue  # served its stale copy instead (stale-if-error)
            usable = consumer is self.leader or (self.entry is not None and consumer.can_use(self.entry))
            if usable and consumer.fetch_response(self):
                self.streaming.append(consumer)
            elif consumer in followers and not usable:
                consumer.go_alone()
        if self.framing.kind == NO_BODY:
            self.end()
        elif not self.streaming and self.entry is None:
            self.cancel()  # nobody wants this body

    def _not_modified(self, head, now: float) -> None:
        entry = self.validating
        if self.engine.cache.contains(entry) and selects(entry.headers, head.headers, validated=True):
            self.engine.freshen(entry, head.headers, self.request_time, now)
            consumers = ([self.leader] if self.leader is not None else []) + self.followers
            self.followers = []
            self.done = True
            self.engine.fetch_finished(self)
            for consumer in consumers:
                consumer.fetch_validated(entry)
            return
        # A 304 we cannot apply (it names another representation): ask again, unconditionally.
        self.done = True
        self.engine.fetch_finished(self)
        for consumer in ([self.leader] if self.leader is not None else []) + self.followers:
            consumer.go_alone(unconditional=True)
        self.followers = []

    def _start_entry(self, head, framing, now: float) -> None:
        if not self.store or self.invalidated:
            return
        directives = parse_response_directives(head.headers)
        why = refusal(self.method, self.request_headers, self.request_directives, head.status,
                      head.headers, directives)
        if why is not None:
            self.not_stored = why
            return
        if framing.kind == LENGTH and framing.length > self.engine.max_object_size:
            self.not_stored = "larger than max_object_size"
            return
        names = vary_names(head.headers)
        headers = fields_to_store(head.headers, directives)
        if b"date" not in headers:
            headers.add(b"Date", self.engine.http_date(now))
        entry = Entry(
            id=self.engine.cache.disk.new_id(), key=self.key, vary=names,
            vary_values=secondary_key(names, self.request_headers), status=head.status, reason=head.reason,
            headers=headers, request_time=self.request_time, response_time=now,
        )
        entry.refresh(self.engine.heuristic, directives, headers)
        self.entry = entry
        self._memory = []
        # Small bodies are kept in memory until complete (then one segment
        # record); a body that is or grows large streams to a file of its own.
        if framing.kind == LENGTH and not self.engine.cache.memory.fits(framing.length):
            self._to_file()

    def _to_file(self) -> None:
        """Switch the body being stored from memory to a temp file."""
        try:
            self.writer = self.engine.cache.disk.open_writer(self.entry.id)
            for piece in self._memory or ():
                self.writer.write(piece)
        except OSError as e:
            log.warn("proxy: cannot write a cache file: {error}", error=e)
            self._drop_entry()
            return
        self._memory = None

    def data(self, data: bytes) -> None:
        self.received += len(data)
        if self.entry is not None:
            if self._memory is not None:
                self._memory.append(data)
                self._memory_size += len(data)
                if not self.engine.cache.memory.fits(self._memory_size):
                    self._to_file()
            elif self.writer is not None:
                try:
                    self.writer.write(data)
                except OSError as e:
                    log.warn("proxy: cannot write a cache file: {error}", error=e)
                    self._drop_entry()
            stored = self.writer.length if self.writer is not None else self._memory_size
            if self.entry is not None and stored > self.engine.max_object_size:
                self._drop_entry()
        for consumer in list(self.streaming):
            consumer.fetch_data(data)

    def _drop_entry(self) -> None:
        if self.writer is not None:
            self.writer.abort()
        self.writer = None
        self.entry = None
        self._memory = None
        waiters, self.completion_waiters = self.completion_waiters, []
        for consumer in waiters:
            consumer.go_alone()
        if not self.streaming and not self.done:
            self.cancel()

    def end(self) -> None:
        # The response is complete: the upstream request is over. Dropping it
        # breaks the Fetch <-> UpstreamRequest cycle, so both go with their
        # last reference instead of waiting for the cyclic garbage collector
        # (whose collections, triggered by a dozen such objects per request,
        # cost more than a tenth of a miss).
        self.upstream = None
        if self.done:
            return
        self.done = True
        self.engine.fetch_finished(self)
        entry = self.entry
        if entry is not None and not self.invalidated and (self.writer is not None or self._memory is not None):
            if self.writer is not None:
                entry.body_length, entry.body_crc = self.writer.length, self.writer.crc
                self.engine.store(entry, self.writer, None, self.request_headers)
            else:
                body = b"".join(self._memory)
                entry.body_length, entry.body_crc = len(body), zlib.crc32(body)
                self.engine.store(entry, None, body, self.request_headers)
        elif self.writer is not None:
            self.writer.abort()
        self.writer = None
        self._memory = None
        for consumer in self.streaming:
            consumer.fetch_end()
        self.streaming = []
        waiters, self.completion_waiters = self.completion_waiters, []
        for consumer in waiters:
            consumer.go_alone()  # looks the key up again: now a hit, or its own fetch

    def _conclude(self) -> None:
        """Done, without storing anything: out of the collapsing table, the temp file gone."""
        self.done = True
        self.upstream = None  # over (see end)
        self.engine.fetch_finished(self)
        if self.writer is not None:
            self.writer.abort()
            self.writer = None
        self._memory = None

    def failed(self, status: int, detail: str) -> None:
        if self.done:
            return
        self._conclude()
        self.entry = None
        started = self.head is not None
        for consumer in self.streaming:
            consumer.fetch_failed(status, detail, started=True)
        if not started:
            for consumer in ([self.leader] if self.leader is not None else []) + self.followers:
                consumer.fetch_failed(status, detail, started=False)
        for consumer in self.completion_waiters:
            consumer.go_alone()
        self.streaming, self.followers, self.completion_waiters = [], [], []

    # -- flow control ---------------------------------------------------------

    def pause(self, consumer) -> None:
        self._paused_by.add(consumer)
        if self.upstream is not None:
            self.upstream.pause()

    def resume(self, consumer) -> None:
        self._paused_by.discard(consumer)
        self._maybe_resume()

    def _maybe_resume(self) -> None:
        if not self._paused_by and self.upstream is not None and not self.done:
            self.upstream.resume()

    def cancel(self) -> None:
        if self.done:
            return
        upstream = self.upstream
        self._conclude()
        if upstream is not None:
            upstream.cancel()
