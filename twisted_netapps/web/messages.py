"""What handlers take and give: :class:`Request`, :class:`Response` and the
body kinds, plus the error page. No Twisted imports."""

from __future__ import annotations

import html
from dataclasses import dataclass, field

from twisted_netapps.web.connection import REASONS, render_fields
from twisted_netapps.web.files import FileVersion
from twisted_netapps.web.wire import RequestHead

HTML = b"text/html; charset=utf-8"


@dataclass(slots=True)
class Request:
    head: RequestHead
    peer: str  # client address, for the log and login throttling
    now: float
    user: str | None = None  # set once HTTP Basic credentials were accepted

    @property
    def method(self) -> str:
        return self.head.method

    @property
    def headers(self) -> dict[bytes, bytes]:
        return self.head.headers


@dataclass(slots=True)
class FileRegions:
    """A body made of literal pieces and (offset, length) regions of an open
    large file, streamed by the adapter; it owns *version*'s descriptor."""

    version: FileVersion
    pieces: list  # bytes | tuple[int, int]
    length: int

    def close(self) -> None:
        self.version.close()


@dataclass(slots=True)
class Response:
    status: int
    fields: bytes = b""  # rendered "Name: value\r\n" lines (Date, Server, Content-Length, Connection added later)
    body: bytes | FileRegions = b""
    content_length: int | None = None  # None: len(body); for HEAD, what GET would send
    close: bool = False
    user: str | None = None  # for the access log
    extra: dict = field(default_factory=dict)  # counters: {"uploads": 1}

    @property
    def length(self) -> int:
        if self.content_length is not None:
            return self.content_length
        body = self.body
        return body.length if isinstance(body, FileRegions) else len(body)

    def discard_body(self) -> None:
        """Release what the body holds (a HEAD, or a connection gone)."""
        if isinstance(self.body, FileRegions):
            self.body.close()
        self.body = b""


def error_response(status: int, message: str = "", fields=(), *, close: bool = False) -> Response:
    """A small HTML error page for *status*, *message* escaped."""
    reason = REASONS.get(status, "Error")
    text = html.escape(message or reason)
    body = (
        f"<!DOCTYPE html>\n<html><head><title>{status} {reason}</title></head>\n"
        f"<body><h1>{status} {reason}</h1>\n<p>{text}</p></body></html>\n"
    ).encode("utf-8")
    rendered = render_fields([(b"Content-Type", HTML), (b"Cache-Control", b"no-store"), *fields])
    return Response(status, rendered, body, close=close)


class BodyReader:
    """A handler that takes the request body: the adapter feeds :meth:`data`
    (at most :attr:`max_size` bytes; more is 413) and calls :meth:`finish`
    at the end, or :meth:`abort` if the client goes away first."""

    max_size: int = 0

    def ready(self):
        """None, or a Deferred firing with None (send 100 Continue and go on)
        or a Response refusing the request before its body is read."""
        return None

    def data(self, chunk: bytes) -> None:
        raise NotImplementedError

    def finish(self):
        """The Response, or a Deferred firing with it."""
        raise NotImplementedError

    def abort(self) -> None:
        """The client is gone: release what the reader holds."""
