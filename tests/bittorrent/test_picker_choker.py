"""Picker (random first, rarest first, strict priority, endgame) and choker (10 s / 30 s, 4 slots)."""

import dataclasses
import random

from twisted_netapps.bittorrent.peer.choker import LIBTORRENT, TIT_FOR_TAT, ChokeCandidate, Choker
from twisted_netapps.bittorrent.peer.picker import PeerPieces, PiecePicker
from twisted_netapps.bittorrent.peer.rate import RateMeter

BLOCK = 16384


def picker(pieces=8, piece_length=4 * BLOCK, **kw):
    return PiecePicker(pieces, piece_length, pieces * piece_length, rng=random.Random(3), **kw)


def seed(p, n=None):
    pieces = PeerPieces(p.piece_count)
    p.peer_has_all(pieces)
    return pieces


def test_rarest_first_after_random_first():
    p = picker(random_first=0)
    a = seed(p)
    b = PeerPieces(8)
    for i in range(8):
        if i != 5:
            p.peer_has(b, i)
    # piece 5 is held by one peer, the others by two: it goes first
    assert p.pick("a", a, 1) == [(5, 0, BLOCK)]


def test_strict_priority_completes_started_pieces_first():
    p = picker(random_first=0)
    a = seed(p)
    first = p.pick("a", a, 2)
    assert len({i for i, _, _ in first}) == 1
    nxt = p.pick("b", a, 2)
    assert {i for i, _, _ in nxt} == {first[0][0]}  # the rest of the same piece


def test_random_first_picks_spread():
    chosen = set()
    for s in range(20):
        p = PiecePicker(64, BLOCK, 64 * BLOCK, rng=random.Random(s))
        chosen.add(p.pick("a", seed(p), 1)[0][0])
    assert len(chosen) > 5


def test_blocks_receive_verify_and_fail():
    p = picker(pieces=1)
    a = seed(p)
    blocks = p.pick("a", a, 10)
    assert len(blocks) == 4 and blocks[-1] == (0, 3 * BLOCK, BLOCK)
    for _, begin, _ in blocks:
        new, _ = p.block_received(0, begin, "a")
        assert new
    assert 0 in p.verifying and not p.pick("a", a, 4)
    p.piece_failed(0)
    assert len(p.pick("a", a, 10)) == 4
    p.set_have(0)
    assert p.complete


def test_cancelled_blocks_go_back_to_the_pool():
    p = picker(pieces=1)
    a, b = seed(p), seed(p)
    blocks = p.pick("a", a, 4)
    for _, begin, _ in blocks:
        p.block_cancelled(0, begin, "a")
    assert sorted(p.pick("b", b, 4)) == sorted(blocks)


def test_endgame_requests_in_flight_blocks_from_another_peer():
    p = picker(pieces=2)
    a, b = seed(p), seed(p)
    assert len(p.pick("a", a, 100)) == 8
    assert p.in_endgame()
    dup = p.pick("b", b, 100)
    assert len(dup) == 8
    new, others = p.block_received(dup[0][0], dup[0][1], "b")
    assert new and others == ["a"]  # the caller cancels a's copy


def test_last_piece_is_short():
    p = PiecePicker(2, 4 * BLOCK, 5 * BLOCK + 100, rng=random.Random(1))
    blocks = p.pick("a", seed(p), 100)
    assert (1, BLOCK, 100) in blocks and len(blocks) == 6


def test_interesting():
    p = picker(pieces=3)
    b = PeerPieces(3)
    assert not p.interesting(b)
    p.peer_has(b, 1)
    assert p.interesting(b)
    p.set_have(1)
    assert not p.interesting(b)


# -- choker -----------------------------------------------------------------------

def peers(rates, interested=True, connected_at=-1000.0):
    return [ChokeCandidate(f"p{i}", interested, r, 0.0, connected_at) for i, r in enumerate(rates)]


def test_four_fastest_uploaders_plus_one_optimistic():
    c = Choker(rng=random.Random(1))
    ps = peers([10, 50, 40, 30, 20, 5, 1, 0])
    unchoked = c.update(0, ps, seeding=False)
    assert c.regular == {"p1", "p2", "p3", "p4"}
    assert len(unchoked) == 5 and c.optimistic not in c.regular


def test_regular_slots_reevaluated_only_every_10_seconds():
    c = Choker(rng=random.Random(1))
    ps = peers([10, 50, 40, 30, 20, 5])
    c.update(0, ps, seeding=False)
    ps[5].download_rate = 1000  # p5 becomes the fastest
    c.update(9.9, ps, seeding=False)
    assert "p5" not in c.regular or c.optimistic == "p5"
    c.update(10.0, ps, seeding=False)
    assert "p5" in c.regular


