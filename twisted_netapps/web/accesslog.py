"""The access log in Combined Log Format (Apache's ``combined``), buffered.

One line per response (and per refused request)::

    127.0.0.1 - alice [06/Nov/1994:08:49:37 +0000] "GET /a.html HTTP/1.1" 200 1043 "http://ref/" "curl/8.5"

Quoted fields escape ``"``, ``\\`` and every byte outside printable ASCII as
``\\xhh`` (as Apache does), so a hostile User-Agent cannot forge a line. Lines
are appended to the file in batches (:meth:`AccessLog.flush`, called by a
periodic task and at shutdown) with O_APPEND, reopening each time, so
logrotate's move-and-create needs no signal.
"""

from __future__ import annotations

import os
import re
import time

_UNSAFE = re.compile(rb'["\\\x00-\x1f\x7f-\xff]')
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _escape_byte(m: re.Match) -> bytes:
    byte = m.group(0)
    if byte in (b'"', b"\\"):
        return b"\\" + byte
    return b"\\x%02x" % byte[0]


def escape(value: bytes) -> bytes:
    return _UNSAFE.sub(_escape_byte, value)


def clf_time(seconds: float) -> bytes:
    t = time.gmtime(int(seconds))
    return (
        f"[{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year:04d}:{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000]"
    ).encode("ascii")


def combined_line(
    host: str, user: str | None, when: float, request_line: bytes, status: int, size: int,
    referer: bytes | None, agent: bytes | None, *, when_text: bytes | None = None,
) -> bytes:
    user_field = escape(user.encode("utf-8", "replace")) if user else b"-"
    return b'%s - %s %s "%s" %d %s "%s" "%s"\n' % (
        host.encode("ascii", "replace"), user_field, when_text or clf_time(when),
        escape(request_line[:8192]), status, b"%d" % size if size else b"-",
        escape(referer) if referer is not None else b"-", escape(agent) if agent is not None else b"-",
    )


class AccessLog:
    """Buffered appends of combined lines to *path*; flushed when *max_buffer* is reached."""

    def __init__(self, path: str, max_buffer: int = 64 * 1024) -> None:
        self.path = path
        self.max_buffer = max_buffer
        self._lines: list[bytes] = []
        self._size = 0
        self._second = -1
        self._second_text = b""

    def log(self, host, user, when, request_line, status, size, referer, agent) -> None:
        second = int(when)
        if second != self._second:  # the timestamp text is the same within a second
            self._second, self._second_text = second, clf_time(second)
        line = combined_line(host, user, when, request_line, status, size, referer, agent, when_text=self._second_text)
        self._lines.append(line)
        self._size += len(line)
        if self._size >= self.max_buffer:
            self.flush()

    def flush(self) -> None:
        """Append what is buffered (blocking, but a page-cache append)."""
        if not self._lines:
            return
        data = b"".join(self._lines)
        self._lines.clear()
        self._size = 0
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
