"""The contract every protocol core follows (smtp, pop3, ftp, http, bittorrent...).

A *core* is the protocol without the network: a plain class that is fed
what arrived and answers with what to do. It imports nothing from Twisted,
does no I/O, reads no clock and starts no timer. The Twisted adapter
(``protocol.py`` next to it) owns the socket, the timers, the threads and
the storage calls, and is kept thin. This is the h11 / twisted.names model;
it makes cores testable byte by byte, with hypothesis, under any chunking.

Input
    ``receive_data(data: bytes) -> list[Event]``: the core frames its input
    itself (a :class:`LineBuffer`, a length prefix...) and bounds every
    buffer. ``receive_eof() -> list[Event]``: the peer half-closed.
    Results of work the adapter did on the core's request come back through
    explicit methods named for the request (``login_done(ok)``,
    ``update_done(failures)``...). When time matters (deadlines, rates), the
    current time is an argument (``now``), never read.

Output
    A list of events, each a frozen dataclass (``slots=True`` where a hot
    path creates many): :class:`Send` (bytes to write, framed),
    :class:`Close` (close once everything queued is sent) and the
    protocol's own *requests* for work the core cannot do
    (``CheckPassword(user, password)``, ``OpenFile(path)``...). The adapter
    carries them out in order and reports back.

States
    An :class:`enum.Enum` per core, the allowed transitions written as
    data (``TRANSITIONS: dict[State, frozenset[State]]``) and checked by
    :class:`StateMachine`, as h11's ``_state.py`` does; what a command may
    do in a state is looked up from a table keyed by (state, verb), not
    built with ``dir()``.

Errors
    Malformed input from the peer becomes the protocol's error reply (and,
    past a limit, a :class:`Close`): never an exception out of the core.
    :class:`LocalProtocolError` is for the adapter's own misuse (an event
    fed in the wrong state): a bug, so it does raise.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Generic, Mapping, TypeVar

S = TypeVar("S", bound=enum.Enum)


class LocalProtocolError(RuntimeError):
    """The adapter drove the core wrongly (a bug on our side, not the peer's)."""


@dataclass(frozen=True, slots=True)
class Send:
    """Bytes to write, already framed."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Close:
    """Close the connection once everything queued before it is sent."""


_CHECKED_TABLES: dict[int, Mapping] = {}


class StateMachine(Generic[S]):
    """The current state, moved only along the transitions the table allows."""

    __slots__ = ("state", "_transitions")

    def __init__(self, initial: S, transitions: Mapping[S, frozenset[S]]) -> None:
        # A table is checked once, not per connection (iterating an Enum is slow; tables are
        # module constants). The table is kept in the cache so that its id cannot be reused.
        if _CHECKED_TABLES.get(id(transitions)) is not transitions:
            missing = [s for s in type(initial) if s not in transitions]
            if missing:
                raise LocalProtocolError(f"transition table has no row for {missing}")
            _CHECKED_TABLES[id(transitions)] = transitions
        self.state = initial
        self._transitions = transitions

    def move(self, to: S) -> None:
        if to is not self.state and to not in self._transitions[self.state]:
            raise LocalProtocolError(f"no transition {self.state.name} -> {to.name}")
        self.state = to

    def allows(self, to: S) -> bool:
        return to is self.state or to in self._transitions[self.state]


class _Overlong:
    """Marker: a line longer than the limit arrived (and was discarded up to its end)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "OVERLONG"


OVERLONG = _Overlong()


class LineBuffer:
    """Bounded line framer: CRLF (or a bare LF) terminated lines, each at most
    *max_line* bytes including its terminator.

    :meth:`next_line` returns a line without its terminator, ``None`` when
    no whole line is buffered, or :data:`OVERLONG` once for a line over the
    limit (its bytes are dropped as they arrive, so a peer streaming a
    never-ending line costs no memory). Scanning is O(n) in what arrives:
    the search resumes where the last one stopped.
    """

    __slots__ = ("max_line", "_buffer", "_scanned", "_discarding")

    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self._buffer = bytearray()
        self._scanned = 0
        self._discarding = False

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def is_empty(self) -> bool:
        """Nothing buffered, and not inside an over-long line (whose rest is still to be dropped)."""
        return not self._buffer and not self._discarding

    def clear(self) -> None:
        """Drop everything buffered (after STARTTLS: what came in the clear is not trusted)."""
        del self._buffer[:]
        self._scanned = 0
        self._discarding = False

    def take_rest(self) -> bytes:
        """Everything buffered and not yet returned as a line (a protocol switching framing)."""
        rest = bytes(self._buffer)
        self.clear()
        return rest

    def next_line(self):
        buffer = self._buffer
        end = buffer.find(b"\n", self._scanned)
        if end < 0:
            if len(buffer) > self.max_line:
                # No terminator within the limit: drop what we have and keep
                # dropping up to the next LF; report the overlong line once.
                first = not self._discarding
                self._discarding = True
                del buffer[:]
                self._scanned = 0
                return OVERLONG if first else None
            self._scanned = len(buffer)
            return None
        line = bytes(buffer[:end])
        del buffer[: end + 1]
        self._scanned = 0
        if self._discarding:
            self._discarding = False
            return self.next_line()
        if end + 1 > self.max_line:
            return OVERLONG
        if line.endswith(b"\r"):
            line = line[:-1]
        return line
