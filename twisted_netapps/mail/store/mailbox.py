"""The reading side of the Maildir++ store, shared by ``pop3`` and ``imap``.

Storage layer only (no Twisted). :mod:`twisted_netapps.mail.store.maildir` writes
(delivery); this module lists, reads, flags, copies and removes messages:

- A message is a file in ``new/`` (unseen by any reader) or ``cur/``. Its
  *unique name* (the part before ``:2,``) never changes: it is the POP3
  ``UIDL`` (a digest of it when longer than RFC 1939's 70 characters) and
  the key of the IMAP UID map.
- Flags are Maildir info letters persisted by renaming into
  ``cur/<unique>:2,<letters>`` (letters sorted, as Maildir requires):
  ``D`` \\Draft, ``F`` \\Flagged, ``P`` $Forwarded, ``R`` \\Answered,
  ``S`` \\Seen, ``T`` \\Deleted.
- Sizes: ``,W=`` (the CRLF size, Dovecot's convention) wins, then ``,S=``
  (our store writes CRLF-normalised files, so S= is the CRLF size), else the
  file is read and its size computed as it will be sent (bare LF -> CRLF).
- The IMAP UID map (``netapps-uidlist`` in each folder) keeps UIDVALIDITY,
  UIDNEXT and unique-name -> UID, rewritten atomically and durably so a UID is
  never given to two messages, even across a crash.

Another process may rename a message (flag change) between our listing and
our use of it: every operation on a message relocates it by its unique name
when the file moved.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO, Iterable

from twisted_netapps.fileio import fsync_directory, write_atomically
from twisted_netapps.mail.store.maildir import (
    FILE_MODE,
    INBOX,
    MailStore,
    Maildir,
    folder_dirname,
    normalise_crlf,
    parse_name,
    unique_name,
)

# IMAP system flag <-> Maildir info letter.
FLAG_LETTERS = {
    "\\Draft": "D",
    "\\Flagged": "F",
    "$Forwarded": "P",
    "\\Answered": "R",
    "\\Seen": "S",
    "\\Deleted": "T",
}
LETTER_FLAGS = {letter: flag for flag, letter in FLAG_LETTERS.items()}
UIDLIST_FILE = "netapps-uidlist"
SUBSCRIPTIONS_FILE = "subscriptions"
_W_SIZE_RE = re.compile(r",W=(\d+)")
_ORDER_RE = re.compile(r"^(\d+)(?:\.M(\d+))?")


class MailboxError(Exception):
    """A folder operation that cannot be done (exists, missing, INBOX...)."""


def flags_to_letters(flags: Iterable[str]) -> str:
    """Maildir info letters for IMAP *flags* (unknown keywords are dropped)."""
    table = {k.lower(): v for k, v in FLAG_LETTERS.items()}
    return "".join(sorted({table[f.lower()] for f in flags if f.lower() in table}))


def letters_to_flags(letters: str) -> list[str]:
    return [LETTER_FLAGS[c] for c in letters if c in LETTER_FLAGS]


@dataclass(frozen=True)
class MessageFile:
    """One message as last seen on disk."""

    uid: str  # the unique name: stable, the POP3 UIDL
    subdir: str  # "new" or "cur"
    filename: str
    flags: str  # sorted info letters ("" in new/)
    size: int | None  # CRLF size from the name, None when it must be computed

    @property
    def order(self) -> tuple:
        """Delivery order: seconds, microseconds, then the name."""
        match = _ORDER_RE.match(self.uid)
        if match is None:
            return (float("inf"), 0, self.uid)
        return (int(match.group(1)), int(match.group(2) or 0), self.uid)


def _message_from_filename(subdir: str, filename: str) -> MessageFile:
    name = parse_name(filename)
    w = _W_SIZE_RE.search(name.uid)
    size = int(w.group(1)) if w else name.size
    flags = "".join(sorted(set(name.flags))) if subdir == "cur" else ""
    return MessageFile(name.uid, subdir, filename, flags, size)


def crlf_size_of(data: bytes) -> int:
    """Octets *data* takes once every line ends with CRLF (as POP3/IMAP send it)."""
    size = len(data) + data.count(b"\n") - data.count(b"\r\n")
    if data.endswith(b"\r"):
        size += 1  # a final lone CR becomes CRLF
    elif data and not data.endswith(b"\n"):
        size += 2
    return size


class MaildirFolder:
    """Read/flag/remove access to one Maildir (INBOX or a subfolder)."""

    def __init__(self, maildir: Maildir) -> None:
        self.maildir = maildir
        self.path = maildir.path
        self._path_str = str(maildir.path)

    def scan(self) -> list[MessageFile]:
        """All messages in ``new/`` and ``cur/``, in delivery order."""
        found: dict[str, MessageFile] = {}
        for subdir in ("new", "cur"):
            try:
                names = os.listdir(self.path / subdir)
            except FileNotFoundError:
                continue
            for filename in names:
                if filename.startswith("."):
                    continue
                message = _message_from_filename(subdir, filename)
                found.setdefault(message.uid, message)
        return sorted(found.values(), key=lambda m: m.order)

    def file_path(self, message: MessageFile) -> Path:
        return self.path / message.subdir / message.filename

    def relocate(self, message: MessageFile) -> MessageFile | None:
        """Where *message* is now (renamed by someone else), or None if gone."""
        for subdir in ("cur", "new"):
            try:
                names = os.listdir(self.path / subdir)
            except FileNotFoundError:
                continue
            for filename in names:
                if filename == message.uid or filename.startswith(message.uid + ":"):
                    return _message_from_filename(subdir, filename)
        return None

    def open(self, message: MessageFile) -> tuple[BinaryIO, MessageFile]:
        """Open *message* for reading; returns the file and where it was found.

        Raises FileNotFoundError when the message no longer exists.
        """
        try:
            return open(self.file_path(message), "rb"), message
        except FileNotFoundError:
            moved = self.relocate(message)
            if moved is None:
                raise
            return open(self.file_path(moved), "rb"), moved

    def read_small(self, message: MessageFile, limit: int) -> tuple[bytes, MessageFile] | None:
        """The whole file if it has at most *limit* bytes, else None (stream it instead).

        The hot path of POP3 RETR: open, one read, close; no buffered file object.
        Raises FileNotFoundError when the message no longer exists.
        """
        path = f"{self._path_str}/{message.subdir}/{message.filename}"
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            moved = self.relocate(message)
            if moved is None:
                raise
            message = moved
            fd = os.open(f"{self._path_str}/{message.subdir}/{message.filename}", os.O_RDONLY)
        try:
            # A regular file's read() returns short only at end of file, so a
            # message whose size we know (S=) is one read, not read-until-EOF.
            want = message.size + 1 if message.size is not None and message.size < limit else limit + 1
            data = os.read(fd, want)
            if len(data) < want:
                return data, message
            chunks, total = [data], len(data)
            while total <= limit:
                chunk = os.read(fd, limit + 1 - total)
                if not chunk:
                    return b"".join(chunks), message
                chunks.append(chunk)
                total += len(chunk)
            return None
        finally:
            os.close(fd)

    def read(self, message: MessageFile) -> bytes:
        handle, _ = self.open(message)
        with handle:
            return handle.read()

    def size(self, message: MessageFile) -> int:
        if message.size is not None:
            return message.size
        return crlf_size_of(self.read(message))

    def stat_mtime(self, message: MessageFile) -> float:
        """Modification time (the IMAP INTERNALDATE, as Maildir readers use it)."""
        try:
            return os.stat(self.file_path(message)).st_mtime
        except FileNotFoundError:
            moved = self.relocate(message)
            if moved is None:
                raise
            return os.stat(self.file_path(moved)).st_mtime

    def set_flags(self, message: MessageFile, letters: str) -> MessageFile:
        """Move *message* to ``cur/`` with exactly *letters*; returns the new state."""
        letters = "".join(sorted(set(letters)))
        target = replace(message, subdir="cur", filename=f"{message.uid}:2,{letters}", flags=letters)
        if target.subdir == message.subdir and target.filename == message.filename:
            return message
        source = message
        for _ in range(3):
            try:
                os.rename(self.file_path(source), self.file_path(target))
                return target
            except FileNotFoundError:
                moved = self.relocate(source)
                if moved is None:
                    raise
                source = moved
        raise FileNotFoundError(self.file_path(message))

    def remove(self, message: MessageFile) -> bool:
        """Delete *message*; False if it was already gone."""
        source = message
        for _ in range(3):
            try:
                os.unlink(self.file_path(source))
                return True
            except FileNotFoundError:
                moved = self.relocate(source)
                if moved is None:
                    return False
                source = moved
        return False

    def add(self, data: bytes, letters: str = "", mtime: float | None = None) -> MessageFile:
        """Durably store a new message (APPEND): tmp/, fsync, rename to cur/ with flags.

        Blocking (fsync): call from a thread.
        """
        tmp_path, uid = self.maildir.write_tmp(data)
        if mtime is not None:
            os.utime(tmp_path, (mtime, mtime))
        letters = "".join(sorted(set(letters)))
        filename = f"{uid}:2,{letters}"
        os.rename(tmp_path, self.path / "cur" / filename)
        fsync_directory(self.path / "cur")
        size = parse_name(uid).size
        return MessageFile(uid, "cur", filename, letters, size)

    def copy_in(self, source_folder: "MaildirFolder", message: MessageFile, letters: str) -> MessageFile:
        """Copy *message* of *source_folder* here (hard link when possible) under a new unique name.

        Blocking (fsync): call from a thread.
        """
        size = source_folder.size(message)
        uid = unique_name(size)
        letters = "".join(sorted(set(letters)))
        filename = f"{uid}:2,{letters}"
        target = self.path / "cur" / filename
        handle, found = source_folder.open(message)
        with handle:
            try:
                os.link(source_folder.file_path(found), target)
            except OSError:  # EXDEV, EPERM on some filesystems: fall back to a real copy
                data = normalise_crlf(handle.read())
                tmp_path = self.path / "tmp" / uid
                fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view):]
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.rename(tmp_path, target)
        fsync_directory(self.path / "cur")
        return MessageFile(uid, "cur", filename, letters, size)

    def change_marker(self) -> tuple:
        """Cheap "did anything change?" token: the mtimes of ``new/`` and ``cur/``.

        Every delivery, flag rename or removal changes a directory's mtime (ns resolution).
        """
        marks = []
        for subdir in ("new", "cur"):
            try:
                marks.append(os.stat(self.path / subdir).st_mtime_ns)
            except FileNotFoundError:
                marks.append(None)
        return tuple(marks)


_last_validity = 0


class UidMap:
    """The IMAP UID map of one folder: ``netapps-uidlist``.

    Format (text)::

        netapps-uidlist 1 <uidvalidity> <uidnext> [<first recent uid>]
        <uid> <unique name>
        ...

    UIDs are handed out in delivery order and never reused: UIDNEXT only grows,
    and the file is replaced atomically (fsync'd) before a new UID is used.
    If that write fails (a full disk), the map stays as it was on disk and
    :meth:`sync`/:meth:`assign` raise: no UID is ever handed out that a crash
    could give to another message. A missing or unreadable map starts a new
    UIDVALIDITY, so clients resync rather than trust stale UIDs.

    ``first_recent`` (optional, IMAP ``\\Recent``): messages with a UID at or
    above it have not been seen by a read-write session yet; a SELECT claims
    them (RFC 3501 2.3.2) by moving it to UIDNEXT.
    """

    def __init__(self, folder_path: Path) -> None:
        self.path = Path(folder_path) / UIDLIST_FILE
        self.uidvalidity = 0
        self.uidnext = 1
        self.first_recent = 1
        self.uids: dict[str, int] = {}
        self._load()

    def _load(self) -> None:
        try:
            lines = self.path.read_text("utf-8").splitlines()
            header = lines[0].split()
            if len(header) not in (4, 5) or header[0] != "netapps-uidlist" or header[1] != "1":
                raise ValueError("not a uid list")
            validity, nextuid = header[2], header[3]
            first_recent = int(header[4]) if len(header) == 5 else None
            uids = {}
            for line in lines[1:]:
                uid, name = line.split(" ", 1)
                uids[name] = int(uid)
            values = list(uids.values())
            if len(set(values)) != len(values) or any(v < 1 for v in values) or int(validity) < 1:
                raise ValueError("duplicate or invalid UIDs")
            # Never hand out a UID at or below one in use, whatever the header says.
            nextuid = max([int(nextuid), 1, *(v + 1 for v in values)])
            self.uidvalidity, self.uidnext, self.uids = int(validity), nextuid, uids
            # A map without the field predates it: nothing is recent but new/.
            self.first_recent = nextuid if first_recent is None else min(max(first_recent, 1), nextuid)
        except (FileNotFoundError, ValueError, IndexError, UnicodeDecodeError):
            self.uidvalidity = self._new_validity()
            self.uidnext = 1
            self.first_recent = 1
            self.uids = {}

    def _new_validity(self) -> int:
        # Seconds since the epoch, and never the same value twice in this
        # process: a folder deleted and recreated within a second still gets a
        # new UIDVALIDITY (RFC 3501 2.3.1.1).
        global _last_validity
        _last_validity = max(int(time.time()), _last_validity + 1) & 0xFFFFFFFF
        return _last_validity

    def _save(self, uids: dict[str, int], uidnext: int, first_recent: int) -> None:
        body = [f"netapps-uidlist 1 {self.uidvalidity} {uidnext} {first_recent}\n"]
        body.extend(f"{uid} {name}\n" for name, uid in sorted(uids.items(), key=lambda kv: kv[1]))
        write_atomically(self.path, "".join(body).encode("utf-8"), mode=FILE_MODE)

    def sync(self, unique_names: list[str]) -> dict[str, int]:
        """UIDs for *unique_names* (in delivery order), assigning new ones durably.

        Raises OSError, the map unchanged, when it cannot be written.
        """
        present = set(unique_names)
        uids = {name: uid for name, uid in self.uids.items() if name in present}
        uidnext = self.uidnext
        for name in unique_names:
            if name not in uids:
                uids[name] = uidnext
                uidnext += 1
        if len(uids) != len(self.uids) or uidnext != self.uidnext or not self.path.exists():
            self._save(uids, uidnext, self.first_recent)
        self.uids, self.uidnext = uids, uidnext
        return {name: uids[name] for name in unique_names}

    def known(self, unique_names: list[str]) -> dict[str, int]:
        """The UIDs already on disk for those of *unique_names* that have one (no write)."""
        return {name: self.uids[name] for name in unique_names if name in self.uids}

    def assign(self, unique_names: list[str]) -> list[int]:
        """UIDs for messages just added (APPEND, COPY), durably, in the given order.

        Raises OSError, the map unchanged, when it cannot be written.
        """
        uids = dict(self.uids)
        uidnext = self.uidnext
        for name in unique_names:
            if name not in uids:
                uids[name] = uidnext
                uidnext += 1
        if uidnext != self.uidnext:
            self._save(uids, uidnext, self.first_recent)
        self.uids, self.uidnext = uids, uidnext
        return [uids[name] for name in unique_names]

    def claim_recent(self, upto: int) -> int:
        """Mark the UIDs up to *upto* as seen by a session; returns the old first recent UID.

        \\Recent is advisory: a failed write (full disk) keeps the claim in memory only.
        """
        old = self.first_recent
        if upto >= old:
            self.first_recent = min(upto + 1, self.uidnext)
            try:
                self._save(self.uids, self.uidnext, self.first_recent)
            except OSError:
                pass
        return old


class UserMailboxes:
    """One account's folders: the IMAP folder namespace over Maildir++.

    Folder names use '.' as the hierarchy delimiter (as Maildir++ stores them);
    "INBOX" is case-insensitive and is the Maildir root.
    """

    def __init__(self, store: MailStore, user: str) -> None:
        self.store = store
        self.user = user
        self.root = store.user_root(user)
        store.maildir(user)  # the INBOX always exists

    def canonical(self, name: str) -> str:
        return INBOX if name.upper() == INBOX else name.replace("/", ".")

    def exists(self, name: str) -> bool:
        dirname = folder_dirname(self.canonical(name))
        return Maildir(self.root / dirname if dirname else self.root).exists()

    def folder(self, name: str) -> MaildirFolder:
        name = self.canonical(name)
        if not self.exists(name):
            raise MailboxError(f"no such folder {name!r}")
        return MaildirFolder(self.store.maildir(self.user, name, create=False))

    def names(self) -> list[str]:
        return self.store.folders(self.user)

    def create(self, name: str) -> None:
        name = self.canonical(name).rstrip(".")
        if self.exists(name):
            raise MailboxError(f"folder {name!r} already exists")
        self._make(name)

    def _make(self, name: str) -> Maildir:
        """Create folder *name* on disk. Not via MailStore.maildir(): it remembers
        what it created, and a folder deleted here must be creatable again."""
        dirname = folder_dirname(name)
        box = Maildir(self.root / dirname) if dirname else Maildir(self.root)
        box.create()
        if dirname:
            marker = box.path / "maildirfolder"  # Maildir++ marks subfolders so
            if not marker.exists():
                os.close(os.open(marker, os.O_WRONLY | os.O_CREAT, FILE_MODE))
        return box

    def has_children(self, name: str) -> bool:
        prefix = self.canonical(name) + "."
        return any(n.startswith(prefix) for n in self.names())

    def delete(self, name: str) -> None:
        name = self.canonical(name)
        if name == INBOX:
            raise MailboxError("INBOX cannot be deleted")
        if not self.exists(name):
            raise MailboxError(f"no such folder {name!r}")
        if self.has_children(name):
            raise MailboxError(f"folder {name!r} has subfolders")
        shutil.rmtree(self.root / folder_dirname(name))
        self.unsubscribe(name)

    def rename(self, old: str, new: str) -> None:
        old, new = self.canonical(old), self.canonical(new).rstrip(".")
        if not self.exists(old):
            raise MailboxError(f"no such folder {old!r}")
        if self.exists(new) or new == INBOX:
            raise MailboxError(f"folder {new!r} already exists")
        if new.startswith(old + ".") :
            raise MailboxError("cannot rename a folder into itself")
        if old == INBOX:
            # RFC 3501: renaming INBOX moves its messages to the new folder, INBOX stays.
            target = self._make(new)
            for message in MaildirFolder(self.store.maildir(self.user)).scan():
                os.rename(self.root / message.subdir / message.filename, target.path / message.subdir / message.filename)
            return
        new_dir = folder_dirname(new)  # validates the name
        old_dir = folder_dirname(old)
        children = [n for n in self.names() if n.startswith(old + ".")]
        os.rename(self.root / old_dir, self.root / new_dir)
        for child in children:
            os.rename(self.root / folder_dirname(child), self.root / folder_dirname(new + child[len(old):]))
        # The UID map moves with the folder: UIDs stay valid under the new name.
        subscribed = self.subscriptions()
        if old in subscribed:
            self.unsubscribe(old)
            self.subscribe(new)

    def subscriptions(self) -> list[str]:
        try:
            text = (self.root / SUBSCRIPTIONS_FILE).read_text("utf-8")
        except FileNotFoundError:
            return []
        return [line for line in text.splitlines() if line]

    def _write_subscriptions(self, names: list[str]) -> None:
        write_atomically(self.root / SUBSCRIPTIONS_FILE, "".join(f"{n}\n" for n in names).encode("utf-8"))

    def subscribe(self, name: str) -> None:
        name = self.canonical(name)
        names = self.subscriptions()
        if name not in names:
            self._write_subscriptions(names + [name])

    def unsubscribe(self, name: str) -> None:
        name = self.canonical(name)
        names = self.subscriptions()
        if name in names:
            self._write_subscriptions([n for n in names if n != name])
