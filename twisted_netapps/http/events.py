"""What the connection cores report: frozen dataclasses, one per happening."""

from __future__ import annotations

from dataclasses import dataclass

from twisted_netapps.http.body import Framing
from twisted_netapps.http.head import RequestHead, ResponseHead


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A complete request head; its body (if any) follows as :class:`Data`."""

    head: RequestHead
    framing: Framing
    keep_alive: bool


@dataclass(frozen=True, slots=True)
class InterimResponse:
    """A 1xx response from upstream (100 Continue, 103 Early Hints...)."""

    head: ResponseHead


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """A final response head from upstream; its body follows as :class:`Data`."""

    head: ResponseHead
    framing: Framing


@dataclass(frozen=True, slots=True)
class Data:
    data: bytes


@dataclass(frozen=True, slots=True)
class EndOfMessage:
    """The body ended. For upstream responses, ``reusable`` says whether the
    connection can carry another request."""

    reusable: bool = True


END_OF_REQUEST = EndOfMessage()  # events are immutable: one instance serves every request


@dataclass(frozen=True, slots=True)
class MessageError:
    """The peer broke the protocol: answer ``status`` (if still possible) and close."""

    status: int
    detail: str
