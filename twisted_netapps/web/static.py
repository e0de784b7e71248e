"""GET and HEAD of the document root: files with validators, conditional
requests, byte ranges, Cache-Control rules, directory indexes and redirects.

Pure decisions over the file layer (no Twisted): :meth:`StaticFiles.serve`
returns a :class:`~twisted_netapps.web.messages.Response`, or
:class:`DigestNeeded` when a large file's strong ETag has to be computed
first (the adapter does that in the disk pool and calls
:meth:`StaticFiles.respond` with the version).
"""

from __future__ import annotations

import fnmatch
import secrets
from dataclasses import dataclass
from urllib.parse import quote

from twisted_netapps.http.dates import format_http_date
from twisted_netapps.web.conditional import Validators, evaluate_preconditions, if_range_allows
from twisted_netapps.web.connection import render_fields
from twisted_netapps.web.files import DirectoryEntry, FileStore, FileVersion, etag_of
from twisted_netapps.web.listing import render_listing
from twisted_netapps.web.messages import HTML, FileRegions, Request, Response, error_response
from twisted_netapps.web.paths import PathRefused, url_path, url_to_names
from twisted_netapps.web.ranges import content_range, multipart_layout, select_ranges


# Request fields that make a GET more than "send the file".
_CONDITIONAL_FIELDS = frozenset((
    b"if-match", b"if-none-match", b"if-modified-since", b"if-unmodified-since", b"range", b"if-range",
))


class CacheRules:
    """Cache-Control by glob, first match wins: a pattern with a "/" is matched
    against the whole URL path, one without against the last segment."""

    def __init__(self, rules: dict[str, str]) -> None:
        self.rules = [(pattern, "/" in pattern, directive.encode("ascii")) for pattern, directive in rules.items()]
        self._memo: dict[str, bytes | None] = {}

    def directive(self, path: str) -> bytes | None:
        try:
            return self._memo[path]
        except KeyError:
            pass
        found = None
        name = path.rsplit("/", 1)[-1]
        for pattern, whole, directive in self.rules:
            if fnmatch.fnmatchcase(path if whole else name, pattern):
                found = directive
                break
        if len(self._memo) < 10000:
            self._memo[path] = found
        return found


@dataclass(slots=True)
class DigestNeeded:
    """Compute *version*'s digest (blocking), then call StaticFiles.respond."""

    version: FileVersion
    rule_path: str


