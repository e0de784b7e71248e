"""The one place POP3 bytes leave the protocol: send at once when nothing is queued.

``transport.write`` only queues: Twisted sends the bytes one reactor turn
later, after registering for writability and unregistering again (two
``epoll_ctl`` calls). A POP3 download loop (poplib: ``RETR``, wait, ``RETR``...)
waits for every reply, so that turn is most of a small RETR's latency:
measured with ``bench/pop3_retr.py``, plain ``transport.write`` cost 47 us of
server CPU per 4 KiB message against 39-42 us sending at once, and a quarter
less throughput.

So :class:`ReplyWriter` sends on the connection's socket itself
(``getHandle()``, public ``ISystemHandle``) when, and only when, that cannot
reorder bytes: a plain TCP transport (not TLS: those bytes must go through
the TLS layer), no streaming producer of ours registered, and nothing we
handed to ``transport.write`` still waiting there. Whatever the socket does
not take goes to ``transport.write``, so ordering, back-pressure and errors
stay Twisted's; from then on every write goes that way until Twisted says
its buffer has drained — which it does through the public consumer API: a
pull producer registered with the transport is asked to ``resumeProducing``
when the buffer runs empty. Any other transport (TLS, UNIX sockets, tests'
``StringTransport``) gets plain ``transport.write``, the same code path.
"""

from __future__ import annotations

import socket

from twisted.internet import interfaces
from zope.interface import implementer


def direct_socket(transport) -> socket.socket | None:
    """The socket of a plain (not TLS) TCP *transport*, else None."""
    if not interfaces.ITCPTransport.providedBy(transport) or interfaces.ISSLTransport.providedBy(transport):
        return None
    get_handle = getattr(transport, "getHandle", None)
    handle = get_handle() if get_handle is not None else None
    return handle if isinstance(handle, socket.socket) else None


@implementer(interfaces.IPullProducer)
class _DrainWatch:
    """Registered while bytes of ours wait in the transport: told when they have gone."""

    def __init__(self, writer: "ReplyWriter") -> None:
        self.writer = writer
        self.registering = False

    def resumeProducing(self) -> None:
        if self.registering:
            return  # registerProducer asks once at once; the buffer has not drained
        self.writer._drained()

    def stopProducing(self) -> None:
        self.writer._watch = None


class ReplyWriter:
    """Writes a POP3 connection's bytes: straight to the socket when it is safe, else via Twisted."""

    def __init__(self, transport) -> None:
        self.transport = transport
        self._socket = direct_socket(transport)
        self._queued = False  # bytes of ours may still wait in the transport's buffer
        self._streaming = False
        self._watch: _DrainWatch | None = None

    @property
    def direct(self) -> bool:
        """Whether the next write may go straight to the socket."""
        return self._socket is not None and not (self._queued or self._streaming)

    def write(self, data: bytes) -> None:
        if self._socket is not None and not (self._queued or self._streaming):
            try:
                sent = self._socket.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                sent = 0  # let Twisted's own write path see and report the error
            if sent == len(data):
                return
            data = data[sent:]
        self.transport.write(data)
        if self._socket is not None and not self._streaming and not self._queued:
            self._queued = True
            self._watch_drain()

    def stop_direct(self) -> None:
        """No more direct sends on this connection (TLS is starting)."""
        self._socket = None
        self._unwatch()

    def start_streaming(self, producer, streaming: bool) -> None:
        """Register the protocol's producer (a big message); writes go via Twisted meanwhile."""
        self._unwatch()
        self._streaming = True
        self.transport.registerProducer(producer, streaming)

    def stop_streaming(self) -> None:
        self.transport.unregisterProducer()
        self._streaming = False
        if self._socket is not None:
            self._queued = True  # the stream's last bytes may still be in the buffer
            self._watch_drain()

    def _watch_drain(self) -> None:
        watch = self._watch = _DrainWatch(self)
        watch.registering = True
        try:
            self.transport.registerProducer(watch, False)
        finally:
            watch.registering = False

    def _unwatch(self) -> None:
        if self._watch is not None:
            self._watch = None
            self.transport.unregisterProducer()
            # Whatever the watch was waiting for still counts as queued.

    def _drained(self) -> None:
        self._queued = False
        self._unwatch()
