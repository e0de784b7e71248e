"""``netapps experiment distribution``: the seeds' distribution-time curves, measured.

Prints an estimate up front (from the bounds), a progress bar while it runs,
then the table; writes results.csv, results.json, distribution.png and
distribution.svg into ``--out``. Exit status 0 when every run finished (even
if a ratio is off: the table says so), 1 for an error.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

from twisted_netapps.bittorrent.peer.choker import POLICIES, TIT_FOR_TAT
from twisted_netapps.errors import NetappsError
from twisted_netapps.experiment import params as p
from twisted_netapps.units import parse_rate, parse_size

EXTRA = "pip install 'twisted-netapps[experiment]'"


def _arg(parse):
    def convert(text: str):
        try:
            return parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    convert.__name__ = parse.__name__
    return convert


def register(subparsers) -> None:
    parser = subparsers.add_parser("experiment", help="measure the lecture notes' experiments on our own services")
    sub = parser.add_subparsers(dest="experiment_command", required=True)
    d = sub.add_parser(
        "distribution",
        help="client-server vs P2P distribution time against D_cs and D_P2P, for several N",
        description="Distribute one file of F bytes to N peers, for each N: from our web (or FTP) server with "
                    "its upload capped at u_s, and through our tracker from one seed capped at u_s to N leechers "
                    "capped at u_i. Puts the measured times beside the bounds D_cs = max(NF/u_s, F/d_min) and "
                    "D_P2P = max(F/u_s, F/d_min, NF/(u_s + sum u_i)). Default: the seeds' example "
                    "(F/u = 60 min, u_s = 10u, d_min >= u_s) scaled down to F/u = 20 s.",
    )
    d.add_argument("--file-size", type=_arg(parse_size), default=p.DEFAULT_FILE_SIZE, metavar="F",
                   help=f"the file's size (default {p.DEFAULT_FILE_SIZE})")
    d.add_argument("--server-upload", type=_arg(parse_rate), default=p.DEFAULT_SERVER_UPLOAD, metavar="U_S",
                   help=f"the server's (and the seed's) upload rate u_s (default {p.DEFAULT_SERVER_UPLOAD})")
    d.add_argument("--peer-upload", type=_arg(p.parse_rate_spec), default=p.DEFAULT_PEER_UPLOAD, metavar="U_I",
                   help=f"each peer's upload rate u_i: one rate, a list repeated over the peers (100KiB/s,300KiB/s), "
                        f"uniform:LOW..HIGH or normal:MEAN,SD (default {p.DEFAULT_PEER_UPLOAD} = u_s/10)")
    d.add_argument("--peer-download", type=_arg(p.parse_rate_spec), default=None, metavar="D_I",
                   help="each peer's download rate d_i, same forms (default: u_s, the seeds' d_min >= u_s)")
    d.add_argument("--peers", type=_arg(p.parse_peers), default=p.DEFAULT_PEERS, metavar="N,N,...",
                   help="the values of N (default 1,2,4,8,16)")
    d.add_argument("--repeat", type=int, default=2, help="runs of each kind at each N (default 2)")
    d.add_argument("--protocol", choices=("http", "ftp"), default="http",
                   help="the client-server side: our web server (default) or our FTP server")
    d.add_argument("--churn", action="store_true",
                   help="leechers leave as soon as they have the file (default: they stay and seed)")
    d.add_argument("--choker", choices=sorted(POLICIES), default=TIT_FOR_TAT.name,
                   help="our peers' choking: the seeds' tit-for-tat (4 + 1 optimistic; default) or "
                        "libtorrent's defaults (8 + 1, round-robin when seeding)")
    d.add_argument("--super-seed", action="store_true",
                   help="our seed hands out each piece once (BEP 16 super-seeding): fewer copies from the seed")
    d.add_argument("--with-libtorrent", action="store_true",
                   help="also run the P2P schedule with libtorrent peers (needs its Python bindings)")
    d.add_argument("--p2p-only", action="store_true", help="skip the client-server runs")
    d.add_argument("--piece-length", type=_arg(parse_size), default=0, metavar="BYTES",
                   help="the torrent's piece size (default: about 128 pieces, at least 16KiB)")
    d.add_argument("--out", type=Path, default=Path("distribution-results"),
                   help="where results.csv/.json and distribution.png/.svg go (default ./distribution-results)")
    d.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    d.set_defaults(func=cmd_distribution)


def _missing(modules: list[str]) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


def parameters_from(args) -> p.Parameters:
    if args.repeat < 1:
        raise NetappsError("--repeat must be at least 1")
    if args.piece_length and (args.piece_length < p.MIN_PIECE or args.piece_length & (args.piece_length - 1)):
        raise NetappsError("--piece-length must be a power of two of at least 16KiB")
    # (argparse converts string defaults with the option's type too)
    return p.Parameters(
        file_size=args.file_size, server_upload=float(args.server_upload), peer_upload=args.peer_upload,
        peer_download=args.peer_download, peers=tuple(args.peers), repeat=args.repeat, protocol=args.protocol,
        churn=args.churn, choker=args.choker, super_seed=args.super_seed, with_libtorrent=args.with_libtorrent, piece_length=args.piece_length,
        client_server=not args.p2p_only,
    )


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min {seconds % 60:02.0f} s" if seconds >= 60 else f"{seconds:.0f} s"


def cmd_distribution(args) -> int:
    missing = _missing(["matplotlib", "tqdm"])
    if missing:
        raise NetappsError(f"needs {' and '.join(missing)}: {EXTRA}")
    if args.with_libtorrent and _missing(["libtorrent"]):
        raise NetappsError("--with-libtorrent needs libtorrent's Python bindings: pip install libtorrent")
    params = parameters_from(args)
    from twisted_netapps.experiment.session import run_in_reactor

    print(params.describe())
    bounds = sum(params.client_server_bound(n) * params.client_server + params.p2p_bound(n)
                 for n in params.peers) * params.repeat
    print(f"{len(params.runs())} runs; estimated time {_minutes(params.total_estimate())} "
          f"(the bounds add up to {_minutes(bounds)})", flush=True)
    return run_in_reactor(params, args.out, progress=not args.quiet)


if __name__ == "__main__":  # pragma: no cover
    from twisted_netapps.cli import main

    sys.exit(main(["experiment", *sys.argv[1:]]))
