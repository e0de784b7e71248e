"""The state every client connection of the proxy shares.

The cache, the origin pool, the fetches in flight (for collapsing), the
routing rules (forward or reverse), counters, and the few operations on the
store that outlive a single request: committing a new entry, freshening an
entry after a 304, invalidating after an unsafe request.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.logger import Logger

from twisted_netapps.http.dates import DateCache
from twisted_netapps.http.errors import ProtocolError
from twisted_netapps.http.fields import Headers
from twisted_netapps.http.targets import Target, parse_absolute_target
from twisted_netapps.observe import NULL_RECENT
from twisted_netapps.proxy.fetch import Fetch
from twisted_netapps.proxy.policy.freshness import HeuristicRule
from twisted_netapps.proxy.policy.validation import (
    CLIENT_VALIDATORS,
    freshen_fields,
    has_validator,
    head_matches,
    validation_fields,
)
from twisted_netapps.proxy.store.cache import Cache
from twisted_netapps.proxy.store.entry import Entry
from twisted_netapps.proxy.responses import CLOSE, KEEP_ALIVE, KEEP_ALIVE_10, hit_head
from twisted_netapps.proxy.targets import origin_form_target
from twisted_netapps.proxy.upstream import OriginPool, UpstreamRequest

log = Logger(namespace="netapps.proxy")


@dataclass(frozen=True)
class Limits:
    max_request_line: int = 8192
    max_field_section: int = 65536
    max_fields: int = 100
    header_timeout: float = 20.0
    idle_timeout: float = 60.0
    body_timeout: float = 60.0
    send_timeout: float = 120.0
    tunnel_idle_timeout: float = 300.0
    max_pipelined: int = 65536


# Request fields that take a request off the fast hit path: they ask for
# something the full decision (policy.reuse, serving) has to weigh.
_NOT_FAST = frozenset({
    b"cache-control", b"pragma", b"if-none-match", b"if-modified-since", b"if-match", b"if-unmodified-since",
    b"if-range", b"range", b"via", b"max-forwards",
})
_MAX_REMEMBERED_TARGETS = 4096
MAX_QUEUED_BYTES = 64 * 1024 * 1024  # small entries waiting for their batch to be synced


class _Durability:
    """Told when a stored entry is durable (or could not be made so)."""

    __slots__ = ("engine", "entry", "counted")

    def __init__(self, engine: "Engine", entry: Entry, counted: bool = False) -> None:
        self.engine, self.entry, self.counted = engine, entry, counted

    def durable(self) -> None:
        engine, entry = self.engine, self.entry
        if self.counted:
            engine.pending_commits -= 1
        entry.committed = True
        if not engine.cache.contains(entry):  # evicted or invalidated meanwhile
            engine.cache.disk.remove(entry)

    def failed(self, failure) -> None:
        if self.counted:
            self.engine.pending_commits -= 1
        log.warn("proxy: cannot store {key}: {error}", key=self.entry.key.decode("latin-1"),
                 error=failure.getErrorMessage())
        self.engine.cache.remove(self.entry)


class Engine:
    def __init__(
        self,
        *,
        reactor,
        cache: Cache,
        pool: OriginPool,
        stats,
        via: bytes,
        reverse_origin: Target | None,
        allowed_ports: frozenset[int],
        heuristic: HeuristicRule,
        max_object_size: int,
        limits: Limits,
        log_requests: bool = False,
        max_pending_commits: int = 256,
        recent=NULL_RECENT,
    ) -> None:
        self.reactor = reactor
        self.cache = cache
        self.pool = pool
        self.stats = stats
        self.via = via
        self.reverse_origin = reverse_origin
        self.allowed_ports = allowed_ports
        self.heuristic = heuristic
        self.max_object_size = max_object_size
        self.limits = limits
        self.log_requests = log_requests
        self.recent = recent  # the status page's live events (a no-op without one)
        self.fetches: dict[bytes, object] = {}
        self.http_date = DateCache()
        self.pending_commits = 0
        self.max_pending_commits = max_pending_commits
        self._published_store = (0, 0)
        self._keys: dict = {}
        cache.disk.segments.on_batch = self.segments_synced

    def now(self) -> float:
        return self.reactor.seconds()

    # -- the fast hit path ----------------------------------------------------------

    def fast_hit(self, connection, head, keep_alive: bool) -> bool:
        """Answer a plain GET/HEAD for a fresh, in-memory entry right away; False otherwise.

        The common hit -- no cache directives, no preconditions, no Range --
        needs none of the general machinery: the cache key comes from a
        memo of request targets, the head was prepared this second, the body
        is in memory. Anything else goes the long way (an Exchange), which
        gives the same answer.
        """
        method = head.method
        if (method != b"GET" and method != b"HEAD") or self.log_requests or head.headers.has_any(_NOT_FAST):
            return False
        cache = self.cache
        if not cache.loaded:
            return False
        key = self._remembered_key(head)
        if key is None:
            return False
        entry = cache.select(key, head.headers)
        if entry is None or entry.must_validate or entry.directives.no_cache:
            return False
        now = self.reactor.seconds()
        if now >= entry.fresh_until:
            return False
        body = cache.memory.get(entry.id) if entry.body_length else b""
        if body is None:
            return False
        if not keep_alive:
            mode = CLOSE
        else:
            mode = KEEP_ALIVE if head.version == b"1.1" else KEEP_ALIVE_10
        data = hit_head(entry, entry.initial_age + max(0.0, now - entry.response_time), self.via, mode)
        cache.touch(entry)
        if method == b"HEAD":
            body = b""
        transport = connection.transport
        if len(body) < 16384:
            transport.write(data + body)
        else:
            transport.writeSequence((data, body))
        stats = self.stats
        stats.incr("bytes_out", len(data) + len(body))
        self.count_hit(True, len(body))
        recent = self.recent
        if recent is not NULL_RECENT and recent.wants():
            recent.add("request", method=method.decode("latin-1"), url=key.decode("latin-1")[:200],
                       status=entry.status, decision="HIT", why="fresh, body in memory", bytes=len(body))
        return True

    def _remembered_key(self, head) -> bytes | None:
        """The cache key for a request target seen before (None: work it out the long way)."""
        memo_key = head.target
        key = self._keys.get(memo_key)
        if key is None:
            try:
                key = self._key_for(head)
            except ProtocolError:
                return None
            if key is None:
                return None
            if len(self._keys) >= _MAX_REMEMBERED_TARGETS:
                self._keys.clear()
            self._keys[memo_key] = key
        return key

    def remembered_key(self, target: bytes) -> bytes | None:
        """The cache key of a request target already worked out (and so valid), if it is remembered."""
        return self._keys.get(target)

    def _key_for(self, head) -> bytes | None:
        target = head.target
        if self.reverse_origin is None:
            if not target.startswith(b"http://"):
                return None
            parsed = parse_absolute_target(target)
            return parsed.uri if parsed.port in self.allowed_ports else None
        if target.startswith(b"/"):
            return origin_form_target(target, self.reverse_origin).uri
        return None

    # -- fetches --------------------------------------------------------------

    def collapsible_fetch(self, key: bytes):
        fetch = self.fetches.get(key)
        return fetch if fetch is not None and not fetch.done else None

    def cache_view(self) -> list[dict]:
        """The status page's table of stored responses (most recently used first)."""
        now = self.now()
        rows = []
        for entry in self.cache.most_recent(500):
            rows.append({
                "url": entry.key.decode("latin-1")[:200], "status": entry.status, "bytes": entry.body_length,
                "age": round(entry.initial_age + max(0.0, now - entry.response_time)),
                "fresh_for": round(entry.fresh_until - now) if entry.directives is not None else None,
                "vary": ", ".join(name.decode("latin-1") for name in entry.vary),
                "in_memory": self.cache.memory.holds(entry.id) or not entry.body_length,
            })
        return rows

    def fetches_view(self) -> list[dict]:
        """Origin fetches in progress with the requests waiting on each (collapsing at work)."""
        return [
            {"url": fetch.key.decode("latin-1")[:200], "validating": fetch.validating is not None,
             "clients": len({id(c) for c in (fetch.leader, *fetch.followers, *fetch.completion_waiters,
                                             *fetch.streaming) if c is not None}),
             "received": fetch.received}
            for fetch in list(self.fetches.values()) if not fetch.done
        ]

    def register_fetch(self, fetch) -> None:
        self.fetches[fetch.key] = fetch

    def fetch_finished(self, fetch) -> None:
        if self.fetches.get(fetch.key) is fetch:
            del self.fetches[fetch.key]

    # -- the store --------------------------------------------------------------

    def store(self, entry: Entry, writer, body: bytes | None, request_headers: Headers) -> None:
        """Index a complete entry at once (servable now) and commit it to disk.

        A small entry (*body* in memory, *writer* None) joins the segment
        log's next batch; a large one (*writer* holds its temp file) is
        fsynced and renamed on its own.
        """
        disk = self.cache.disk
        if self.pending_commits >= self.max_pending_commits or disk.segments.queued_bytes > MAX_QUEUED_BYTES:
            # The disk cannot keep up: stop caching new entries rather than
            # queueing without bound (what is indexed is what is durable or
            # about to be).
            if writer is not None:
                writer.abort()
            self.stats.incr("store_skipped")
            return
        self.cache.add(entry, request_headers)
        self.stats.incr("stored")
        if writer is None:
            self.cache.memory.put(entry.id, body)
            disk.store_small(entry, body, _Durability(self, entry))
        else:
            self.pending_commits += 1
            waiter = _Durability(self, entry, counted=True)
            disk.commit(entry, writer).addCallbacks(lambda _: waiter.durable(), waiter.failed)
        self.publish_store_size()

    def segments_synced(self) -> None:
        """A batch of small entries is durable: a chance to reclaim a mostly dead segment."""
        if self.cache.reclaim_sparse_segment():
            self.publish_store_size()

    def freshen(self, entry: Entry, headers: Headers, request_time: float, response_time: float) -> None:
        """Update *entry* from a 304 (RFC 9111 4.3.4) and persist the new metadata."""
        old_size = entry.size
        fields = freshen_fields(entry.headers, headers)
        if b"date" not in headers:
            fields.set(b"Date", self.http_date(response_time))
        entry.headers = fields
        entry.request_time, entry.response_time = request_time, response_time
        entry.must_validate = False
        entry.refresh(self.heuristic)
        self.cache.resized(entry, old_size)
        self.stats.incr("revalidations")
        if entry.committed:
            d = self.cache.disk.write_meta(entry)
            d.addErrback(lambda f: log.warn("proxy: cannot update {id}: {error}", id=entry.id,
                                            error=f.getErrorMessage()))

    def head_update(self, key: bytes, request_headers: Headers, head_headers: Headers) -> None:
        """A 200 to a HEAD we forwarded updates or outdates the stored GETs (RFC 9111 4.3.5)."""
        now = self.now()
        for entry in self.cache.candidates(key, request_headers):
            if head_matches(entry.headers, entry.body_length, head_headers):
                self.freshen(entry, head_headers, now, now)
            else:
                entry.must_validate = True

    def revalidate_in_background(self, exchange, entry: Entry) -> None:
        """stale-while-revalidate (RFC 5861 3): the client got the stale copy; refresh it."""
        if self.collapsible_fetch(entry.key) is not None:
            return
        fetch = Fetch(self, entry.key, b"GET", exchange.head.headers, exchange.request_directives,
                      validating=entry if has_validator(entry.headers) else None, store=True)
        self.register_fetch(fetch)
        fetch.request_time = self.now()
        drop = CLIENT_VALIDATORS | {b"range", b"if-range"}
        head = exchange.outgoing_head(drop, validation_fields(entry.headers))
        host, port = exchange.destination
        fetch.upstream = UpstreamRequest(self.pool, host, port, b"GET", head, fetch)
        fetch.upstream.start()

    def invalidate(self, uris: list[bytes]) -> None:
        for uri in uris:
            removed = self.cache.invalidate(uri)
            fetch = self.fetches.get(uri)
            if fetch is not None:
                fetch.invalidated = True  # what it brings back may predate the change
            if removed:
                self.stats.incr("invalidations", removed)
        self.publish_store_size()

    def publish_store_size(self) -> None:
        size, count = self.cache.size, len(self.cache)
        old_size, old_count = self._published_store
        if (size, count) != (old_size, old_count):
            self.stats.gauge_add("store_bytes", size - old_size)
            self.stats.gauge_add("store_objects", count - old_count)
            self._published_store = (size, count)

    def count_hit(self, from_cache: bool, nbytes: int) -> None:
        self.stats.incr("hits" if from_cache else "misses")
        self.stats.incr("bytes_from_cache" if from_cache else "bytes_from_origin", nbytes)
        hits, misses = self.stats["hits"], self.stats["misses"]
        ratio = (100 * hits) // (hits + misses)
        current = self.stats["hit_ratio_percent"]
        if ratio != current:
            self.stats.gauge_add("hit_ratio_percent", ratio - current)
