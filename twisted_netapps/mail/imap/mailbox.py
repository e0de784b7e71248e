"""IMAP mailboxes over Maildir: shared folder state and per-session views.

- :class:`FolderState` (one per folder per process) knows the folder's
  messages, their UIDs (the durable UID map) and flags. Every piece of disk
  work on it -- the listing and UID map rewrite of :meth:`FolderState.refresh`,
  flag renames, expunges, APPEND, COPY -- runs in the thread pool, one
  operation at a time per folder (a ``DeferredLock``): the UID map sees the
  operations in the order they were asked for, and each result is applied on
  the reactor thread before the next operation starts. A slow disk delays
  that folder's commands, never the reactor. While a folder is selected
  somewhere it is polled, so mail delivered by SMTP shows up.
- :class:`MailboxView` (one per SELECT/EXAMINE) keeps the session's own
  sequence-number view and queues changes made elsewhere, which the server
  hands out only when RFC 3501 allows (EXPUNGE never during FETCH/STORE/SEARCH).
- ``\\Recent`` (RFC 3501 2.3.2): a message is recent until a read-write
  session has seen it. The UID map keeps the first UID not yet seen
  (``first_recent``), so delivered, APPENDed and COPYed/MOVEd messages are all
  recent for the first session that selects the folder (or is told about them
  by EXISTS); files still in ``new/`` count as recent too, and move to ``cur/``
  when claimed.
- A full disk: when new UIDs cannot be written, the folder is served with the
  messages whose UIDs are already durable, read-only for new SELECTs, and the
  rest appears once the write succeeds again (no UID is ever shown that a
  crash could give to another message). One log line when that starts, one
  when it ends.
"""

from __future__ import annotations

import datetime
import email.errors
import email.header
import email.utils
from dataclasses import dataclass

from twisted.internet import defer, threads
from twisted.logger import Logger
from twisted.python.failure import Failure

from twisted_netapps.fileio import fsync_directory
from twisted_netapps.mail.imap.keywords import SYSTEM_FLAGS, FlagError, KeywordMap, flag_names, letters_for
from twisted_netapps.mail.imap.mime import MimePart
from twisted_netapps.periodic import PeriodicTask
from twisted_netapps.mail.store.mailbox import MaildirFolder, MessageFile, UidMap

log = Logger(namespace="netapps.imap")

DELIMITER = "."


class SequenceError(ValueError):
    """A message sequence number beyond the mailbox (answered with BAD)."""


@dataclass
class Entry:
    uid: int
    file: MessageFile


@dataclass(frozen=True)
class _Scan:
    files: list
    uids: dict  # unique name -> UID, only UIDs that are on disk
    marker: tuple
    error: OSError | None  # why new UIDs could not be written


