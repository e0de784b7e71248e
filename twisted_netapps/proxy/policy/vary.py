"""Secondary cache keys from Vary (RFC 9111 4.1).

A stored response records the names its Vary nominates and the normalised
values those request fields had. A later request matches only if every
nominated field normalises to the same value, absent matching only absent.

Normalisation (allowed by 4.1): all lines of a field combined, list members
split outside quoted strings, whitespace around members removed, empty
members dropped (``Foo: 1,2`` matches ``Foo: 1, 2`` and two lines ``1`` and
``2``). Values keep their case -- some fields are case-sensitive, and a
spurious mismatch only costs a fetch where a spurious match would serve the
wrong variant -- except in the fields whose values are case-insensitive by
definition: language ranges (RFC 4647 2), content codings and charsets
(RFC 9110 8.4.1, 8.3.2), so ``Accept-Language: eN, De`` matches ``en, de``.
Member order is kept: with equal (or no) q-values many origins take the
first listed language as the preferred one.

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


# Request fields whose values compare case-insensitively.
CASE_INSENSITIVE = frozenset({b"accept-language", b"accept-encoding", b"accept-charset"})


def normalize(name: bytes, values: list[bytes]) -> bytes | None:
    """One comparable value for all lines of request field *name*; None when absent."""
    if not values:
        return None
    joined = b",".join(split_lists(values))
    return joined.lower() if name in CASE_INSENSITIVE else joined


def secondary_key(names: tuple[bytes, ...], request_headers: Headers) -> tuple[bytes | None, ...]:
    if not names:
        return ()
    return tuple(normalize(name, request_headers.get_all(name)) for name in names)


def vary_matches(
    names: tuple[bytes, ...] | None, stored_values: tuple[bytes | None, ...], request_headers: Headers
) -> bool:
    if names is None:
        return False
    for name, stored in zip(names, stored_values):
        if normalize(name, request_headers.get_all(name)) != stored:
            return False
    return True
