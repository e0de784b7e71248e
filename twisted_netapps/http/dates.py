"""HTTP-date (RFC 9110 5.6.7): parsing the three formats strictly, formatting one.

    IMF-fixdate  Sun, 06 Nov 1994 08:49:37 GMT      (the only one we send)
    rfc850-date  Sunday, 06-Nov-94 08:49:37 GMT     (obsolete, accepted)
    asctime      Sun Nov  6 08:49:37 1994           (obsolete, accepted)

Anything else is invalid: a two-digit year in the IMF layout, a zone other
than GMT, a missing comma, doubled spaces, dashes or dots in the wrong
place, a one-digit hour. Callers decide what invalid means (for Expires,
RFC 9111 5.3 says: already expired).

Day and month names and "GMT" are matched without regard to case. RFC 9110
says HTTP-date is case-sensitive but also asks recipients to be robust in
parsing timestamps; a different case carries no ambiguity (unlike a
two-digit year or a zone name), so we accept it.

The weekday is not checked against the date: nothing depends on it and
RFC 9110 does not ask recipients to.
"""

from __future__ import annotations

import calendar
import re
import time

_DAYS = b"Mon|Tue|Wed|Thu|Fri|Sat|Sun"
_LONG_DAYS = b"Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday"
_MONTH_NAMES = [b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov", b"dec"]
_MONTHS = b"|".join(m.capitalize() for m in _MONTH_NAMES)
_MONTH_NUMBER = {name: i + 1 for i, name in enumerate(_MONTH_NAMES)}
_TIME = rb"([0-9]{2}):([0-9]{2}):([0-9]{2})"

_IMF = re.compile(rb"(?:" + _DAYS + rb"), ([0-9]{2}) (" + _MONTHS + rb") ([0-9]{4}) " + _TIME + rb" GMT", re.I)
_RFC850 = re.compile(
    rb"(?:" + _LONG_DAYS + rb"), ([0-9]{2})-(" + _MONTHS + rb")-([0-9]{2}) " + _TIME + rb" GMT", re.I
)
_ASCTIME = re.compile(rb"(?:" + _DAYS + rb") (" + _MONTHS + rb") ([ 0-9][0-9]) " + _TIME + rb" ([0-9]{4})", re.I)

_WEEKDAY_NAMES = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
_MONTH_TITLES = [m.decode().capitalize() for m in _MONTH_NAMES]


def _to_timestamp(year: int, month: int, day: int, hour: int, minute: int, second: int) -> float | None:
    if not 1 <= year <= 9999:
        return None
    if not (1 <= day <= calendar.monthrange(year, month)[1] and hour <= 23 and minute <= 59 and second <= 60):
        return None
    # A leap second (60) is counted as the last second of the minute.
    return float(calendar.timegm((year, month, day, hour, minute, min(second, 59), 0, 0, 0)))


_MEMO_SIZE = 512
_memo: dict[bytes, float | None] = {}


def parse_http_date(value: bytes | None, now: float | None = None) -> float | None:
    """Seconds since the epoch for an HTTP-date, or None if *value* is not one.

    Remembered per value (Date, Expires and Last-Modified repeat a lot),
    except for rfc850-dates, whose two-digit years depend on *now*.
    """
    if value is None:
        return None
    if value in _memo:
        return _memo[value]
    result = _parse_http_date(value, now)
    if result is None or _IMF.fullmatch(value.strip(b" \t")) or _ASCTIME.fullmatch(value.strip(b" \t")):
        if len(_memo) >= _MEMO_SIZE:
            _memo.clear()
        _memo[value] = result
    return result


def _parse_http_date(value: bytes, now: float | None = None) -> float | None:
    """*now* resolves the two-digit years of rfc850-date: a year that would be
    more than 50 years in the future is taken as the most recent past year
    with the same last two digits (RFC 9110 5.6.7)."""
    value = value.strip(b" \t")
    match = _IMF.fullmatch(value)
    if match:
        day, month, year, hh, mm, ss = match.groups()
        return _to_timestamp(int(year), _MONTH_NUMBER[month.lower()], int(day), int(hh), int(mm), int(ss))
    match = _RFC850.fullmatch(value)
    if match:
        day, month, yy, hh, mm, ss = match.groups()
        current = time.gmtime(time.time() if now is None else now).tm_year
        year = current - current % 100 + int(yy)
        if year > current + 50:
            year -= 100
        return _to_timestamp(year, _MONTH_NUMBER[month.lower()], int(day), int(hh), int(mm), int(ss))
    match = _ASCTIME.fullmatch(value)
    if match:
        month, day, hh, mm, ss, year = match.groups()
        if day[:1] == b" " and day[1:2] == b" ":
            return None
        return _to_timestamp(int(year), _MONTH_NUMBER[month.lower()], int(day.strip()), int(hh), int(mm), int(ss))
    return None


def format_http_date(timestamp: float) -> bytes:
    """IMF-fixdate for *timestamp* (whole seconds)."""
    t = time.gmtime(int(timestamp))
    return (
        f"{_WEEKDAY_NAMES[t.tm_wday]}, {t.tm_mday:02d} {_MONTH_TITLES[t.tm_mon - 1]} {t.tm_year:04d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    ).encode("ascii")


class DateCache:
    """``format_http_date`` memoised per second: the Date of every response."""

    __slots__ = ("_second", "_value")

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def __call__(self, timestamp: float) -> bytes:
        second = int(timestamp)
        if second != self._second:
            self._second = second
            self._value = format_http_date(second)
        return self._value
