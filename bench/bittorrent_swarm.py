"""Swarm efficiency: 1 seed + N leechers vs the seeds' bounds, ours and libtorrent side by side.

    python bench/bittorrent_swarm.py [--size-mib 16] [--seed-rate-kib 2048] [--peer-rate-kib 1024] [--n 2 4 8 16]

Every leecher uploads at most u_i, the seed at most u_s (token buckets);
downloads are not capped (d_min is the loopback's). Leechers keep seeding
until all are done. Printed per N: the time until the last leecher has every
piece, D_P2P = max(F/u_s, F/d_min, N*F/(u_s + sum u_i)) (F/d_min ~ 0 here),
the ratio to it, D_cs = max(N*F/u_s, F/d_min), and how many copies of the
file the seed uploaded. Both swarms use our tracker.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "bittorrent"))

from benchlib import netapps, stop_process  # noqa: E402
from bt_peers import lt_add, lt_session, make_content, netapps_peer  # noqa: E402
from netapps_daemon import free_port  # noqa: E402

from twisted_netapps.bittorrent import metainfo  # noqa: E402


def ours_swarm(torrent: Path, seed_dir: Path, work: Path, n: int, u_s: int, u_i: int) -> tuple[float, float]:
    # The leechers start first (they find each other but have nothing); the
    # clock starts when the seed is ready: process start-up is not distribution time.
    leechers = [
        netapps_peer("get", torrent, work / f"ours-{n}-{i}", "--seed", "--bind", f"127.0.2.{i + 1}",
                     "--upload-rate", str(u_i))
        for i in range(n)
    ]
    for proc in leechers:
        proc.stdout.readline()  # ready
    seed = netapps_peer("seed", torrent, seed_dir, "--bind", "127.0.1.1", "--upload-rate", str(u_s),
                        "--super-seed")
    seed.stdout.readline()  # ready
    start = time.monotonic()
    try:
        for proc in leechers:
            line = proc.stdout.readline()
            if not line.startswith(b"complete"):
                raise RuntimeError(f"a leecher failed: {line!r}")
        elapsed = time.monotonic() - start
    finally:
        for proc in leechers:
            stop_process(proc)
        stop_process(seed)
    out = seed.stdout.read().decode()
    uploaded = int(re.search(r"totals uploaded (\d+)", out).group(1))
    return elapsed, uploaded


def lt_swarm(torrent: Path, seed_dir: Path, work: Path, n: int, u_s: int, u_i: int) -> tuple[float, float]:
    import libtorrent as lt

    sessions = [lt_session(lt, f"127.0.4.{i + 1}", upload_rate=u_i) for i in range(n)]
    handles = [lt_add(lt, s, torrent, work / f"lt-{n}-{i}") for i, s in enumerate(sessions)]
    seeder = lt_session(lt, "127.0.3.1", upload_rate=u_s)
    seeding = lt_add(lt, seeder, torrent, seed_dir, seed_mode=True)
    start = time.monotonic()
    deadline = time.monotonic() + 600
    while not all(h.status().is_seeding for h in handles):
        if time.monotonic() > deadline:
            raise TimeoutError("libtorrent swarm did not finish")
        time.sleep(0.05)
    elapsed = time.monotonic() - start
    uploaded = seeding.status().total_payload_upload
    del sessions, seeder
    return elapsed, uploaded


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=float, default=16)
    parser.add_argument("--seed-rate-kib", type=int, default=2048)
    parser.add_argument("--peer-rate-kib", type=int, default=1024)
    parser.add_argument("--n", type=int, nargs="+", default=[2, 4, 8, 16])
    parser.add_argument("--skip-libtorrent", action="store_true")
    args = parser.parse_args()
    size = int(args.size_mib * 2**20)
    u_s, u_i = args.seed_rate_kib * 1024, args.peer_rate_kib * 1024
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bt-swarm-") as tmp, \
            netapps(["tracker"], {"tracker": [f"tcp:{port}:interface=127.0.0.1"]},
                    sets=["tracker.interval=5", "tracker.min_interval=1"]):
        work = Path(tmp)
        content = make_content(work / "seed" / "payload.bin", size)
        torrent = work / "payload.torrent"
        torrent.write_bytes(metainfo.create(content, trackers=[f"http://127.0.0.1:{port}/announce"]))
        print(f"F = {size / 2**20:g} MiB, u_s = {u_s / 2**20:g} MiB/s, u_i = {u_i / 2**20:g} MiB/s")
        print(f"{'N':>3} {'D_P2P':>7} {'D_cs':>7} | {'ours s':>7} {'x bound':>7} {'seed copies':>11} | "
              f"{'lt s':>7} {'x bound':>7} {'seed copies':>11}")
        for n in args.n:
            bound = max(size / u_s, n * size / (u_s + n * u_i))
            d_cs = n * size / u_s
            t, up = ours_swarm(torrent, work / "seed", work, n, u_s, u_i)
            row = f"{n:>3} {bound:>7.1f} {d_cs:>7.1f} | {t:>7.1f} {t / bound:>7.2f} {up / size:>11.2f} | "
            if not args.skip_libtorrent:
                lt_t, lt_up = lt_swarm(torrent, work / "seed", work, n, u_s, u_i)
                row += f"{lt_t:>7.1f} {lt_t / bound:>7.2f} {lt_up / size:>11.2f}"
            print(row, flush=True)


if __name__ == "__main__":
    main()
