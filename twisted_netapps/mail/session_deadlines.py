"""The deadlines of one mail session (smtp, pop3): per command line, per DATA, for login.

Idle timers restart on every byte, so a client trickling a byte at a time
keeps its connection for ever (slowloris). These are
:class:`twisted_netapps.deadlines.Deadline` s counted from the first byte:

- *command*: from the first byte of a command line (or AUTH response) until
  its line end; the next line starts a new count;
- *data*: from the 354 until the end of the message (smtp DATA);
- *login*: from the greeting until a successful login, where the session
  must log in (pop3; the smtp submission port).

While the session waits on us (an fsync, a password check, a disk read) the
command and data deadlines do not run: the client is not the slow one. The
adapter calls :meth:`SessionDeadlines.update` after every read and every
resumption, with what its core says about itself.
"""

from __future__ import annotations

from typing import Callable

from twisted.logger import Logger

from twisted_netapps.deadlines import Deadline

log = Logger(namespace="netapps.mail")


class SessionDeadlines:
    COMMAND, DATA, LOGIN = "command", "data", "login"

    def __init__(
        self,
        clock,
        on_expire: Callable[[str], None],
        *,
        command: float,
        data: float | None = None,
        login: float | None = None,
    ) -> None:
        self.command = Deadline(clock, command, lambda: on_expire(self.COMMAND))
        self.data = Deadline(clock, data, lambda: on_expire(self.DATA)) if data else None
        self.login = Deadline(clock, login, lambda: on_expire(self.LOGIN)) if login else None
        self._lines = 0
        self._running = False  # a command or data deadline may be counting

    @property
    def running(self) -> bool:
        """A command or data deadline may be counting (else :meth:`update` without a
        partial line or a transfer has nothing to do, and may be skipped)."""
        return self._running

    def start_login(self) -> None:
        """The session must log in within the login deadline (call at the greeting)."""
        if self.login is not None:
            self.login.start()

    def logged_in(self) -> None:
        if self.login is not None:
            self.login.cancel()

    def update(self, *, partial_line: bool, lines: int, in_data: bool = False, waiting: bool = False) -> None:
        """Start, restart or cancel the command and data deadlines.

        *partial_line*: bytes of an unfinished line are buffered; *lines*: the
        core's count of lines taken so far (a new line restarts the count);
        *in_data*: a DATA transfer is under way; *waiting*: the session waits
        on the adapter.
        """
        new_line = lines != self._lines
        self._lines = lines
        if not (partial_line or in_data or self._running):
            return  # the common case of a whole command answered: nothing runs, nothing to start
        self._running = (partial_line or in_data) and not waiting
        if partial_line and not waiting:
            if new_line:
                self.command.restart()
            else:
                self.command.start()
        else:
            self.command.cancel()
        if self.data is not None:
            if in_data and not waiting:
                self.data.start()
            else:
                self.data.cancel()

    def report(self, which: str, service: str, peer: str, stats) -> None:
        """The one log line and count for a deadline that passed (the adapter then closes)."""
        deadline = getattr(self, which)
        log.info("{service}: {peer}: {which} deadline ({seconds:g}s) passed, closing", service=service, peer=peer,
                 which=which, seconds=deadline.seconds)
        stats.incr("deadlines_passed")

    def cancel(self) -> None:
        """The connection is gone."""
        self._running = False
        for deadline in (self.command, self.data, self.login):
            if deadline is not None:
                deadline.cancel()
