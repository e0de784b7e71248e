"""The Twisted adapter for one peer connection: bytes <-> :class:`TorrentCore`.

Outgoing connections send our handshake at once; incoming ones wait for the
peer's handshake, find the torrent by its info-hash and answer. After that,
every read goes to the core as one batch of wire events and the actions come
back to the torrent's runner. Uploads are pulled: piece data is produced by
``core.serve`` only while the (rate-limited) send queue has room.
"""

from __future__ import annotations

from twisted.internet import protocol
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from zope.interface import implementer

from twisted_netapps.bittorrent.peer import wire
from twisted_netapps.deadlines import Deadline
from twisted_netapps.ratelimit import ThrottledConsumer, ThrottledReceiver

log = Logger(namespace="netapps.bittorrent")

HANDSHAKE_TIMEOUT = 30.0
SERVE_BATCH = 8
SEND_HIGH_WATER = 256 * 1024
# Under an upload cap, queue little: data waiting in our buffer is latency
# for the pieces the swarm is waiting for, and the cap sets the pace anyway.
LIMITED_HIGH_WATER = 32 * 1024


@implementer(IPushProducer)
class PeerProtocol(protocol.Protocol):
    def __init__(self, lookup, runner=None) -> None:
        self.lookup = lookup  # info_hash -> runner (incoming connections)
        self.runner = runner  # known for outgoing connections
        self.outgoing = runner is not None
        self.reader = wire.WireReader()
        self.peer = None
        self.writer: ThrottledConsumer | None = None
        self.receiver: ThrottledReceiver | None = None  # the download cap, once attached
        self.paused = False
        self._handshake_deadline: Deadline | None = None

    def connectionMade(self) -> None:
        address = self.transport.getPeer()
        self.address = (address.host, address.port)
        # The whole handshake within HANDSHAKE_TIMEOUT of connecting, however it trickles in.
        self._handshake_deadline = Deadline(self.lookup.reactor, HANDSHAKE_TIMEOUT, self.transport.abortConnection)
        self._handshake_deadline.start()
        if self.runner is not None:
            self.transport.write(wire.handshake(self.runner.meta.info_hash, self.runner.peer_id))

    def dataReceived(self, data: bytes) -> None:
        if self.receiver is not None:
            self.receiver.received(data)  # handed to _process at the download cap
            return
        self._process(data)

    def _process(self, data: bytes) -> None:
        events = self.reader.receive_data(data)
        if self.peer is None:
            if not events:
                return
            first = events[0]
            if isinstance(first, wire.ProtocolError) or not self._attach(first):
                self.transport.abortConnection()
                return
            events = events[1:]
            if not events:
                self.pump()
                return
        runner = self.runner
        runner.execute(runner.core.receive(self.peer, events, runner.clock.seconds()))
        self.pump()

    def _attach(self, handshake: wire.Handshake) -> bool:
        runner = self.runner
        if runner is None:
            runner = self.lookup.runner_for(handshake.info_hash)
            if runner is None:
                return False
        elif handshake.info_hash != runner.meta.info_hash:
            return False
        if not runner.accept(self, handshake):
            return False
        self._handshake_deadline.cancel()
        self.runner = runner
        clock = runner.clock
        if not self.outgoing:
            self.transport.write(wire.handshake(runner.meta.info_hash, runner.peer_id))
        self.reader.set_piece_count(runner.meta.piece_count)
        limited = bool(runner.upload_buckets)
        self.serve_batch = 1 if limited else SERVE_BATCH
        self.writer = ThrottledConsumer(self.transport, runner.upload_buckets, clock,
                                        high_water=LIMITED_HIGH_WATER if limited else SEND_HIGH_WATER)
        self.writer.registerProducer(self, True)
        if runner.download_buckets:
            self.receiver = ThrottledReceiver(self.transport, runner.download_buckets, clock, self._process)
        self.peer = runner.core.new_peer(self.address, self.outgoing, clock.seconds())
        runner.connected(self)
        runner.execute(runner.core.peer_handshaken(self.peer, handshake, clock.seconds()))
        return True

    # -- sending ----------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        if self.writer is not None:
            self.writer.write(data)

    def pump(self) -> None:
        """Hand the core's waiting uploads to the writer while it has room."""
        runner, peer = self.runner, self.peer
        if peer is None:
            return
        while not self.paused and peer.incoming and not peer.closed:
            before = len(peer.incoming)
            runner.execute(runner.core.serve(peer, runner.clock.seconds(), self.serve_batch))
            if len(peer.incoming) == before:
                break  # waiting for a piece to be read from disk

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self.pump()

    def stopProducing(self) -> None:
        self.paused = True

    def connectionLost(self, reason) -> None:
        if self._handshake_deadline is not None:
            self._handshake_deadline.cancel()
        if self.receiver is not None:
            self.receiver.stop()
        if self.writer is not None:
            self.writer.close()
        if self.runner is not None:
            self.runner.disconnected(self)


class PeerFactory(protocol.Factory):
    """Incoming connections for every torrent a :class:`TorrentDirectory` knows."""

    noisy = False

    def __init__(self, directory) -> None:
        self.directory = directory

    def buildProtocol(self, addr):
        return PeerProtocol(self.directory)


class OutgoingPeerFactory(protocol.Factory):
    noisy = False

    def __init__(self, directory, runner) -> None:
        self.directory = directory
        self.runner = runner

    def buildProtocol(self, addr):
        return PeerProtocol(self.directory, self.runner)


class TorrentDirectory:
    """The torrents a listener serves, by info-hash."""

    def __init__(self, reactor) -> None:
        self.reactor = reactor
        self.runners: dict[bytes, object] = {}

    def runner_for(self, info_hash: bytes):
        return self.runners.get(info_hash)

    def add(self, runner) -> None:
        self.runners[runner.meta.info_hash] = runner

    def remove(self, runner) -> None:
        self.runners.pop(runner.meta.info_hash, None)
