"""One seed -> one leecher over loopback: ours->ours vs libtorrent->libtorrent (MB/s, ratio).

    python bench/bittorrent_transfer.py [--size-mib 256]

SHA-1 checking is on for both (every piece verified before it counts).
Also prints the CPU seconds our two processes used per MiB.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "bittorrent"))

from benchlib import cpu_seconds, report, stop_process  # noqa: E402
from bt_peers import lt_add, lt_session, lt_wait, make_content, netapps_peer  # noqa: E402
from netapps_daemon import free_port  # noqa: E402

from twisted_netapps.bittorrent import metainfo  # noqa: E402


def ours(torrent: Path, seed_dir: Path, work: Path) -> tuple[float, float]:
    port = free_port()
    seed = netapps_peer("seed", torrent, seed_dir, "--port", str(port))
    time.sleep(1.0)  # the seed re-checks its copy first
    start = time.monotonic()
    leech = netapps_peer("get", torrent, work / "ours", "--peer", f"127.0.0.1:{port}")
    try:
        out, _ = leech.communicate(timeout=600)
        elapsed = time.monotonic() - start
        if leech.returncode != 0:
            raise RuntimeError(f"our leecher exited {leech.returncode}")
        cpu = cpu_seconds(seed.pid)
        return elapsed, cpu
    finally:
        stop_process(leech)
        stop_process(seed)


def libtorrent(torrent: Path, seed_dir: Path, work: Path) -> float:
    import libtorrent as lt

    seeder = lt_session(lt)
    leecher = lt_session(lt)
    seeding = lt_add(lt, seeder, torrent, seed_dir)
    lt_wait(seeding, lambda s: s.is_seeding, 300, "seed check")
    start = time.monotonic()
    handle = lt_add(lt, leecher, torrent, work / "lt")
    handle.connect_peer(("127.0.0.1", seeder.listen_port()))
    lt_wait(handle, lambda s: s.is_seeding, 600, "download")
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=256)
    args = parser.parse_args()
    size = args.size_mib * 1024 * 1024
    with tempfile.TemporaryDirectory(prefix="bt-bench-") as tmp:
        work = Path(tmp)
        content = make_content(work / "seed" / "payload.bin", size)
        torrent = work / "payload.torrent"
        torrent.write_bytes(metainfo.create(content, trackers=[]))
        ours_time, seed_cpu = ours(torrent, work / "seed", work)
        lt_time = libtorrent(torrent, work / "seed", work)
    mib = size / 2**20
    report(f"bittorrent transfer {args.size_mib} MiB, MB/s", "MB/s", size / ours_time / 1e6,
           size / lt_time / 1e6, "libtorrent", extra=f" | ours {ours_time:.2f}s, libtorrent {lt_time:.2f}s, "
           f"our seed {1000 * seed_cpu / mib:.1f} ms CPU per MiB")


if __name__ == "__main__":
    main()
