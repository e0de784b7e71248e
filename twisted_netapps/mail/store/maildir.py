"""The mail store: one Maildir++ per account, durable atomic delivery.

Layout (shared by ``smtp``, ``pop3`` and ``imap``)::

    <data_dir>/mail/                 MailStore root (0700)
    <data_dir>/mail/<user>/          the account's INBOX: tmp/ new/ cur/
    <data_dir>/mail/<user>/.Sent/    a subfolder (Maildir++: ".<name>", "." separates levels,
    <data_dir>/mail/<user>/.A.B/     so IMAP "A/B" or "A.B" is ".A.B")

Directories are 0700, message files 0600. Delivery follows the Maildir
protocol made durable: write ``tmp/<unique>`` (line endings normalised to
CRLF), fsync the file, rename into ``new/``, fsync ``new/``. A reader never
sees a partial message, and a message whose delivery returned survives
``kill -9`` and power loss.

Unique names are the standard ``<sec>.M<usec>P<pid>Q<n>R<rand>.<host>,S=<size>``;
``S=`` is the size of the stored (CRLF) message, which is what POP3 ``LIST``
reports and ``RETR`` sends. Readers that move a message to ``cur/`` append
``:2,<flags>``; :func:`parse_name` splits such a name.

No Twisted here: these calls block (fsync) and run in a thread; see
:mod:`twisted_netapps.mail.store.commit` for doing it off the reactor in batches.
"""

from __future__ import annotations

import itertools
import os
import re
import secrets
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from twisted_netapps.accounts import USERNAME_RE
from twisted_netapps.fileio import fsync_directory, write_file

INBOX = "INBOX"
SUBDIRS = ("tmp", "new", "cur")
DIR_MODE = 0o700
FILE_MODE = 0o600
# Maildir++ folder names: each level non-empty, no '/', no leading '.', no controls.
_FOLDER_LEVEL_RE = re.compile(r"^[^/\x00-\x1f\x7f.][^/\x00-\x1f\x7f]*$")
_SIZE_RE = re.compile(r",S=(\d+)")
_LONE_LF_RE = re.compile(rb"(?<!\r)\n")
_LONE_CR_RE = re.compile(rb"\r(?!\n)")

_counter = itertools.count(1)


class MailStoreError(ValueError):
    """A bad user or folder name (never a path outside the store)."""


def normalise_crlf(message: bytes) -> bytes:
    """Every line ending CRLF: lone LF and lone CR become CRLF; a last line gets one."""
    if b"\r" in message:
        message = _LONE_CR_RE.sub(b"\r\n", message)
    message = _LONE_LF_RE.sub(b"\r\n", message)
    if message and not message.endswith(b"\r\n"):
        message += b"\r\n"
    return message


def _hostname() -> str:
    # Maildir: '/' and ':' in the host part are written as \057 and \072.
    return socket.gethostname().replace("/", r"\057").replace(":", r"\072") or "localhost"


_HOST = _hostname()


def unique_name(size: int, now: float | None = None) -> str:
    """A new Maildir unique name carrying the message's stored size."""
    if now is None:
        now = time.time()
    seconds = int(now)
    usec = int((now - seconds) * 1_000_000)
    return (
        f"{seconds}.M{usec}P{os.getpid()}Q{next(_counter)}R{secrets.token_hex(8)}"
        f".{_HOST},S={size}"
    )


@dataclass(frozen=True)
class MessageName:
    """A Maildir file name split up: ``uid`` is the part before ``:2,`` (stable across moves)."""

    uid: str
    size: int | None
    flags: str  # the letters after ":2," ("" for new/ messages)


def parse_name(filename: str) -> MessageName:
    uid, _, info = filename.partition(":")
    flags = info[2:] if info.startswith("2,") else ""
    match = _SIZE_RE.search(uid)
    return MessageName(uid, int(match.group(1)) if match else None, flags)


def check_user(user: str) -> str:
    if not USERNAME_RE.match(user):
        raise MailStoreError(f"invalid mailbox user name {user!r}")
    return user


def folder_dirname(folder: str) -> str:
    """The directory name of *folder* under the user's root ('' for INBOX).

    Hierarchy levels may be given with '/' or '.'; both map to Maildir++'s '.'.
    """
    if folder.upper() == INBOX:
        return ""
    levels = folder.replace("/", ".").split(".")
    for level in levels:
        if not _FOLDER_LEVEL_RE.match(level):
            raise MailStoreError(f"invalid folder name {folder!r}")
    return "." + ".".join(levels)


