"""Piece store (files/offsets, verify, resume) and the torrent core driven by hand."""

import random

from twisted_netapps.bittorrent import metainfo
from twisted_netapps.bittorrent.peer import torrent as core, wire
from twisted_netapps.bittorrent.peer.storage import PieceStore

from bt_peers import make_content


def _tree(tmp_path):
    root = tmp_path / "src" / "t"
    make_content(root / "a.bin", 40_000)
    make_content(root / "b" / "c.bin", 30_000, seed=1)
    (root / "empty").write_bytes(b"")
    return metainfo.parse(metainfo.create(root, piece_length=16384)), root


def test_pieces_span_files_and_verify_before_writing(tmp_path):
    meta, root = _tree(tmp_path)
    source = PieceStore(meta, tmp_path / "src")
    target = PieceStore(meta, tmp_path / "dst")
    target.prepare()
    assert target.recheck() == bytearray(meta.piece_count)
    assert target.spans(2) == [(0, 32768, 40_000 - 32768), (1, 0, 16384 - (40_000 - 32768))]
    for i in range(meta.piece_count):
        data = source.read(i)
        assert not target.write_verified(i, b"x" + data[1:])  # corrupt: nothing written
        assert target.write_verified(i, data)
    target.sync()
    assert all(target.recheck())
    assert (tmp_path / "dst" / "t" / "empty").exists()
    assert (tmp_path / "dst" / "t" / "b" / "c.bin").read_bytes() == (root / "b" / "c.bin").read_bytes()


def _core(meta, have=None):
    c = core.TorrentCore(meta, b"-NA0100-" + b"0" * 12, have, rng=random.Random(1))
    return c


def test_core_downloads_verifies_and_bans_bad_data(tmp_path):
    meta, _ = _tree(tmp_path)
    leech = _core(meta)
    peer = leech.new_peer(("127.0.0.9", 1), True, 0.0)
    hs = wire.Handshake(wire.reserved_bits(), meta.info_hash, b"-XX0000-" + b"1" * 12)
    actions = leech.peer_handshaken(peer, hs, 0.0)
    assert any(isinstance(a, core.Send) and a.data == wire.HAVE_NONE_MESSAGE for a in actions)
    actions = leech.receive(peer, [wire.HaveAll(), wire.Unchoke()], 0.1)
    sent = b"".join(a.data for a in actions if isinstance(a, core.Send))
    assert wire.INTERESTED_MESSAGE in sent
    requests = [e for e in wire.WireReader(handshake=False).receive_data(sent) if isinstance(e, wire.Request)]
    assert requests and all(r.length <= 16384 for r in requests)
    # answer the first piece's blocks with garbage: the piece fails, the only contributor is banned
    first = requests[0].index
    bad = [wire.Piece(r.index, r.begin, b"\0" * r.length) for r in requests if r.index == first]
    stores = [a for a in leech.receive(peer, bad, 0.2) if isinstance(a, core.StorePiece)]
    assert [s.index for s in stores] == [first]
    actions = leech.piece_stored(first, False, None, 0.3)
    assert any(isinstance(a, core.Close) for a in actions) and "127.0.0.9" in leech.banned


def test_core_serves_only_after_unchoke_and_sends_have_after_store(tmp_path):
    meta, _ = _tree(tmp_path)
    seed = _core(meta, bytearray([1] * meta.piece_count))
    peer = seed.new_peer(("127.0.0.8", 1), False, 0.0)
    hs = wire.Handshake(bytes(8), meta.info_hash, b"-XX0000-" + b"2" * 12)
    actions = seed.peer_handshaken(peer, hs, 0.0)
    assert any(isinstance(a, core.Send) and a.data.startswith(b"\0\0\0\x02\x05") for a in actions)  # bitfield
    actions = seed.receive(peer, [wire.Interested()], 0.1)
    assert any(isinstance(a, core.Send) and a.data == wire.UNCHOKE_MESSAGE for a in actions)
    actions = seed.receive(peer, [wire.Request(0, 0, 16384)], 0.1)
    assert [a for a in actions if isinstance(a, core.ReadPiece)] == [core.ReadPiece(0)]
    seed.piece_loaded(0, PieceStore(meta, tmp_path / "src").read(0), 0.2)
    served = seed.serve(peer, 0.2, 8)
    assert served and served[0].data[4] == wire.PIECE
    # a request over 16 KiB closes the connection
    assert any(isinstance(a, core.Close) for a in seed.receive(peer, [wire.Request(0, 0, 32768)], 0.3))


def test_keepalive_and_silence(tmp_path):
    meta, _ = _tree(tmp_path)
    c = _core(meta)
    peer = c.new_peer(("127.0.0.7", 1), True, 0.0)
    c.peer_handshaken(peer, wire.Handshake(bytes(8), meta.info_hash, b"x" * 20), 0.0)
    assert any(isinstance(a, core.Send) and a.data == wire.KEEPALIVE for a in c.tick(31.0))
    c.receive(peer, [wire.KeepAlive()], 31.0)
    assert any(isinstance(a, core.Close) for a in c.tick(200.0))
