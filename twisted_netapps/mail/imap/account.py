"""IMAP accounts over Maildir++: the folder namespace and the realm.

Folder names reach us as ``str`` (the command layer decodes modified UTF-7,
or UTF-8 after ``ENABLE UTF8=ACCEPT``); on disk they are kept in modified
UTF-7, as Dovecot and Courier keep them, so the directories stay ASCII. The
hierarchy delimiter is ``.`` (Maildir++'s). Top-level ``Sent``, ``Trash``,
``Drafts`` and ``Junk`` carry their RFC 6154 special-use attribute.

The methods that touch the disk (create, delete, rename, subscriptions,
listing, looking a folder up) block: the session runs them in the thread pool.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from twisted.cred.portal import IRealm
from zope.interface import Interface, implementer

from twisted_netapps.mail.imap import mutf7
from twisted_netapps.mail.imap.mailbox import DELIMITER, FolderRegistry
from twisted_netapps.mail.store.mailbox import MailboxError, MaildirFolder, UserMailboxes
from twisted_netapps.mail.store.maildir import INBOX, MailStore, MailStoreError, folder_dirname

MAX_FOLDER_NAME = 255
SPECIAL_USE = {"sent": "\\Sent", "trash": "\\Trash", "drafts": "\\Drafts", "junk": "\\Junk"}


class FolderError(Exception):
    """A folder operation refused (answered NO, with *code* such as b"TRYCREATE" if given)."""

    def __init__(self, message: str, code: bytes | None = None) -> None:
        super().__init__(message)
        self.code = code


class IImapAccount(Interface):
    """The avatar the IMAP realm hands out: one user's folders."""


@dataclass(frozen=True)
class ListedFolder:
    name: str  # as the client sees it (Unicode)
    disk: str  # as stored (modified UTF-7)
    attributes: tuple[str, ...]


def to_disk(name: str) -> str:
    """Unicode folder name -> the stored (modified UTF-7) form."""
    if name.upper() == INBOX:
        return INBOX
    encoded = mutf7.encode(name).decode("ascii")
    if len(encoded) > MAX_FOLDER_NAME:
        raise FolderError("folder name too long")
    return encoded


def from_disk(name: str) -> str:
    try:
        return mutf7.decode(name.encode("ascii"))
    except (UnicodeError, ValueError):  # made by hand on disk: show it as it is
        return name


def pattern_regex(pattern: str, flags: int = 0) -> re.Pattern:
    """IMAP LIST wildcard: ``*`` matches anything, ``%`` anything but the delimiter."""
    out = []
    for ch in pattern:
        if ch == "*":
            out.append(".*")
        elif ch == "%":
            out.append(f"[^{re.escape(DELIMITER)}]*")
        else:
            out.append(re.escape(ch))
    return re.compile("^" + "".join(out) + "$", flags | re.DOTALL)


@implementer(IImapAccount)
class MaildirAccount:
    def __init__(self, user: str, store: MailStore, registry: FolderRegistry) -> None:
        self.user = user
        self.boxes = UserMailboxes(store, user)
        self.registry = registry

    def disk_name(self, name: str) -> str:
        name = name.rstrip(DELIMITER) if name.upper() != INBOX else INBOX
        if not name:
            raise FolderError("empty folder name")
        disk = to_disk(name)
        try:
            folder_dirname(disk)  # rejects empty levels, "..", "/", control characters
        except MailStoreError as e:
            raise FolderError(str(e)) from None
        return disk

    # ------------------------------------------------------------ blocking: run these in the pool

    def folder(self, name: str) -> tuple[str, MaildirFolder] | None:
        """(disk name, folder) of an existing folder, else None."""
        try:
            disk = self.disk_name(name)
            if not self.boxes.exists(disk):
                return None
            return disk, self.boxes.folder(disk)
        except (MailStoreError, MailboxError, FolderError):
            return None

    def create(self, name: str) -> None:
        disk = self.disk_name(name)
        if disk == INBOX or self.boxes.exists(disk):
            raise FolderError("folder already exists", b"ALREADYEXISTS")
        try:
            levels = disk.split(DELIMITER)
            for i in range(1, len(levels) + 1):  # parents too, so the hierarchy lists
                parent = DELIMITER.join(levels[:i])
                if not self.boxes.exists(parent):
                    self.boxes.create(parent)
        except (MailStoreError, MailboxError) as e:
            raise FolderError(str(e)) from None

    def delete(self, name: str) -> MaildirFolder:
        disk = self.disk_name(name)
        try:
            folder = self.boxes.folder(disk)
            self.boxes.delete(disk)
        except (MailStoreError, MailboxError) as e:
            raise FolderError(str(e), b"NONEXISTENT" if not self.boxes.exists(disk) else None) from None
        return folder

    def rename(self, old_name: str, new_name: str) -> list[MaildirFolder]:
        """Rename (with subfolders); returns the folders whose state is now stale."""
        old, new = self.disk_name(old_name), self.disk_name(new_name)
        try:
            affected = [n for n in self.boxes.names() if n == old or n.startswith(old + DELIMITER)]
            folders = [self.boxes.folder(n) for n in affected]
            self.boxes.rename(old, new)
        except (MailStoreError, MailboxError, OSError) as e:
            raise FolderError(str(e)) from None
        return folders

    def subscribe(self, name: str, on: bool) -> None:
        disk = self.disk_name(name)
        if on:
            if not self.boxes.exists(disk):
                raise FolderError("no such folder", b"NONEXISTENT")
            self.boxes.subscribe(disk)
        else:
            if disk not in self.boxes.subscriptions():
                raise FolderError("not subscribed")
            self.boxes.unsubscribe(disk)

    def list(self, reference: str, patterns: tuple[str, ...], *, subscribed_only: bool = False,
             special_use_only: bool = False, with_subscribed: bool = False) -> list[ListedFolder]:
        """Folders matching any of *patterns* (after *reference*), with their LIST attributes."""
        names = self.boxes.names()
        subscribed = set(self.boxes.subscriptions()) if (subscribed_only or with_subscribed) else set()
        matchers = []
        for pattern in patterns:
            full = reference + pattern
            # INBOX is case-insensitive; every other name matches as stored.
            matchers.append((pattern_regex(to_disk(full)), pattern_regex(full, re.IGNORECASE)))
        result = []
        for disk in names:
            hit = any((inbox if disk == INBOX else stored).match(disk) for stored, inbox in matchers)
            if not hit or (subscribed_only and disk not in subscribed):
                continue
            special = SPECIAL_USE.get(disk.lower()) if DELIMITER not in disk else None
            if special_use_only and special is None:
                continue
            has_children = any(n.startswith(disk + DELIMITER) for n in names if n != INBOX)
            attributes = ["\\HasChildren" if has_children else "\\HasNoChildren"]
            if special:
                attributes.append(special)
            if disk in subscribed and (with_subscribed or subscribed_only):
                attributes.append("\\Subscribed")
            result.append(ListedFolder(from_disk(disk), disk, tuple(attributes)))
        return result

    def subscriptions(self) -> set[str]:
        return set(self.boxes.subscriptions())


@implementer(IRealm)
class ImapRealm:
    def __init__(self, store: MailStore, registry: FolderRegistry) -> None:
        self.store = store
        self.registry = registry

    def requestAvatar(self, avatarId, mind, *interfaces):
        if IImapAccount not in interfaces:
            raise NotImplementedError("the IMAP realm serves IImapAccount only")
        user = avatarId.decode("utf-8") if isinstance(avatarId, bytes) else avatarId
        return IImapAccount, MaildirAccount(user, self.store, self.registry), lambda: None
