"""Service builder for ``web``: the HTTP/1.1 origin server of the demo site."""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from importlib import resources
from pathlib import Path

from twisted.logger import Logger

from twisted_netapps.auth import make_portal
from twisted_netapps.connections import StreamSettings
from twisted_netapps.context import ServiceContext
from twisted_netapps.errors import ConfigError
from twisted_netapps.logins import LoginRefused
from twisted_netapps.ratelimit import TokenBucket
from twisted_netapps.periodic import PeriodicTask
from twisted_netapps.settings import setting
from twisted_netapps.web.accesslog import AccessLog
from twisted_netapps.web.auth import Authenticator, WebRealm
from twisted_netapps.web.demos import CookieDemo, FormDemo, SerialWriter
from twisted_netapps.web.files import FileStore
from twisted_netapps.web.objects import ObjectStore
from twisted_netapps.web.protocol import WebFactory
from twisted_netapps.web.site import Site
from twisted_netapps.web.static import CacheRules, StaticFiles
from twisted_netapps.web.uploads import Writes
from twisted_netapps.web.visits import VisitStore
from twisted_netapps.web.wire import Limits

log = Logger(namespace="netapps.web")

COUNTERS: dict[str, str] = {
    "requests": "requests received (complete heads)",
    "bytes_in": "bytes received",
    "bytes_out": "bytes sent",
    "errors": "responses with a 5xx status",
    "responses_2xx": "2xx responses (200, 201, 204, 206)",
    "responses_3xx": "3xx responses (301 redirects, 304 Not Modified)",
    "responses_4xx": "4xx responses (404, 405, 412, 416, 401...)",
    "responses_5xx": "5xx responses (505, 501, 507...)",
    "bad_requests": "malformed requests answered with an error and a close (400, 414, 431, 505...)",
    "timeouts": "connections closed for a header/request deadline (408) or a stalled reader",
    "uploads": "PUTs stored (fsync'd and renamed)",
    "deletes": "DELETEs done",
}

# PUT/DELETE log users in: the daemon makes sure an account exists (the demo account).
USES_ACCOUNTS = True

DEMO_SITE = "www"
# What a connection over the frame's limits is told before it is closed.
TOO_MANY_CONNECTIONS = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 25\r\n"
    b"Retry-After: 5\r\nConnection: close\r\n\r\nToo many connections now.\n"
)


def _demo_site():
    return resources.files("twisted_netapps").joinpath("data", DEMO_SITE)


@dataclasses.dataclass(frozen=True)
class Settings(StreamSettings):
    listen: list[str] = setting(["tcp:8080:interface=127.0.0.1"], "TCP endpoint strings")
    root: str = setting("", 'document root ("" = <data_dir>/www; relative paths are under the data dir)')
    seed_demo_site: bool = setting(True, "create the root from the shipped demo site when it does not exist")
    index_files: list[str] = setting(["index.html"], "names served for a directory URL, in order")
    autoindex: bool = setting(True, "list a directory without an index file (else 403)")
    upload_rate: int = setting(
        0, "bytes per second all connections together may send (a token bucket; 0 = no limit): the "
        "server's u_s in the distribution experiment", minimum=0,
    )
    cache_control: dict[str, str] = setting(
        {"*.html": "max-age=30", "*": "max-age=300"},
        "Cache-Control by glob, first match wins (a pattern with / matches the whole URL path)",
    )
    max_ranges: int = setting(16, "ranges honoured in one Range header (more: the whole file)", minimum=1)
    file_cache_size: int = setting(64 * 1024 * 1024, "bytes of small files kept in memory", minimum=0)
    file_cache_max_file: int = setting(256 * 1024, "largest file read whole and cached; larger ones stream", minimum=0)
    writes: bool = setting(True, "PUT and DELETE for logged-in users (HTTP Basic)")
    write_users: list[str] = setting([], "accounts allowed to PUT/DELETE (empty: every account)")
    auth_realm: str = setting("netapps web", "realm named in the WWW-Authenticate challenge")
    max_upload_size: int = setting(100 * 1024 * 1024, "largest PUT body in bytes (more: 413)", positive=True)
    max_form_size: int = setting(64 * 1024, "largest form POST body in bytes (more: 413)", positive=True)
    cookie_path: str = setting("/cookie", 'the cookie demo\'s path ("" = off)')
    form_path: str = setting("/form", 'the form demo\'s path ("" = off)')
    max_cookie_ids: int = setting(10000, "visitor ids kept by the cookie demo (least recently seen dropped)", minimum=1)
    access_log: str = setting("web/access.log", 'Combined Log Format file (relative: under the data dir; "" = none)')
    access_log_flush: float = setting(1.0, "seconds between access log writes", positive=True)
    max_request_line: int = setting(8192, "longest request line in bytes (more: 414)", minimum=256)
    max_header_bytes: int = setting(16384, "largest header section in bytes (more: 431)", minimum=1024)
    max_headers: int = setting(100, "most header fields in a request (more: 431)", minimum=8)
    idle_timeout: float = setting(30.0, "seconds a kept-alive connection may wait for its next request", positive=True)
    header_timeout: float = setting(10.0, "seconds from a request's first byte to the end of its headers (408)", positive=True)
    request_timeout: float = setting(300.0, "seconds from a request's first byte to the end of its body (408)", positive=True)

    def validate(self, where: str) -> None:
        for key in ("cookie_path", "form_path"):
            value = getattr(self, key)
            if value and (not value.startswith("/") or any(c in value for c in "?#% ")):
                raise ConfigError(f"{where}.{key}: must be an absolute path without ?, #, % or spaces")
        if self.access_log and os.path.realpath(self.access_log) == "/dev/null":
            raise ConfigError(f"{where}.access_log: /dev/null is not a log (use \"\" to turn it off)")
        for pattern, directive in self.cache_control.items():
            if not directive.isascii() or any(c in directive for c in "\r\n\0"):
                raise ConfigError(f"{where}.cache_control.{pattern}: not a valid header value")


