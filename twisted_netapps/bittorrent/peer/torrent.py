"""One torrent's peer logic, sans-I/O: connections, interest, requests, serving, choking.

:class:`TorrentCore` is driven by the adapter with wire events, results of
disk work and the time; it answers with actions:

- :class:`Send` bytes to a peer, :class:`Close` a peer (with a reason);
- :class:`StorePiece`: a piece's blocks are all in; check its SHA-1, write
  it, and report back with :meth:`TorrentCore.piece_stored` only once it is
  durable (fsync'd) -- only then is ``have`` sent;
- :class:`ReadPiece`: load a piece we serve (reported with
  :meth:`TorrentCore.piece_loaded`).

Piece data to upload is produced on demand by :meth:`TorrentCore.serve`, so
the adapter can hold it back while its (rate-limited) send queue is full.
"""

from __future__ import annotations

import random
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from twisted_netapps.bittorrent import bencode
from twisted_netapps.bittorrent.metainfo import BLOCK_SIZE, Metainfo
from twisted_netapps.bittorrent.peer import wire
from twisted_netapps.bittorrent.peer.choker import ChokeCandidate, Choker
from twisted_netapps.bittorrent.peer.picker import PeerPieces, PiecePicker
from twisted_netapps.bittorrent.peer.rate import RateMeter
from twisted_netapps.bittorrent.peer.superseed import SuperSeeder

KEEPALIVE_INTERVAL = 30.0
SILENCE_LIMIT = 120.0
SNUB_TIME = 60.0
DEFAULT_PEER_REQQ = 250
OUR_REQQ = 1024
MIN_PIPELINE = 32  # requests in flight to a new connection, before its rate means anything
SLOW_PIPELINE = 4  # ...and to a connection whose measured rate is low (a rate-capped uploader)
RATE_SETTLED = 2.0  # seconds after connecting before the measured rate sizes the pipeline
MAX_PIPELINE = 512
CACHE_PIECES = 64
BAN_STRIKES = 2
CLIENT_NAME = "twisted-netapps 0.1"


@dataclass(frozen=True, slots=True)
class Send:
    peer: "PeerState"
    data: bytes


@dataclass(frozen=True, slots=True)
class Close:
    peer: "PeerState"
    reason: str


@dataclass(frozen=True, slots=True)
class StorePiece:
    index: int
    data: bytes


@dataclass(frozen=True, slots=True)
class ReadPiece:
    index: int


@dataclass(eq=False)
class PeerState:
    """What we know about one connection; identity is the object itself."""

    address: tuple[str, int]
    outgoing: bool
    connected_at: float
    piece_count: int
    peer_id: bytes = b""
    fast: bool = False
    extensions: bool = False
    am_choking: bool = True
    am_interested: bool = False
    peer_choking: bool = True
    peer_interested: bool = False
    handshaken: bool = False
    closed: bool = False
    reqq: int = DEFAULT_PEER_REQQ
    client: str = ""
    listen_port: int | None = None
    pieces: PeerPieces = field(init=False)
    wanted: int = 0  # pieces it has that we lack
    outstanding: dict = field(default_factory=dict)  # (index, begin) -> length, our requests to it
    incoming: deque = field(default_factory=deque)  # its requests to us, in order
    download: RateMeter = field(init=False)
    upload: RateMeter = field(init=False)
    last_block: float = 0.0
    last_sent: float = 0.0
    last_received: float = 0.0
    snubbed: bool = False
    strikes: int = 0

    def __post_init__(self) -> None:
        self.pieces = PeerPieces(self.piece_count)
        self.download = RateMeter(now=self.connected_at)
        self.upload = RateMeter(now=self.connected_at)
        self.last_block = self.last_sent = self.last_received = self.connected_at

    def __hash__(self) -> int:
        return id(self)

    @property
    def name(self) -> str:
        return f"{self.address[0]}:{self.address[1]}"


