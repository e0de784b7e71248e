"""The one error the codec raises: a message that breaks HTTP/1.1's rules."""

from __future__ import annotations


class ProtocolError(Exception):
    """Malformed or unacceptable input.

    ``status`` is what a server answers the peer (400, 414, 431, 501, 505;
    502 when an upstream response is bad) and ``detail`` one line saying why.
    """

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