class FolderState:
    """What one folder holds, shared by all sessions of this process (built by :class:`FolderRegistry`)."""

    def __init__(self, name: str, folder: MaildirFolder, registry: "FolderRegistry",
                 uidmap: UidMap, keywords: KeywordMap) -> None:
        self.name = name
        self.folder = folder
        self.registry = registry
        self.uidmap = uidmap
        self.keywords = keywords
        self.entries: dict[int, Entry] = {}  # uid -> entry
        self.views: set[MailboxView] = set()
        self.degraded: str | None = None  # why the folder is read-only for new sessions
        self._marker = None
        self._lock = defer.DeferredLock()
        self._poller: PeriodicTask | None = None

    def _serial(self, blocking, apply, *args) -> defer.Deferred:
        """Run *blocking* in the pool after every earlier operation on this folder, then *apply* here."""
        return self._lock.run(lambda: self.registry.run_blocking(blocking, *args).addCallback(apply))

    # ------------------------------------------------------------ scanning

    def refresh(self, force: bool = False) -> defer.Deferred:
        """Rescan if the directories changed; tell the views. Fires True if anything changed."""
        return self._serial(self._scan, self._apply_scan, force)

    def _scan(self, force: bool) -> _Scan | None:  # in a thread
        marker = self.folder.change_marker()
        if marker == self._marker and not force:
            return None
        if not self.folder.path.is_dir():  # deleted or renamed under a session: empty, nothing to write
            return _Scan([], {}, marker, None)
        files = self.folder.scan()
        if len(files) < len(self.entries):
            # A message renamed (flags) by another process between our listings
            # of new/ and cur/ would look removed, and lose its UID: look twice.
            files = self.folder.scan()
        names = [f.uid for f in files]
        try:
            return _Scan(files, self.uidmap.sync(names), marker, None)
        except OSError as e:
            return _Scan(files, self.uidmap.known(names), marker, e)

    def _apply_scan(self, scan: _Scan | None) -> bool:
        if scan is None:
            return False
        self._marker = scan.marker if scan.error is None else None  # retry at the next poll
        self._set_degraded(scan.error)
        old = self.entries
        new_entries = {}
        for f in scan.files:
            uid = scan.uids.get(f.uid)
            if uid is not None:
                new_entries[uid] = Entry(uid, f)
        self.entries = new_entries
        removed = [uid for uid in old if uid not in new_entries]
        added = sorted(uid for uid in new_entries if uid not in old)
        changed = [uid for uid, e in new_entries.items() if uid in old and old[uid].file.flags != e.file.flags]
        self._notify(None, removed, added, changed)
        return bool(removed or added or changed)

    def _set_degraded(self, error: OSError | None) -> None:
        if error is not None and self.degraded is None:
            self.degraded = f"cannot write the UID map ({error.strerror or error})"
            log.warn("imap: {name}: {why}: serving it read-only, new messages held back",
                     name=self.name, why=self.degraded)
        elif error is None and self.degraded is not None:
            self.degraded = None
            log.info("imap: {name}: UID map written again: folder back to normal", name=self.name)

    def _notify(self, origin, removed, added, changed) -> None:
        if removed or added or changed:
            for view in list(self.views):
                if view is not origin:
                    view.folder_changed(removed, added, changed)

    def sorted_uids(self) -> list[int]:
        return sorted(self.entries)

    def is_recent(self, uid: int) -> bool:
        """Recent for a session that has not claimed it (EXAMINE, STATUS)."""
        entry = self.entries.get(uid)
        return entry is not None and (uid >= self.uidmap.first_recent or entry.file.subdir == "new")

    # ------------------------------------------------------------ \Recent

    def claim_recent(self, uids: list[int]) -> defer.Deferred:
        """Claim *uids* for one read-write session; fires with the set of those that were recent."""
        return self._serial(self._claim, self._apply_moves, list(uids))

    def _claim(self, uids: list[int]):  # in a thread
        if not uids:
            return set(), {}
        first = self.uidmap.claim_recent(max(uids))
        recent = {u for u in uids if u >= first}
        moved = {}
        for uid in uids:
            entry = self.entries.get(uid)
            if entry is None or entry.file.subdir != "new":
                continue
            try:
                moved[uid] = self.folder.set_flags(entry.file, entry.file.flags)
                recent.add(uid)
            except FileNotFoundError:
                continue
        if moved:
            self._marker = self.folder.change_marker()
        return recent, moved

    def _apply_moves(self, result):
        recent, moved = result
        for uid, file in moved.items():
            entry = self.entries.get(uid)
            if entry is not None:
                entry.file = file
        return recent

    # ------------------------------------------------------------ changes by a session

    def store_flags(self, uids: list[int], mode: int, system: str, keywords: list[str], origin) -> defer.Deferred:
        """STORE: +FLAGS (mode 1), -FLAGS (-1) or FLAGS (0); fires with {uid: letters} of those still there.

        Fails with :class:`FlagError` (limit) when a new keyword has no letter left.
        """
        return self._serial(self._store, lambda result: self._apply_flags(result, origin),
                            list(uids), mode, system, keywords)

    def _store(self, uids, mode, system, keywords):  # in a thread
        if mode != -1:
            self.keywords.allocate(keywords)
        letters_in = set(letters_for(system, keywords, self.keywords))
        result = {}
        for uid in uids:
            entry = self.entries.get(uid)
            if entry is None:
                continue  # expunged elsewhere; the EXPUNGE comes later
            current = set(entry.file.flags)
            letters = current | letters_in if mode == 1 else current - letters_in if mode == -1 else letters_in
            new_file = entry.file
            if letters != current or entry.file.subdir != "cur":
                try:
                    new_file = self.folder.set_flags(entry.file, "".join(sorted(letters)))
                except FileNotFoundError:
                    continue
            result[uid] = new_file
        return result

    def _apply_flags(self, result: dict, origin) -> dict[int, str]:
        changed = []
        for uid, file in result.items():
            entry = self.entries.get(uid)
            if entry is not None and entry.file != file:
                if entry.file.flags != file.flags:
                    changed.append(uid)
                entry.file = file
        self._notify(origin, [], [], changed)
        return {uid: file.flags for uid, file in result.items()}

    def remove(self, uids: list[int], origin) -> defer.Deferred:
        """Delete *uids* durably; fires with the UIDs removed."""
        return self._serial(self._remove, lambda removed: self._apply_remove(removed, origin), list(uids))

    def _remove(self, uids):  # in a thread
        removed = []
        for uid in uids:
            entry = self.entries.get(uid)
            if entry is not None:
                self.folder.remove(entry.file)
                removed.append(uid)
        if removed:
            # An EXPUNGE the client was told about stays done after a crash
            # (~1 ms per directory on this disk; EXPUNGE is rare).
            for subdir in ("new", "cur"):
                fsync_directory(self.folder.path / subdir)
            remaining = [e.file.uid for uid, e in sorted(self.entries.items()) if uid not in set(removed)]
            try:
                self.uidmap.sync(remaining)
            except OSError:
                pass  # stale names in the map are harmless: dropped at the next write
        return removed

    def _apply_remove(self, removed: list[int], origin) -> list[int]:
        for uid in removed:
            self.entries.pop(uid, None)
        self._marker = None
        self._notify(origin, removed, [], [])
        return removed

    def append(self, data: bytes, system: str, keywords: list[str], mtime: float | None) -> defer.Deferred:
        """APPEND: store durably; fires with the new UID (None if the UID map could not be written)."""
        return self._serial(self._append, self._apply_added, data, system, keywords, mtime)

    def _append(self, data, system, keywords, mtime):  # in a thread
        try:
            self.keywords.allocate(keywords)
        except FlagError:
            pass  # no letter left: the message is kept, without the new keywords
        message_file = self.folder.add(data, letters_for(system, keywords, self.keywords), mtime)
        return [message_file], self._assign([message_file])

    def copy_from(self, source: "FolderState", files: list[MessageFile]) -> defer.Deferred:
        """COPY/MOVE target side: copy *files* of *source* here with their flags and keywords.

        All or nothing (RFC 3501 6.4.7): copies already made are removed if one fails.
        Fires with the new UIDs in the order of *files* (None if the UID map could not be written).
        """
        return self._serial(self._copy, self._apply_added, source, list(files))

    def _copy(self, source: "FolderState", files):  # in a thread
        names = [[source.keywords.name(c) for c in f.flags if "a" <= c <= "z"] for f in files]
        wanted = [n for group in names for n in group if n is not None]
        try:
            self.keywords.allocate(wanted)
        except FlagError:
            pass
        made: list[MessageFile] = []
        try:
            for f, keywords in zip(files, names):
                system = "".join(c for c in f.flags if not "a" <= c <= "z")
                made.append(self.folder.copy_in(source.folder, f, letters_for(system, [k for k in keywords if k], self.keywords)))
        except OSError:
            for m in made:
                self.folder.remove(m)
            raise
        return made, self._assign(made)

    def _assign(self, made: list[MessageFile]) -> list[int] | None:  # in a thread
        try:
            return self.uidmap.assign([m.uid for m in made])
        except OSError as e:
            log.warn("imap: {name}: cannot write the UID map ({error}): new message gets its UID later",
                     name=self.name, error=e.strerror or e)
            return None

    def _apply_added(self, result) -> list[int | None]:
        made, uids = result
        if uids is None:
            self._marker = None
            return [None] * len(made)
        for message_file, uid in zip(made, uids):
            self.entries[uid] = Entry(uid, message_file)
        self._notify(None, [], list(uids), [])
        return list(uids)

    # ------------------------------------------------------------ polling

    def attach(self, view: "MailboxView") -> None:
        self.views.add(view)
        if self._poller is None and self.registry.poll_interval > 0:
            # A PeriodicTask: an unexpected failure is one log line and the polling goes on.
            self._poller = PeriodicTask(f"imap: rescan of {self.name}", self.registry.poll_interval, self._poll,
                                        self.registry.reactor)
            self._poller.startService()

    def detach(self, view: "MailboxView") -> None:
        self.views.discard(view)
        if not self.views and self._poller is not None:
            self._poller.stopService()
            self._poller = None

    def _poll(self) -> defer.Deferred:
        return self.refresh().addErrback(self._poll_failed)

    def _poll_failed(self, failure) -> None:
        failure.trap(OSError)  # folder deleted/renamed under us: keep the sessions alive
        log.info("imap: cannot rescan {name}: {error}", name=self.name, error=failure.value)


