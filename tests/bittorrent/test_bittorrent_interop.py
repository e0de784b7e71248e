"""Real peers: our tracker and peers with each other, libtorrent, aria2c and transmission-cli.

Every download's SHA-256 is compared with the original; everything is bounded by timeouts.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import urllib.request

import pytest

from conftest import require_tool
from netapps_daemon import free_port, wait_for

from bt_peers import lt_add, lt_session, lt_wait, make_content, netapps_peer, sha256_tree

from twisted_netapps.bittorrent import bencode, metainfo

pytestmark = pytest.mark.slow


@pytest.fixture
def swarm(netapps_daemon, tmp_path):
    """Our daemon running tracker + bittorrent (seeding the demo); returns (daemon, announce URL, demo torrent)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/announce"
    daemon = netapps_daemon(
        ["tracker", "bittorrent"],
        listen={"tracker": [f"tcp:{port}:interface=127.0.0.1", "udp:0:interface=127.0.0.1"],
                "bittorrent": ["tcp:0:interface=127.0.0.1"]},
        sets=[f'bittorrent.demo_tracker="{url}"', "bittorrent.scan_interval=0.5"],
    )
    torrent = daemon.data_dir / "torrents" / "demo.torrent"
    wait_for(torrent.exists, 10, what="demo torrent")
    demo = daemon.data_dir / "downloads" / "demo"

    def seeding():
        body = bencode.decode(urllib.request.urlopen(url.replace("announce", "scrape"), timeout=5).read())
        return any(e[b"complete"] for e in body[b"files"].values())

    wait_for(seeding, 20, what="the daemon announcing the demo as a seed")
    return daemon, url, torrent, demo


def _scrape(url: str, info_hash: bytes) -> dict:
    body = bencode.decode(urllib.request.urlopen(url.replace("announce", "scrape"), timeout=5).read())
    return body[b"files"].get(info_hash, {})


@pytest.mark.interop
def test_aria2c_downloads_the_demo_through_our_tracker(swarm, tmp_path):
    aria2c = require_tool("aria2c")
    daemon, url, torrent, demo = swarm
    out = tmp_path / "aria"
    subprocess.run(
        [aria2c, "-q", f"--dir={out}", "--seed-time=0", "--enable-dht=false", "--bt-enable-lpd=false",
         "--enable-peer-exchange=false", "--bt-stop-timeout=60", str(torrent)],
        check=True, timeout=90, stdin=subprocess.DEVNULL,
    )
    assert sha256_tree(out / "demo") == sha256_tree(demo)

    def reported():  # the service's gauges reach run/stats.json (refreshed every few seconds)
        stats = daemon.stats().get("bittorrent", {})
        return stats.get("torrents") == 1 and stats.get("torrent.demo.permille") == 1000 \
            and stats.get("uploaded", 0) >= metainfo.load(torrent).total_length
    wait_for(reported, 20, what="bittorrent stats")


def test_libtorrent_downloads_from_us_through_our_tracker(swarm, tmp_path):
    lt = pytest.importorskip("libtorrent")
    daemon, url, torrent, demo = swarm
    session = lt_session(lt)
    handle = lt_add(lt, session, torrent, tmp_path / "lt")
    lt_wait(handle, lambda s: s.is_seeding, 60, "download from our seed")
    assert sha256_tree(tmp_path / "lt" / "demo") == sha256_tree(demo)
    meta = metainfo.load(torrent)
    # libtorrent announced to our tracker: it is counted there (as a seed now, or when it said completed)
    wait_for(lambda: _scrape(url, meta.info_hash).get(b"complete", 0) >= 2, 20, what="libtorrent in the scrape")
    del session


