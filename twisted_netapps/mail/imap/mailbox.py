"""IMAP mailboxes over Maildir: shared folder state and per-session views.

- :class:`FolderState` (one per folder per process) knows the folder's
  messages, UIDs (from the durable UID map) and flags; ``refresh()`` rescans
  when ``new/``/``cur/`` changed (an mtime check, no inotify) and tells every
  open view what changed. While a folder is selected somewhere it is polled
  by a ``LoopingCall``, so mail delivered by SMTP shows up.
- :class:`MailboxView` (one per SELECT/EXAMINE) implements Twisted's
  ``IMailbox``. It keeps the session's own sequence-number view and queues
  changes made elsewhere, which the server hands out only when RFC 3501
  allows (EXPUNGE never during FETCH/STORE/SEARCH).
- ``\\Recent`` is per session: messages found in ``new/`` are recent for
  the first read-write view that sees them, which moves them to ``cur/``.
"""

from __future__ import annotations

import datetime
import email.errors
import email.header
import email.utils
from dataclasses import dataclass

from twisted.internet import defer, task, threads
from twisted.logger import Logger
from twisted.mail import imap4
from zope.interface import implementer

from twisted_netapps.fileio import fsync_directory
from twisted_netapps.mail.imap.mime import MimePart
from twisted_netapps.mail.store.mailbox import (
    MaildirFolder,
    MessageFile,
    UidMap,
    flags_to_letters,
    letters_to_flags,
)

log = Logger(namespace="netapps.imap")

SYSTEM_FLAGS = ["\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft", "$Forwarded"]
DELIMITER = "."


@dataclass
class Entry:
    uid: int
    file: MessageFile


class FolderState:
    """What one folder holds, shared by all sessions of this process."""

    def __init__(self, name: str, folder: MaildirFolder, registry: "FolderRegistry") -> None:
        self.name = name
        self.folder = folder
        self.registry = registry
        self.uidmap = UidMap(folder.path)
        self.entries: dict[int, Entry] = {}  # uid -> entry
        self.views: set[MailboxView] = set()
        self._marker = None
        self._poller: task.LoopingCall | None = None
        self.refresh(force=True)

    # ------------------------------------------------------------ scanning

    def refresh(self, force: bool = False) -> bool:
        """Rescan if the directories changed; notify views. True if anything changed."""
        marker = self.folder.change_marker()
        if marker == self._marker and not force:
            return False
        self._marker = marker
        files = self.folder.scan()
        if len(files) < len(self.entries):
            # A message renamed (flags) by another process between our listings
            # of new/ and cur/ would look removed, and lose its UID: look twice.
            files = self.folder.scan()
        uids = self.uidmap.sync([f.uid for f in files])
        old = self.entries
        new_entries = {uids[f.uid]: Entry(uids[f.uid], f) for f in files}
        self.entries = new_entries
        removed = [uid for uid in old if uid not in new_entries]
        added = sorted(uid for uid in new_entries if uid not in old)
        changed = [
            uid for uid, e in new_entries.items()
            if uid in old and old[uid].file.flags != e.file.flags
        ]
        if removed or added or changed:
            for view in list(self.views):
                view.folder_changed(removed, added, changed)
        return bool(removed or added or changed)

    def claim_recent(self, uids: list[int]) -> list[int]:
        """Move the ``new/`` messages among *uids* to ``cur/``; return those moved (recent)."""
        recent = []
        for uid in uids:
            entry = self.entries.get(uid)
            if entry is None or entry.file.subdir != "new":
                continue
            try:
                entry.file = self.folder.set_flags(entry.file, entry.file.flags)
                recent.append(uid)
            except FileNotFoundError:
                continue
        if recent:
            self._marker = self.folder.change_marker()
        return recent

    def sorted_uids(self) -> list[int]:
        return sorted(self.entries)

    # ------------------------------------------------------------ changes by a session

    def set_letters(self, uid: int, letters: str, origin: "MailboxView | None") -> str | None:
        entry = self.entries.get(uid)
        if entry is None:
            return None
        if entry.file.flags != letters or entry.file.subdir != "cur":
            try:
                entry.file = self.folder.set_flags(entry.file, letters)
            except FileNotFoundError:
                return None
            for view in self.views:
                if view is not origin:
                    view.folder_changed([], [], [uid])
        return entry.file.flags

    def remove(self, uids: list[int], origin: "MailboxView | None") -> list[int]:
        removed = []
        for uid in uids:
            entry = self.entries.pop(uid, None)
            if entry is not None:
                self.folder.remove(entry.file)
                removed.append(uid)
        if removed:
            # An EXPUNGE the client was told about stays done after a crash
            # (~1 ms per directory on this disk; EXPUNGE is rare).
            for subdir in ("new", "cur"):
                fsync_directory(self.folder.path / subdir)
        self._marker = self.folder.change_marker()
        if removed:
            self.uidmap.sync([e.file.uid for e in sorted(self.entries.values(), key=lambda e: e.uid)])
            for view in self.views:
                if view is not origin:
                    view.folder_changed(removed, [], [])
        return removed

    # ------------------------------------------------------------ polling

    def attach(self, view: "MailboxView") -> None:
        self.views.add(view)
        if self._poller is None and self.registry.poll_interval > 0:
            self._poller = task.LoopingCall(self._poll)
            self._poller.clock = self.registry.reactor
            self._poller.start(self.registry.poll_interval, now=False).addErrback(
                lambda f: log.failure("imap: polling {name} failed", f, name=self.name)
            )

    def detach(self, view: "MailboxView") -> None:
        self.views.discard(view)
        if not self.views and self._poller is not None:
            self._poller.stop()
            self._poller = None

    def _poll(self) -> None:
        try:
            self.refresh()
        except OSError as e:  # folder deleted/renamed under us: keep the session alive
            log.info("imap: cannot rescan {name}: {error}", name=self.name, error=e)