class FolderRegistry:
    """One :class:`FolderState` per folder path in this process."""

    def __init__(self, reactor, poll_interval: float, run_blocking=None) -> None:
        self.reactor = reactor
        self.poll_interval = poll_interval
        # Blocking storage work runs here: the thread pool (context.pools.disk once the frame has it).
        self.run_blocking = run_blocking or (
            lambda f, *args: threads.deferToThreadPool(reactor, reactor.getThreadPool(), f, *args)
        )
        self._states: dict[str, FolderState] = {}
        self._opening: dict[str, list[defer.Deferred]] = {}

    def open(self, name: str, folder: MaildirFolder) -> defer.Deferred:
        """The folder's state, refreshed (loaded from disk the first time, in the pool)."""
        key = str(folder.path)
        state = self._states.get(key)
        if state is not None:
            return state.refresh().addCallback(lambda _: state)
        waiting = defer.Deferred()
        if key in self._opening:
            self._opening[key].append(waiting)
            return waiting
        self._opening[key] = [waiting]

        def loaded(maps):
            state = FolderState(name, folder, self, *maps)
            return state.refresh(force=True).addCallback(lambda _: state)

        def done(result):
            failed = isinstance(result, Failure)
            if not failed:
                self._states[key] = result
            for d in self._opening.pop(key, []):
                if failed:
                    d.errback(result)
                else:
                    d.callback(result)

        self.run_blocking(lambda: (UidMap(folder.path), KeywordMap(folder.path))).addCallback(loaded).addBoth(done)
        return waiting

    def forget(self, folder: MaildirFolder) -> None:
        """A folder was deleted/renamed: drop its state (views keep theirs)."""
        self._states.pop(str(folder.path), None)


