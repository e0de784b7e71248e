"""Deadlines: a time limit counted from when something started, not from the last byte.

An idle timer (``TimeoutMixin``) restarts on every byte, so a client that
trickles one byte every few seconds holds its connection for ever
(slowloris). A :class:`Deadline` is started once, when a command line, a
DATA transfer, a request head or a login begins, and fires after that many
seconds whatever arrives meanwhile, unless the adapter cancels it because
the thing finished. Use both: the idle timer for silence, deadlines for
progress.
"""

from __future__ import annotations

from typing import Callable


class Deadline:
    """Calls *on_expire* *seconds* after :meth:`start`, unless cancelled first."""

    __slots__ = ("clock", "seconds", "on_expire", "_call")

    def __init__(self, clock, seconds: float, on_expire: Callable[[], None]) -> None:
        self.clock = clock
        self.seconds = seconds
        self.on_expire = on_expire
        self._call = None

    @property
    def active(self) -> bool:
        return self._call is not None and self._call.active()

    def start(self) -> None:
        """Start counting, unless already counting (later bytes do not move a deadline)."""
        if not self.active:
            self._call = self.clock.callLater(self.seconds, self._expire)

    def restart(self) -> None:
        """Count again from now (the next command begins)."""
        self.cancel()
        self._call = self.clock.callLater(self.seconds, self._expire)

    def cancel(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _expire(self) -> None:
        self._call = None
        self.on_expire()
