"""The status service's HTTP side: the page, the JSON API, the event stream, /metrics.

Read-only (GET and HEAD; anything else is 405). Peers on loopback are let in;
any other peer (or every peer with ``login = "always"``) logs in with HTTP
Basic against the accounts store, through the daemon's login guard — and the
service refuses to listen off loopback except over ``ssl:`` (see service.py).
"""

from __future__ import annotations

import importlib.resources
import json
import time
from urllib.parse import parse_qsl, unquote, urlsplit

from twisted.cred import credentials, error as cred_error
from twisted.internet import defer
from twisted.logger import Logger
from twisted.web import resource, server
from zope.interface import Interface

from twisted_netapps.addresses import host_of, is_loopback
from twisted_netapps.logins import LoginRefused
from twisted_netapps.status import metrics
from twisted_netapps.status.live import Hub, sse, to_json
from twisted_netapps.status.overview import counter_docs

log = Logger(namespace="netapps.status")

STATIC = {
    "/": ("page.html", b"text/html; charset=utf-8"),
    "/static/app.js": ("app.js", b"text/javascript; charset=utf-8"),
    "/static/app.css": ("app.css", b"text/css; charset=utf-8"),
}
SECURITY_HEADERS = {
    b"content-security-policy": b"default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    b"x-content-type-options": b"nosniff",
    b"referrer-policy": b"no-referrer",
    b"cache-control": b"no-store",
}


class IStatusViewer(Interface):
    """Avatar of someone allowed to look at the status page."""


class StatusRealm:
    def requestAvatar(self, avatar_id, mind, *interfaces):
        if IStatusViewer not in interfaces:
            raise NotImplementedError("the status realm serves IStatusViewer only")
        return IStatusViewer, avatar_id, lambda: None


def _static(name: str) -> bytes:
    return importlib.resources.files("twisted_netapps.status").joinpath("page", name).read_bytes()


class StatusApp:
    """Routes requests; shared by the resource and the tests."""

    def __init__(self, daemon, hub: Hub, *, portal, logins, login: str, overview) -> None:
        self.daemon = daemon
        self.hub = hub
        self.portal = portal
        self.logins = logins
        self.login = login
        self.overview = overview  # () -> the overview document
        self._static = {path: (_static(name), kind) for path, (name, kind) in STATIC.items()}

    # -------------------------------------------------------------- access

    def needs_login(self, request) -> bool:
        return self.login == "always" or not is_loopback(request.getClientAddress())

    def handle(self, request):
        for name, value in SECURITY_HEADERS.items():
            request.setHeader(name, value)
        if request.method not in (b"GET", b"HEAD"):
            request.setResponseCode(405)
            request.setHeader(b"allow", b"GET, HEAD")
            return b"read-only: GET and HEAD only\n"
        if not self.needs_login(request):
            return self.route(request)
        user, password = request.getUser(), request.getPassword()
        if not user:
            return self._unauthorized(request)
        creds = credentials.UsernamePassword(user, password)
        d = self.logins.login(self.portal, creds, host_of(request.getClientAddress()),
                              user.decode("utf-8", "replace"), IStatusViewer)
        d.addCallbacks(lambda _: self._finish(request, self.route(request)),
                       lambda f: self._login_failed(request, f))
        return server.NOT_DONE_YET

    def _unauthorized(self, request) -> bytes:
        request.setResponseCode(401)
        request.setHeader(b"www-authenticate", b'Basic realm="netapps status", charset="UTF-8"')
        return b"log in with a netapps account\n"

    def _login_failed(self, request, failure) -> None:
        if failure.check(LoginRefused):
            request.setResponseCode(429)
            request.setHeader(b"retry-after", str(int(failure.value.retry_after) + 1).encode())
            self._finish(request, b"too many failed logins from your address\n")
        elif failure.check(cred_error.UnauthorizedLogin, cred_error.UnhandledCredentials):
            self._finish(request, self._unauthorized(request))
        else:
            log.failure("status: login failed unexpectedly", failure)
            request.setResponseCode(500)
            self._finish(request, b"internal error\n")

    @staticmethod
    def _finish(request, body) -> None:
        if body is server.NOT_DONE_YET or request.finished or getattr(request, "_disconnected", False):
            return
        if isinstance(body, defer.Deferred):
            return
        request.write(body)
        request.finish()

    # -------------------------------------------------------------- routes

    def route(self, request):
        path = unquote(urlsplit(request.uri.decode("latin-1")).path)
        if path in self._static:
            body, kind = self._static[path]
            request.setHeader(b"content-type", kind)
            return body
        if path == "/api/overview":
            return self._json(request, self.overview())
        if path == "/metrics":
            request.setHeader(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")
            return metrics.render(self.daemon.stats.snapshot, counter_docs)
        if path == "/events":
            return self._events(request)
        parts = path.strip("/").split("/")
        if len(parts) == 3 and parts[:2] == ["api", "service"]:
            return self._service(request, parts[2])
        if len(parts) == 4 and parts[:2] == ["api", "view"]:
            return self._view(request, parts[2], parts[3])
        request.setResponseCode(404)
        return b"not found\n"

    def _json(self, request, document, code: int = 200) -> bytes:
        request.setResponseCode(code)
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(document, default=to_json).encode()

    def _service(self, request, name: str) -> bytes:
        if name not in self.daemon.config.enabled:
            return self._json(request, {"error": f"no service {name!r} runs"}, 404)
        observatory = self.daemon.observatory
        recent = observatory.recent.get(name)
        views = observatory.views.get(name)
        return self._json(request, {
            "name": name,
            "counters": self.daemon.stats.snapshot().get(name, {}),
            "docs": counter_docs(name),
            "recent": recent.snapshot() if recent is not None else [],
            "views": [{"name": v, "title": t, "params": list(p)} for v, t, p in (views.names() if views else [])],
        })

    def _view(self, request, service: str, name: str):
        views = self.daemon.observatory.views.get(service)
        params = dict(parse_qsl(urlsplit(request.uri.decode("latin-1")).query))
        try:
            if views is None:
                raise KeyError(name)
            d = defer.maybeDeferred(views.render, name, **params)
        except KeyError:
            return self._json(request, {"error": f"{service} has no view {name!r}"}, 404)

        def done(data):
            self._finish(request, self._json(request, {"service": service, "view": name, "at": time.time(),
                                                       "data": data}))

        def failed(failure):
            if failure.check(KeyError):
                self._finish(request, self._json(request, {"error": f"{service} has no view {name!r}"}, 404))
                return
            if failure.check(ValueError, TypeError):
                self._finish(request, self._json(request, {"error": str(failure.value)}, 400))
                return
            log.failure("status: view {service}/{view} failed", failure, service=service, view=name)
            self._finish(request, self._json(request, {"error": "the view failed (see the log)"}, 500))

        d.addCallbacks(done, failed)
        return server.NOT_DONE_YET

    def _events(self, request):
        if self.hub.full():
            return self._json(request, {"error": "too many open status pages"}, 503)
        request.setHeader(b"content-type", b"text/event-stream")
        self.daemon.stats.for_service("status").incr("event_clients")
        client = self.hub.add(request)
        client.offer(b"retry: 2000\n\n" + sse("overview", self.overview()))
        client.flush()
        return server.NOT_DONE_YET


class StatusResource(resource.Resource):
    isLeaf = True

    def __init__(self, app: StatusApp) -> None:
        super().__init__()
        self.app = app

    def render_GET(self, request):
        return self.app.handle(request)

    render_HEAD = render_GET

    def render(self, request):
        if request.method in (b"GET", b"HEAD"):
            return super().render(request)
        return self.app.handle(request)
