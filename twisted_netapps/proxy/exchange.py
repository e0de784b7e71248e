"""One request from a client and the response it gets.

Routing first: in forward mode the target must be an absolute ``http://``
URI on an allowed port; in reverse mode everything goes to the configured
origin. A request whose Via already names us has looped (508).

GET and HEAD go through the cache (:mod:`policy.reuse` decides); every other
method is written through to the origin (RFC 9111 4) and, when the answer is
not an error, invalidates what the cache holds for the URI (4.4).
"""

from __future__ import annotations

from twisted.logger import Logger

from twisted_netapps.http.body import CHUNKED, LAST_CHUNK, LENGTH, NO_BODY, encode_chunk
from twisted_netapps.http.errors import ProtocolError
from twisted_netapps.http.fields import Headers, end_to_end_lines, strip_hop_by_hop
from twisted_netapps.http.targets import Target, parse_absolute_target
from twisted_netapps.observe import NULL_RECENT
from twisted_netapps.proxy import responses
from twisted_netapps.proxy.fetch import Fetch
from twisted_netapps.proxy.policy.directives import NO_REQUEST_DIRECTIVES, parse_request_directives
from twisted_netapps.proxy.policy.invalidation import invalidated_uris, invalidates
from twisted_netapps.proxy.policy.reuse import STALE_IF_ERROR_STATUSES, Action, choose, stale_on_error_allowed
from twisted_netapps.proxy.policy.validation import (
    CLIENT_VALIDATORS,
    ORIGIN_ONLY_PRECONDITIONS,
    client_not_modified,
    has_validator,
    validation_fields,
)
from twisted_netapps.proxy.policy.vary import vary_matches
from twisted_netapps.proxy.serving import serve_entry
from twisted_netapps.proxy.targets import add_via, origin_form_target, via_pseudonyms
from twisted_netapps.proxy.upstream import UpstreamRequest

log = Logger(namespace="netapps.proxy")

_SERVABLE = (Action.SERVE, Action.SERVE_STALE, Action.SERVE_STALE_AND_REVALIDATE)
# Request fields never passed to the origin as received: consumed here
# (Proxy-Authorization), replaced (Host, Via, framing).
_NOT_FORWARDED = frozenset({b"proxy-authorization", b"content-length", b"host", b"via"})
_NOT_FORWARDED_OR_COUNTED = _NOT_FORWARDED | {b"max-forwards"}
_VALIDATORS_OR_RANGE = CLIENT_VALIDATORS | {b"range"}


