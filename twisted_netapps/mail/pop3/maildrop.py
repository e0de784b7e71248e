"""A POP3 user's maildrop: the realm's avatar, the mailbox lock, and the blocking disk work.

Everything here that touches the disk (:func:`open_maildrop`,
:func:`read_top`, :func:`open_message`, :func:`apply_update`) is blocking and
runs in the disk pool (``context.pools.disk``), never on the reactor thread.
"""

from __future__ import annotations

import errno
import fcntl
import os
from typing import BinaryIO

from twisted.cred.portal import IRealm
from zope.interface import Interface, implementer

from twisted_netapps.fileio import fsync_directory
from twisted_netapps.mail.pop3.core import Pop3Message, uidl_for
from twisted_netapps.mail.pop3.multiline import encode_message, top_of_message
from twisted_netapps.mail.store.mailbox import MaildirFolder, MessageFile
from twisted_netapps.mail.store.maildir import MailStore

LOCK_FILE = "netapps-pop3.lock"


class IPop3Maildrop(Interface):
    """Avatar interface: a user's INBOX for one POP3 session."""


@implementer(IPop3Maildrop)
class Maildrop:
    """Who logged in and where their mail is; opened (in the disk pool) by :func:`open_maildrop`."""

    def __init__(self, user: str, store: MailStore) -> None:
        self.user = user
        self.store = store


@implementer(IRealm)
class Pop3Realm:
    def __init__(self, store: MailStore) -> None:
        self.store = store

    def requestAvatar(self, avatarId, mind, *interfaces_):
        if IPop3Maildrop not in interfaces_:
            raise NotImplementedError("POP3 realm serves IPop3Maildrop only")
        user = avatarId.decode("utf-8") if isinstance(avatarId, bytes) else avatarId
        return IPop3Maildrop, Maildrop(user, self.store), lambda: None


class MailboxInUse(Exception):
    """Another POP3 session (here or in another process) holds the mailbox lock."""


class MailboxLock:
    """Exclusive per-mailbox lock (flock on a file in the Maildir): one POP3 session at a time,
    across processes too. Released on close or when the process dies."""

    def __init__(self, folder: MaildirFolder) -> None:
        self.path = folder.path / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return False
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None


def open_maildrop(maildrop: Maildrop) -> tuple[MaildirFolder, MailboxLock, list[Pop3Message]]:
    """Blocking: create the INBOX if new, take its lock, list its messages (with sizes).

    Raises :class:`MailboxInUse`, or OSError when the mailbox cannot be read
    (the lock is released again then).
    """
    folder = MaildirFolder(maildrop.store.maildir(maildrop.user))
    lock = MailboxLock(folder)
    if not lock.acquire():
        raise MailboxInUse(maildrop.user)
    try:
        files = folder.scan()
        messages = [Pop3Message(i, uidl_for(m.uid), folder.size(m), m) for i, m in enumerate(files, 1)]
    except OSError:
        lock.release()
        raise
    return folder, lock, messages


def open_message(folder: MaildirFolder, ref: MessageFile) -> tuple[BinaryIO, MessageFile]:
    """Blocking: an open file for streaming a big message (FileNotFoundError if gone)."""
    return folder.open(ref)


def read_top(folder: MaildirFolder, ref: MessageFile, body_lines: int) -> tuple[bytes, MessageFile]:
    """Blocking: the ``TOP`` body (headers and *body_lines* lines, encoded) and where the file was."""
    handle, found = folder.open(ref)
    with handle:
        return encode_message(top_of_message(handle, body_lines)), found


def apply_update(folder: MaildirFolder, deleted: list, retrieved: list) -> int:
    """UPDATE phase (blocking): remove *deleted*, flag *retrieved* seen.

    Returns how many deletions failed. Directories are fsync'd so a
    removal the client was told about stays removed.
    """
    failures = 0
    for message in deleted:
        try:
            folder.remove(message.ref)
        except OSError:
            failures += 1
    if retrieved:
        current = {m.uid: m for m in folder.scan()}  # one listing, not one per message
        for message in retrieved:
            found = current.get(message.uid)
            if found is None or "S" in found.flags:
                continue
            try:
                folder.set_flags(found, found.flags + "S")
            except OSError:
                pass  # the \Seen flag is a courtesy; a vanished message is fine
    if deleted or retrieved:
        for subdir in ("new", "cur"):
            fsync_directory(folder.path / subdir)
    return failures
