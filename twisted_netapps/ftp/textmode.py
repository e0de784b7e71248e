"""TYPE A (ASCII) transfers: the network's CRLF line ends <-> the disk's LF (RFC 959 3.1.1.1).

Pure codecs over chunks of a stream. Binary (TYPE I) transfers skip them.
"""

from __future__ import annotations


def to_network(chunk: bytes) -> bytes:
    """Disk -> network: every LF not already after a CR becomes CRLF.

    A chunk starting with LF right after a chunk ending in CR is rare enough
    (a CRLF file split exactly there) that the extra CR it gets is accepted.
    """
    return chunk.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


class FromNetwork:
    """Network -> disk: CRLF becomes LF; a CR at the end of a chunk waits for the next one."""

    def __init__(self) -> None:
        self._cr = False

    def feed(self, chunk: bytes) -> bytes:
        if self._cr:
            chunk = b"\r" + chunk
            self._cr = False
        if chunk.endswith(b"\r"):
            self._cr = True
            chunk = chunk[:-1]
        return chunk.replace(b"\r\n", b"\n")

    def finish(self) -> bytes:
        """A CR that ended the stream is kept."""
        if self._cr:
            self._cr = False
            return b"\r"
        return b""