class Exchange:
    __slots__ = (
        "connection", "engine", "head", "method", "framing", "client_keep_alive", "target", "key", "destination",
        "request_directives", "fetch", "stale", "solo", "started", "finished", "response_chunked",
        "response_status", "x_cache", "body_bytes", "request_body_done", "_sender", "source", "pending_head",
        "request_authority", "why",
    )

    def __init__(self, connection, engine, head, framing, keep_alive: bool) -> None:
        self.connection = connection
        self.engine = engine
        self.head = head
        self.method = head.method
        self.framing = framing
        self.client_keep_alive = keep_alive
        self.target: Target | None = None
        self.key = b""
        self.destination: tuple[str, int] = ("", 0)
        self.request_directives = NO_REQUEST_DIRECTIVES
        self.fetch: Fetch | None = None
        self.stale: object = None  # the stored response being validated, for stale-if-error
        self.solo = False  # never collapse again (a joined fetch could not serve us)
        self.started = False  # the response head went out
        self.finished = False
        self.response_chunked = False
        self.response_status = 0
        self.x_cache = b"MISS"
        self.body_bytes = 0
        self.request_body_done = framing.kind == NO_BODY
        self._sender = None  # a disk reader streaming a large stored body
        self.source = None  # "cache" or "origin" once the response has one (for the counters)
        self.pending_head = b""  # a forwarded head waiting to go out with the first body bytes
        self.request_authority = None  # reverse mode, absolute-form target: its authority (the Host to send)
        self.why = ""  # the cache decision, in words (for the status page's live events)

    # -- routing --------------------------------------------------------------

    def start(self) -> None:
        try:
            self.target, self.destination = self._route()
        except ProtocolError as e:
            self.error(e.status, e.detail)
            return
        self.key = self.engine.remembered_key(self.head.target) or self.target.uri
        if self.engine.via in via_pseudonyms(self.head.headers):
            self.error(508, "request loop: this request already went through this proxy")
            return
        if self.method in (b"GET", b"HEAD"):
            self.request_directives = parse_request_directives(self.head.headers)
            self.engine.cache.when_loaded(self._loaded)
        elif self.method in (b"OPTIONS", b"TRACE") and self.head.headers.get(b"max-forwards") == b"0":
            self.answer_max_forwards()
        else:
            self.write_through()

    def _route(self) -> tuple[Target, tuple[str, int]]:
        target_text = self.head.target
        origin = self.engine.reverse_origin
        if origin is None:
            if not target_text.lower().startswith(b"http://"):
                if target_text.lower().startswith(b"https://"):
                    raise ProtocolError(400, "https URIs go through CONNECT")
                raise ProtocolError(400, "this is a proxy: ask for an absolute http:// URI (curl -x)")
            target = parse_absolute_target(target_text)
            if target.port not in self.engine.allowed_ports:
                raise ProtocolError(403, f"port {target.port} is not in the proxy's allowed ports")
            return target, (target.connect_host, target.port)
        # Reverse mode: one site. Its URIs (the cache keys) are the origin's,
        # whatever Host the client used -- as nginx keys by the upstream. An
        # origin whose answers depend on Host says so with Vary: Host.
        if target_text.lower().startswith(b"http://"):
            absolute = parse_absolute_target(target_text)
            path, self.request_authority = absolute.path, absolute.authority
        elif target_text == b"*" and self.method == b"OPTIONS":
            path = b"*"
        elif self.engine.remembered_key(target_text) is not None:
            path = target_text  # an origin-form target the fast-hit check has validated already
        else:
            path = origin_form_target(target_text, origin).path
        return Target(origin.scheme, origin.host, origin.port, path), (origin.connect_host, origin.port)

    # -- the cache path -------------------------------------------------------

    def _loaded(self) -> None:
        if not self.finished:
            self.through_cache()

    def through_cache(self) -> None:
        headers = self.head.headers
        directives = self.request_directives
        if directives.no_store or headers.has_any(ORIGIN_ONLY_PRECONDITIONS):
            self.why = "request says no-store" if directives.no_store else "a precondition only the origin evaluates"
            self.go_to_origin(None, store=not directives.no_store and self.method == b"GET")
            return
        entry = self.engine.cache.select(self.key, headers)
        now = self.engine.now()
        if entry is None:
            action = choose(None, None, directives, now)
        else:
            action = choose(entry.freshness, entry.directives, directives, now)
            if entry.must_validate and action in _SERVABLE:
                action = Action.GATEWAY_TIMEOUT if directives.only_if_cached else Action.VALIDATE
        self.why = "not in the cache" if entry is None and action is Action.FETCH else action.value
        if action in _SERVABLE:
            if action is Action.SERVE_STALE_AND_REVALIDATE:
                self.engine.revalidate_in_background(self, entry)
            serve_entry(self, entry, b"HIT")
        elif action is Action.GATEWAY_TIMEOUT:
            self.error(504, "only-if-cached: no stored response can be used")
        elif action is Action.VALIDATE:
            self.stale = entry
            self.go_to_origin(entry if has_validator(entry.headers) else None)
        else:
            self.go_to_origin(None)

    def go_to_origin(self, validating, *, store: bool = True) -> None:
        collapsible = (
            not self.solo
            and self.method in (b"GET", b"HEAD")
            and store
            and not self.head.headers.has_any(_VALIDATORS_OR_RANGE)
        )
        if collapsible:
            existing = self.engine.collapsible_fetch(self.key)
            if existing is not None and (existing.head is None or existing.entry is not None):
                self.fetch = existing
                self.why = "collapsed onto the fetch in progress"
                existing.join(self)
                self.engine.stats.incr("collapsed")
                return
        # HEAD is forwarded as HEAD: nothing of its answer can be stored.
        store = store and self.method == b"GET"
        drop = set()
        validators = []
        if validating is not None:
            drop = CLIENT_VALIDATORS | {b"range", b"if-range"}
            validators = validation_fields(validating.headers)
        fetch = Fetch(self.engine, self.key, self.method, self.head.headers, self.request_directives,
                      validating=validating, store=store)
        fetch.leader = self
        self.fetch = fetch
        if collapsible and self.method == b"GET":
            self.engine.register_fetch(fetch)
        self._send(fetch, drop, validators)

    def write_through(self) -> None:
        """Methods the cache does not answer: forwarded, the response passed back."""
        self.why = "written through (not GET/HEAD)"
        fetch = Fetch(self.engine, self.key, self.method, self.head.headers, NO_REQUEST_DIRECTIVES,
                      validating=None, store=False)
        fetch.leader = self
        self.fetch = fetch
        self._send(fetch, set(), [])

    def _send(self, fetch: Fetch, drop: set, validators: list) -> None:
        fetch.request_time = self.engine.now()
        head = self.outgoing_head(drop, validators)
        has_body = self.framing.kind != NO_BODY
        host, port = self.destination
        fetch.upstream = UpstreamRequest(self.engine.pool, host, port, self.method, head, fetch, has_body=has_body)
        if has_body:
            fetch.upstream.register_body_producer(self.connection.transport)
        fetch.upstream.start()

    def outgoing_head(self, drop: set, validators: list) -> bytes:
        """The request head for the origin, serialised in one pass over the client's fields."""
        headers = self.head.headers
        forwarding = self.method in (b"OPTIONS", b"TRACE") and b"max-forwards" in headers
        excluded = _NOT_FORWARDED_OR_COUNTED if forwarding else _NOT_FORWARDED
        if drop:
            excluded = excluded | drop
        lines = [self.method, b" ", self.target.path, b" HTTP/1.1\r\nHost: ", self._host_field(), b"\r\n"]
        lines += end_to_end_lines(headers, excluded)
        for name, value in validators:
            lines.append(name + b": " + value + b"\r\n")
        if forwarding:
            value = headers.get(b"max-forwards")
            if value.isdigit():
                lines.append(b"Max-Forwards: %d\r\n" % (int(value) - 1))
        via = headers.get(b"via")
        ours = self.head.version + b" " + self.engine.via
        lines.append(b"Via: " + (via + b", " + ours if via else ours) + b"\r\n")
        if self.framing.kind == LENGTH:
            lines.append(b"Content-Length: %d\r\n" % self.framing.length)
        elif self.framing.kind == CHUNKED:
            lines.append(b"Transfer-Encoding: chunked\r\n")
        lines.append(b"\r\n")
        return b"".join(lines)

    def _host_field(self) -> bytes:
        """Host for the origin: the URI's authority, or in reverse mode the client's Host as received."""
        if self.engine.reverse_origin is not None:
            received = self.request_authority or self.head.headers.get(b"host")
            if received:
                return received
        return self.target.authority

    # -- request body (write-through methods) ---------------------------------

    def request_data(self, data: bytes) -> None:
        if self.fetch is not None and self.fetch.upstream is not None and not self.fetch.done:
            self.fetch.upstream.write(encode_chunk(data) if self.framing.kind == CHUNKED else data)

    def request_end(self) -> None:
        self.request_body_done = True
        if self.fetch is not None and self.fetch.upstream is not None and not self.fetch.done:
            if self.framing.kind == CHUNKED:
                self.fetch.upstream.write(LAST_CHUNK)
            self.fetch.upstream.body_done()

    # -- events from a fetch ---------------------------------------------------

    def can_use(self, entry) -> bool:
        """May this (collapsed) request be answered with the entry being fetched?"""
        if not vary_matches(entry.vary, entry.vary_values, self.head.headers):
            return False
        action = choose(entry.freshness, entry.directives, self.request_directives, self.engine.now())
        return action in _SERVABLE

    def fetch_interim(self, head) -> None:
        if self.head.version == b"1.1" and not self.started and head.status != 101:
            fields = strip_hop_by_hop(head.headers)
            self.connection.write(responses.status_line(head.status, head.reason) + fields.serialize() + b"\r\n")

    def fetch_response(self, fetch: Fetch) -> bool:
        """The origin's response head: send ours; True to receive its body."""
        head = fetch.head
        now = self.engine.now()
        if invalidates(self.method, head.status):
            self.engine.invalidate(invalidated_uris(self.key, head.headers))
        if self.method == b"HEAD" and head.status == 200:
            self.engine.head_update(self.key, self.head.headers, head.headers)
        entry = fetch.entry
        self.x_cache = b"MISS" if fetch.leader is self else b"HIT"
        self.source = "origin" if fetch.leader is self else "cache"
        if entry is not None and head.status == 200 and self.head.headers.has_any(CLIENT_VALIDATORS):
            if client_not_modified(self.head.headers, entry.headers, entry.date):
                self.send_head(responses.not_modified_head(entry, entry.freshness.age(now), self.engine.via,
                                                           self.connection_mode(), self.x_cache))
                self.finish(0)
                return False
        self.response_status = head.status
        if fetch.framing.kind == NO_BODY or self.method == b"HEAD":
            # No body follows: pass the origin's Content-Length on (for HEAD
            # and 304 it describes the representation, RFC 9110 8.6).
            length = head.headers.get(b"content-length")
            length = int(length) if length is not None and length.isdigit() and head.status != 204 else None
            if fetch.framing.kind == LENGTH:
                length = fetch.framing.length
            self.send_head(responses.forwarded_head(head, self.engine.http_date(now), self.engine.via,
                                                    x_cache=self.x_cache, length=length, chunked=False,
                                                    connection=self.connection_mode()))
            self.finish(0)
            return False
        if fetch.framing.kind == LENGTH:
            length, chunked = fetch.framing.length, False
        else:
            length, chunked = None, self.head.version == b"1.1"
        self.response_chunked = chunked
        connection = self.connection_mode() if (length is not None or chunked) else responses.CLOSE
        self.pending_head = responses.forwarded_head(head, self.engine.http_date(now), self.engine.via,
                                                     x_cache=self.x_cache, length=length, chunked=chunked,
                                                     connection=connection)
        self.started = True  # sent with the first piece of body (one write instead of two)
        if connection == responses.CLOSE:
            self.connection.close_after_response = True
        self.connection.stream_from(self)
        return True

    def fetch_data(self, data: bytes) -> None:
        if self.finished:
            return
        self.body_bytes += len(data)
        data = encode_chunk(data) if self.response_chunked else data
        if self.pending_head:
            data, self.pending_head = self.pending_head + data, b""
        self.connection.write(data)

    def fetch_end(self) -> None:
        if self.finished:
            return
        tail = LAST_CHUNK if self.response_chunked else b""
        if self.pending_head or tail:
            self.connection.write(self.pending_head + tail)
            self.pending_head = b""
        self.finish(self.body_bytes)

    def fetch_failed(self, status: int, detail: str, *, started: bool) -> None:
        if self.finished:
            return
        if started and self.pending_head:
            # Nothing went out yet (the head waits for the body): an error response still can.
            self.pending_head = b""
            self.started = started = False
            self.response_status = 0
        if started:
            log.info("proxy: {key}: {detail}; response cut short", key=self.key.decode("latin-1"), detail=detail)
            self.connection.abort()
            self.finished = True
            return
        entry = self.stale
        now = self.engine.now()
        if entry is not None and self.engine.cache.contains(entry):
            if stale_on_error_allowed(entry.freshness, entry.directives, self.request_directives, now):
                self.why = f"origin unreachable ({detail}): stale response served"
                serve_entry(self, entry, b"HIT")
                return
            self.error(504, f"the stored response is stale and cannot be validated: {detail}")
            return
        self.error(status, detail)

    def fetch_error_response(self, fetch: Fetch) -> bool:
        """A 5xx arrived while validating: serve stale instead if stale-if-error allows."""
        entry = self.stale
        if entry is None or fetch.head.status not in STALE_IF_ERROR_STATUSES or not self.engine.cache.contains(entry):
            return False
        if not stale_on_error_allowed(entry.freshness, entry.directives, self.request_directives, self.engine.now()):
            return False
        self.why = f"origin answered {fetch.head.status}: stale response served (stale-if-error)"
        serve_entry(self, entry, b"HIT")
        return True

    def fetch_validated(self, entry) -> None:
        self.why = "the origin said 304: stored response served"
        serve_entry(self, entry, b"REVALIDATED")

    def go_alone(self, *, unconditional: bool = False) -> None:
        """A fetch we joined cannot serve us: look again, and go to the origin ourselves."""
        if self.finished or self.started:
            return
        self.solo = True
        self.fetch = None
        if unconditional:
            self.go_to_origin(None)
        else:
            self.through_cache()

    # -- answering -------------------------------------------------------------

    def connection_mode(self) -> int:
        if not self.client_keep_alive or self.connection.closing:
            return responses.CLOSE
        return responses.KEEP_ALIVE_10 if self.head.version == b"1.0" else responses.KEEP_ALIVE

    def send_head(self, data: bytes) -> None:
        self.started = True
        self.connection.write(data)

    def error(self, status: int, detail: str) -> None:
        if self.started or self.finished:
            return
        self.response_status = status
        self.why = detail
        if status >= 500 and status != 508:
            self.engine.stats.incr("origin_errors")
        self.send_head(responses.error_response(
            status, detail, self.engine.http_date(self.engine.now()), self.engine.via,
            connection=self.connection_mode(), head_only=self.method == b"HEAD",
        ))
        self.finish(0)

    def answer_max_forwards(self) -> None:
        """OPTIONS or TRACE with Max-Forwards: 0 is ours to answer (RFC 9110 7.6.2)."""
        date = self.engine.http_date(self.engine.now())
        if self.method == b"OPTIONS":
            fields = Headers([(b"Date", date), (b"Allow", b"GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE, CONNECT")])
            body = b""
        else:
            echoed = self.head.headers.copy()
            echoed.remove_all({b"authorization", b"proxy-authorization", b"cookie"})
            body = b"%b %b HTTP/%b\r\n%b\r\n" % (self.method, self.head.target, self.head.version, echoed.serialize())
            fields = Headers([(b"Date", date), (b"Content-Type", b"message/http")])
        add_via(fields, b"1.1", self.engine.via)
        self.send_head(responses.finish_head(200, b"OK", fields, x_cache=b"MISS", length=len(body),
                                             chunked=False, connection=self.connection_mode()))
        self.connection.write(body)
        self.finish(len(body))

    def finish(self, body_bytes: int) -> None:
        if self.finished:
            return
        self.finished = True
        fetch = self.fetch
        if fetch is not None:
            fetch.leave(self)
        if self.source is not None:
            self.engine.count_hit(self.source == "cache", body_bytes)
        recent = self.engine.recent
        if recent is not NULL_RECENT and recent.wants():
            why = self.why
            if fetch is not None and fetch.not_stored:
                why += "; not stored: " + fetch.not_stored
            recent.add("request", method=self.method.decode("latin-1"), url=self.key.decode("latin-1")[:200],
                       status=self.response_status, decision=self.x_cache.decode(), why=why, bytes=body_bytes)
        if self.engine.log_requests:
            log.info("proxy: {method} {uri} {status} {cache} {size}", method=self.method.decode("latin-1"),
                     uri=self.key.decode("latin-1"), status=self.response_status,
                     cache=self.x_cache.decode(), size=body_bytes)
        self.connection.exchange_done(self)

    def connection_lost(self) -> None:
        """The client went away: stop whatever still works for it."""
        if self._sender is not None:
            self._sender.stop()
        if self.fetch is not None and not self.finished:
            self.finished = True
            self.fetch.leave(self)

    # -- flow control from the client connection --------------------------------

    def pause_producing(self) -> None:
        if self._sender is not None:
            self._sender.pause()
        elif self.fetch is not None:
            self.fetch.pause(self)

    def resume_producing(self) -> None:
        if self._sender is not None:
            self._sender.resume()
        elif self.fetch is not None:
            self.fetch.resume(self)