class TorrentCore:
    def __init__(
        self,
        meta: Metainfo,
        peer_id: bytes,
        have: bytearray | None = None,
        *,
        listen_port: int | None = None,
        rng: random.Random | None = None,
        choker: Choker | None = None,
        super_seed: bool = False,
    ) -> None:
        self.meta = meta
        self.peer_id = peer_id
        self.listen_port = listen_port
        self.rng = rng or random.Random()
        self.picker = PiecePicker(meta.piece_count, meta.piece_length, meta.total_length, rng=self.rng)
        for i, v in enumerate(have or ()):
            if v:
                self.picker.set_have(i)
        self.choker = choker or Choker(piece_length=meta.piece_length, rng=self.rng)
        self.peers: list[PeerState] = []
        self.buffers: dict[int, bytearray] = {}
        self.contributors: dict[int, set[PeerState]] = {}
        self.cache: OrderedDict[int, bytes] = OrderedDict()
        self.reading: set[int] = set()
        self.banned: set[str] = set()
        self.uploaded = 0
        self.downloaded = 0
        self.wasted = 0
        self.hash_failures = 0
        self.super_seed = super_seed
        self.super_seeder = SuperSeeder(meta.piece_count, self.rng)
        self._actions: list = []

    # -- helpers --------------------------------------------------------------------
    @property
    def complete(self) -> bool:
        return self.picker.complete

    @property
    def left(self) -> int:
        done = sum(self.meta.piece_size(i) for i in range(self.meta.piece_count) if self.picker.have[i])
        return self.meta.total_length - done

    def _send(self, peer: PeerState, data: bytes, now: float) -> None:
        if not peer.closed:
            peer.last_sent = now
            self._actions.append(Send(peer, data))

    def _close(self, peer: PeerState, reason: str) -> None:
        if not peer.closed:
            self._actions.append(Close(peer, reason))
            peer.closed = True

    def _take(self) -> list:
        actions, self._actions = self._actions, []
        return actions

    def our_bitfield(self) -> bytes:
        bits = bytearray((self.meta.piece_count + 7) // 8)
        for i, v in enumerate(self.picker.have):
            if v:
                bits[i >> 3] |= 0x80 >> (i & 7)
        return bytes(bits)

    # -- connections -----------------------------------------------------------------
    def new_peer(self, address: tuple[str, int], outgoing: bool, now: float) -> PeerState:
        return PeerState(address, outgoing, now, self.meta.piece_count)

    def peer_handshaken(self, peer: PeerState, hs: wire.Handshake, now: float) -> list:
        """The peer's handshake arrived (ours was sent by the adapter): greet it."""
        peer.peer_id = hs.peer_id
        peer.fast = wire.supports_fast(hs.reserved)
        peer.extensions = wire.supports_extensions(hs.reserved)
        peer.handshaken = True
        if peer.address[0] in self.banned:
            self._close(peer, "banned for sending bad data")
            return self._take()
        self.peers.append(peer)
        if peer.extensions:
            handshake = {"m": {}, "v": CLIENT_NAME, "reqq": OUR_REQQ}
            if self.listen_port:
                handshake["p"] = self.listen_port
            self._send(peer, wire.extended(0, bencode.encode(handshake)), now)
        if self.super_seed and self.complete:
            if peer.fast:
                self._send(peer, wire.HAVE_NONE_MESSAGE, now)
            self._rechoke(now)  # unchoked at once, and offered its first pieces
        elif peer.fast and self.picker.have_count == 0:
            self._send(peer, wire.HAVE_NONE_MESSAGE, now)
        elif peer.fast and self.complete:
            self._send(peer, wire.HAVE_ALL_MESSAGE, now)
        elif self.picker.have_count:
            self._send(peer, wire.bitfield(self.our_bitfield()), now)
        return self._take()

    def peer_lost(self, peer: PeerState, now: float) -> list:
        peer.closed = True
        if peer in self.peers:
            self.peers.remove(peer)
            self.picker.peer_gone(peer.pieces)
            for (index, begin) in list(peer.outstanding):
                self.picker.block_cancelled(index, begin, peer)
            peer.outstanding.clear()
            self.super_seeder.withdraw(peer, peer.pieces.bits)
            self._rechoke(now)
            self._fill_all(now)
        return self._take()

    # -- incoming messages -------------------------------------------------------------
    def receive(self, peer: PeerState, events: list, now: float) -> list:
        """Apply a batch of wire events from *peer*."""
        peer.last_received = now
        touched_interest = False
        for event in events:
            if peer.closed:
                break
            kind = type(event)
            if kind is wire.Piece:
                self._on_piece(peer, event, now)
            elif kind is wire.Request:
                self._on_request(peer, event, now)
            elif kind is wire.Have:
                self._on_have(peer, event.index, now)
            elif kind is wire.Bitfield:
                self._on_bitfield(peer, event.bits, now)
            elif kind is wire.HaveAll:
                self.picker.peer_has_all(peer.pieces)
                self._recount_wanted(peer)
                self._update_interest(peer, now)
            elif kind is wire.HaveNone:
                pass
            elif kind is wire.Choke:
                peer.peer_choking = True
                if not peer.fast:  # BEP 6: with the fast extension a choke rejects nothing by itself
                    self._drop_outstanding(peer)
            elif kind is wire.Unchoke:
                peer.peer_choking = False
                peer.last_block = now  # the snub clock starts now
            elif kind is wire.Interested:
                peer.peer_interested = True
                touched_interest = True
            elif kind is wire.NotInterested:
                peer.peer_interested = False
                touched_interest = True
            elif kind is wire.Cancel:
                self._on_cancel(peer, event)
            elif kind is wire.Reject:
                if peer.outstanding.pop((event.index, event.begin), None) is not None:
                    self.picker.block_cancelled(event.index, event.begin, peer)
            elif kind is wire.Extended:
                self._on_extended(peer, event)
            elif kind is wire.ProtocolError:
                self._close(peer, event.reason)
            # KeepAlive, Port, Suggest, AllowedFast, Unknown: nothing to do
        if touched_interest and not peer.closed:
            self._rechoke(now)
        if not peer.closed:
            self._fill(peer, now)
        return self._take()

    def _on_bitfield(self, peer: PeerState, bits: bytes, now: float) -> None:
        if len(bits) != (self.meta.piece_count + 7) // 8:
            self._close(peer, "bitfield of the wrong size")
            return
        spare = self.meta.piece_count % 8
        if spare and bits[-1] & (0xFF >> spare):
            self._close(peer, "bitfield with spare bits set")
            return
        self.picker.peer_bitfield(peer.pieces, bits)
        self._recount_wanted(peer)
        self._update_interest(peer, now)

    def _on_have(self, peer: PeerState, index: int, now: float) -> None:
        if index >= self.meta.piece_count:
            self._close(peer, f"have for piece {index} of {self.meta.piece_count}")
            return
        if peer.pieces.bits[index]:
            return
        self.picker.peer_has(peer.pieces, index)
        if not self.picker.have[index]:
            peer.wanted += 1
            if not peer.am_interested:
                self._update_interest(peer, now)
        if self.super_seed and self.complete:
            for settled in self.super_seeder.spread(index):
                self._super_seed_offer(settled, now)

    def _recount_wanted(self, peer: PeerState) -> None:
        have, bits = self.picker.have, peer.pieces.bits
        peer.wanted = sum(1 for i in range(self.meta.piece_count) if bits[i] and not have[i])

    def _update_interest(self, peer: PeerState, now: float) -> None:
        want = peer.wanted > 0 and not self.complete
        if want != peer.am_interested:
            peer.am_interested = want
            self._send(peer, wire.INTERESTED_MESSAGE if want else wire.NOT_INTERESTED_MESSAGE, now)

    def _on_extended(self, peer: PeerState, event: wire.Extended) -> None:
        if event.ext_id != 0:
            return  # we announce no extension messages, so none should come
        try:
            handshake = bencode.decode(event.payload, max_depth=8, max_items=2000)
        except bencode.BencodeError:
            return  # a bad extension handshake is ignored, not fatal
        if not isinstance(handshake, dict):
            return
        reqq = handshake.get(b"reqq")
        if isinstance(reqq, int) and reqq > 0:
            peer.reqq = min(reqq, MAX_PIPELINE)
        client = handshake.get(b"v")
        if isinstance(client, bytes):
            peer.client = client[:64].decode("utf-8", "replace")
        listen = handshake.get(b"p")
        if isinstance(listen, int) and 0 < listen < 65536:
            peer.listen_port = listen

    # -- downloading ----------------------------------------------------------------------
    def _on_piece(self, peer: PeerState, event: wire.Piece, now: float) -> None:
        key = (event.index, event.begin)
        length = peer.outstanding.pop(key, None)
        size = len(event.data)
        peer.download.add(size, now)
        self.downloaded += size
        if length is None or length != size:
            self.wasted += size  # unrequested, cancelled or late (endgame): not an error
            return
        peer.last_block = now
        peer.snubbed = False
        new, others = self.picker.block_received(event.index, event.begin, peer)
        if not new:
            self.wasted += size
            return
        buffer = self.buffers.get(event.index)
        if buffer is None:
            buffer = self.buffers[event.index] = bytearray(self.meta.piece_size(event.index))
        buffer[event.begin:event.begin + size] = event.data
        self.contributors.setdefault(event.index, set()).add(peer)
        for other in others:  # endgame duplicates
            if other.outstanding.pop(key, None) is not None:
                self._send(other, wire.cancel(event.index, event.begin, size), now)
        if event.index in self.picker.verifying:
            self._actions.append(StorePiece(event.index, bytes(self.buffers.pop(event.index))))

    def piece_stored(self, index: int, ok: bool, data: bytes | None, now: float) -> list:
        """A :class:`StorePiece` finished: *ok* means hash matched and the data is durable."""
        contributors = self.contributors.pop(index, set())
        if not ok:
            self.hash_failures += 1
            self.picker.piece_failed(index)
            for peer in contributors:
                peer.strikes += 1
                if len(contributors) == 1 or peer.strikes >= BAN_STRIKES:
                    self.banned.add(peer.address[0])
                    self._close(peer, "sent data that failed the hash check")
            self._fill_all(now)
            return self._take()
        self.picker.set_have(index)
        if data is not None:
            self._cache_put(index, data)
        message = wire.have(index)
        for peer in self.peers:
            if not (self.super_seed and self.complete):
                self._send(peer, message, now)
            if peer.pieces.bits[index]:
                peer.wanted -= 1
                if peer.am_interested and (peer.wanted <= 0 or self.complete):
                    self._update_interest(peer, now)
        if self.complete:
            for peer in list(self.peers):
                if peer.pieces.complete:
                    self._close(peer, "both complete")
        self._fill_all(now)
        return self._take()

    def _drop_outstanding(self, peer: PeerState) -> None:
        for (index, begin) in list(peer.outstanding):
            self.picker.block_cancelled(index, begin, peer)
        peer.outstanding.clear()

    def _pipeline(self, peer: PeerState, now: float) -> int:
        # About a second of the peer's rate in flight. Deep queues at a slow
        # (capped) peer hold blocks others could send sooner -- the last pieces
        # wait there -- so once the rate is known, a slow peer gets a short queue.
        depth = int(peer.download.rate(now) * 1.0 / BLOCK_SIZE)
        floor = MIN_PIPELINE if now - peer.connected_at < RATE_SETTLED else SLOW_PIPELINE
        return max(floor, min(depth, peer.reqq, MAX_PIPELINE))

    def _fill(self, peer: PeerState, now: float) -> None:
        if peer.peer_choking or not peer.am_interested or peer.closed:
            return
        room = self._pipeline(peer, now) - len(peer.outstanding)
        if room < min(8, self._pipeline(peer, now) // 2) and peer.outstanding:
            return  # refill in batches: fewer picker passes, same queue depth
        if room <= 0:
            return
        blocks = self.picker.pick(peer, peer.pieces, room)
        if not blocks:
            return
        out = []
        for index, begin, length in blocks:
            peer.outstanding[(index, begin)] = length
            out.append(wire.request(index, begin, length))
        self._send(peer, b"".join(out), now)

    def _fill_all(self, now: float) -> None:
        for peer in self.peers:
            self._fill(peer, now)

    # -- uploading ---------------------------------------------------------------------------
    def _on_request(self, peer: PeerState, req: wire.Request, now: float) -> None:
        meta = self.meta
        if req.index >= meta.piece_count or req.length > BLOCK_SIZE or req.length == 0 \
                or req.begin + req.length > meta.piece_size(req.index):
            self._close(peer, f"bad request {req.index}/{req.begin}/{req.length}")
            return
        if peer.am_choking or not self.picker.have[req.index] or len(peer.incoming) >= OUR_REQQ:
            if peer.fast:
                self._send(peer, wire.reject(req.index, req.begin, req.length), now)
            return
        peer.incoming.append(req)
        if req.index not in self.cache and req.index not in self.reading:
            self.reading.add(req.index)
            self._actions.append(ReadPiece(req.index))

    def _on_cancel(self, peer: PeerState, event: wire.Cancel) -> None:
        req = wire.Request(event.index, event.begin, event.length)
        try:
            peer.incoming.remove(req)
        except ValueError:
            pass

    def piece_loaded(self, index: int, data: bytes | None, now: float) -> list:
        self.reading.discard(index)
        if data is not None:
            self._cache_put(index, data)
        else:
            # Missing on disk (deleted under us): refuse what waits for it.
            for peer in self.peers:
                for req in [r for r in peer.incoming if r.index == index]:
                    peer.incoming.remove(req)
                    if peer.fast:
                        self._send(peer, wire.reject(req.index, req.begin, req.length), now)
        return self._take()

    def _cache_put(self, index: int, data: bytes) -> None:
        self.cache[index] = data
        self.cache.move_to_end(index)
        while len(self.cache) > CACHE_PIECES:
            self.cache.popitem(last=False)

    def serve(self, peer: PeerState, now: float, max_blocks: int) -> list:
        """Up to *max_blocks* piece messages for *peer*'s waiting requests (data permitting)."""
        sent = 0
        out = []
        while peer.incoming and sent < max_blocks and not peer.am_choking and not peer.closed:
            req = peer.incoming[0]
            data = self.cache.get(req.index)
            if data is None:
                if req.index not in self.reading:
                    self.reading.add(req.index)
                    self._actions.append(ReadPiece(req.index))
                break
            peer.incoming.popleft()
            block = data[req.begin:req.begin + req.length]
            out.append(wire.piece_header(req.index, req.begin, req.length))
            out.append(block)
            peer.upload.add(req.length, now)
            self.uploaded += req.length
            sent += 1
        if out:
            self._send(peer, b"".join(out), now)
        return self._take()

    # -- choking and timers -------------------------------------------------------------------
    def _rechoke(self, now: float) -> None:
        # A super-seed chooses whom to offer pieces to: every incomplete peer is
        # a candidate (a peer becomes interested only once it has been offered one).
        super_seeding = self.super_seed and self.complete
        candidates = [
            ChokeCandidate(p, p.peer_interested or (super_seeding and not p.pieces.complete),
                           p.download.rate(now), p.upload.rate(now), p.connected_at, p.snubbed, p.upload.total)
            for p in self.peers if p.handshaken
        ]
        if super_seeding:
            # BEP 16: the offers (one piece per peer at a time) ration the seed's
            # upload, so every incomplete peer is served.
            unchoked = {c.key for c in candidates if c.interested}
        else:
            unchoked = self.choker.update(now, candidates, seeding=self.complete)
        for peer in self.peers:
            if peer in unchoked and peer.am_choking:
                peer.am_choking = False
                self._send(peer, wire.UNCHOKE_MESSAGE, now)
                if self.super_seed and self.complete:
                    self._super_seed_offer(peer, now)
            elif peer not in unchoked and not peer.am_choking:
                peer.am_choking = True
                self._send(peer, wire.CHOKE_MESSAGE, now)
                if self.super_seed and self.complete:
                    self.super_seeder.withdraw(peer, peer.pieces.bits)
                if peer.fast:
                    for req in peer.incoming:
                        self._send(peer, wire.reject(req.index, req.begin, req.length), now)
                peer.incoming.clear()

    def tick(self, now: float) -> list:
        """Once a second or so: choking cadence, keep-alives, silence and snubbing."""
        self._rechoke(now)
        if self.super_seed and self.complete:
            for peer in self.super_seeder.wanting():
                if not peer.closed:
                    self._super_seed_offer(peer, now)
        for peer in list(self.peers):
            if now - peer.last_received > SILENCE_LIMIT:
                self._close(peer, f"silent for {SILENCE_LIMIT:.0f}s")
                continue
            if now - peer.last_sent >= KEEPALIVE_INTERVAL:
                self._send(peer, wire.KEEPALIVE, now)
            if peer.outstanding and not peer.peer_choking and now - peer.last_block > SNUB_TIME:
                peer.snubbed = True
                for (index, begin), length in list(peer.outstanding.items()):
                    self._send(peer, wire.cancel(index, begin, length), now)
                self._drop_outstanding(peer)
            self._fill(peer, now)
        return self._take()

    # -- super-seeding (BEP 16) ------------------------------------------------------------------
    def _super_seed_offer(self, peer: PeerState, now: float) -> None:
        """Top up *peer*'s offers (only peers we serve: an offer to a choked peer stalls that piece)."""
        if peer.am_choking or peer.closed:
            return
        for index in self.super_seeder.top_up(peer, peer.pieces.bits, self.picker.availability):
            self._send(peer, wire.have(index), now)
