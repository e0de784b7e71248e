"""Freshness lifetime and age (RFC 9111 4.2), for a shared cache.

All times are seconds since the epoch as floats; ``now`` is passed in.

Choices:

- ``Age`` counts only as exactly one field line holding plain digits.
  Anything else (``abc``, ``-7200``, ``7200.0``, ``0,7200``, two lines) is
  ignored, i.e. age_value 0 as if absent: it is not a delta-seconds and a
  singleton field cannot be a list. Values over 2^31 are 2^31, which no
  lifetime exceeds: stale.
- ``Expires``: an invalid date (``0``, a two-digit year in the IMF layout,
  a zone other than GMT, ...) or two lines that disagree mean "already
  expired" (5.3 MUST), and count as explicit expiry, so no heuristic
  freshness replaces them. ``Date`` that is missing or invalid is taken
  as the time the response was received (RFC 9110 6.6.1).
- Heuristic freshness (4.2.2): only without any explicit expiry, only for
  heuristically cacheable status codes (RFC 9110 15.1) or ``public``, and
  only from a valid ``Last-Modified`` earlier than ``Date``: a configured
  fraction (default 10%) of that interval, capped (default one day) so a
  decade-old file is not trusted for a year.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted_netapps.http.dates import parse_http_date
from twisted_netapps.http.fields import Headers
from twisted_netapps.proxy.policy.directives import DELTA_MAX, ResponseDirectives

HEURISTIC_STATUSES = frozenset({200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501})


@dataclass(frozen=True, slots=True)
class HeuristicRule:
    fraction: float = 0.1
    maximum: float = 86400.0


DEFAULT_HEURISTIC = HeuristicRule()


def parse_age(headers: Headers) -> int:
    """age_value: the Age field as delta-seconds, 0 when absent or invalid.

    Age is a singleton; when several values arrive (field lines, or a list on
    one line) the first one counts, as caches that added their own Age after
    an earlier one would have it. Anything but plain digits there is ignored.
    """
    lines = headers.get_all(b"age")
    if not lines:
        return 0
    first = lines[0].split(b",", 1)[0].strip(b" \t")
    if not first.isdigit():
        return 0
    return min(int(first), DELTA_MAX)


def date_value(headers: Headers, response_time: float) -> float:
    lines = headers.get_all(b"date")
    if len(lines) == 1:
        parsed = parse_http_date(lines[0], response_time)
        if parsed is not None:
            return parsed
    return response_time


def has_explicit_expiry(directives: ResponseDirectives, headers: Headers, shared: bool = True) -> bool:
    return (
        directives.max_age is not None
        or (shared and directives.s_maxage is not None)
        or b"expires" in headers
    )


def freshness_lifetime(
    status: int,
    headers: Headers,
    directives: ResponseDirectives,
    date: float,
    *,
    shared: bool = True,
    heuristic: HeuristicRule = DEFAULT_HEURISTIC,
) -> float:
    """freshness_lifetime (4.2.1) of a response whose Date value is *date*."""
    if shared and directives.s_maxage is not None:
        return float(directives.s_maxage)
    if directives.max_age is not None:
        return float(directives.max_age)
    expires_lines = headers.get_all(b"expires")
    if expires_lines:
        if len(set(expires_lines)) != 1:
            return 0.0
        expires = parse_http_date(expires_lines[0], date)
        if expires is None:
            return 0.0
        return max(0.0, expires - date)
    if status in HEURISTIC_STATUSES or directives.public:
        last_modified = parse_http_date(headers.get(b"last-modified"), date)
        if last_modified is not None and last_modified < date:
            return min(heuristic.fraction * (date - last_modified), heuristic.maximum)
    return 0.0


def corrected_initial_age(age_value: int, date: float, request_time: float, response_time: float) -> float:
    """corrected_initial_age (4.2.3): what the response's age was when it arrived."""
    apparent_age = max(0.0, response_time - date)
    response_delay = max(0.0, response_time - request_time)
    return max(apparent_age, age_value + response_delay)


@dataclass(frozen=True, slots=True)
class Freshness:
    """What a stored response needs to answer "how old, how fresh" at any time."""

    lifetime: float
    initial_age: float  # corrected_initial_age
    response_time: float

    def age(self, now: float) -> float:
        """current_age = corrected_initial_age + resident_time."""
        return self.initial_age + max(0.0, now - self.response_time)

    def is_fresh(self, now: float) -> bool:
        return self.lifetime > self.age(now)

    def staleness(self, now: float) -> float:
        """Seconds past the freshness lifetime (<= 0 while fresh)."""
        return self.age(now) - self.lifetime

    @property
    def fresh_until(self) -> float:
        """The instant the response turns stale."""
        return self.response_time + self.lifetime - self.initial_age


def compute_freshness(
    status: int,
    headers: Headers,
    directives: ResponseDirectives,
    request_time: float,
    response_time: float,
    *,
    shared: bool = True,
    heuristic: HeuristicRule = DEFAULT_HEURISTIC,
    date: float | None = None,
) -> Freshness:
    if date is None:
        date = date_value(headers, response_time)
    lifetime = freshness_lifetime(status, headers, directives, date, shared=shared, heuristic=heuristic)
    initial = corrected_initial_age(parse_age(headers), date, request_time, response_time)
    return Freshness(lifetime, initial, response_time)