class FolderRegistry:
    """One :class:`FolderState` per folder path in this process."""

    def __init__(self, reactor, poll_interval: float, run_blocking=None) -> None:
        self.reactor = reactor
        self.poll_interval = poll_interval
        # Blocking storage work (APPEND/COPY write and fsync) runs here: the thread pool.
        self.run_blocking = run_blocking or (
            lambda f, *args: threads.deferToThreadPool(reactor, reactor.getThreadPool(), f, *args)
        )
        self._states: dict[str, FolderState] = {}

    def state(self, name: str, folder: MaildirFolder) -> FolderState:
        key = str(folder.path)
        state = self._states.get(key)
        if state is None:
            state = FolderState(name, folder, self)
            self._states[key] = state
        else:
            state.refresh()
        return state

    def forget(self, folder: MaildirFolder) -> None:
        """A folder was deleted/renamed: drop its state (views keep theirs)."""
        self._states.pop(str(folder.path), None)


@implementer(imap4.IMessage)
class ImapMessage:
    """One message as FETCH/SEARCH see it (content loaded lazily)."""

    def __init__(self, view: "MailboxView", uid: int, seq: int = 0) -> None:
        self.view = view
        self.uid = uid
        self.seq = seq
        self.entry = view.state.entries.get(uid)
        self._mime: MimePart | None = None

    @property
    def mime(self) -> MimePart:
        if self._mime is None:
            try:
                if self.entry is None:
                    raise FileNotFoundError("expunged")
                self._mime = MimePart(self.view.state.folder.read(self.entry.file))
            except FileNotFoundError:
                # Removed by another client after this FETCH began; its EXPUNGE
                # comes later. Empty content beats dropping the connection.
                log.info("imap: message UID {uid} vanished during FETCH", uid=self.uid)
                self._mime = MimePart(b"")
        return self._mime

    def getUID(self) -> int:
        return self.uid

    def getFlags(self) -> list[str]:
        letters = self.entry.file.flags if self.entry else ""
        flags = letters_to_flags(letters)
        if self.uid in self.view.recent:
            flags.append("\\Recent")
        return flags

    def getInternalDate(self) -> str:
        try:
            mtime = self.view.state.folder.stat_mtime(self.entry.file)
        except (FileNotFoundError, AttributeError):
            mtime = 0
        return email.utils.formatdate(mtime, localtime=False)

    def getSize(self) -> int:
        if self.entry is None:
            return 0
        try:
            return self.view.state.folder.size(self.entry.file)
        except FileNotFoundError:
            return 0

    def getHeaders(self, negate, *names):
        return self.mime.getHeaders(negate, *names)

    def getBodyFile(self):
        return self.mime.getBodyFile()

    def isMultipart(self) -> bool:
        return self.mime.isMultipart()

    def getSubPart(self, part):
        return self.mime.getSubPart(part)

    # ------------------------------------------------------------ imap_search.Searchable

    def letters(self) -> str:
        return self.entry.file.flags if self.entry else ""

    def is_recent(self) -> bool:
        return self.uid in self.view.recent

    def internal_date(self) -> datetime.date:
        mtime = self.view.state.folder.stat_mtime(self.entry.file)
        return datetime.datetime.fromtimestamp(mtime, datetime.timezone.utc).date()

    def header_values(self, name: str) -> list[str]:
        return [_decoded(v) for v in self.mime.parsed.get_all(name, [])]

    def body_text(self) -> str:
        return self.mime.body.decode("utf-8", "replace")

    def full_text(self) -> str:
        return self.mime.raw.decode("utf-8", "replace")

    def size(self) -> int:
        return self.getSize()


