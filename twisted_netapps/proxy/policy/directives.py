"""Cache-Control (RFC 9111 5.2) and Pragma (5.4), parsed once into plain records.

Choices where the RFC leaves room, all made in the direction that can only
make us revalidate more, never serve something we should not:

- A delta-seconds value that is not plain digits (``a100``, ``100a``,
  ``-100``, ``3600.0``, single quotes, whitespace around ``=``) makes the
  directive unusable; for ``max-age``/``s-maxage`` that means lifetime 0,
  i.e. stale (RFC 9111 4.2.1 encourages treating invalid freshness
  information as stale). A quoted value (``max-age="3600"``) is accepted,
  as 1.2.2 asks recipients to.
- Values above 2^31 are 2^31 (1.2.2).
- The same directive twice with different values: stale for max-age and
  s-maxage (4.2.1 permits "first occurrence" or "stale"; only "stale" is
  safe when the origin contradicted itself). Request directives take the
  most demanding value instead.
- ``no-cache``/``private`` with a malformed argument count as unqualified.
- ``Pragma: no-cache`` in a request without Cache-Control means
  ``no-cache`` (RFC 7234's rule for HTTP/1.0 clients; RFC 9111 deprecates
  Pragma but honouring it can only cause a revalidation). In responses
  Pragma means nothing (5.4).
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted_netapps.http.fields import INVALID, Headers, parse_directives, split_list

DELTA_MAX = 2**31  # RFC 9111 1.2.2: the value to use for anything larger
ANY_STALENESS = DELTA_MAX  # max-stale without a value


def delta_seconds(value) -> int | None:
    """Non-negative integer seconds, capped at 2^31; None when invalid."""
    if value is None or value is INVALID or not value.isdigit():
        return None
    return min(int(value), DELTA_MAX)


@dataclass(frozen=True, slots=True)
class ResponseDirectives:
    max_age: int | None = None  # None: absent; 0 also for invalid/conflicting
    s_maxage: int | None = None
    no_store: bool = False
    no_cache: bool = False  # unqualified: revalidate every use
    no_cache_fields: frozenset[bytes] = frozenset()
    private: bool = False  # unqualified
    private_fields: frozenset[bytes] = frozenset()
    public: bool = False
    must_revalidate: bool = False
    proxy_revalidate: bool = False
    must_understand: bool = False
    immutable: bool = False
    stale_if_error: int | None = None  # RFC 5861
    stale_while_revalidate: int | None = None


@dataclass(frozen=True, slots=True)
class RequestDirectives:
    max_age: int | None = None
    max_stale: int | None = None  # ANY_STALENESS when given without a value
    min_fresh: int | None = None
    no_cache: bool = False
    no_store: bool = False
    only_if_cached: bool = False
    stale_if_error: int | None = None


NO_RESPONSE_DIRECTIVES = ResponseDirectives()
NO_REQUEST_DIRECTIVES = RequestDirectives()


def _field_names(value) -> frozenset[bytes] | None:
    """The field names of a qualified no-cache/private, or None if unqualified."""
    if value is None or value is INVALID:
        return None
    names = frozenset(name.lower() for name in split_list(value))
    return names or None


def _lifetime(values: list) -> int | None:
    if not values:
        return None
    parsed = {delta_seconds(v) for v in values}
    if len(parsed) != 1 or None in parsed:
        return 0  # invalid or contradictory: stale
    return parsed.pop()


_RESPONSE_FLAGS = {
    b"no-store": "no_store",
    b"public": "public",
    b"must-revalidate": "must_revalidate",
    b"proxy-revalidate": "proxy_revalidate",
    b"must-understand": "must_understand",
    b"immutable": "immutable",
}


# Origins send the same few Cache-Control values over and over: parsed
# records are immutable, so they are remembered (bounded) by their text.
_MEMO_SIZE = 1024
_response_memo: dict[tuple[bytes, ...], ResponseDirectives] = {}
_request_memo: dict[tuple[bytes, ...], RequestDirectives] = {}


def _remembered(memo: dict, lines: tuple[bytes, ...], parse):
    known = memo.get(lines)
    if known is None:
        if len(memo) >= _MEMO_SIZE:
            memo.clear()
        known = memo[lines] = parse(lines)
    return known


def parse_response_directives(headers: Headers) -> ResponseDirectives:
    lines = headers.get_all(b"cache-control")
    if not lines:
        return NO_RESPONSE_DIRECTIVES
    return _remembered(_response_memo, lines, _parse_response_directives)


def _parse_response_directives(lines: list[bytes]) -> ResponseDirectives:
    max_age: list = []
    s_maxage: list = []
    flags: dict[str, object] = {}
    no_cache_fields: set[bytes] = set()
    private_fields: set[bytes] = set()
    for name, value in parse_directives(lines):
        if name == b"max-age":
            max_age.append(value)
        elif name == b"s-maxage":
            s_maxage.append(value)
        elif name == b"no-cache":
            fields = _field_names(value)
            if fields is None:
                flags["no_cache"] = True
            else:
                no_cache_fields |= fields
        elif name == b"private":
            fields = _field_names(value)
            if fields is None:
                flags["private"] = True
            else:
                private_fields |= fields
        elif name in _RESPONSE_FLAGS:
            flags[_RESPONSE_FLAGS[name]] = True
        elif name in (b"stale-if-error", b"stale-while-revalidate"):
            seconds = delta_seconds(value)
            key = name.decode().replace("-", "_")
            if seconds is not None:
                previous = flags.get(key)
                flags[key] = seconds if previous is None else min(previous, seconds)
    return ResponseDirectives(
        max_age=_lifetime(max_age),
        s_maxage=_lifetime(s_maxage),
        no_cache_fields=frozenset(no_cache_fields),
        private_fields=frozenset(private_fields),
        **flags,
    )


def parse_request_directives(headers: Headers) -> RequestDirectives:
    lines = headers.get_all(b"cache-control")
    if not lines:
        pragma = headers.get_all(b"pragma")
        if pragma and any(name == b"no-cache" for name, _v in parse_directives(pragma)):
            return RequestDirectives(no_cache=True)
        return NO_REQUEST_DIRECTIVES
    return _remembered(_request_memo, lines, _parse_request_directives)


def _parse_request_directives(lines: list[bytes]) -> RequestDirectives:
    values: dict[str, object] = {}

    def keep(key: str, seconds: int | None, pick) -> None:
        if seconds is not None:
            previous = values.get(key)
            values[key] = seconds if previous is None else pick(previous, seconds)

    for name, value in parse_directives(lines):
        if name == b"max-age":
            keep("max_age", delta_seconds(value), min)
        elif name == b"min-fresh":
            keep("min_fresh", delta_seconds(value), max)
        elif name == b"max-stale":
            keep("max_stale", ANY_STALENESS if value is None else delta_seconds(value), min)
        elif name == b"stale-if-error":
            keep("stale_if_error", delta_seconds(value), min)
        elif name == b"no-cache":
            values["no_cache"] = True
        elif name == b"no-store":
            values["no_store"] = True
        elif name == b"only-if-cached":
            values["only_if_cached"] = True
    return RequestDirectives(**values) if values else NO_REQUEST_DIRECTIVES
