"""Swarm efficiency: 1 seed + N leechers vs the seeds' D_P2P, ours and libtorrent side by side.

    python bench/bittorrent_swarm.py [--size 4MiB] [--seed-rate 2MiB/s] [--peer-rate 204.8KiB/s] [--n 1 2 4 8 16]
                                     [--choker tit-for-tat|libtorrent] [--super-seed] [--skip-libtorrent]

The P2P half of ``netapps experiment distribution`` (twisted_netapps.experiment):
every leecher uploads at most u_i and downloads at most d_i = u_s, the seed
uploads at most u_s; both swarms announce to our tracker; leechers keep
seeding until all are done. Printed per N: D_P2P, the time until the last
leecher had every piece verified and the ratio, and how many copies of the
file the seed uploaded -- ours, then libtorrent's.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from twisted_netapps.bittorrent.peer.choker import POLICIES
from twisted_netapps.experiment.params import Parameters, parse_rate_spec
from twisted_netapps.experiment.session import run_in_reactor
from twisted_netapps.units import parse_rate, parse_size


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=parse_size, default="4MiB")
    parser.add_argument("--seed-rate", type=parse_rate, default="2MiB/s")
    parser.add_argument("--peer-rate", default="204.8KiB/s")
    parser.add_argument("--n", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--choker", choices=sorted(POLICIES), default="tit-for-tat")
    parser.add_argument("--super-seed", action="store_true", help="our seed super-seeds (BEP 16)")
    parser.add_argument("--skip-libtorrent", action="store_true")
    args = parser.parse_args()
    params = Parameters(file_size=args.size, server_upload=float(args.seed_rate),
                        peer_upload=parse_rate_spec(args.peer_rate), peers=tuple(sorted(set(args.n))), repeat=1,
                        choker=args.choker, super_seed=args.super_seed, with_libtorrent=not args.skip_libtorrent, client_server=False)
    print(params.describe(), flush=True)
    with tempfile.TemporaryDirectory(prefix="bt-swarm-") as out:
        sys.exit(run_in_reactor(params, Path(out), progress=False))


if __name__ == "__main__":
    main()
