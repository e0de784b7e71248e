"""Passive data connections on a reactor that cannot watch our own sockets (IOCP, wrappers):
Twisted's listenTCP stands in, with the same one-connection, control-peer-only rules."""

from __future__ import annotations

import socket

import pytest
import pytest_twisted
from twisted.internet import interfaces, task
from zope.interface import implementer

from twisted_netapps.ftp import data
from twisted_netapps.ftp.data import DataChannel, DataConnection, PortPicker


@implementer(interfaces.IReactorTCP, interfaces.IReactorTime)
class TCPOnlyReactor:
    """The running reactor seen through IReactorTCP and IReactorTime only."""

    def __init__(self, reactor) -> None:
        self._reactor = reactor
        self.listened = []

    def listenTCP(self, port, factory, backlog=50, interface=""):
        listening = self._reactor.listenTCP(port, factory, backlog=backlog, interface=interface)
        self.listened.append(listening)
        return listening

    def connectTCP(self, *args, **kwargs):
        return self._reactor.connectTCP(*args, **kwargs)

    def callLater(self, *args, **kwargs):
        return self._reactor.callLater(*args, **kwargs)

    def seconds(self):
        return self._reactor.seconds()


def channel_on(reactor) -> DataChannel:
    return DataChannel(reactor, local_host="127.0.0.1", peer_host="127.0.0.1", picker=PortPicker(0, 0),
                       timeout=5.0, tls_options=lambda: None)


def connect_from(source: str, port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))


def test_the_posix_reactor_gets_our_own_listener():
    from twisted.internet import reactor

    assert data._can_adopt(reactor)
    assert not data._can_adopt(TCPOnlyReactor(reactor))


@pytest_twisted.ensureDeferred
async def test_fallback_listener_takes_the_control_peer_and_stops_listening():
    from twisted.internet import reactor

    tcp_only = TCPOnlyReactor(reactor)
    channel = channel_on(tcp_only)
    port = channel.listen()
    assert isinstance(channel.port, data._TwistedPassivePort) and port == channel.port.number
    stranger = connect_from("127.0.0.2", port)  # accepted by Twisted, then closed: not the control peer
    client = connect_from("127.0.0.1", port)
    try:
        connection = await channel.wait()
        assert isinstance(connection, DataConnection)
        assert channel.port is None
        await task.deferLater(reactor, 0.05, lambda: None)  # stopListening completes on the next turn
        assert not tcp_only.listened[0].connected  # one connection, then no listener
        with pytest.raises(ConnectionRefusedError):
            connect_from("127.0.0.1", port).close()
        stranger.settimeout(5)
        assert stranger.recv(1) == b""  # closed at once
        connection.transport.write(b"listing\r\n")
        connection.transport.loseConnection()
        client.settimeout(5)
        received = b""
        while not received.endswith(b"\r\n"):
            await task.deferLater(reactor, 0.01, lambda: None)  # let the reactor send
            client.setblocking(False)
            try:
                received += client.recv(100)
            except BlockingIOError:
                pass
        assert received == b"listing\r\n"
    finally:
        stranger.close()
        client.close()
        channel.close()
