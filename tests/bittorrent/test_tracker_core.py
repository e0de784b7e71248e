"""The tracker core and its HTTP and UDP codecs, without sockets."""

import random
import struct
from urllib.parse import quote_from_bytes

import pytest
from hypothesis import given, strategies as st

from twisted_netapps.bittorrent import bencode
from twisted_netapps.bittorrent.tracker import http_codec, udp_codec
from twisted_netapps.bittorrent.tracker.swarm import AnnounceRequest, Tracker, TrackerRefusal

IH = b"\x11" * 20


def pid(n: int) -> bytes:
    return b"-XX0000-" + b"%012d" % n


def req(n, left=100, event="", numwant=None, ih=IH):
    return AnnounceRequest(ih, pid(n), f"127.0.0.{n % 250 + 1}", 6881 + n, left=left, event=event, numwant=numwant)


def test_numwant_defaults_to_50_random_peers_never_the_asker():
    t = Tracker(rng=random.Random(1))
    for n in range(120):
        t.announce(req(n), 0)
    reply = t.announce(req(5), 1)
    assert len(reply.peers) == 50
    assert pid(5) not in {p.peer_id for p in reply.peers}
    other = t.announce(req(5), 2)
    assert {p.peer_id for p in reply.peers} != {p.peer_id for p in other.peers}  # random subsets
    assert len(t.announce(req(6, numwant=10), 3).peers) == 10
    assert len(t.announce(req(6, numwant=10_000), 3).peers) == 119  # capped by max_numwant 200, 119 others


def test_counts_events_and_seeds_get_no_seeds():
    t = Tracker()
    t.announce(req(1, left=0), 0)
    t.announce(req(2, left=0), 0)
    r = t.announce(req(3), 0)
    assert (r.complete, r.incomplete) == (2, 1)
    assert {p.peer_id for p in t.announce(req(1, left=0), 0).peers} == {pid(3)}
    t.announce(req(3, left=0, event="completed"), 1)
    assert t.scrape([IH])[IH].__dict__ == {"complete": 3, "downloaded": 1, "incomplete": 0}
    r = t.announce(req(3, left=0, event="stopped"), 2)
    assert t.scrape([IH])[IH].complete == 2


def test_stopped_for_unknown_peer_is_fine():
    t = Tracker()
    r = t.announce(req(9, event="stopped"), 0)
    assert r.peers == [] and not t.torrents


def test_expiry_after_missed_announces():
    t = Tracker(peer_timeout=180)
    t.announce(req(1), 0)
    t.announce(req(2), 100)
    assert t.expire(200) == 1 and t.peer_count == 1
    assert t.expire(400) == 1 and not t.torrents


def test_restarted_client_replaces_its_old_entry():
    t = Tracker()
    t.announce(req(1), 0)
    t.announce(AnnounceRequest(IH, b"N" * 20, "127.0.0.2", 6882, left=5), 1)
    assert t.peer_count == 1


def test_allow_list_and_bad_requests():
    t = Tracker(allowed={IH})
    with pytest.raises(TrackerRefusal, match="not allowed"):
        t.announce(req(1, ih=b"\x22" * 20), 0)
    with pytest.raises(TrackerRefusal):
        t.announce(AnnounceRequest(IH, pid(1), "127.0.0.1", 0), 0)
    with pytest.raises(TrackerRefusal):
        t.announce(req(1, event="bogus"), 0)


def _query(**params) -> bytes:
    return "&".join(f"{k}={quote_from_bytes(v) if isinstance(v, bytes) else v}" for k, v in params.items()).encode()


def test_http_announce_takes_raw_bytes_and_answers_compact():
    ih = bytes(range(20))  # includes bytes that are not UTF-8 and '+' (0x2b)
    ih = ih[:10] + b"+\xff" + ih[12:]
    query = _query(info_hash=ih, peer_id=pid(1), port=6881, left=10, event="started")
    query = query.replace(b"%2B", b"+")  # a client that leaves '+' unescaped: a literal byte
    r = http_codec.parse_announce(query, "127.0.0.9")
    assert r.info_hash == ih and r.ip == "127.0.0.9" and r.event == "started" and r.compact
    t = Tracker()
    t.announce(AnnounceRequest(ih, pid(2), "127.0.0.2", 7000, left=0), 0)
    body = bencode.decode(http_codec.encode_announce(t.announce(r, 0), r))
    assert body[b"peers"] == bytes([127, 0, 0, 2]) + struct.pack("!H", 7000)
    assert body[b"interval"] == 120 and body[b"min interval"] == 30 and body[b"complete"] == 1


