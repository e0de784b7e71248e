"""One logged-in IMAP session: carries out the core's mailbox requests against the store.

:class:`ImapSession` takes the typed requests of
:mod:`~twisted_netapps.mail.imap.commands` (the core's ``Run`` events),
writes their untagged responses to the output as it goes, and returns the
:class:`~twisted_netapps.mail.imap.events.Result` for the tagged reply. Disk
work goes to the thread pool (``registry.run_blocking``); nothing here blocks
the reactor. Before each tagged reply the client hears what other sessions
(or SMTP) changed in the selected folder, EXPUNGE excepted during FETCH,
STORE and SEARCH (RFC 3501 7.4.1). The commands on the selected mailbox live
in :mod:`~twisted_netapps.mail.imap.selected`.

Errors are results, each with at most one log line: a missing folder is
``NO [NONEXISTENT]``/``[TRYCREATE]``, a full disk ``NO [OVERQUOTA]``, any
other storage failure ``NO [SERVERBUG]``.
"""

from __future__ import annotations

import errno
import functools

from twisted.internet import defer
from twisted.logger import Logger

from twisted_netapps.mail.imap import commands as cmd
from twisted_netapps.mail.imap import selected
from twisted_netapps.mail.imap.account import FolderError, MaildirAccount
from twisted_netapps.mail.imap.events import Result
from twisted_netapps.mail.imap.keywords import FlagError, split_flags
from twisted_netapps.mail.imap.mailbox import DELIMITER, FolderRegistry, MailboxView, SequenceError, open_view
from twisted_netapps.mail.imap.search import SearchError
from twisted_netapps.mail.imap.syntax import quoted, string
from twisted_netapps.mail.store.maildir import INBOX

log = Logger(namespace="netapps.imap")