def seed_demo_site(root: Path) -> None:
    """Copy the shipped demo site to *root* (absent), atomically: a temp
    directory beside it, renamed into place."""
    root.parent.mkdir(parents=True, exist_ok=True)
    temp = root.with_name(f".{root.name}.seeding-{os.getpid()}")
    shutil.rmtree(temp, ignore_errors=True)
    with resources.as_file(_demo_site()) as source:
        shutil.copytree(source, temp)
    os.replace(temp, root)
    log.info("web: seeded the demo site into {root}", root=str(root))


def build(context: ServiceContext):
    s: Settings = context.settings
    reactor = context.reactor
    root = context.data_dir / s.root if s.root else context.data_dir / DEMO_SITE
    if not root.exists():
        if not s.seed_demo_site:
            raise ConfigError(f"{context.config.source}: web.root: {root} does not exist")
        seed_demo_site(root)
    web_dir = context.subdir("web")
    run_disk = context.pools.disk

    files = FileStore(
        str(root), cache_bytes=s.file_cache_size, max_cached_file=s.file_cache_max_file, clock=reactor.seconds
    )
    static = StaticFiles(
        files, CacheRules(s.cache_control), index_files=s.index_files, autoindex=s.autoindex, max_ranges=s.max_ranges
    )
    writes = None
    if s.writes:
        writes = Writes(ObjectStore(str(root)), files, _authenticator(context), run_disk, max_upload=s.max_upload_size)
    cookie = None
    if s.cookie_path:
        visits = VisitStore(web_dir / "visits.json", s.max_cookie_ids)
        cookie = CookieDemo(visits, SerialWriter(visits, run_disk))
    form = FormDemo(s.max_form_size) if s.form_path else None
    site = Site(static, writes, cookie, form, run_disk, cookie_path=s.cookie_path, form_path=s.form_path)

    children = []
    access_log = None
    if s.access_log:
        path = context.data_dir / s.access_log
        path.parent.mkdir(parents=True, exist_ok=True)
        access_log = AccessLog(str(path))
        children.append(_FlushingTask("web access log", s.access_log_flush, access_log.flush, reactor))
    factory = WebFactory(
        site, clock=reactor, stats=context.stats, access_log=access_log,
        limits=Limits(max_request_line=s.max_request_line, max_header_bytes=s.max_header_bytes, max_headers=s.max_headers),
        idle_timeout=s.idle_timeout, header_timeout=s.header_timeout, request_timeout=s.request_timeout,
        server=b"twisted-netapps", recent=context.recent,
        upload_buckets=[TokenBucket(s.upload_rate, now=reactor.seconds(), fair=True)] if s.upload_rate else None,
    )
    if cookie is not None:
        context.views.add("visitors", "Cookie demo visitors (the back-end database)", lambda: _visitors_view(visits))
    children += context.listeners(factory, refuse=TOO_MANY_CONNECTIONS)
    return context.named_service(children)


def _visitors_view(visits: VisitStore) -> list[dict]:
    rows = [
        {"id": visitor, "visits": r["count"],
         "first": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r["first"])),
         "last": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r["last"]))}
        for visitor, r in visits.visits.items()
    ]
    return rows[::-1][:500]  # most recently seen first


def _authenticator(context: ServiceContext) -> Authenticator:
    s: Settings = context.settings
    portal = make_portal(WebRealm(), context.accounts, run=context.pools.cpu)
    return Authenticator(portal, context.logins.login, s.auth_realm, s.write_users, refused_error=LoginRefused)


class _FlushingTask(PeriodicTask):
    """The access log's periodic flush, with a last one at shutdown."""

    def stopService(self):
        result = super().stopService()
        try:
            self.function()
        except OSError as e:  # a full disk at shutdown: one line, the daemon still stops
            log.warn("web: last access log write failed: {error}", error=e)
        return result