def _decoded(value) -> str:
    """A header value with RFC 2047 encoded words decoded (for SEARCH)."""
    try:
        return str(email.header.make_header(email.header.decode_header(str(value))))
    except (UnicodeError, LookupError, ValueError, email.errors.HeaderParseError):
        return str(value)


@implementer(imap4.IMailbox, imap4.ICloseableMailbox, imap4.IMessageCopier)
class MailboxView:
    """One session's SELECTed (or EXAMINEd, or STATUSed) folder."""

    def __init__(self, state: FolderState, writable: bool, *, claim_recent: bool = True) -> None:
        self.state = state
        self.writable = writable
        self.listeners: list = []
        state.refresh()
        self.uids: list[int] = state.sorted_uids()
        self.recent: set[int] = set(state.claim_recent(self.uids)) if (writable and claim_recent) else set()
        if not writable:
            self.recent = {u for u in self.uids if state.entries[u].file.subdir == "new"}
        self._expunged: set[int] = set()
        self._added: list[int] = []
        self._flag_changes: set[int] = set()
        self.attached = False

    def open(self) -> "MailboxView":
        self.state.attach(self)
        self.attached = True
        return self

    # ------------------------------------------------------------ change tracking

    def folder_changed(self, removed: list[int], added: list[int], changed: list[int]) -> None:
        known = set(self.uids)
        self._expunged.update(u for u in removed if u in known)
        self._added.extend(u for u in added if u not in known and u not in self._added)
        self._flag_changes.update(u for u in changed if u in known)
        for listener in list(self.listeners):
            notify = getattr(listener, "mailbox_changed", None)
            if notify is not None:
                notify(self)

    def take_updates(self, allow_expunge: bool) -> list[bytes]:
        """Untagged responses for what changed elsewhere since we last told the client."""
        lines: list[bytes] = []
        if allow_expunge and self._expunged:
            # Highest sequence numbers first: each EXPUNGE leaves the lower ones valid.
            for seq in sorted((self.uids.index(u) + 1 for u in self._expunged if u in self.uids), reverse=True):
                del self.uids[seq - 1]
                lines.append(b"%d EXPUNGE" % seq)
            self._expunged.clear()
        if self._added:
            added = [u for u in self._added if u in self.state.entries]
            self._added = []
            if added:
                self.uids.extend(added)
                if self.writable:
                    self.recent.update(self.state.claim_recent(added))
                lines.append(b"%d EXISTS" % len(self.uids))
                lines.append(b"%d RECENT" % len(self.recent))
        if self._flag_changes:
            for uid in sorted(self._flag_changes):
                if uid in self.uids and uid not in self._expunged:
                    flags = " ".join(ImapMessage(self, uid).getFlags()).encode("ascii")
                    lines.append(b"%d FETCH (FLAGS (%s) UID %d)" % (self.uids.index(uid) + 1, flags, uid))
            self._flag_changes.clear()
        return lines

    # ------------------------------------------------------------ IMailboxInfo

    def getFlags(self):
        return list(SYSTEM_FLAGS)

    def getHierarchicalDelimiter(self):
        return DELIMITER

    # ------------------------------------------------------------ IMailbox

    def getUIDValidity(self):
        return self.state.uidmap.uidvalidity

    def getUIDNext(self):
        return self.state.uidmap.uidnext

    def getUID(self, message):
        return self.uids[message - 1]

    def getMessageCount(self):
        return len(self.uids)

    def getRecentCount(self):
        return len(self.recent)

    def getUnseenCount(self):
        return sum(
            1 for u in self.uids
            if u in self.state.entries and "S" not in self.state.entries[u].file.flags
        )

    def first_unseen(self) -> int | None:
        for seq, uid in enumerate(self.uids, 1):
            entry = self.state.entries.get(uid)
            if entry is not None and "S" not in entry.file.flags:
                return seq
        return None

    def isWriteable(self):
        return self.writable

    def destroy(self):
        raise imap4.MailboxException("use DELETE")

    def requestStatus(self, names):
        status = {}
        for name in names:
            key = name.upper() if isinstance(name, str) else name.decode("ascii").upper()
            if key == "MESSAGES":
                status[key] = len(self.state.entries)
            elif key == "RECENT":
                status[key] = sum(1 for e in self.state.entries.values() if e.file.subdir == "new")
            elif key == "UIDNEXT":
                status[key] = self.getUIDNext()
            elif key == "UIDVALIDITY":
                status[key] = self.getUIDValidity()
            elif key == "UNSEEN":
                status[key] = sum(1 for e in self.state.entries.values() if "S" not in e.file.flags)
            else:
                raise imap4.IllegalClientResponse(f"unknown STATUS item {key}")
        return status

    def addListener(self, listener):
        self.listeners.append(listener)

    def removeListener(self, listener):
        if listener in self.listeners:
            self.listeners.remove(listener)

    def close(self):
        if self.attached:
            self.state.detach(self)
            self.attached = False

    def addMessage(self, message, flags=(), date=None):
        """APPEND: store durably in a thread, then make it visible."""
        data = message.read() if hasattr(message, "read") else bytes(message)
        letters = flags_to_letters(flags)
        mtime = _parse_date(date)
        d = self.state.registry.run_blocking(self.state.folder.add, data, letters, mtime)
        d.addCallback(self._stored)
        return d

    def copy(self, message):
        """COPY/MOVE target side: link the source file here, keeping its flags."""
        source = message.view.state
        entry = message.entry
        if entry is None:
            return defer.fail(imap4.MailboxException("message was expunged"))
        d = self.state.registry.run_blocking(self.state.folder.copy_in, source.folder, entry.file, entry.file.flags)
        d.addCallback(self._stored)
        return d

    def _stored(self, message_file: MessageFile) -> int:
        self.state.refresh(force=True)
        for uid, entry in self.state.entries.items():
            if entry.file.uid == message_file.uid:
                return uid
        return 0

    def expunge(self):
        if not self.writable:
            raise imap4.ReadOnlyMailbox()
        return self.expunge_uids([u for u in self.uids if self._letters(u) is not None and "T" in self._letters(u)])

    def expunge_uids(self, uids: list[int]) -> list[int]:
        """Remove *uids* (this session's own EXPUNGE/MOVE); returns the EXPUNGE sequence numbers in order."""
        self.state.remove(uids, self)
        seqs = []
        for uid in uids:
            if uid in self.uids:
                seq = self.uids.index(uid) + 1
                del self.uids[seq - 1]
                self.recent.discard(uid)
                seqs.append(seq)
        return seqs

    def _letters(self, uid: int) -> str | None:
        entry = self.state.entries.get(uid)
        return entry.file.flags if entry else None

    def select_uids(self, messages, uid: bool) -> list[tuple[int, int]]:
        """``[(seq, uid)]`` addressed by the message set (sequence numbers or UIDs)."""
        if not self.uids:
            return []
        ranges = messages.ranges
        if uid:
            messages.last = self.uids[-1]
            ranges = messages.ranges
            return [(i, u) for i, u in enumerate(self.uids, 1) if any(lo <= u <= hi for lo, hi in ranges)]
        messages.last = len(self.uids)
        ranges = messages.ranges
        for lo, hi in ranges:
            if lo < 1 or hi > len(self.uids):
                raise imap4.IllegalClientResponse("message sequence number out of range")
        return [(i, u) for i, u in enumerate(self.uids, 1) if any(lo <= i <= hi for lo, hi in ranges)]

    def fetch(self, messages, uid):
        # Messages expunged elsewhere but not yet announced are left out (RFC 3501 allows it).
        return [
            (seq, ImapMessage(self, u, seq)) for seq, u in self.select_uids(messages, uid) if u in self.state.entries
        ]

    def store(self, messages, flags, mode, uid):
        if not self.writable:
            raise imap4.ReadOnlyMailbox()
        letters_in = flags_to_letters(flags)  # \Recent and unknown keywords are not storable
        result = {}
        for seq, u in self.select_uids(messages, uid):
            current = self._letters(u)
            if current is None:
                continue  # expunged elsewhere; the EXPUNGE comes later
            if mode == 1:
                letters = "".join(sorted(set(current) | set(letters_in)))
            elif mode == -1:
                letters = "".join(sorted(set(current) - set(letters_in)))
            else:
                letters = letters_in
            self.state.set_letters(u, letters, self)
            self._flag_changes.discard(u)
            result[seq] = ImapMessage(self, u).getFlags()
        return result


def _parse_date(date) -> float | None:
    if not date:
        return None
    text = date.decode("ascii", "replace") if isinstance(date, bytes) else date
    parsed = email.utils.parsedate_tz(text.replace("-", " ", 2))
    if parsed is None:
        return None
    return float(email.utils.mktime_tz(parsed))
