"""PUT and DELETE of files under the document root, for logged-in users.

The blocking parts (fsync, rename, unlink, digests of the current file for
If-Match) run in the disk pool; this module sequences them: authenticate
(HTTP Basic, see :mod:`twisted_netapps.web.auth`), stream the body into the
upload's temp file, then commit with the preconditions checked against the
file as it is at commit time (so ``If-Match`` and ``If-None-Match: *`` make a
PUT conditional without a lost-update window: commits are serialised).
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.logger import Logger

from twisted_netapps.web.auth import Authenticator
from twisted_netapps.web.conditional import evaluate_preconditions, parse_entity_tags
from twisted_netapps.web.connection import render_fields
from twisted_netapps.web.errors import StatusError
from twisted_netapps.web.files import FileStore
from twisted_netapps.web.messages import BodyReader, Request, Response, error_response
from twisted_netapps.web.objects import ObjectError, ObjectStore, Upload
from twisted_netapps.web.paths import PathRefused, url_to_names

log = Logger(namespace="netapps.web")


def _needs_etag(headers: dict[bytes, bytes]) -> bool:
    """Whether the preconditions compare entity-tags (a digest of the current file)."""
    return any(
        value is not None and parse_entity_tags(value) is not None
        for value in (headers.get(b"if-match"), headers.get(b"if-none-match"))
    )


class Writes:
    """PUT/DELETE policy and sequencing for one document root."""

    def __init__(self, objects: ObjectStore, files: FileStore, auth: Authenticator, run_disk, *, max_upload: int) -> None:
        self.objects = objects
        self.files = files
        self.auth = auth
        self.run_disk = run_disk
        self.max_upload = max_upload
        self.commits = defer.DeferredLock()  # one commit at a time: check-then-rename is atomic for us

    def _names(self, request: Request) -> list[str] | Response:
        try:
            names, slash = url_to_names(request.head.path)
        except PathRefused as e:
            return error_response(e.status, e.reason)
        if slash or not names:
            return error_response(409, "A directory cannot be written; name a file.")
        return names

    def put(self, request: Request, peer_host: str):
        names = self._names(request)
        if isinstance(names, Response):
            return names
        if b"content-range" in request.headers:
            return error_response(400, "Partial PUT (Content-Range) is not supported.")
        login = self.auth.authenticate(request, peer_host)
        if login is None:
            return self.auth.unauthorized()
        try:
            upload = self.objects.begin_upload(names)
        except ObjectError as e:
            return error_response(e.status, e.reason)
        except PathRefused as e:
            return error_response(e.status, e.reason)
        except OSError as e:
            return error_response(507 if e.errno in (28, 122) else 403, f"Cannot write here: {e.strerror}.")
        return PutHandler(self, request, upload, login)

    def delete(self, request: Request, peer_host: str):
        names = self._names(request)
        if isinstance(names, Response):
            return names
        login = self.auth.authenticate(request, peer_host)
        if login is None:
            return self.auth.unauthorized()
        headers, now = request.headers, request.now

        def check(current):
            return evaluate_preconditions("DELETE", headers, current, now)

        def authed(result):
            if isinstance(result, Response):
                return result
            request.user = result
            d = self.commits.run(self.run_disk, self.objects.delete, names, check, _needs_etag(headers))
            return d.addCallback(deleted, result)

        def deleted(_, user):
            self.files.forget(self.files.fs_path(names))
            return Response(204, user=user, extra={"deletes": 1})

        return login.addCallback(authed).addErrback(_object_error)


def _object_error(failure):
    failure.trap(StatusError)
    return error_response(failure.value.status, failure.value.reason)


class PutHandler(BodyReader):
    def __init__(self, writes: Writes, request: Request, upload: Upload, login: defer.Deferred) -> None:
        self.writes = writes
        self.request = request
        self.upload = upload
        self.max_size = writes.max_upload
        self._outcome = None  # user name or refusing Response, once known
        self._waiting: list[defer.Deferred] = []
        self._failed: Response | None = None
        self._committing = False
        login.addCallbacks(self._logged_in, self._login_broke)

    def _login_broke(self, failure) -> None:
        log.failure("web: the login for a PUT failed", failure)
        self._logged_in(error_response(500, "The login could not be checked."))

    def _logged_in(self, outcome):
        self._outcome = outcome
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(outcome)

    def _login(self) -> defer.Deferred:
        if self._outcome is not None:
            return defer.succeed(self._outcome)
        d = defer.Deferred()
        self._waiting.append(d)
        return d

    def ready(self):
        return self._login().addCallback(lambda outcome: outcome if isinstance(outcome, Response) else None)

    def data(self, chunk: bytes) -> None:
        if self._failed is not None:
            return
        try:
            self.upload.write(chunk)
        except OSError as e:
            self.upload.discard()
            self._failed = error_response(507, f"Cannot store the upload: {e.strerror}.")

    def abort(self) -> None:
        if not self._committing:
            self.upload.discard()

    def finish(self):
        return self._login().addCallback(self._commit)

    def _commit(self, outcome):
        if isinstance(outcome, Response):
            self.upload.discard()
            return outcome
        if self._failed is not None:
            return self._failed
        request, writes = self.request, self.writes
        request.user = outcome
        headers, now = request.headers, request.now

        def check(current):
            return evaluate_preconditions("PUT", headers, current, now)

        self._committing = True
        d = writes.commits.run(writes.run_disk, self.upload.commit, check, _needs_etag(headers))

        def committed(result):
            created, etag = result
            writes.files.forget(self.upload.path)
            fields = [(b"ETag", etag)]
            if created:
                fields.append((b"Location", request.head.path))
            return Response(201 if created else 204, render_fields(fields), user=outcome, extra={"uploads": 1})

        return d.addCallbacks(committed, _object_error)
