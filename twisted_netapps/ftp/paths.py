"""Virtual paths: what a client names, normalised inside its own ``/``.

Pure string work, no file system: a client path is joined to the current
directory and ``.``/``..`` are applied with ``..`` stopping at ``/``, so the
result is always an absolute virtual path with no ``..`` in it. Mapping it to
the disk (where symlinks are resolved and checked) is the storage layer's
job, :mod:`twisted_netapps.ftp.filesystem`.
"""

from __future__ import annotations


def normalize(cwd: str, arg: str) -> str:
    """The absolute virtual path *arg* names when the current directory is *cwd*.

    >>> normalize("/pub", "../../etc/passwd")
    '/etc/passwd'
    """
    joined = arg if arg.startswith("/") else f"{cwd}/{arg}"
    parts: list[str] = []
    for part in joined.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return "/" + "/".join(parts)


def parent(path: str) -> str:
    """The directory holding virtual *path* (``/`` for ``/``)."""
    head = path.rsplit("/", 1)[0]
    return head or "/"


def basename(path: str) -> str:
    return path.rsplit("/", 1)[1]

