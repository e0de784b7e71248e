"""Service builder for ``bittorrent``: seed and download every ``.torrent`` in a watch directory.

``<data_dir>/torrents/*.torrent`` are picked up (scanned every few seconds),
downloaded into (or seeded from) ``<data_dir>/downloads/``, announced to their
trackers. The demo: on first start ``<data_dir>/downloads/demo/`` gets a small
file tree and ``<data_dir>/torrents/demo.torrent`` (announcing to
``demo_tracker``), so the daemon seeds something at once.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger

from twisted_netapps.bittorrent import metainfo
from twisted_netapps.bittorrent.peer.protocol import PeerFactory, TorrentDirectory
from twisted_netapps.bittorrent.peer.runner import TorrentRunner
from twisted_netapps.connections import StreamSettings
from twisted_netapps.context import ServiceContext
from twisted_netapps.periodic import PeriodicTask
from twisted_netapps.fileio import write_atomically
from twisted_netapps.ratelimit import TokenBucket
from twisted_netapps.settings import setting

log = Logger(namespace="netapps.bittorrent")

COUNTERS: dict[str, str] = {
    "torrents": "gauge: torrents loaded from the watch directory",
    "torrents_complete": "gauge: of those, complete (seeding)",
    "peers": "gauge: peer connections over all torrents",
    "unchoked": "gauge: peers we upload to",
    "upload_rate": "gauge: bytes/s uploaded (all torrents)",
    "download_rate": "gauge: bytes/s downloaded (all torrents)",
    "uploaded": "gauge: bytes uploaded since start",
    "downloaded": "gauge: bytes downloaded since start",
    "hash_failures": "gauge: pieces that failed their SHA-1 check",
    "bad_torrents": "torrent files in the watch directory that could not be used",
    "torrent.NAME.permille": "gauge: per torrent, verified pieces in thousandths",
    "torrent.NAME.peers": "gauge: per torrent, connected peers",
}

DEMO_TEXT = (
    "This file is seeded by twisted-netapps' bittorrent service.\n"
    "Download it with: aria2c --dir=/tmp DATA_DIR/torrents/demo.torrent\n"
)


@dataclasses.dataclass(frozen=True)
class Settings(StreamSettings):
    # Lab swarms run many peers on one loopback address.
    max_connections_per_address: int = setting(
        200, "concurrent connections from one client address per TCP listener", minimum=1
    )
    listen: list[str] = setting(["tcp:6881:interface=127.0.0.1"], "where peers connect to us (TCP endpoint strings)")
    bind: str = setting("127.0.0.1", "address for outgoing peer connections and announces")
    watch_dir: str = setting("torrents", "directory (under the data dir unless absolute) scanned for .torrent files")
    download_dir: str = setting("downloads", "where torrents are downloaded to and seeded from")
    scan_interval: float = setting(5.0, "seconds between scans of watch_dir", positive=True)
    upload_rate: int = setting(0, "global upload cap in bytes/s (0 = none)", minimum=0)
    download_rate: int = setting(0, "global download cap in bytes/s (0 = none)", minimum=0)
    torrent_upload_rate: int = setting(0, "per-torrent upload cap in bytes/s (0 = none)", minimum=0)
    torrent_download_rate: int = setting(0, "per-torrent download cap in bytes/s (0 = none)", minimum=0)
    demo: bool = setting(True, "create and seed a small demo torrent on first start")
    demo_tracker: str = setting("http://127.0.0.1:6969/announce", "the demo torrent's announce URL")
    super_seed: bool = setting(False, "BEP 16 super-seeding for complete torrents")


def _resolve(data_dir: Path, path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else data_dir / p


def make_demo(watch: Path, downloads: Path, tracker: str) -> None:
    """A two-file demo torrent (about 1 MiB), once."""
    torrent = watch / "demo.torrent"
    if torrent.exists():
        return
    root = downloads / "demo"
    root.mkdir(parents=True, exist_ok=True)
    (root / "README.txt").write_text(DEMO_TEXT)
    # Deterministic pseudo-random bytes: the same demo everywhere, not compressible.
    blocks = [hashlib.sha256(b"netapps demo %d" % i).digest() for i in range(32 * 1024)]
    (root / "demo.bin").write_bytes(b"".join(blocks))
    write_atomically(torrent, metainfo.create(root, trackers=[tracker], comment="twisted-netapps demo"), 0o644)


class BittorrentService(service.MultiService):
    def __init__(self, context: ServiceContext) -> None:
        super().__init__()
        s: Settings = context.settings
        self.settings = s
        self.context = context
        self.reactor = context.reactor
        self.stats = context.stats
        self.watch = _resolve(context.data_dir, s.watch_dir)
        self.downloads = _resolve(context.data_dir, s.download_dir)
        self.directory = TorrentDirectory(self.reactor)
        now = self.reactor.seconds()
        self.buckets = (
            [TokenBucket(s.upload_rate, now=now)] if s.upload_rate else [],
            [TokenBucket(s.download_rate, now=now)] if s.download_rate else [],
        )
        self.runners: dict[Path, TorrentRunner] = {}
        self.failed: set[Path] = set()
        self.listeners = context.listeners(PeerFactory(self.directory), refuse=b"")
        for listener in self.listeners:
            listener.setServiceParent(self)
        PeriodicTask("bittorrent watch dir", s.scan_interval, self.scan, self.reactor, now=True).setServiceParent(self)
        PeriodicTask("bittorrent stats", 1.0, self.report, self.reactor).setServiceParent(self)

    def listen_port(self) -> int:
        for listener in self.listeners:
            port = getattr(listener, "port", None)
            if port is not None:
                return port.getHost().port
        return 0

    def startService(self) -> None:
        self.watch.mkdir(parents=True, exist_ok=True)
        self.downloads.mkdir(parents=True, exist_ok=True)
        if self.settings.demo:
            make_demo(self.watch, self.downloads, self.settings.demo_tracker)
        super().startService()

    def scan(self) -> None:
        present = set(self.watch.glob("*.torrent"))
        for path in sorted(present - set(self.runners) - self.failed):
            try:
                meta = metainfo.load(path)
            except metainfo.MetainfoError as e:
                log.warn("bittorrent: {path}: {error}", path=str(path), error=str(e))
                self.failed.add(path)
                self.stats.incr("bad_torrents")
                continue
            if self.directory.runner_for(meta.info_hash) is not None:
                continue
            s = self.settings
            runner = TorrentRunner(
                self.reactor, meta, self.downloads, self.directory, bind=s.bind, listen_port=self.listen_port,
                upload_rate=s.torrent_upload_rate, download_rate=s.torrent_download_rate,
                global_buckets=self.buckets, super_seed=s.super_seed, pools=self.context.pools,
            )
            self.runners[path] = runner
            log.info("bittorrent: {name}: loaded {path} ({size} bytes, info-hash {ih})",
                     name=meta.name, path=str(path), size=meta.total_length, ih=meta.info_hash.hex())
            d = defer.ensureDeferred(runner.start())
            d.addErrback(self._start_failed, path)
        for path in set(self.runners) - present:  # a removed .torrent stops its torrent
            runner = self.runners.pop(path)
            defer.ensureDeferred(runner.stop())

    def _start_failed(self, failure, path: Path) -> None:
        failure.trap(OSError, metainfo.MetainfoError)
        log.error("bittorrent: {path}: {error}", path=str(path), error=str(failure.value))
        self.runners.pop(path, None)
        self.failed.add(path)

    def report(self) -> None:
        totals = dict.fromkeys(("torrents", "torrents_complete", "peers", "unchoked", "upload_rate",
                                "download_rate", "uploaded", "downloaded", "hash_failures"), 0)
        gauges = {}
        for runner in self.runners.values():
            p = runner.progress()
            totals["torrents"] += 1
            totals["torrents_complete"] += p["pieces"] == p["piece_count"]
            for key in ("peers", "unchoked", "upload_rate", "download_rate", "uploaded", "downloaded",
                        "hash_failures"):
                totals[key] += p.get(key, 0)
            name = runner.meta.name
            gauges[f"torrent.{name}.permille"] = 1000 * p["pieces"] // max(1, p["piece_count"])
            gauges[f"torrent.{name}.peers"] = p["peers"]
        for key, value in {**totals, **gauges}.items():
            self.stats.gauge_add(key, value - self.stats[key])

    def stopService(self):
        d = defer.maybeDeferred(super().stopService)
        stops = [defer.ensureDeferred(r.stop()) for r in self.runners.values()]
        d.addCallback(lambda _: defer.DeferredList(stops))
        return d


def build(context: ServiceContext):
    return BittorrentService(context)
