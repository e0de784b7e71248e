"""Reading a POP3 session's messages off the reactor thread, with read-ahead.

Every file read runs in the disk pool (``context.pools.disk``): a slow or
stuck disk holds up the session that asked, never the reactor. A pool
round trip per message would cost more than the read of a page-cached
4 KiB message itself, and POP3 clients download in order (``RETR 1``,
``RETR 2``...), so :class:`MessageReader` reads *ahead*: a miss reads that
message and the next small ones in one pool job (up to
``batch_messages``/``batch_bytes``), and each hit tops the read-ahead up in
the background once half of it is used, so a download loop keeps finding
its next message already in memory. Memory is bounded per session by
``batch_bytes`` (plus the message being sent); messages over
``inline_limit`` are not read ahead but streamed.

A message read ahead may be removed by another client (IMAP) before it is
asked for; Maildir files never change once delivered, so what was read is
still that message, as if the read had happened a moment earlier.
"""

from __future__ import annotations

from typing import Callable

from twisted.internet import defer

from twisted_netapps.mail.store.mailbox import MaildirFolder, MessageFile

#: The result of reading one message in a batch: (bytes, where it was found),
#: None (over the inline limit: stream it), or an OSError (missing, unreadable).
ReadResult = "tuple[bytes, MessageFile] | None | OSError"


def read_batch(folder: MaildirFolder, refs: list[tuple[int, MessageFile]], limit: int) -> dict[int, object]:
    """Blocking (run in the disk pool): message number -> :data:`ReadResult`."""
    results: dict[int, object] = {}
    for number, ref in refs:
        try:
            results[number] = folder.read_small(ref, limit)
        except OSError as e:
            results[number] = e
    return results


class MessageReader:
    """The messages of one logged-in POP3 session, read in the disk pool."""

    def __init__(
        self,
        folder: MaildirFolder,
        messages: list,
        run: Callable,
        *,
        inline_limit: int,
        batch_messages: int = 32,
        batch_bytes: int = 256 * 1024,
    ) -> None:
        self.folder = folder
        self.messages = messages  # the session's Pop3Message list (deleted flags are live)
        self.run = run
        self.inline_limit = inline_limit
        self.batch_messages = batch_messages
        self.batch_bytes = batch_bytes
        self._ready: dict[int, object] = {}  # number -> ReadResult, read ahead
        self._ready_bytes = 0
        self._reading: set[int] = set()  # numbers in batches under way
        self._waiters: dict[int, defer.Deferred] = {}
        self._horizon = 0  # the highest message number read or being read
        self._last_taken = 0
        self._closed = False

    def take(self, message) -> object:
        """The :data:`ReadResult` for *message* if it was read ahead (else ``NotImplemented``);
        a hit tops the read-ahead up in the background."""
        number = message.number
        result = self._ready.pop(number, NotImplemented)
        if result is not NotImplemented:
            if type(result) is tuple:
                self._ready_bytes -= len(result[0])
            if number != self._last_taken + 1:
                self._drop_before(number)  # not in order: what was read ahead before it is wasted
            self._last_taken = number
            if not self._reading:
                self._read_ahead()
        return result

    def read(self, message) -> defer.Deferred:
        """A Deferred :data:`ReadResult` for *message*: from memory, from the batch
        already reading it, or from a new batch starting with it."""
        cached = self.take(message)
        if cached is not NotImplemented:
            return defer.succeed(cached)
        waiting = self._waiters[message.number] = defer.Deferred()
        if message.number not in self._reading:
            # The client went elsewhere than we read ahead: read on from here.
            self._drop_before(message.number)
            self._horizon = message.number
            budget_used = min(message.size, self.inline_limit)
            self._start([(message.number, message.ref)] + self._candidates(message.number + 1, budget_used))
        return waiting

    def close(self) -> None:
        """The session is over: drop what was read, start nothing new."""
        self._closed = True
        self._ready.clear()
        self._ready_bytes = 0

    # ------------------------------------------------------------ internals

    def _start(self, refs: list[tuple[int, MessageFile]]) -> None:
        numbers = [number for number, _ref in refs]
        self._reading.update(numbers)
        self._horizon = max(self._horizon, *numbers)
        d = self.run(read_batch, self.folder, refs, self.inline_limit)
        d.addCallbacks(self._arrived, self._failed, errbackArgs=(numbers,))

    def _arrived(self, results: dict) -> None:
        self._reading.difference_update(results)
        for number, result in results.items():
            waiting = self._waiters.pop(number, None)
            if waiting is not None:
                waiting.callback(result)
            elif not self._closed:
                self._ready[number] = result
                if isinstance(result, tuple):
                    self._ready_bytes += len(result[0])
        self._read_ahead()

    def _failed(self, failure, numbers: list[int]) -> None:
        # Not an OSError (read_batch keeps those per message): a bug; the waiter reports it.
        self._reading.difference_update(numbers)
        for number in numbers:
            waiting = self._waiters.pop(number, None)
            if waiting is not None:
                waiting.errback(failure)

    def _candidates(self, start: int, budget_used: int = 0) -> list[tuple[int, MessageFile]]:
        """Messages from number *start* on worth reading ahead, within the batch limits."""
        budget = self.batch_bytes - self._ready_bytes - budget_used
        picked: list[tuple[int, MessageFile]] = []
        for message in self.messages[max(start, 1) - 1:]:
            if len(picked) >= self.batch_messages - 1 or budget <= 0:
                break
            if message.deleted or message.number in self._ready or message.number in self._reading:
                continue
            if message.size > self.inline_limit:
                continue  # streamed when asked for, never held in memory
            if message.size > budget:
                break
            picked.append((message.number, message.ref))
            budget -= message.size
        return picked

    def _forget(self, result) -> None:
        if isinstance(result, tuple):
            self._ready_bytes -= len(result[0])

    def _drop_before(self, number: int) -> None:
        """Reads ahead of messages before *number* will not be asked for in order: free them."""
        for stale in [n for n in self._ready if n < number]:
            self._forget(self._ready.pop(stale))

    def _read_ahead(self) -> None:
        # One batch at a time, as far ahead as the byte budget allows: a pool
        # thread shares the GIL with the reactor, so on a busy machine a batch
        # can take as long as sending dozens of messages.
        if self._closed or self._reading:
            return
        refs = self._candidates(self._horizon + 1)
        if refs:
            self._start(refs)
