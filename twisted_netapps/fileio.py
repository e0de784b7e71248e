"""Durable file writes: temp file, fsync, rename, fsync the directory.

Anything a protocol has acknowledged goes through here (or follows the same
steps), so it survives ``kill -9`` and power loss: a reader sees either the old
file or the complete new one, never a torn write.
"""

from __future__ import annotations

import os
from pathlib import Path


def fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(path: Path, data: bytes, *, mode: int = 0o600, exclusive: bool = False, fsync: bool = True) -> None:
    """Create *path* holding all of *data*, fsync'd unless *fsync* is False.

    *exclusive* refuses to overwrite (O_EXCL). On any failure the partial file
    is removed, so a crash-free error never leaves a torn file behind.
    """
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(path, flags, mode)
    try:
        view = memoryview(data)
        while view:  # os.write may write less than asked
            view = view[os.write(fd, view):]
        if fsync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        Path(path).unlink(missing_ok=True)
        raise
    os.close(fd)


def write_atomically(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace *path* with *data* atomically and durably, created with *mode*."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write_file(tmp, data, mode=mode)
    os.replace(tmp, path)
    fsync_directory(path.parent)


def ensure_private_dir(path: Path) -> Path:
    """Create *path* (and parents) with mode 0700 if missing; return it."""
    path = Path(path)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def hand_over(data_dir: Path) -> None:
    """Give what start-up created in *data_dir* as root to the data directory's owner.

    Under ``twistd -u/-g`` the data directory is handed to that user before
    the services are built, but they are built as root: whatever they create
    (a seeded web site, a queue directory, a TLS key) would stay root's, and
    after the privilege drop the daemon could not write there. Runs once, at
    start-up, only as root and only when the data directory is someone else's.
    """
    if os.geteuid() != 0:
        return
    owner = os.stat(data_dir)
    if owner.st_uid == 0 and owner.st_gid == 0:
        return
    for directory, dirs, files in os.walk(data_dir):
        for name in [directory, *(os.path.join(directory, n) for n in dirs + files)]:
            st = os.lstat(name)
            if st.st_uid == 0 or st.st_gid == 0:
                os.lchown(name, owner.st_uid, owner.st_gid)