class StoredMessage:
    """One message as SEARCH (in a thread) and FETCH see it; the content is read on first use."""

    def __init__(self, state: FolderState, uid: int, seq: int, file: MessageFile | None, recent: bool) -> None:
        self.folder = state.folder
        self.keywords = state.keywords
        self.uid = uid
        self.seq = seq
        self.file = file
        self.recent = recent
        self._mime: MimePart | None = None

    @property
    def mime(self) -> MimePart:
        if self._mime is None:
            try:
                if self.file is None:
                    raise FileNotFoundError("expunged")
                self._mime = MimePart(self.folder.read(self.file))
            except FileNotFoundError:
                # Removed by another client after this command began; its EXPUNGE
                # comes later. Empty content beats dropping the connection.
                log.info("imap: message UID {uid} vanished", uid=self.uid)
                self._mime = MimePart(b"")
        return self._mime

    def flags(self) -> list[str]:
        names = flag_names(self.file.flags if self.file else "", self.keywords)
        if self.recent:
            names.append("\\Recent")
        return names

    def mtime(self) -> float:
        try:
            return self.folder.stat_mtime(self.file) if self.file else 0.0
        except FileNotFoundError:
            return 0.0

    # ------------------------------------------------------------ search.Searchable

    def letters(self) -> str:
        return self.file.flags if self.file else ""

    def is_recent(self) -> bool:
        return self.recent

    def internal_date(self) -> datetime.date:
        return datetime.datetime.fromtimestamp(self.mtime(), datetime.timezone.utc).date()

    def header_values(self, name: str) -> list[str]:
        return [_decoded(v) for v in self.mime.parsed.get_all(name, [])]

    def body_text(self) -> str:
        return self.mime.body.decode("utf-8", "replace")

    def full_text(self) -> str:
        return self.mime.raw.decode("utf-8", "replace")

    def size(self) -> int:
        if self.file is None:
            return 0
        try:
            return self.folder.size(self.file)
        except FileNotFoundError:
            return 0