def test_we_download_from_libtorrent(netapps_daemon, tmp_path):
    lt = pytest.importorskip("libtorrent")
    port = free_port()
    url = f"http://127.0.0.1:{port}/announce"
    netapps_daemon(["tracker"], listen={"tracker": [f"tcp:{port}:interface=127.0.0.1"]})
    content = make_content(tmp_path / "seed" / "payload.bin", 5 * 1024 * 1024 + 1234)
    torrent = tmp_path / "payload.torrent"
    torrent.write_bytes(metainfo.create(content, trackers=[url]))
    session = lt_session(lt)
    handle = lt_add(lt, session, torrent, tmp_path / "seed", seed_mode=True)
    lt_wait(handle, lambda s: s.is_seeding, 20, "seeding")
    meta = metainfo.load(torrent)
    wait_for(lambda: _scrape(url, meta.info_hash).get(b"complete", 0) >= 1, 30, what="libtorrent's announce")
    proc = netapps_peer("get", torrent, tmp_path / "ours")
    try:
        out, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and b"\ncomplete " in out
    assert sha256_tree(tmp_path / "ours" / "payload.bin") == sha256_tree(content)
    del session


@pytest.mark.interop
def test_transmission_downloads_from_us(tmp_path):
    transmission = require_tool("transmission-cli")
    content = make_content(tmp_path / "seed" / "t.bin", 3 * 1024 * 1024)
    torrent = tmp_path / "t.torrent"
    torrent.write_bytes(metainfo.create(content, trackers=["http://127.0.0.1:9/announce"]))
    tport = free_port()
    target = tmp_path / "tr"
    target.mkdir()
    tr = subprocess.Popen(
        [transmission, "-w", str(target), "-g", str(tmp_path / "trconf"), "-p", str(tport), "-ep", str(torrent)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
    )
    # Transmission never dials 127.x peers: we dial it.
    seed = netapps_peer("seed", torrent, tmp_path / "seed", "--peer", f"127.0.0.1:{tport}")
    expected = sha256_tree(content)
    try:
        def done():
            path = target / "t.bin"
            return path.exists() and path.stat().st_size == content.stat().st_size \
                and sha256_tree(path) == expected
        wait_for(done, 150, interval=0.5, what="transmission's download")
    finally:
        for proc in (tr, seed):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    assert seed.returncode == 0


def test_our_seed_and_three_leechers_through_our_tracker(netapps_daemon, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}/announce"
    netapps_daemon(["tracker"], listen={"tracker": [f"tcp:{port}:interface=127.0.0.1"]},
                   sets=["tracker.interval=5", "tracker.min_interval=1"])
    make_content(tmp_path / "seed" / "multi" / "a.bin", 3 * 1024 * 1024)
    make_content(tmp_path / "seed" / "multi" / "sub" / "b.bin", 700_000, seed=1)
    torrent = tmp_path / "multi.torrent"
    torrent.write_bytes(metainfo.create(tmp_path / "seed" / "multi", trackers=[url]))
    meta = metainfo.load(torrent)
    seed = netapps_peer("seed", torrent, tmp_path / "seed", "--upload-rate", "2MiB", "--bind", "127.0.0.2")
    leechers = [
        netapps_peer("get", torrent, tmp_path / f"l{i}", "--bind", f"127.0.0.{3 + i}", "--upload-rate", "1MiB")
        for i in range(3)
    ]
    try:
        for proc in leechers:
            out, _ = proc.communicate(timeout=90)
            assert proc.returncode == 0 and b"\ncomplete " in out, out
        for i in range(3):
            assert sha256_tree(tmp_path / f"l{i}" / "multi") == sha256_tree(tmp_path / "seed" / "multi")
        seed.send_signal(signal.SIGTERM)
        assert seed.wait(20) == 0
        # event=stopped reached the tracker: no seed left
        wait_for(lambda: _scrape(url, meta.info_hash).get(b"complete", 0) == 0, 10, what="stopped")
    finally:
        for proc in [seed, *leechers]:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_cli_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.torrent"
    bad.write_bytes(b"not bencode")
    result = subprocess.run([netapps_peer.__globals__["NETAPPS"], "torrent", "get", str(bad), "--dir", str(tmp_path)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "not bencoded" in result.stderr
    good = tmp_path / "g.torrent"
    good.write_bytes(metainfo.create(make_content(tmp_path / "x.bin", 1000), trackers=[]))
    result = subprocess.run([netapps_peer.__globals__["NETAPPS"], "torrent", "seed", str(good), "--dir",
                             str(tmp_path / "empty")], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1 and "not a complete copy" in result.stderr


def test_udp_tracker_libtorrent_seeds_we_download(netapps_daemon, tmp_path):
    """libtorrent announces to our UDP tracker (BEP 15); our peer finds it there too."""
    lt = pytest.importorskip("libtorrent")
    port = free_port(kind=socket.SOCK_DGRAM)
    daemon = netapps_daemon(["tracker"], listen={"tracker": ["tcp:0:interface=127.0.0.1",
                                                             f"udp:{port}:interface=127.0.0.1"]})
    http = daemon.port("tracker")
    content = make_content(tmp_path / "seed" / "u.bin", 2 * 1024 * 1024)
    torrent = tmp_path / "u.torrent"
    torrent.write_bytes(metainfo.create(content, trackers=[f"udp://127.0.0.1:{port}"]))
    meta = metainfo.load(torrent)
    session = lt_session(lt)
    handle = lt_add(lt, session, torrent, tmp_path / "seed", seed_mode=True)
    scrape_url = f"http://127.0.0.1:{http}/announce"
    wait_for(lambda: _scrape(scrape_url, meta.info_hash).get(b"complete", 0) >= 1, 30,
             what="libtorrent's UDP announce")
    proc = netapps_peer("get", torrent, tmp_path / "ours")
    try:
        out, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and b"\ncomplete " in out
    assert sha256_tree(tmp_path / "ours" / "u.bin") == sha256_tree(content)
    del handle, session


@pytest.mark.interop
def test_curl_on_announce_and_scrape(netapps_daemon):
    curl = require_tool("curl")
    daemon = netapps_daemon(["tracker"], listen={"tracker": ["tcp:0:interface=127.0.0.1"]})
    base = f"http://127.0.0.1:{daemon.port('tracker')}"
    ih = "%11" * 20
    ok = subprocess.run([curl, "-s", f"{base}/announce?info_hash={ih}&peer_id=-XX0000-000000000000&port=6881"
                         "&left=0&event=started"], capture_output=True, timeout=30, check=True).stdout
    assert bencode.decode(ok)[b"complete"] == 1
    bad = subprocess.run([curl, "-s", f"{base}/announce?info_hash=short&port=1"], capture_output=True,
                         timeout=30, check=True).stdout
    assert list(bencode.decode(bad)) == [b"failure reason"]
    scrape = subprocess.run([curl, "-s", f"{base}/scrape?info_hash={ih}"], capture_output=True, timeout=30,
                            check=True).stdout
    assert bencode.decode(scrape)[b"files"][b"\x11" * 20][b"complete"] == 1


def test_kill_9_mid_download_then_resume_by_recheck(tmp_path):
    """Pieces already verified survive kill -9; the restarted peer re-checks and fetches only the rest."""
    content = make_content(tmp_path / "seed" / "r.bin", 4 * 1024 * 1024)
    torrent = tmp_path / "r.torrent"
    torrent.write_bytes(metainfo.create(content, trackers=[]))
    port = free_port()
    seed = netapps_peer("seed", torrent, tmp_path / "seed", "--port", str(port), "--upload-rate", "1MiB")
    leech = None
    try:
        assert seed.stdout.readline().startswith(b"ready ")
        leech = netapps_peer("get", torrent, tmp_path / "dl", "--peer", f"127.0.0.1:{port}")
        assert leech.stdout.readline().startswith(b"ready ")
        target = tmp_path / "dl" / "r.bin"
        # some pieces written (the sparse file's blocks), far from all at 1 MiB/s
        wait_for(lambda: target.exists() and target.stat().st_blocks * 512 >= 1024 * 1024, 20,
                 what="a partial download")
        leech.kill()
        leech.wait(10)
        leech = netapps_peer("get", torrent, tmp_path / "dl", "--peer", f"127.0.0.1:{port}")
        have, total = leech.stdout.readline().split()[2].split(b"/")
        assert 0 < int(have) < int(total)
        out, _ = leech.communicate(timeout=60)
        assert leech.returncode == 0 and out.startswith(b"complete ")
        assert sha256_tree(tmp_path / "dl" / "r.bin") == sha256_tree(content)
    finally:
        for proc in (leech, seed):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
