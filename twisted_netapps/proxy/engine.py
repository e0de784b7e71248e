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
from twisted_netapps.http.fields import Headers
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
from twisted_netapps.proxy.targets import Target
from twisted_netapps.proxy.upstream import OriginPool, UpstreamRequest

log = Logger(namespace="netapps.proxy")


@dataclass(frozen=True)
class Limits:
    max_request_line: int = 8192
    max_head: int = 65536
    max_fields: int = 100
    header_timeout: float = 20.0
    idle_timeout: float = 60.0
    body_timeout: float = 60.0
    send_timeout: float = 120.0
    tunnel_idle_timeout: float = 300.0
    max_pipelined: int = 65536


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
        self.fetches: dict[bytes, object] = {}
        self.http_date = DateCache()
        self.pending_commits = 0
        self.max_pending_commits = max_pending_commits
        self._published_store = (0, 0)

    def now(self) -> float:
        return self.reactor.seconds()

    # -- fetches --------------------------------------------------------------

    def collapsible_fetch(self, key: bytes):
        fetch = self.fetches.get(key)
        return fetch if fetch is not None and not fetch.done else None

    def register_fetch(self, fetch) -> None:
        self.fetches[fetch.key] = fetch

    def fetch_finished(self, fetch) -> None:
        if self.fetches.get(fetch.key) is fetch:
            del self.fetches[fetch.key]

    # -- the store --------------------------------------------------------------

    def store(self, entry: Entry, writer, request_headers: Headers) -> None:
        """Index a complete entry at once (servable now) and commit it to disk."""
        if self.pending_commits >= self.max_pending_commits:
            # The disk cannot keep up: stop caching new entries rather than
            # queueing without bound (what is indexed is what is durable or
            # about to be).
            writer.abort()
            self.cache.memory.discard(entry.id)
            self.stats.incr("store_skipped")
            return
        self.cache.add(entry, request_headers)
        self.pending_commits += 1
        self.stats.incr("stored")
        d = self.cache.disk.commit(entry, writer)

        def committed(_):
            self.pending_commits -= 1
            entry.committed = True
            if not self.cache.contains(entry):  # evicted or invalidated meanwhile
                self.cache.disk.remove(entry.id)

        def failed(failure):
            self.pending_commits -= 1
            log.warn("proxy: cannot store {key}: {error}", key=entry.key.decode("latin-1"),
                     error=failure.getErrorMessage())
            self.cache.remove(entry)

        d.addCallbacks(committed, failed)
        self.publish_store_size()

    def freshen(self, entry: Entry, headers: Headers, request_time: float, response_time: float) -> None:
        """Update *entry* from a 304 (RFC 9111 4.3.4) and persist the new metadata."""
        old_size = entry.size
        entry.headers = freshen_fields(entry.headers, headers)
        if b"date" not in headers:
            entry.headers.set(b"Date", self.http_date(response_time))
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