def test_optimistic_unchoke_rotates_every_30_seconds():
    c = Choker(rng=random.Random(7))
    ps = peers([100, 90, 80, 70] + [0] * 20)
    seen = []
    for t in range(0, 301, 5):
        c.update(float(t), ps, seeding=False)
        seen.append((t, c.optimistic))
    changes = [t for (t, o), (_, prev) in zip(seen[1:], seen) if o != prev]
    assert changes and all(t % 30 == 0 for t in changes)
    assert len({o for _, o in seen}) > 3


def test_only_interested_peers_and_free_slots_fill_at_once():
    c = Choker(rng=random.Random(1))
    ps = peers([5, 4], interested=False)
    assert c.update(0, ps, seeding=False) == set()
    ps[0].interested = True
    assert c.update(1, ps, seeding=False) == {"p0"}  # no 10 s wait for a free slot


def test_seeding_ranks_by_upload_rate():
    c = Choker(rng=random.Random(1))
    ps = [ChokeCandidate(f"p{i}", True, 0.0, float(r), -1000) for i, r in enumerate([1, 9, 8, 7, 6, 2])]
    c.update(0, ps, seeding=True)
    assert c.regular == {"p1", "p2", "p3", "p4"}


def test_snubbed_peers_lose_their_regular_slot():
    c = Choker(rng=random.Random(1))
    ps = peers([100, 90, 80, 70, 1])
    ps[0].snubbed = True
    c.update(0, ps, seeding=False)
    assert "p0" not in c.regular


def test_new_peers_favoured_for_optimistic():
    counts = {"old": 0, "new": 0}
    for s in range(400):
        c = Choker(dataclasses.replace(TIT_FOR_TAT, slots=0), rng=random.Random(s))
        ps = [ChokeCandidate("old", True, 0, 0, -1000), ChokeCandidate("new", True, 0, 0, 0)]
        c.update(1, ps, seeding=False)
        counts[c.optimistic] += 1
    assert counts["new"] > 2 * counts["old"]


def test_libtorrent_style_unchokes_eight_plus_one():
    c = Choker(LIBTORRENT, rng=random.Random(1))
    unchoked = c.update(0, peers([float(r) for r in range(20)]), seeding=False)
    assert c.regular == {f"p{i}" for i in range(12, 20)} and len(unchoked) == 9


def test_libtorrent_style_seeding_goes_round_robin():
    # A seed's slot is kept until the peer got its quota (20 pieces), then the
    # peers that waited longest come first, however fast the others download.
    piece = 32 * 1024
    c = Choker(dataclasses.replace(LIBTORRENT, slots=2, optimistic=0), piece_length=piece, rng=random.Random(1))
    ps = [ChokeCandidate(f"p{i}", True, 0.0, float(100 - i), -1000) for i in range(6)]
    served = []
    for t in range(0, 15 * 12, 15):
        unchoked = c.update(float(t), ps, seeding=True)
        served.append(unchoked)
        for p in ps:
            if p.key in unchoked:
                p.uploaded += 10 * piece  # half the quota per period
    assert all(len(u) == 2 for u in served)
    assert served[0] == served[1]  # short of the quota after one period: slots kept
    everyone = set().union(*served)
    assert everyone == {p.key for p in ps}  # every peer had its turn


def test_tit_for_tat_seeding_keeps_the_fastest():
    c = Choker(dataclasses.replace(TIT_FOR_TAT, optimistic=0), rng=random.Random(1))
    ps = [ChokeCandidate(f"p{i}", True, 0.0, float(100 - i), -1000) for i in range(6)]
    assert all(c.update(float(t), ps, seeding=True) == {"p0", "p1", "p2", "p3"} for t in range(0, 120, 10))


def test_rate_meter():
    m = RateMeter(window=5)
    for t in range(100):
        m.add(1000, t * 0.1)
    assert 8000 < m.rate(10) < 10500
    assert m.rate(60) < 100


# -- super-seeding ------------------------------------------------------------------

def test_super_seeder_offers_each_piece_once_first():
    from twisted_netapps.bittorrent.peer.superseed import SuperSeeder

    s = SuperSeeder(8, random.Random(1))
    availability = [0] * 8
    bits = {p: bytearray(8) for p in "abcd"}
    offered = [i for p in "abcd" for i in s.top_up(p, bits[p], availability)]
    assert sorted(offered) == list(range(8))  # two each, all distinct
    # a peer reports one of its pieces: its offer is renewed, nothing new is left but rare repeats
    piece = s.offers["a"][0]
    bits["a"][piece] = 1
    availability[piece] = 1
    assert s.spread(piece) == ["a"]
    again = s.top_up("a", bits["a"], availability)
    assert len(again) == 1 and again[0] != piece
    # pieces two neighbours hold are not offered a second time
    s2 = SuperSeeder(1, random.Random(1))
    assert s2.top_up("x", bytearray(1), [0]) == [0]
    assert s2.top_up("y", bytearray(1), [2]) == []
    # withdrawing an undelivered offer makes the piece fresh again
    s2.withdraw("x", bytearray(1))
    assert s2.top_up("y", bytearray(1), [2]) == [0]
