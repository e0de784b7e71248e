"""The two dynamic pages of the demo site: the cookie counter and the form echo.

``/cookie`` is the seeds' cookie example with its four components: our
``Set-Cookie`` (once, for a new visitor), the browser's ``Cookie`` on later
visits, the browser's cookie jar, and the back-end database
(:class:`~twisted_netapps.web.visits.VisitStore`). The page is answered only
after the new count is on disk.

``/form`` echoes what a form sent, by GET (the query string) or POST
(``application/x-www-form-urlencoded``, bounded), every value HTML-escaped.
"""

from __future__ import annotations

import html
import re
from urllib.parse import parse_qsl

from twisted.internet import defer
from twisted.python.failure import Failure

from twisted_netapps.web.connection import render_fields
from twisted_netapps.web.messages import HTML, BodyReader, Request, Response, error_response
from twisted_netapps.web.visits import ID_PATTERN, VisitStore

COOKIE_NAME = "netapps_visitor"
_COOKIE_PAIR = re.compile(r"(?:^|;)\s*" + COOKIE_NAME + r"=([^;]*)")
MAX_FORM_FIELDS = 100


def _page(title: str, body: str) -> bytes:
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f'<title>{html.escape(title)}</title><link rel="stylesheet" href="/style.css"></head>\n'
        f"<body><main>\n<h1>{html.escape(title)}</h1>\n{body}\n"
        '<p><a href="/">Back to the demo site</a></p>\n</main></body></html>\n'
    ).encode("utf-8")


def _dynamic(request: Request, body: bytes, extra=()) -> Response:
    fields = render_fields([(b"Content-Type", HTML), (b"Cache-Control", b"no-store"), *extra])
    response = Response(200, fields, body)
    if request.method == "HEAD":
        response.content_length = len(body)
        response.body = b""
    return response


class SerialWriter:
    """Durable writes of a store's snapshot, at most one in flight; changes
    made meanwhile go together in the next write (a group commit)."""

    def __init__(self, store: VisitStore, run_disk) -> None:
        self.store = store
        self.run_disk = run_disk
        self._written = 0
        self._busy = False
        self._waiting: list[tuple[int, defer.Deferred]] = []

    def written_through(self, generation: int) -> defer.Deferred:
        """Fires once the store as of *generation* is on disk."""
        d = defer.Deferred()
        self._waiting.append((generation, d))
        self._next()
        return d

    def _next(self) -> None:
        if self._busy or not self._waiting:
            return
        generation, data = self.store.snapshot()
        self._busy = True
        self.run_disk(self.store.write, data).addBoth(self._done, generation)

    def _done(self, result, generation: int) -> None:
        self._busy = False
        done = [d for g, d in self._waiting if g <= generation]
        self._waiting = [(g, d) for g, d in self._waiting if g > generation]
        for d in done:
            if isinstance(result, Failure):
                d.errback(result)
            else:
                d.callback(None)
        self._next()


class CookieDemo:
    def __init__(self, store: VisitStore, writer: SerialWriter) -> None:
        self.store = store
        self.writer = writer

    def respond(self, request: Request):
        cookie_header = request.headers.get(b"cookie", b"").decode("latin-1")
        m = _COOKIE_PAIR.search(cookie_header)
        sent = m.group(1).strip('" ') if m else None
        known = sent if sent and ID_PATTERN.match(sent) else None
        visitor, count, new = self.store.visit(known, request.now)
        d = self.writer.written_through(self.store.generation)

        def recorded(_):
            extra = [(b"Vary", b"Cookie")]
            if new:
                extra.append((
                    b"Set-Cookie",
                    f"{COOKIE_NAME}={visitor}; Path=/; Max-Age=31536000; HttpOnly; SameSite=Lax".encode("ascii"),
                ))
            return _dynamic(request, self._render(visitor, count, new, cookie_header), extra)

        def failed(failure):
            failure.trap(OSError)
            return error_response(507, "The visit could not be recorded.")

        return d.addCallbacks(recorded, failed)

    @staticmethod
    def _render(visitor: str, count: int, new: bool, cookie_header: str) -> bytes:
        if new:
            greeting = (
                f"<p>Welcome, new visitor. Your id is <code>{visitor}</code>.</p>"
                f"<p>This response carries <code>Set-Cookie: {COOKIE_NAME}={visitor}</code> "
                "(component 1). Reload the page: your browser will send it back in a "
                "<code>Cookie</code> header (component 2), from its cookie jar (component 3).</p>"
            )
        else:
            greeting = (
                f"<p>Welcome back, visitor <code>{visitor}</code>: this is visit number "
                f'<strong id="visits">{count}</strong>.</p>'
                f"<p>Your browser sent <code>Cookie: {html.escape(cookie_header)}</code> (component 2), "
                "taken from its cookie jar (component 3).</p>"
            )
        return _page("Cookie demo", greeting + (
            f'<p>Visits recorded for this id: <span id="count">{count}</span>. The server keeps '
            "them in its back-end database (component 4), a file in the data directory.</p>"
        ))


class FormDemo:
    def __init__(self, max_size: int) -> None:
        self.max_size = max_size

    def get(self, request: Request) -> Response:
        query = request.head.query or b""
        return self._echo(request, "GET", query)

    def post(self, request: Request):
        content_type = request.headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if content_type != b"application/x-www-form-urlencoded":
            return error_response(415, "Send the form as application/x-www-form-urlencoded.", [
                (b"Accept-Post", b"application/x-www-form-urlencoded"),
            ])
        return FormBody(self, request)

    def _echo(self, request: Request, how: str, encoded: bytes) -> Response:
        try:
            fields = parse_qsl(encoded.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
        except ValueError:
            return error_response(413, f"More than {MAX_FORM_FIELDS} form fields.")
        rows = "".join(
            f"<tr><th>{html.escape(name)}</th><td>{html.escape(value)}</td></tr>" for name, value in fields
        )
        body = _page("Form demo", (
            f"<p>The form came by <strong>{how}</strong>"
            + (" in the URL's query string" if how == "GET" else " in the request body")
            + f" ({len(fields)} fields).</p>\n<table>{rows}</table>"
        ))
        return _dynamic(request, body)


class FormBody(BodyReader):
    def __init__(self, demo: FormDemo, request: Request) -> None:
        self.demo = demo
        self.request = request
        self.max_size = demo.max_size
        self.chunks: list[bytes] = []

    def data(self, chunk: bytes) -> None:
        self.chunks.append(chunk)

    def finish(self) -> Response:
        return self.demo._echo(self.request, "POST", b"".join(self.chunks))
