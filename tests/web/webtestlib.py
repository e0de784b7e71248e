"""Helpers for the web tests: an in-memory site and protocol, raw HTTP exchanges."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from twisted.internet import defer, task
from twisted.internet.testing import StringTransport

from twisted_netapps.http.events import MessageError
from twisted_netapps.stats import ServiceStats
from twisted_netapps.web.accesslog import AccessLog
from twisted_netapps.web.connection import RequestReceived, ServerConnection
from twisted_netapps.web.demos import FormDemo
from twisted_netapps.web.files import FileStore
from twisted_netapps.web.protocol import WebFactory
from twisted_netapps.web.site import Site
from twisted_netapps.web.static import CacheRules, StaticFiles
from twisted_netapps.web.wire import BadRequest, Limits, RequestHead


def request_head(text: bytes, limits: Limits = Limits()) -> RequestHead:
    """The handlers' view of a request line and fields (no final empty line),
    through the connection core; BadRequest with the status it refuses with."""
    for event in ServerConnection(limits).receive_data(text + b"\r\n\r\n"):
        if isinstance(event, MessageError):
            raise BadRequest(event.status, event.detail)
        if isinstance(event, RequestReceived):
            return event.head
    raise AssertionError(f"no request head in {text!r}")


def settled(path: Path, age: float = 60.0) -> None:
    t = time.time() - age
    os.utime(path, (t, t))


def synchronous_disk(f, *args):
    """run_disk for tests: runs at once, returns a fired Deferred."""
    try:
        return defer.succeed(f(*args))
    except Exception:  # noqa: BLE001 - handed to the Deferred like a thread pool would
        return defer.fail()


def make_factory(root: Path, *, log_path: Path | None = None, clock=None, **timeouts) -> WebFactory:
    clock = clock or task.Clock()
    clock.advance(time.time())  # real time: files written now are unsettled
    files = FileStore(str(root), cache_bytes=1 << 20, max_cached_file=64 * 1024, clock=clock.seconds)
    static = StaticFiles(files, CacheRules({"*.html": "no-cache"}), index_files=["index.html"], autoindex=True, max_ranges=8)
    site = Site(static, None, None, FormDemo(1024), synchronous_disk, cookie_path="", form_path="/form")
    return WebFactory(
        site, clock=clock, stats=ServiceStats("web"), access_log=AccessLog(str(log_path)) if log_path else None,
        limits=Limits(max_request_line=1024, max_header_bytes=4096, max_headers=50),
        idle_timeout=timeouts.get("idle", 30.0), header_timeout=timeouts.get("header", 10.0),
        request_timeout=timeouts.get("request", 60.0), server=b"test",
    )


def connect(factory: WebFactory):
    proto = factory.buildProtocol(None)
    transport = StringTransport()
    proto.makeConnection(transport)
    return proto, transport


def responses(data: bytes, bodyless=()) -> list[tuple[int, dict[bytes, bytes], bytes]]:
    """Split raw response bytes into (status, headers, body) by Content-Length;
    the responses numbered in *bodyless* (to HEAD requests) have no body."""
    out = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            fields[name.strip().lower()] = value.strip()
        length = 0 if len(out) in bodyless or status in (204, 304) else int(fields.get(b"content-length", b"0"))
        out.append((status, fields, rest[:length]))
        data = rest[length:]
    return out


def raw_exchange(port: int, data: bytes, *, timeout: float = 10.0, host: str = "127.0.0.1") -> bytes:
    """Send *data*, half-close, read until the server closes."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


USER, PASSWORD = "alice", "alice-secret"


def start_web(data_dir: Path, sets=(), **kwargs):
    """The real daemon with only ``web`` on a free port, and an account alice."""
    from netapps_daemon import start_daemon

    from twisted_netapps.accounts import AccountStore

    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    store = AccountStore(data_dir)
    if not store.exists(USER):
        store.add(USER, PASSWORD, log2_n=10)  # cheap scrypt: tests log in often
    return start_daemon(["web"], data_dir, listen={"web": ["tcp:0:interface=127.0.0.1"]}, sets=list(sets), **kwargs)


def basic(user: str = USER, password: str = PASSWORD) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def http(daemon, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    """One request on a fresh http.client connection: (status, headers dict lowercased, body)."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", daemon.port("web"), timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        conn.close()