def _decoded(value) -> str:
    """A header value with RFC 2047 encoded words decoded (for SEARCH)."""
    try:
        return str(email.header.make_header(email.header.decode_header(str(value))))
    except (UnicodeError, LookupError, ValueError, email.errors.HeaderParseError):
        return str(value)


class MailboxView:
    """One session's SELECTed (or EXAMINEd) folder. Build it with :func:`open_view`."""

    def __init__(self, state: FolderState, writable: bool, uids: list[int], recent: set[int]) -> None:
        self.state = state
        self.writable = writable
        self.uids = uids
        self.recent = recent
        self.listener = None  # called with no argument when something changed elsewhere
        self._expunged: set[int] = set()
        self._added: list[int] = []
        self._flag_changes: set[int] = set()
        self._keywords_told = len(state.keywords.keywords())
        self.attached = False
        state.attach(self)
        self.attached = True

    # ------------------------------------------------------------ change tracking

    def folder_changed(self, removed: list[int], added: list[int], changed: list[int]) -> None:
        known = set(self.uids)
        self._expunged.update(u for u in removed if u in known)
        self._added.extend(u for u in added if u not in known and u not in self._added)
        self._flag_changes.update(u for u in changed if u in known)
        if self.listener is not None:
            self.listener()

    @property
    def has_updates(self) -> bool:
        return bool(self._expunged or self._added or self._flag_changes)

    def flag_lines(self) -> list[bytes]:
        """``FLAGS`` and ``OK [PERMANENTFLAGS]``: the system flags, the folder's keywords, and
        ``\\*`` (any new keyword may be stored) while letters are left."""
        keywords = self.state.keywords
        flags = SYSTEM_FLAGS + keywords.keywords()
        self._keywords_told = len(flags) - len(SYSTEM_FLAGS)
        permanent = flags + ([] if keywords.full else ["\\*"]) if self.writable else []
        return [b"FLAGS (" + " ".join(flags).encode("ascii") + b")",
                b"OK [PERMANENTFLAGS (" + " ".join(permanent).encode("ascii") + b")] flags permitted"]

    def keyword_lines(self) -> list[bytes]:
        """:meth:`flag_lines` again if keywords were defined since the client was last told (RFC 3501 7.2.6)."""
        if len(self.state.keywords.keywords()) == self._keywords_told:
            return []
        return self.flag_lines()

    async def take_updates(self, allow_expunge: bool) -> list[bytes]:
        """Untagged responses for what changed elsewhere since we last told the client."""
        lines: list[bytes] = self.keyword_lines()
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
                    self.recent.update(await self.state.claim_recent(added))
                else:
                    self.recent.update(u for u in added if self.state.is_recent(u))
                lines.append(b"%d EXISTS" % len(self.uids))
                lines.append(b"%d RECENT" % len(self.recent))
        if self._flag_changes:
            for uid in sorted(self._flag_changes):
                if uid in self.uids and uid not in self._expunged:
                    flags = " ".join(self.message(uid).flags()).encode("ascii")
                    lines.append(b"%d FETCH (FLAGS (%s) UID %d)" % (self.uids.index(uid) + 1, flags, uid))
            self._flag_changes.clear()
        return lines

    def forget_flag_change(self, uid: int) -> None:
        self._flag_changes.discard(uid)

    # ------------------------------------------------------------ reading

    def message(self, uid: int, seq: int = 0) -> StoredMessage:
        entry = self.state.entries.get(uid)
        return StoredMessage(self.state, uid, seq, entry.file if entry else None, uid in self.recent)

    def letters(self, uid: int) -> str | None:
        entry = self.state.entries.get(uid)
        return entry.file.flags if entry else None

    def first_unseen(self) -> int | None:
        for seq, uid in enumerate(self.uids, 1):
            letters = self.letters(uid)
            if letters is not None and "S" not in letters:
                return seq
        return None

    def select_uids(self, messages, uid: bool) -> list[tuple[int, int]]:
        """``[(seq, uid)]`` addressed by the sequence set (of sequence numbers or UIDs).

        A sequence number beyond the mailbox is a :class:`SequenceError`; UIDs
        that do not exist are simply not there (RFC 3501 6.4.8).
        """
        if not self.uids:
            if not uid and not messages.uses_star():
                raise SequenceError("message sequence number out of range")
            return []
        if uid:
            ranges = messages.resolve(self.uids[-1])
            return [(i, u) for i, u in enumerate(self.uids, 1) if any(lo <= u <= hi for lo, hi in ranges)]
        ranges = messages.resolve(len(self.uids))
        for lo, hi in ranges:
            if lo < 1 or hi > len(self.uids):
                raise SequenceError("message sequence number out of range")
        if len(ranges) == 1:
            lo, hi = ranges[0]
            return [(i, self.uids[i - 1]) for i in range(lo, hi + 1)]
        wanted = sorted({i for lo, hi in ranges for i in range(lo, hi + 1)})
        return [(i, self.uids[i - 1]) for i in wanted]

    # ------------------------------------------------------------ changes

    async def expunge_uids(self, uids: list[int]) -> list[int]:
        """Remove *uids* (this session's EXPUNGE/MOVE); the EXPUNGE sequence numbers, in order."""
        await self.state.remove(uids, self)
        seqs = []
        for uid in uids:
            if uid in self.uids:
                seq = self.uids.index(uid) + 1
                del self.uids[seq - 1]
                self.recent.discard(uid)
                self._flag_changes.discard(uid)
                seqs.append(seq)
        return seqs

    def deleted_uids(self, among=None) -> list[int]:
        """The \\Deleted messages (of *among*, if given), in sequence order."""
        candidates = self.uids if among is None else [u for u in self.uids if u in among]
        return [u for u in candidates if "T" in (self.letters(u) or "")]

    def close(self) -> None:
        if self.attached:
            self.state.detach(self)
            self.attached = False
        self.listener = None


async def open_view(state: FolderState, writable: bool) -> MailboxView:
    """A session's view of *state* (refreshed by the caller); a read-write one claims \\Recent."""
    uids = state.sorted_uids()
    if writable:
        recent = await state.claim_recent(uids)
    else:
        recent = {u for u in uids if state.is_recent(u)}
    return MailboxView(state, writable, uids, set(recent))
