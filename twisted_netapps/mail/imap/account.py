"""IMAP accounts over Maildir++: the folder namespace (Twisted's ``IAccount``) and the realm.

Folder names reach us as Unicode (Twisted decodes modified UTF-7); on disk
they are kept in modified UTF-7, as Dovecot and Courier keep them, so the
directories stay ASCII. The hierarchy delimiter is ``.`` (Maildir++'s).
"""

from __future__ import annotations

import re

from twisted.cred.portal import IRealm
from twisted.mail import imap4
from zope.interface import implementer

from twisted_netapps.mail.imap.mailbox import DELIMITER, FolderRegistry, MailboxView
from twisted_netapps.mail.store.mailbox import MailboxError, MaildirFolder, UserMailboxes
from twisted_netapps.mail.store.maildir import INBOX, MailStore, MailStoreError, folder_dirname

MAX_FOLDER_NAME = 255


def to_disk(name: str) -> str:
    """Unicode folder name -> the stored (modified UTF-7) form."""
    if name.upper() == INBOX:
        return INBOX
    encoded = name.encode("imap4-utf-7").decode("ascii")
    if len(encoded) > MAX_FOLDER_NAME:
        raise imap4.MailboxException("folder name too long")
    return encoded


def from_disk(name: str) -> str:
    return name.encode("ascii").decode("imap4-utf-7")


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
    return re.compile("^" + "".join(out) + "$", flags)


class FolderInfo:
    """What LIST says about one folder (Twisted calls ``getFlags``/``getHierarchicalDelimiter``)."""

    def __init__(self, flags: list[str]) -> None:
        self._flags = flags

    def getFlags(self):
        return self._flags

    def getHierarchicalDelimiter(self):
        return DELIMITER


@implementer(imap4.IAccount, imap4.INamespacePresenter)
class MaildirAccount:
    def __init__(self, user: str, store: MailStore, registry: FolderRegistry) -> None:
        self.user = user
        self.boxes = UserMailboxes(store, user)
        self.registry = registry

    def _disk(self, name) -> str:
        if isinstance(name, bytes):
            name = name.decode("imap4-utf-7")
        name = name.rstrip(DELIMITER) if name.upper() != INBOX else INBOX
        if not name:
            raise imap4.MailboxException("empty folder name")
        disk = to_disk(name)
        try:
            folder_dirname(disk)  # rejects empty levels, "..", "/", control characters
        except MailStoreError as e:
            raise imap4.MailboxException(str(e)) from None
        return disk

    # ------------------------------------------------------------ folders

    def addMailbox(self, name, mbox=None):
        raise imap4.MailboxException("use CREATE")

    def create(self, pathspec):
        name = self._disk(pathspec)
        if name == INBOX or self.boxes.exists(name):
            raise imap4.MailboxCollision(pathspec)
        try:
            levels = name.split(DELIMITER)
            for i in range(1, len(levels) + 1):  # parents too, so the hierarchy lists
                parent = DELIMITER.join(levels[:i])
                if not self.boxes.exists(parent):
                    self.boxes.create(parent)
        except (MailStoreError, MailboxError) as e:
            raise imap4.MailboxException(str(e)) from None
        return True

    def open_view(self, name, writable: bool, claim_recent: bool = True) -> MailboxView | None:
        try:
            disk = self._disk(name)
            if not self.boxes.exists(disk):
                return None
            folder: MaildirFolder = self.boxes.folder(disk)
        except (MailStoreError, MailboxError, imap4.MailboxException):
            return None
        state = self.registry.state(disk, folder)
        return MailboxView(state, writable, claim_recent=claim_recent)

    def select(self, name, rw=True):
        return self.open_view(name, bool(rw), claim_recent=bool(rw))

    def delete(self, name):
        disk = self._disk(name)
        try:
            folder = self.boxes.folder(disk)
            self.boxes.delete(disk)
        except (MailStoreError, MailboxError) as e:
            raise imap4.MailboxException(str(e)) from None
        self.registry.forget(folder)
        return True

    def rename(self, oldname, newname):
        old, new = self._disk(oldname), self._disk(newname)
        try:
            affected = [n for n in self.boxes.names() if n == old or n.startswith(old + DELIMITER)]
            folders = [self.boxes.folder(n) for n in affected]
            self.boxes.rename(old, new)
        except (MailStoreError, MailboxError, OSError) as e:
            raise imap4.MailboxException(str(e)) from None
        for folder in folders:
            self.registry.forget(folder)
        return True

    def isSubscribed(self, name):
        return self._disk(name) in self.boxes.subscriptions()

    def subscribe(self, name):
        disk = self._disk(name)
        if not self.boxes.exists(disk):
            raise imap4.MailboxException("no such folder")
        self.boxes.subscribe(disk)
        return True

    def unsubscribe(self, name):
        disk = self._disk(name)
        if disk not in self.boxes.subscriptions():
            raise imap4.MailboxException("not subscribed")
        self.boxes.unsubscribe(disk)
        return True

    def listMailboxes(self, ref, wildcard):
        ref = ref.decode("imap4-utf-7") if isinstance(ref, bytes) else ref
        wildcard = wildcard.decode("imap4-utf-7") if isinstance(wildcard, bytes) else wildcard
        if not wildcard:
            # LIST "" "": the hierarchy delimiter and root (RFC 3501 6.3.8).
            return [("", FolderInfo(["\\Noselect"]))]
        full = ref + wildcard
        pattern = pattern_regex(to_disk(full))
        inbox_pattern = pattern_regex(full, re.IGNORECASE)  # INBOX is case-insensitive
        names = self.boxes.names()
        result = []
        for disk in names:
            matcher = inbox_pattern if disk == INBOX else pattern
            if not matcher.match(disk):
                continue
            has_children = any(n.startswith(disk + DELIMITER) for n in names if n != INBOX)
            flags = ["\\HasChildren" if has_children else "\\HasNoChildren"]
            result.append((from_disk(disk), FolderInfo(flags)))
        return result

    # ------------------------------------------------------------ NAMESPACE

    def getPersonalNamespaces(self):
        return [["", DELIMITER]]

    def getSharedNamespaces(self):
        return None

    def getOtherNamespaces(self):
        return None


@implementer(IRealm)
class ImapRealm:
    def __init__(self, store: MailStore, registry: FolderRegistry) -> None:
        self.store = store
        self.registry = registry

    def requestAvatar(self, avatarId, mind, *interfaces):
        if imap4.IAccount not in interfaces:
            raise NotImplementedError("IMAP realm serves IAccount only")
        user = avatarId.decode("utf-8") if isinstance(avatarId, bytes) else avatarId
        return imap4.IAccount, MaildirAccount(user, self.store, self.registry), lambda: None
