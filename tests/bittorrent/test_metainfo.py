"""Metainfo: hashing agrees with mktorrent and libtorrent; paths are sanitised; magnet links."""

import hashlib
import subprocess

import pytest

from twisted_netapps.bittorrent import bencode, metainfo
from twisted_netapps.bittorrent.metainfo import MetainfoError

from conftest import require_tool


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "content"
    (root / "sub").mkdir(parents=True)
    (root / "a.bin").write_bytes(bytes(range(256)) * 2000)
    (root / "sub" / "b.txt").write_bytes(b"hello\n")
    (tmp_path / "single.bin").write_bytes(b"x" * 700_000)
    return tmp_path


def test_single_file_round_trip(tree):
    data = metainfo.create(tree / "single.bin", trackers=["http://127.0.0.1:6969/announce"])
    meta = metainfo.parse(data)
    assert meta.name == "single.bin" and not meta.multi_file
    assert meta.total_length == 700_000 and meta.piece_length == 256 * 1024 and meta.piece_count == 3
    assert meta.piece_size(2) == 700_000 - 2 * 256 * 1024
    assert meta.piece_hash(0) == hashlib.sha1(b"x" * 256 * 1024).digest()
    assert meta.announce == "http://127.0.0.1:6969/announce"
    assert meta.info_hash == hashlib.sha1(bencode.encode(bencode.decode(data)[b"info"])).digest()


def test_multi_file_layout_and_announce_list(tree):
    meta = metainfo.parse(metainfo.create(tree / "content", trackers=["http://a/announce", "udp://b:1"]))
    assert meta.multi_file
    assert [f.path for f in meta.files] == [("content", "a.bin"), ("content", "sub", "b.txt")]
    assert meta.files[1].offset == 512_000
    assert meta.tiers == [["http://a/announce"], ["udp://b:1"]]


@pytest.mark.interop
def test_hash_matches_mktorrent(tree):
    mktorrent = require_tool("mktorrent")
    out = tree / "m.torrent"
    subprocess.run([mktorrent, "-l", "18", "-a", "http://t/announce", "-o", str(out), str(tree / "content")],
                   check=True, capture_output=True, timeout=60)
    theirs = metainfo.load(out)
    ours = metainfo.parse(metainfo.create(tree / "content", piece_length=256 * 1024))
    assert theirs.info_hash == ours.info_hash
    assert theirs.piece_hashes == ours.piece_hashes


def test_hash_matches_libtorrent(tree):
    lt = pytest.importorskip("libtorrent")
    fs = lt.file_storage()
    lt.add_files(fs, str(tree / "content"))
    t = lt.create_torrent(fs, 256 * 1024, flags=lt.create_torrent.v1_only)
    lt.set_piece_hashes(t, str(tree))
    data = lt.bencode(t.generate())
    meta = metainfo.parse(data)
    assert meta.info_hash.hex() == str(lt.torrent_info(lt.bdecode(data)).info_hash())
    assert meta.piece_hashes == metainfo.parse(metainfo.create(tree / "content", piece_length=256 * 1024)).piece_hashes


def test_info_hash_uses_the_exact_bytes():
    # An info dict whose keys a re-encoder would reorder: the hash is of the bytes as given.
    info = b"d6:lengthi3e4:name1:a12:piece lengthi16384e6:pieces20:" + b"\0" * 20 + b"e"
    data = b"d4:info" + info + b"e"
    assert metainfo.parse(data).info_hash == hashlib.sha1(info).digest()


def _torrent(**info):
    base = {"name": "n", "piece length": 16384, "pieces": b"\0" * 20, "length": 10}
    base.update(info)
    return bencode.encode({"info": {k: v for k, v in base.items() if v is not None}})


@pytest.mark.parametrize("path", [[b".."], [b"a", b".."], [b""], [b"."]])
def test_traversal_is_refused(path):
    with pytest.raises(MetainfoError):
        metainfo.parse(_torrent(length=None, files=[{"length": 10, "path": path}]))


def test_separators_are_neutralised():
    meta = metainfo.parse(_torrent(length=None, name=b"/etc", files=[{"length": 10, "path": [b"a/../../b\\c"]}]))
    assert meta.files[0].path == ("_etc", "a_.._.._b_c")


@pytest.mark.parametrize("bad", [
    b"", b"le", _torrent(pieces=b"\0" * 19), _torrent(**{"piece length": 0}), _torrent(length=-1),
    _torrent(pieces=b"\0" * 40), _torrent(name=None),
])
def test_bad_torrents(bad):
    with pytest.raises(MetainfoError):
        metainfo.parse(bad)


def test_magnet_round_trip():
    link = metainfo.magnet_link(b"\x01" * 20, "a b", ["http://t:1/announce"])
    m = metainfo.parse_magnet(link)
    assert (m.info_hash, m.name, m.trackers) == (b"\x01" * 20, "a b", ("http://t:1/announce",))
    import base64
    b32 = base64.b32encode(b"\x02" * 20).decode()
    assert metainfo.parse_magnet(f"magnet:?xt=urn:btih:{b32}").info_hash == b"\x02" * 20
    with pytest.raises(MetainfoError):
        metainfo.parse_magnet("magnet:?dn=x")


def test_default_piece_length_grows_for_big_files():
    assert metainfo.default_piece_length(10 * 1024 * 1024) == 256 * 1024
    assert metainfo.default_piece_length(4 * 1024**3) == 2 * 1024 * 1024


from hypothesis import given, strategies as st  # noqa: E402


@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_metainfo_error(data):
    try:
        metainfo.parse(data)
    except MetainfoError:
        pass


@given(st.dictionaries(st.sampled_from([b"name", b"piece length", b"pieces", b"length", b"files", b"private"]),
                       st.integers(-5, 1 << 20) | st.binary(max_size=40)
                       | st.lists(st.dictionaries(st.sampled_from([b"length", b"path"]),
                                                  st.integers(-1, 100) | st.lists(st.binary(max_size=5), max_size=3)),
                                  max_size=3)))
def test_arbitrary_info_dicts_raise_only_metainfo_error(info):
    try:
        meta = metainfo.parse(bencode.encode({"info": info}))
    except MetainfoError:
        return
    for f in meta.files:
        assert all(part not in ("", ".", "..") and "/" not in part for part in f.path)


@given(st.text(max_size=200))
def test_magnet_parser_raises_only_metainfo_error(text):
    try:
        metainfo.parse_magnet("magnet:?" + text)
    except MetainfoError:
        pass
