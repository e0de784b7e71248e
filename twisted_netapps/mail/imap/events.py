"""What the IMAP core asks of its adapter, and what the adapter reports back.

``Send``/``Close`` are the frame's shared events and ``StateMachine`` its
transition checker (:mod:`twisted_netapps.sansio`), re-exported here with
the IMAP core's own events. No Twisted here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from twisted_netapps.sansio import Close, LocalProtocolError as StateError, Send, StateMachine

__all__ = ["Send", "Close", "StateMachine", "StateError", "StartTls", "CheckPassword", "Run", "IdleDone",
           "Result", "State"]


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
