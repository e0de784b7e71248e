"""URL paths -> names under the document root, with every traversal refused.

:func:`url_to_names` is pure: it decodes a request path into file-name
segments and refuses ``..`` (also as ``%2e%2e``, ``.%2E`` ...), encoded
slashes, NUL bytes and hidden names (a segment starting with ``.``: the
upload temp files, ``.htaccess``-style files). :func:`inside` and
:func:`opened_path` are the symlink half: the file layer opens first and then
checks where the opened descriptor really is, so a symlink pointing out of
the root is refused without a check-then-use race.
"""

from __future__ import annotations

import os
from urllib.parse import unquote_to_bytes

from twisted_netapps.web.errors import StatusError


class PathRefused(StatusError):
    """The path names nothing we serve; *status* is 400 (malformed) or 404."""


def url_to_names(path: bytes) -> tuple[list[str], bool]:
    """(names, trailing slash) for a percent-encoded absolute path.

    Empty and ``.`` segments are dropped (``//a/./b`` is ``/a/b``); every
    other segment is a file name, decoded from UTF-8 (undecodable bytes kept
    as surrogate escapes, as ``os.fsdecode`` does).
    """
    if not path.startswith(b"/"):
        raise PathRefused(400, "path does not start with /")
    names: list[str] = []
    for raw in path.split(b"/"):
        if not raw:
            continue
        segment = unquote_to_bytes(raw) if b"%" in raw else raw
        if b"\x00" in segment:
            raise PathRefused(400, "NUL byte in the path")
        if b"/" in segment or b"\\" in segment:
            raise PathRefused(400, "encoded slash in the path")
        if segment == b".":
            continue
        if segment == b"..":
            raise PathRefused(400, "'..' in the path")
        if segment.startswith(b"."):
            raise PathRefused(404, "hidden name")
        names.append(os.fsdecode(segment))
    return names, path.endswith(b"/")


def join_under(root: str, names: list[str]) -> str:
    """The file system path of *names* under *root* (no checks: see url_to_names)."""
    return os.path.join(root, *names) if names else root


def inside(root_real: str, real: str) -> bool:
    """Whether the resolved path *real* is *root_real* or below it."""
    return real == root_real or real.startswith(root_real.rstrip("/") + "/")


def opened_path(fd: int) -> str:
    """Where an open descriptor really is (symlinks resolved), via /proc."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:  # no /proc: refuse rather than serve what we cannot place
        raise PathRefused(404, "cannot tell where the file is") from None


def url_path(names: list[str], directory: bool = False) -> str:
    """The absolute URL path for *names* (not percent-encoded)."""
    path = "/" + "/".join(names)
    if directory and names:
        path += "/"
    return path
