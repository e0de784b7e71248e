"""A scriptable origin server for the proxy's tests.

It counts and records every request, and answers each path with the
responses a test scripted for it (the next one each time, the last one
repeated), written byte for byte -- no header is added that the test did not
ask for, so Date, Content-Length or their absence are the test's choice.
A scripted reply may send 1xx responses first, wait (to let concurrent
requests pile up), close the connection instead of answering, or use
chunked coding. Validators in conditional requests can be answered 304
automatically (``revalidate=True``).
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def http_date(offset: float = 0.0) -> str:
    """An IMF-fixdate *offset* seconds from now."""
    return formatdate(time.time() + offset, usegmt=True)


@dataclass
class Reply:
    status: int = 200
    headers: list = field(default_factory=list)  # [(name, value)], sent as given
    body: bytes = b""
    reason: str = ""
    interim: list = field(default_factory=list)  # [(status, [(name, value)])]
    delay: float = 0.0
    disconnect: bool = False
    chunked: bool = False
    content_length: bool = True  # add Content-Length (unless chunked or told otherwise)
    revalidate: bool = False  # answer matching If-None-Match / If-Modified-Since with 304


@dataclass
class Seen:
    method: str
    path: str
    headers: dict  # lowercase name -> value (joined)
    raw_headers: list
    body: bytes


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (ConnectionError, socket.timeout):
            self.close_connection = True

    def _serve(self) -> None:
        origin: TestOrigin = self.server.origin
        length = int(self.headers.get("Content-Length") or 0)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = self._read_chunked()
        else:
            body = self.rfile.read(length) if length else b""
        path = self.path
        seen = Seen(self.command, path, {k.lower(): ", ".join(self.headers.get_all(k)) for k in self.headers.keys()},
                    list(self.headers.items()), body)
        reply = origin._next_reply(path, seen)
        if reply.delay:
            time.sleep(reply.delay)
        if reply.disconnect:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        status, headers, payload = reply.status, list(reply.headers), reply.body
        if reply.revalidate and self._matches(seen, headers):
            status, payload = 304, b""
        out = []
        for code, fields in reply.interim:
            out.append(f"HTTP/1.1 {code} Interim\r\n".encode() + b"".join(
                f"{n}: {v}\r\n".encode("latin-1") for n, v in fields) + b"\r\n")
        reason = reply.reason or {200: "OK", 304: "Not Modified"}.get(status, "Whatever")
        head = [f"HTTP/1.1 {status} {reason}\r\n".encode()]
        no_body = self.command == "HEAD" or status in (204, 304) or status < 200
        for name, value in headers:
            head.append(f"{name}: {value}\r\n".encode("latin-1") if isinstance(value, str) else
                        name.encode() + b": " + value + b"\r\n")
        if reply.chunked and not no_body:
            head.append(b"Transfer-Encoding: chunked\r\n")
        elif reply.content_length and status not in (204, 304) and not any(
                n.lower() == "content-length" for n, _v in headers):
            head.append(b"Content-Length: %d\r\n" % len(payload))
        head.append(b"\r\n")
        out.append(b"".join(head))
        if not no_body:
            if reply.chunked:
                out.append(b"".join(b"%x\r\n%b\r\n" % (len(c), c) for c in _pieces(payload)) + b"0\r\n\r\n")
            else:
                out.append(payload)
        self.wfile.write(b"".join(out))

    @staticmethod
    def _matches(seen: Seen, headers: list) -> bool:
        fields = {n.lower(): v for n, v in headers}
        inm, ims = seen.headers.get("if-none-match"), seen.headers.get("if-modified-since")
        if inm is not None:
            return "etag" in fields and fields["etag"] in [t.strip() for t in inm.split(",")]
        return ims is not None and fields.get("last-modified") == ims

    def _read_chunked(self) -> bytes:
        body = b""
        while True:
            line = self.rfile.readline()
            if not line:
                raise ConnectionError("request body cut short")
            size = int(line.split(b";")[0], 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b""):
                    pass
                return body
            body += self.rfile.read(size)
            self.rfile.readline()

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_OPTIONS = do_PATCH = _serve

    def __getattr__(self, name: str):
        if name.startswith("do_"):  # any other method (M-SEARCH, PURGE...)
            return self._serve
        raise AttributeError(name)


def _pieces(payload: bytes, size: int = 7):
    for i in range(0, len(payload), size):
        yield payload[i:i + size]


class TestOrigin:
    """``with TestOrigin() as origin: origin.script("/a", Reply(...)); origin.count("/a")``"""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.server = ThreadingHTTPServer((host, 0), _Handler)
        self.server.daemon_threads = True
        self.server.origin = self
        self.host, self.port = self.server.server_address[:2]
        self._lock = threading.Lock()
        self._scripts: dict[str, list[Reply]] = {}
        self.seen: list[Seen] = []
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "TestOrigin":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def authority(self) -> str:
        return f"{self.host}:{self.port}"

    def script(self, path: str, *replies: Reply) -> None:
        with self._lock:
            self._scripts[path] = list(replies)

    def _next_reply(self, path: str, seen: Seen) -> Reply:
        with self._lock:
            self.seen.append(seen)
            replies = self._scripts.get(path) or self._scripts.get(path.split("?")[0])
            if not replies:
                return Reply(404, [("Content-Type", "text/plain")], b"not scripted\n")
            return replies.pop(0) if len(replies) > 1 else replies[0]

    def requests(self, path: str) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.path == path]

    def count(self, path: str) -> int:
        return len(self.requests(path))
