"""Secondary cache keys from Vary (RFC 9111 4.1).

A stored response records the names its Vary nominates and the normalised
values those request fields had. A later request matches only if every
nominated field normalises to the same value, absent matching only absent.

Normalisation (allowed by 4.1): all lines of a field combined, list members
split outside quoted strings, whitespace around members removed, empty
members dropped (``Foo: 1,2`` matches ``Foo: 1, 2`` and two lines ``1`` and
``2``). Values keep their case: some fields are case-sensitive, and a
spurious mismatch only costs a fetch where a spurious match would serve the
wrong variant.

``*`` anywhere in Vary (``*``, ``Foo, *``, a second line ``*``) never
matches.
"""

from __future__ import annotations

from twisted_netapps.http.fields import Headers, split_lists


def vary_names(headers: Headers) -> tuple[bytes, ...] | None:
    """Lowercase field names nominated by Vary, in order; None if it holds ``*``."""
    lines = headers.get_all(b"vary")
    if not lines:
        return ()
    names: list[bytes] = []
    for member in split_lists(lines):
        name = member.lower()
        if name == b"*":
            return None
        if name not in names:
            names.append(name)
    return tuple(names)


def normalize(values: list[bytes]) -> bytes | None:
    """One comparable value for all lines of a request field; None when absent."""
    if not values:
        return None
    return b",".join(split_lists(values))


def secondary_key(names: tuple[bytes, ...], request_headers: Headers) -> tuple[bytes | None, ...]:
    return tuple(normalize(request_headers.get_all(name)) for name in names)


def vary_matches(
    names: tuple[bytes, ...] | None, stored_values: tuple[bytes | None, ...], request_headers: Headers
) -> bool:
    if names is None:
        return False
    for name, stored in zip(names, stored_values):
        if normalize(request_headers.get_all(name)) != stored:
            return False
    return True