class StaticFiles:
    def __init__(
        self, store: FileStore, rules: CacheRules, *, index_files: list[str], autoindex: bool, max_ranges: int
    ) -> None:
        self.store = store
        self.rules = rules
        self.index_files = index_files
        self.autoindex = autoindex
        self.max_ranges = max_ranges

    def serve(self, request: Request) -> Response | DigestNeeded:
        head = request.head
        try:
            names, slash = url_to_names(head.path)
            entry = self.store.lookup(names)
        except PathRefused as e:
            return error_response(e.status, e.reason)
        if entry is None:
            return error_response(404, "No such file here.")
        if isinstance(entry, DirectoryEntry):
            return self._directory(request, names, slash, entry)
        if slash:
            entry.close()
            return error_response(404, "Not a directory.")
        return self._file(request, entry, url_path(names))

    def _file(self, request: Request, version: FileVersion, rule_path: str) -> Response | DigestNeeded:
        if version.etag is None:
            return DigestNeeded(version, rule_path)
        return self.respond(request, version, rule_path)

    def _directory(self, request: Request, names: list[str], slash: bool, entry: DirectoryEntry) -> Response | DigestNeeded:
        if not slash:
            location = quote(url_path(names, directory=True).encode("utf-8", "surrogateescape"))
            if request.head.query is not None:
                location += "?" + request.head.query.decode("ascii")
            return error_response(301, "Moved to the directory's URL (with a slash).", [(b"Location", location.encode("ascii"))])
        for index in self.index_files:
            try:
                found = self.store.lookup(names + [index])
            except PathRefused:
                continue
            if isinstance(found, FileVersion):
                return self._file(request, found, url_path(names + [index]))
        if not self.autoindex:
            return error_response(403, "Directory listing is turned off.")
        try:
            body = render_listing(entry.path, url_path(names, directory=True))
        except OSError:
            return error_response(404, "Cannot list this directory.")
        return self._generated(request, body, HTML, b"no-cache")

    def _generated(self, request: Request, body: bytes, content_type: bytes, cache_control: bytes) -> Response:
        """A generated page with a strong ETag from its content (conditional GETs work)."""
        etag = etag_of(body)
        fields = [(b"ETag", etag), (b"Cache-Control", cache_control)]
        status = evaluate_preconditions(request.method, request.headers, Validators(etag, None), request.now)
        if status == 304:
            return Response(304, render_fields(fields))
        if status == 412:
            return error_response(412, "Precondition failed.")
        fields.append((b"Content-Type", content_type))
        return self._sized(request, Response(200, render_fields(fields), body))

    @staticmethod
    def _sized(request: Request, response: Response) -> Response:
        if request.method == "HEAD":
            response.content_length = response.length
            response.discard_body()
        return response

    def respond(self, request: Request, version: FileVersion, rule_path: str) -> Response:
        """The response for a file version whose ETag is known."""
        headers = request.headers
        directive = self.rules.directive(rule_path)
        if not (headers.keys() & _CONDITIONAL_FIELDS):
            # The common case, a plain GET/HEAD: the rendered fields are kept with the version.
            cached = version.rendered.get(directive)
            if cached is None:
                cached = version.rendered[directive] = render_fields(
                    self._validator_fields(version, directive)
                    + [(b"Accept-Ranges", b"bytes"), (b"Content-Type", version.content_type)])
            return self._sized(request, Response(200, cached, self._body(version, [(0, version.size)], version.size)))
        now = request.now
        validators = Validators(version.etag, version.mtime)
        common = self._validator_fields(version, directive)
        status = evaluate_preconditions(request.method, headers, validators, now)
        if status is not None:
            version.close()
            if status == 304:
                # RFC 9110 15.4.5: the ETag and Cache-Control a 200 would carry,
                # no other metadata (Last-Modified adds nothing next to an ETag).
                return Response(304, render_fields([f for f in common if f[0] != b"Last-Modified"]))
            return error_response(412, "Precondition failed.")
        size = version.size
        range_value = request.headers.get(b"range") if request.method == "GET" else None
        ranges = None
        if range_value is not None and if_range_allows(request.headers.get(b"if-range"), validators, now):
            ranges = select_ranges(range_value, size, self.max_ranges)
            if ranges == []:
                version.close()
                return error_response(416, "None of the ranges asked for is in the file.", [
                    (b"Content-Range", b"bytes */%d" % size), *common,
                ])
        fields = common + [(b"Accept-Ranges", b"bytes")]
        if not ranges:
            fields.append((b"Content-Type", version.content_type))
            return self._sized(request, Response(200, render_fields(fields), self._body(version, [(0, size)], size)))
        if len(ranges) == 1:
            first, last = ranges[0]
            fields += [(b"Content-Type", version.content_type), (b"Content-Range", content_range(first, last, size))]
            return Response(206, render_fields(fields), self._body(version, [(first, last - first + 1)], last - first + 1))
        boundary = secrets.token_hex(12).encode("ascii")
        parts, closing, total = multipart_layout(ranges, size, version.content_type, boundary)
        pieces: list = []
        for part_head, first, last in parts:
            pieces += [part_head, (first, last - first + 1)]
        pieces.append(closing)
        fields.append((b"Content-Type", b"multipart/byteranges; boundary=" + boundary))
        return Response(206, render_fields(fields), self._body(version, pieces, total))

    @staticmethod
    def _validator_fields(version: FileVersion, directive: bytes | None) -> list[tuple[bytes, bytes]]:
        fields = [(b"ETag", version.etag), (b"Last-Modified", format_http_date(version.mtime))]
        if directive is not None:
            fields.append((b"Cache-Control", directive))
        return fields

    @staticmethod
    def _body(version: FileVersion, pieces: list, length: int) -> bytes | FileRegions:
        data = version.data
        if data is None:
            return FileRegions(version, pieces, length)
        if len(pieces) == 1 and pieces[0] == (0, len(data)):
            return data
        return b"".join(p if isinstance(p, bytes) else data[p[0]:p[0] + p[1]] for p in pieces)
