"""HTTP-date (RFC 9110 section 5.6.7): strict parsing of the three formats, formatting.

Strict on purpose: a date that is not exactly one of IMF-fixdate
(``Sun, 06 Nov 1994 08:49:37 GMT``), the obsolete RFC 850 form
(``Sunday, 06-Nov-94 08:49:37 GMT``) or asctime (``Sun Nov  6 08:49:37 1994``)
is invalid, and an invalid validator date makes the precondition be ignored
(RFC 9110 13.1.3/13.1.4), never guessed at. No Twisted imports.
"""

from __future__ import annotations

import calendar
import re
import time

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_LONG_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH_NUMBER = {name: i + 1 for i, name in enumerate(_MONTHS)}

_TIME = r"(\d\d):(\d\d):(\d\d)"
_MONTH = "(" + "|".join(_MONTHS) + ")"
_IMF_FIXDATE = re.compile(r"(?:" + "|".join(_DAYS) + r"), (\d\d) " + _MONTH + r" (\d{4}) " + _TIME + r" GMT\Z")
_RFC850 = re.compile(r"(?:" + "|".join(_LONG_DAYS) + r"), (\d\d)-" + _MONTH + r"-(\d\d) " + _TIME + r" GMT\Z")
_ASCTIME = re.compile(r"(?:" + "|".join(_DAYS) + r") " + _MONTH + r" ([ \d]\d) " + _TIME + r" (\d{4})\Z")


def _timestamp(year: int, month: int, day: int, hour: int, minute: int, second: int) -> int | None:
    if not (1 <= day <= calendar.monthrange(year, month)[1] and hour < 24 and minute < 60 and second < 61):
        return None
    return calendar.timegm((year, month, day, hour, minute, min(second, 59), 0, 0, 0))


def parse_http_date(value: bytes | str | None, now: float | None = None) -> int | None:
    """Seconds since the epoch for an HTTP-date, or None when *value* is not one.

    RFC 850's two-digit year is read as the one within 50 years of *now*
    (RFC 9112 section 5.6.7's rule), 19xx/20xx if *now* is not given.
    """
    if value is None:
        return None
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return None
    value = value.strip(" \t")
    if len(value) > 40:
        return None
    m = _IMF_FIXDATE.match(value)
    if m:
        day, month, year, hh, mm, ss = m.groups()
        return _timestamp(int(year), _MONTH_NUMBER[month], int(day), int(hh), int(mm), int(ss))
    m = _RFC850.match(value)
    if m:
        day, month, yy, hh, mm, ss = m.groups()
        current = time.gmtime(now).tm_year if now is not None else 2000
        year = current - current % 100 + int(yy)
        if year > current + 50:
            year -= 100
        return _timestamp(year, _MONTH_NUMBER[month], int(day), int(hh), int(mm), int(ss))
    m = _ASCTIME.match(value)
    if m:
        month, day, hh, mm, ss, year = m.groups()
        return _timestamp(int(year), _MONTH_NUMBER[month], int(day.strip()), int(hh), int(mm), int(ss))
    return None


def format_http_date(seconds: float) -> bytes:
    """IMF-fixdate for *seconds* since the epoch (``Sun, 06 Nov 1994 08:49:37 GMT``)."""
    t = time.gmtime(int(seconds))
    return (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year:04d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    ).encode("ascii")
