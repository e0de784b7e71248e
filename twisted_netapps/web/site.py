"""Routing: which handler answers a request, and the method rules.

Paths: the cookie demo, the form demo, then the document root. For each the
methods it allows (405 with ``Allow`` for the others, 501 for a method we do
not know at all, RFC 9110 15.6.2), ``OPTIONS`` answered with ``Allow``, and
the large-file digest glue (the strong ETag of a big file is computed in the
disk pool before its first response).
"""

from __future__ import annotations

from twisted.internet import defer

from twisted_netapps.web.connection import render_fields
from twisted_netapps.web.demos import CookieDemo, FormDemo
from twisted_netapps.web.files import digest_descriptor
from twisted_netapps.web.messages import BodyReader, Request, Response, error_response
from twisted_netapps.web.static import DigestNeeded, StaticFiles
from twisted_netapps.web.uploads import Writes
from twisted_netapps.web.wire import METHODS_WITH_MEANING

Handling = Response | defer.Deferred | BodyReader


class Site:
    def __init__(
        self, static: StaticFiles, writes: Writes | None, cookie: CookieDemo | None, form: FormDemo | None,
        run_disk, *, cookie_path: str, form_path: str,
    ) -> None:
        self.static = static
        self.writes = writes
        self.cookie = cookie
        self.form = form
        self.run_disk = run_disk
        self.cookie_path = cookie_path.encode("utf-8") if cookie and cookie_path else None
        self.form_path = form_path.encode("utf-8") if form and form_path else None
        self.file_methods = (b"GET, HEAD, OPTIONS, PUT, DELETE" if writes else b"GET, HEAD, OPTIONS")

    def handle(self, request: Request, peer_host: str) -> Handling:
        head = request.head
        method = head.method
        path = head.path
        if path == self.cookie_path:
            if method in ("GET", "HEAD"):
                return self.cookie.respond(request)
            return self._not_allowed(method, b"GET, HEAD, OPTIONS")
        if path == self.form_path:
            if method in ("GET", "HEAD"):
                return self.form.get(request)
            if method == "POST":
                return self.form.post(request)
            return self._not_allowed(method, b"GET, HEAD, POST, OPTIONS")
        if method == "GET" or method == "HEAD":
            return self._static(request)
        if method == "PUT" and self.writes is not None:
            return self.writes.put(request, peer_host)
        if method == "DELETE" and self.writes is not None:
            return self.writes.delete(request, peer_host)
        if method == "OPTIONS" and head.target == b"*":
            return Response(204, render_fields([(b"Allow", b"GET, HEAD, POST, PUT, DELETE, OPTIONS")]))
        return self._not_allowed(method, self.file_methods)

    @staticmethod
    def _not_allowed(method: str, allow: bytes) -> Response:
        if method == "OPTIONS":
            return Response(204, render_fields([(b"Allow", allow)]))
        if method not in METHODS_WITH_MEANING:
            return error_response(501, f"The method {method} is not implemented here.", [(b"Allow", allow)])
        return error_response(405, f"{method} is not allowed here.", [(b"Allow", allow)])

    def _static(self, request: Request) -> Response | defer.Deferred:
        result = self.static.serve(request)
        if not isinstance(result, DigestNeeded):
            return result
        version, rule_path = result.version, result.rule_path

        def digested(etag: bytes) -> Response:
            self.static.store.remember_digest(version, etag)
            return self.static.respond(request, version, rule_path)

        def failed(failure):
            version.close()
            failure.trap(OSError)
            return error_response(500, "The file could not be read.")

        return self.run_disk(digest_descriptor, version.fd).addCallbacks(digested, failed)
