"""The uppercase service's protocol core: sans-I/O, no Twisted.

The socket-programming chapter's server, made precise:

- Text is UTF-8 and uppercased the way Python does (``'straße' -> 'STRASSE'``,
  so a reply can be longer than the request).
- Invalid UTF-8 is never an error: the bytes that do not decode are passed
  back unchanged and everything around them is uppercased (decoding with
  ``surrogateescape`` keeps them; ``str.upper`` leaves lone surrogates alone).
- TCP is line oriented: each line, ended by LF or CRLF, comes back uppercased
  with the same ending. A line longer than the limit gets an error line and
  the connection is closed (the rest of the stream cannot be framed
  reliably, and buffering it without bound would be a memory hole).
- UDP: one datagram in, one uppercased datagram back. Empty datagrams are
  dropped silently (nothing to uppercase, and answering empty probes only
  helps reflection). A datagram over the limit, or whose uppercased reply
  would not fit in one UDP datagram, gets a short error datagram instead,
  never a truncated answer, and never a reply larger than the error line for
  a large request, so the service is no amplifier.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_UDP_PAYLOAD = 65507  # largest IPv4 UDP payload


def uppercase(data: bytes) -> bytes:
    """Uppercase UTF-8 *data*; undecodable bytes pass through unchanged."""
    return data.decode("utf-8", "surrogateescape").upper().encode("utf-8", "surrogateescape")


@dataclass(frozen=True)
class Reply:
    """Bytes to send back for one complete line (with its line ending)."""

    data: bytes


@dataclass(frozen=True)
class LineTooLong:
    """A line exceeded the limit: send ``data`` (an error line), then close."""

    limit: int

    @property
    def data(self) -> bytes:
        return f"ERROR: line too long (limit {self.limit} bytes)\r\n".encode("ascii")


class LineMachine:
    """Turns received bytes into :class:`Reply` events, one per line.

    ``receive_data(bytes) -> list[event]``; after a :class:`LineTooLong` the
    machine is dead (further data is ignored) and the adapter closes.
    """

    def __init__(self, max_line: int = 65536) -> None:
        self.max_line = max_line
        self._buffer = bytearray()
        self._scan_from = 0  # bytes before this index are known to hold no LF
        self.failed = False

    def receive_data(self, data: bytes) -> list[Reply | LineTooLong]:
        if self.failed:
            return []
        self._buffer += data
        events: list[Reply | LineTooLong] = []
        start = 0
        buffer = self._buffer
        while True:
            end = buffer.find(b"\n", max(start, self._scan_from))
            if end < 0:
                break
            line_end = end - 1 if end > start and buffer[end - 1] == 0x0D else end
            if line_end - start > self.max_line:
                return self._fail(events)
            events.append(Reply(uppercase(bytes(buffer[start:line_end])) + bytes(buffer[line_end : end + 1])))
            start = end + 1
        del buffer[:start]
        self._scan_from = len(buffer)
        # A partial line already over the limit will never become valid.
        pending = len(buffer) - (1 if buffer.endswith(b"\r") else 0)
        if pending > self.max_line:
            return self._fail(events)
        return events

    def _fail(self, events):
        self.failed = True
        self._buffer.clear()
        events.append(LineTooLong(self.max_line))
        return events

    @property
    def pending(self) -> bytes:
        """The unterminated tail (sent back uppercased when the peer half-closes)."""
        return bytes(self._buffer)


@dataclass(frozen=True)
class DatagramError:
    """A short error datagram sent instead of an answer."""

    data: bytes


def datagram_reply(payload: bytes, max_datagram: int = MAX_UDP_PAYLOAD) -> Reply | DatagramError | None:
    """What to send back for *payload*; None means send nothing."""
    if not payload:
        return None
    if len(payload) > max_datagram:
        return DatagramError(f"ERROR: datagram too large ({len(payload)} > {max_datagram} bytes)\n".encode("ascii"))
    reply = uppercase(payload)
    if len(reply) > MAX_UDP_PAYLOAD:
        return DatagramError(f"ERROR: reply too large for one datagram ({len(reply)} bytes)\n".encode("ascii"))
    return Reply(reply)
