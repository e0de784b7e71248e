"""What the IMAP core asks of its adapter, and what the adapter reports back.

``Send``/``Close`` are the frame's shared events and ``StateMachine`` its
transition checker (COMMON.md: ``twisted_netapps.sansio``); until that module
is on main they are defined here with the same names and shapes, and this
module re-exports the shared ones once it lands. No Twisted here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Send:
    """Bytes for the client, already framed."""

    data: bytes


@dataclass(frozen=True)
class Close:
    """Close the connection once everything sent so far is written."""


@dataclass(frozen=True)
class StartTls:
    """Start TLS now (the ``OK`` went out just before; nothing received in the clear is kept)."""


@dataclass(frozen=True)
class CheckPassword:
    """Log *user* in; answer with ``ImapCore.login_done``."""

    user: str
    password: bytes


@dataclass(frozen=True)
class Run:
    """Carry out a mailbox command (``commands.Select``, ``commands.Fetch``...); answer with
    ``ImapCore.command_done``. Untagged responses go to the client as they are produced."""

    request: Any


@dataclass(frozen=True)
class IdleDone:
    """The client ended IDLE (``DONE``, a bad line, or end of input): finish the ``Run(Idle())``."""


@dataclass(frozen=True)
class Result:
    """How a :class:`Run` ended: the tagged reply's status, optional response code and text."""

    status: str  # "OK", "NO" or "BAD"
    text: str
    code: bytes | None = None


class State(enum.Enum):
    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


class StateError(RuntimeError):
    """A transition the table does not allow: a bug in the core, not bad input."""


class StateMachine:
    """The current state, moved only along the transitions written down as data."""

    def __init__(self, initial: enum.Enum, transitions: dict) -> None:
        self.state = initial
        self.transitions = transitions

    def move(self, target: enum.Enum) -> None:
        if target is not self.state and target not in self.transitions[self.state]:
            raise StateError(f"{self.state} -> {target} is not allowed")
        self.state = target