_NO_EXPUNGE_DURING = (cmd.Fetch, cmd.Store, cmd.Search)
_NO_UPDATES_AFTER = (cmd.Select, cmd.Close, cmd.Unselect, cmd.Idle)
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class ImapSession:
    """The mailbox side of one connection after login."""

    def __init__(self, account: MaildirAccount, registry: FolderRegistry, output, *, utf8=lambda: False,
                 peer: str = "") -> None:
        self.account = account
        self.registry = registry
        self.run_blocking = registry.run_blocking
        self.output = output  # write(), write_sequence(), start_stream(), drained(), end_stream(), gone
        self.utf8 = utf8  # the core's ENABLE UTF8=ACCEPT
        self.peer = peer
        self.view: MailboxView | None = None
        self._wakeup: defer.Deferred | None = None
        self._idle_ending = False
        self._handlers = {
            cmd.Noop: self._noop, cmd.Namespace: self._namespace, cmd.Select: self._select,
            cmd.Create: self._create, cmd.Delete: self._delete, cmd.Rename: self._rename,
            cmd.Subscribe: self._subscribe, cmd.ListMailboxes: self._list, cmd.Status: self._status,
            cmd.Append: self._append, cmd.Idle: self._idle, cmd.Unselect: self._unselect,
        }
        for kind, function in selected.HANDLERS.items():
            self._handlers[kind] = functools.partial(function, self)

    async def run(self, request) -> Result:
        handler = self._handlers[type(request)]
        what = type(request).__name__.upper()
        try:
            result = await handler(request)
        except FolderError as e:
            result = Result("NO", str(e), e.code)
        except (SequenceError, SearchError) as e:
            result = Result("BAD", str(e))
        except FlagError as e:
            result = Result("NO", str(e), b"LIMIT") if e.limit else Result("BAD", str(e))
        except OSError as e:
            result = self.storage_failed(what, e)
        if self.view is not None and not isinstance(request, _NO_UPDATES_AFTER):
            await self.send_updates(not isinstance(request, _NO_EXPUNGE_DURING))
        return result

    def storage_failed(self, what: str, error: OSError) -> Result:
        if error.errno in _DISK_FULL:
            log.warn("imap: {peer}: {what}: {error}", peer=self.peer, what=what, error=error.strerror)
            return Result("NO", "not enough disk space", b"OVERQUOTA")
        log.warn("imap: {peer}: {what} failed: {error}", peer=self.peer, what=what, error=error)
        return Result("NO", f"{what} failed", b"SERVERBUG")

    # ------------------------------------------------------------ output helpers

    def untagged(self, line: bytes) -> None:
        self.output.write(b"* " + line + b"\r\n")

    async def send_updates(self, allow_expunge: bool) -> None:
        if self.view is not None:
            for line in await self.view.take_updates(allow_expunge):
                self.untagged(line)

    def wire_name(self, name: str, disk: str | None = None) -> bytes:
        """A mailbox name for the client: UTF-8 after ENABLE UTF8=ACCEPT, else modified UTF-7."""
        if name.upper() == INBOX:
            return b'"INBOX"'
        if self.utf8():
            return string(name.encode("utf-8"), allow_8bit=True)
        return quoted((disk if disk is not None else self.account.disk_name(name)).encode("ascii"))

    async def find(self, name: str):
        """(disk name, MaildirFolder) of an existing folder, or None."""
        return await self.run_blocking(self.account.folder, name)

    def close_view(self) -> None:
        if self.view is not None:
            self.view.close()
            self.view = None

    def connection_lost(self) -> None:
        self.close_view()
        self.idle_done()

    # ------------------------------------------------------------ any authenticated state

    async def _noop(self, request: cmd.Noop) -> Result:
        return Result("OK", f"{request.name} completed")

    async def _namespace(self, request) -> Result:
        self.untagged(b'NAMESPACE (("" "' + DELIMITER.encode() + b'")) NIL NIL')
        return Result("OK", "NAMESPACE completed")

    async def _idle(self, request) -> Result:
        """RFC 2177: push changes until the core sees DONE (:meth:`idle_done`)."""
        self._idle_ending = False
        while True:
            await self.send_updates(True)
            if self._idle_ending:
                return Result("OK", "IDLE terminated")
            if self.view is not None and self.view.has_updates:
                continue
            self._wakeup = defer.Deferred()
            await self._wakeup

    def idle_done(self) -> None:
        self._idle_ending = True
        self._wake()

    def _wake(self) -> None:
        wakeup, self._wakeup = self._wakeup, None
        if wakeup is not None:
            wakeup.callback(None)

    # ------------------------------------------------------------ SELECT / EXAMINE / UNSELECT

    async def _select(self, request: cmd.Select) -> Result:
        self.close_view()  # a failed SELECT leaves no mailbox selected (RFC 3501 6.3.1)
        what = "EXAMINE" if request.readonly else "SELECT"
        found = await self.find(request.mailbox)
        if found is None:
            return Result("NO", "no such mailbox", b"NONEXISTENT")
        disk, folder = found
        state = await self.registry.open(disk, folder)
        writable = not request.readonly and state.degraded is None
        view = self.view = await open_view(state, writable)
        view.listener = self._wake
        for line in view.flag_lines():
            self.untagged(line)
        self.untagged(b"%d EXISTS" % len(view.uids))
        self.untagged(b"%d RECENT" % len(view.recent))
        unseen = view.first_unseen()
        if unseen is not None:
            self.untagged(b"OK [UNSEEN %d] first unseen" % unseen)
        self.untagged(b"OK [UIDVALIDITY %d] UIDs valid" % state.uidmap.uidvalidity)
        self.untagged(b"OK [UIDNEXT %d] predicted next UID" % state.uidmap.uidnext)
        if state.degraded is not None and not request.readonly:
            self.untagged(b"OK [ALERT] " + state.degraded.encode("ascii", "replace")
                          + b": read-only, new messages held back until it can be written")
        return Result("OK", f"{what} completed", b"READ-WRITE" if writable else b"READ-ONLY")

    async def _unselect(self, request) -> Result:
        self.close_view()
        return Result("OK", "UNSELECT completed")

    # ------------------------------------------------------------ folders

    async def _create(self, request: cmd.Create) -> Result:
        await self.run_blocking(self.account.create, request.mailbox)
        return Result("OK", "CREATE completed")

    async def _delete(self, request: cmd.Delete) -> Result:
        if request.mailbox.upper() == INBOX:
            return Result("NO", "INBOX cannot be deleted")
        folder = await self.run_blocking(self.account.delete, request.mailbox)
        self.registry.forget(folder)
        return Result("OK", "DELETE completed")

    async def _rename(self, request: cmd.Rename) -> Result:
        for folder in await self.run_blocking(self.account.rename, request.old, request.new):
            self.registry.forget(folder)
        return Result("OK", "RENAME completed")

    async def _subscribe(self, request: cmd.Subscribe) -> Result:
        await self.run_blocking(self.account.subscribe, request.mailbox, request.subscribe)
        return Result("OK", ("SUBSCRIBE" if request.subscribe else "UNSUBSCRIBE") + " completed")

    async def _list(self, request: cmd.ListMailboxes) -> Result:
        what = b"LSUB" if request.lsub else b"LIST"
        delimiter = b'"' + DELIMITER.encode() + b'"'
        if request.patterns == ("",):
            # LIST "" "": the hierarchy delimiter and root (RFC 3501 6.3.8).
            self.untagged(what + b" (\\Noselect) " + delimiter + b' ""')
            return Result("OK", f"{what.decode()} completed")
        listed = await self.run_blocking(
            lambda: self.account.list(
                request.reference, request.patterns,
                subscribed_only=request.lsub or request.subscribed_only,
                special_use_only=request.special_use_only, with_subscribed=request.return_subscribed,
            )
        )
        for folder in listed:
            attributes = folder.attributes
            if request.lsub:
                attributes = tuple(a for a in attributes if a != "\\Subscribed")
            self.untagged(what + b" (" + " ".join(attributes).encode("ascii") + b") " + delimiter + b" "
                          + self.wire_name(folder.name, folder.disk))
        return Result("OK", f"{what.decode()} completed")

    async def _status(self, request: cmd.Status) -> Result:
        found = await self.find(request.mailbox)
        if found is None:
            return Result("NO", "no such mailbox", b"NONEXISTENT")
        disk, folder = found
        state = await self.registry.open(disk, folder)
        values = {
            "MESSAGES": len(state.entries),
            "RECENT": sum(1 for uid in state.entries if state.is_recent(uid)),
            "UIDNEXT": state.uidmap.uidnext,
            "UIDVALIDITY": state.uidmap.uidvalidity,
            "UNSEEN": sum(1 for e in state.entries.values() if "S" not in e.file.flags),
        }
        items = " ".join(f"{item} {values[item]}" for item in request.items).encode("ascii")
        self.untagged(b"STATUS " + self.wire_name(request.mailbox, disk) + b" (" + items + b")")
        return Result("OK", "STATUS completed")

    async def _append(self, request: cmd.Append) -> Result:
        system, keywords = split_flags(request.flags)
        found = await self.find(request.mailbox)
        if found is None:
            return Result("NO", "no such mailbox", b"TRYCREATE")
        disk, folder = found
        state = await self.registry.open(disk, folder)
        (uid,) = await state.append(request.message, system, keywords, request.date)
        if uid is None:
            return Result("OK", "APPEND completed")
        return Result("OK", "APPEND completed", b"APPENDUID %d %d" % (state.uidmap.uidvalidity, uid))