def test_http_non_compact_and_no_peer_id():
    t = Tracker()
    t.announce(req(2), 0)
    r = http_codec.parse_announce(_query(info_hash=IH, peer_id=pid(1), port=1, compact=0), "127.0.0.1")
    assert bencode.decode(http_codec.encode_announce(t.announce(r, 0), r))[b"peers"][0][b"peer id"] == pid(2)
    r = http_codec.parse_announce(_query(info_hash=IH, peer_id=pid(1), port=1, compact=0, no_peer_id=1), "x")
    assert b"peer id" not in bencode.decode(http_codec.encode_announce(t.announce(r, 0), r))[b"peers"][0]


@pytest.mark.parametrize("query", [
    b"", b"info_hash=abc&peer_id=" + b"a" * 20 + b"&port=1", _query(info_hash=IH, port=1),
    _query(info_hash=IH, peer_id=pid(1), port="x"), b"x" * 5000,
])
def test_http_bad_announces_are_refused(query):
    with pytest.raises(TrackerRefusal):
        http_codec.parse_announce(query, "127.0.0.1")


def test_failure_is_a_bare_failure_reason():
    assert bencode.decode(http_codec.encode_failure("nope")) == {b"failure reason": b"nope"}


def test_scrape_bep48():
    t = Tracker()
    t.announce(req(1, left=0), 0)
    hashes = http_codec.parse_scrape(_query(info_hash=IH))
    body = bencode.decode(http_codec.encode_scrape(t.scrape(hashes), 30))
    assert body[b"files"][IH] == {b"complete": 1, b"downloaded": 0, b"incomplete": 0}
    assert body[b"flags"] == {b"min_request_interval": 30}


@given(st.binary(max_size=300))
def test_http_parser_raises_only_refusals(query):
    try:
        http_codec.parse_announce(query, "127.0.0.1")
    except TrackerRefusal:
        pass


def _udp_connect(core, host="127.0.0.1", port=5000, now=0.0):
    reply = core.handle(struct.pack("!QII", udp_codec.PROTOCOL_ID, 0, 7), host, port, now)
    action, txid, cid = struct.unpack("!IIQ", reply)
    assert (action, txid) == (0, 7)
    return cid


def _udp_announce(cid, n, event=2, left=10, numwant=-1):
    return struct.pack("!QII20s20sQQQIIIiH", cid, 1, 9, IH, pid(n), 0, left, 0, event, 0, 0, numwant, 7000 + n)


def test_udp_connect_announce_scrape():
    t = Tracker()
    core = udp_codec.UdpTracker(t)
    t.announce(req(3, left=0), 0)
    cid = _udp_connect(core)
    reply = core.handle(_udp_announce(cid, 1), "127.0.0.1", 5000, 30.0)
    action, txid, interval, leechers, seeders = struct.unpack_from("!IIIII", reply)
    assert (action, txid, interval, leechers, seeders) == (1, 9, 120, 1, 1)
    assert reply[20:] == bytes([127, 0, 0, 4]) + struct.pack("!H", 6884)
    reply = core.handle(struct.pack("!QII", cid, 2, 5) + IH, "127.0.0.1", 5000, 30.0)
    assert struct.unpack("!IIIII", reply) == (2, 5, 1, 0, 1)


def test_udp_connection_ids_expire_and_are_per_address():
    core = udp_codec.UdpTracker(Tracker())
    cid = _udp_connect(core)
    assert struct.unpack_from("!I", core.handle(_udp_announce(cid, 1), "127.0.0.2", 5000, 1))[0] == 3
    assert struct.unpack_from("!I", core.handle(_udp_announce(cid, 1), "127.0.0.1", 5000, 100))[0] == 1
    assert struct.unpack_from("!I", core.handle(_udp_announce(cid, 1), "127.0.0.1", 5000, 200))[0] == 3


@given(st.binary(max_size=200))
def test_udp_arbitrary_datagrams(data):
    core = udp_codec.UdpTracker(Tracker())
    reply = core.handle(data, "127.0.0.1", 1, 0.0)
    assert reply is None or isinstance(reply, bytes)