class Maildir:
    """One Maildir (an INBOX or a Maildir++ subfolder)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.tmp = self.path / "tmp"
        self.new = self.path / "new"
        self.cur = self.path / "cur"

    def create(self) -> "Maildir":
        self.path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        for sub in (self.tmp, self.new, self.cur):
            sub.mkdir(mode=DIR_MODE, exist_ok=True)
        return self

    def exists(self) -> bool:
        return self.new.is_dir() and self.cur.is_dir() and self.tmp.is_dir()

    def write_tmp(self, message: bytes, *, fsync: bool = True) -> tuple[Path, str]:
        """Write *message* (CRLF-normalised) to ``tmp/``; return (tmp path, unique name).

        Nothing is visible to readers until :meth:`publish`.
        """
        data = normalise_crlf(message)
        name = unique_name(len(data))
        path = self.tmp / name
        write_file(path, data, mode=FILE_MODE, exclusive=True, fsync=fsync)
        return path, name

    def publish(self, tmp_path: Path, name: str, *, fsync_dir: bool = True) -> str:
        """Rename a written tmp file into ``new/`` (then fsync ``new/``)."""
        os.rename(tmp_path, self.new / name)
        if fsync_dir:
            fsync_directory(self.new)
        return name

    def deliver(self, message: bytes) -> str:
        """Durably deliver *message* into ``new/``; return its unique name (blocking)."""
        tmp_path, name = self.write_tmp(message)
        return self.publish(tmp_path, name)

    def clean_tmp(self, older_than: float = 36 * 3600) -> int:
        """Remove stale ``tmp/`` files (crashed deliveries), as Maildir asks; return how many."""
        removed = 0
        limit = time.time() - older_than
        for entry in os.scandir(self.tmp):
            try:
                if entry.stat().st_mtime < limit:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                continue
        return removed


class MailStore:
    """All accounts' Maildirs under one root (``<data_dir>/mail``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._created: set[Path] = set()  # Maildirs known to exist: no mkdir calls per delivery


    def user_root(self, user: str) -> Path:
        return self.root / check_user(user)

    def maildir(self, user: str, folder: str = INBOX, *, create: bool = True) -> Maildir:
        """The Maildir of *user*'s *folder*, created (0700, with INBOX) unless *create* is False."""
        base = self.user_root(user)
        dirname = folder_dirname(folder)
        box = Maildir(base / dirname) if dirname else Maildir(base)
        if create and box.path not in self._created:
            self.root.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            if box.path != base:
                Maildir(base).create()
            box.create()
            if box.path != base:
                # Maildir++ marks subfolders with an empty "maildirfolder" file.
                marker = box.path / "maildirfolder"
                if not marker.exists():
                    os.close(os.open(marker, os.O_WRONLY | os.O_CREAT, FILE_MODE))
            self._created.add(box.path)
        return box

    def folders(self, user: str) -> list[str]:
        """Folder names of *user* ("INBOX" first, then subfolders with '.' separators)."""
        base = self.user_root(user)
        names = [INBOX]
        try:
            entries = sorted(os.scandir(base), key=lambda e: e.name)
        except FileNotFoundError:
            return names
        for entry in entries:
            if entry.name.startswith(".") and entry.name not in (".", "..") and entry.is_dir():
                if Maildir(Path(entry.path)).exists():
                    names.append(entry.name[1:])
        return names

    def deliver(self, user: str, message: bytes, folder: str = INBOX) -> str:
        """Durably deliver *message* to *user*'s *folder*; return the unique name (blocking)."""
        box = self.maildir(user, folder)
        try:
            return box.deliver(message)
        except FileNotFoundError:  # removed behind our back since we created it
            self.forget(box)
            return self.maildir(user, folder).deliver(message)

    def clean_stale_tmp(self, older_than: float = 36 * 3600) -> int:
        """Remove crashed deliveries' leftovers from every folder's ``tmp/`` (blocking).

        Nothing there was ever acknowledged: a delivery is answered only after
        its rename into ``new/``.
        """
        removed = 0
        try:
            users = [e.name for e in os.scandir(self.root) if e.is_dir() and not e.name.startswith(".")]
        except FileNotFoundError:
            return 0
        for user in users:
            for folder in self.folders(user):
                box = self.maildir(user, folder, create=False)
                if box.exists():
                    removed += box.clean_tmp(older_than)
        return removed

    def mailbox_counts(self) -> list[dict]:
        """Every account's folders with their message counts (blocking; for the status page)."""
        rows = []
        try:
            users = sorted(e.name for e in os.scandir(self.root) if e.is_dir() and not e.name.startswith("."))
        except FileNotFoundError:
            return rows
        for user in users:
            for folder in self.folders(user):
                box = self.maildir(user, folder, create=False)
                counts = {}
                for sub in ("new", "cur"):
                    try:
                        counts[sub] = sum(1 for _ in os.scandir(box.path / sub))
                    except FileNotFoundError:
                        counts[sub] = 0
                rows.append({"account": user, "folder": folder, "new": counts["new"], "seen_or_read": counts["cur"]})
        return rows

    def forget(self, box: Maildir) -> None:
        """Drop *box* from the created-directories cache (it will be re-created)."""
        self._created.discard(box.path)
