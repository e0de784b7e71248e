"""``netapps torrent create|info|magnet|get|seed``.

``get`` and ``seed`` run one torrent in the foreground (see
:mod:`twisted_netapps.bittorrent.peer.foreground`); they are scriptable: exit
status 0 once every piece is verified and flushed (``get`` without ``--seed``),
a clean exit after ``event=stopped`` on SIGTERM, one-line errors otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from twisted_netapps.bittorrent import metainfo
from twisted_netapps.bittorrent.peer.choker import POLICIES, TIT_FOR_TAT
from twisted_netapps.errors import NetappsError
from twisted_netapps.units import format_size, parse_size

def size_argument(text: str) -> int:
    """``256KiB``, ``1M``, ``2MiB/s``, ``500kB``, ``16384`` -> bytes (0 allowed: no limit)."""
    try:
        return parse_size(text.removesuffix("/s"), zero=True)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def cmd_create(args) -> int:
    try:
        data = metainfo.create(
            args.path, piece_length=args.piece_length, trackers=args.tracker or [],
            comment=args.comment or "", private=args.private,
        )
    except OSError as e:
        raise NetappsError(f"{args.path}: {e.strerror}") from None
    except metainfo.MetainfoError as e:
        raise NetappsError(str(e)) from None
    out = args.output or f"{Path(args.path).resolve().name}.torrent"
    Path(out).write_bytes(data)
    meta = metainfo.parse(data)
    print(f"{out}: {meta.name}, {format_size(meta.total_length)} in {meta.piece_count} pieces of "
          f"{format_size(meta.piece_length)}, info-hash {meta.info_hash.hex()}")
    return 0


def _load(path: str) -> metainfo.Metainfo:
    try:
        return metainfo.load(path)
    except metainfo.MetainfoError as e:
        raise NetappsError(str(e)) from None


def cmd_info(args) -> int:
    meta = _load(args.torrent)
    print(f"name:         {meta.name}")
    print(f"info-hash:    {meta.info_hash.hex()}")
    print(f"size:         {meta.total_length} bytes ({format_size(meta.total_length)})")
    print(f"pieces:       {meta.piece_count} x {meta.piece_length} bytes")
    print(f"private:      {'yes' if meta.private else 'no'}")
    for i, tier in enumerate(meta.tiers):
        print(f"tracker tier {i}: {' '.join(tier)}")
    if meta.comment:
        print(f"comment:      {meta.comment}")
    print(f"magnet:       {meta.magnet()}")
    print("files:")
    for f in meta.files:
        print(f"  {f.length:>14}  {'/'.join(f.path)}")
    return 0


def cmd_magnet(args) -> int:
    try:
        magnet = metainfo.parse_magnet(args.link)
    except metainfo.MetainfoError as e:
        raise NetappsError(str(e)) from None
    print(f"info-hash: {magnet.info_hash.hex()}")
    if magnet.name:
        print(f"name:      {magnet.name}")
    for t in magnet.trackers:
        print(f"tracker:   {t}")
    return 0


def cmd_transfer(args) -> int:
    from twisted_netapps.bittorrent.peer.foreground import run_foreground

    return run_foreground(args, _load(args.torrent))


def _add_transfer_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("torrent", help="the .torrent file")
    p.add_argument("--dir", required=True, type=Path, help="download directory (the torrent's name goes under it)")
    p.add_argument("--bind", default="127.0.0.1",
                   help="one address for listening, outgoing connections and announces (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="listening port (default: any free port)")
    p.add_argument("--upload-rate", type=size_argument, default=0, metavar="R",
                   help="upload cap in bytes/s (e.g. 1MiB; 0 = none)")
    p.add_argument("--download-rate", type=size_argument, default=0, metavar="R",
                   help="download cap in bytes/s (0 = none)")
    p.add_argument("--tracker", action="append", metavar="URL",
                   help="announce here instead of the torrent's trackers (repeatable)")
    p.add_argument("--peer", action="append", metavar="HOST:PORT",
                   help="also connect to this peer (repeatable; e.g. a client that never dials 127.x)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress line")
    p.add_argument("--verbose", "-v", action="store_true", help="log connections and tracker replies")
    p.add_argument("--choker", choices=sorted(POLICIES), default=TIT_FOR_TAT.name,
                   help="whom to upload to: the seeds' tit-for-tat (4 fastest + 1 optimistic, every 10/30 s; "
                        "default) or libtorrent's defaults (8 + 1, every 15/30 s, round-robin when seeding)")
    p.add_argument("--super-seed", action="store_true",
                   help="BEP 16 super-seeding while this copy is the only complete one (seeding)")


def register(subparsers) -> None:
    parser = subparsers.add_parser("torrent", help="create, inspect, download and seed torrents")
    sub = parser.add_subparsers(dest="torrent_command", required=True)

    p = sub.add_parser("create", help="make a .torrent for a file or directory")
    p.add_argument("path")
    p.add_argument("--piece-length", type=size_argument, default=None,
                   help="piece size (default: 256KiB, larger for files over 512 MiB)")
    p.add_argument("--tracker", "-t", action="append", help="announce URL (repeatable: one tier each)")
    p.add_argument("--output", "-o", help="where to write (default: NAME.torrent here)")
    p.add_argument("--comment")
    p.add_argument("--private", action="store_true")
    p.set_defaults(func=cmd_create)

    p = sub.add_parser("info", help="show a .torrent's contents and magnet link")
    p.add_argument("torrent")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("magnet", help="parse a magnet link")
    p.add_argument("link")
    p.set_defaults(func=cmd_magnet)

    p = sub.add_parser("get", help="download a torrent in the foreground; exit 0 when complete")
    _add_transfer_options(p)
    p.add_argument("--seed", action="store_true", help="keep seeding after completing")
    p.set_defaults(func=cmd_transfer, mode="get")

    p = sub.add_parser("seed", help="seed a complete copy in the foreground")
    _add_transfer_options(p)
    p.set_defaults(func=cmd_transfer, mode="seed", seed=True)


if __name__ == "__main__":  # pragma: no cover
    from twisted_netapps.cli import main

    sys.exit(main(["torrent", *sys.argv[1:]]))
