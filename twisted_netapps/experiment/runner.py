"""The whole experiment: one daemon (web or ftp, tracker, status), then every run in turn.

For each N (ascending) and each repeat: the client-server run, the P2P run
with our peers and, with ``--with-libtorrent``, the P2P run with libtorrent.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from twisted.internet import threads

from twisted_netapps.bittorrent import metainfo
from twisted_netapps.experiment.clientserver import run_client_server
from twisted_netapps.experiment.params import Parameters
from twisted_netapps.experiment.procs import LineProcess, start_daemon
from twisted_netapps.experiment.results import RunResult
from twisted_netapps.experiment.swarm import run_swarm

PAYLOAD = "payload.bin"
CHUNK = 1024 * 1024


def make_payload(path: Path, size: int) -> str:
    """*size* random bytes at *path*; their SHA-256 (hex)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(CHUNK, left))
            digest.update(chunk)
            f.write(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def server_files(params: Parameters, work: Path) -> tuple[Path, list[str], list[str]]:
    """Where the file goes, the services and their ``--set`` values: the server's
    upload capped at u_s, a tracker that lets peers re-announce quickly."""
    server = "web" if params.protocol == "http" else "ftp"
    sets = [f"{server}.upload_rate={int(params.server_upload)}", "tracker.interval=5", "tracker.min_interval=1"]
    if server == "web":
        payload_dir = work / "www"
        sets += [f"web.root={payload_dir}", "web.seed_demo_site=false", 'web.access_log=""']
    else:  # anonymous FTP serves <root>/anonymous
        payload_dir = work / "ftp" / "anonymous"
        sets += [f"ftp.root={payload_dir.parent}"]
    return payload_dir, [server, "tracker", "status"], sets


class Experiment:
    """Runs :meth:`Parameters.runs` against one daemon; *on_run* hears of each run's
    start (architecture, N, repeat) and end (the result)."""

    def __init__(self, reactor, params: Parameters, work: Path | None = None) -> None:
        self.reactor = reactor
        self.params = params
        self._tmp = None if work else tempfile.TemporaryDirectory(prefix="netapps-experiment-")
        self.work = Path(work or self._tmp.name)
        self.children: set[LineProcess] = set()  # peers running now (stopped on interrupt)
        self.daemon = None
        self.results: list[RunResult] = []

    async def run(self, on_start: Callable = lambda *a: None, on_result: Callable = lambda r: None) -> list[RunResult]:
        params = self.params
        payload_dir, services, sets = server_files(params, self.work)
        payload = payload_dir / PAYLOAD
        self.digest = await threads.deferToThread(make_payload, payload, params.file_size)
        self.daemon = await start_daemon(self.reactor, services, self.work / "daemon", sets=sets)
        try:
            host, port = self.daemon.address("tracker")
            self.tracker = f"http://{host}:{port}/announce"
            self.torrent = self.work / f"{PAYLOAD}.torrent"
            self.torrent.write_bytes(await threads.deferToThread(
                metainfo.create, payload, piece_length=params.pieces, trackers=[self.tracker]))
            self.server, self.payload_dir = services[0], payload_dir
            server_host, server_port = self.daemon.address(self.server)
            self.url = f"{params.protocol}://{server_host}:{server_port}/{PAYLOAD}"
            for arch, n, repeat in params.runs():
                on_start(arch, n, repeat)
                result = await self._run_one(arch, n, repeat)
                self.results.append(result)
                on_result(result)
        finally:
            await self.close()
        return self.results

    async def _run_one(self, arch: str, n: int, repeat: int) -> RunResult:
        params, reactor = self.params, self.reactor
        if arch == "client-server":
            return await run_client_server(
                reactor, protocol_name=params.protocol, url=self.url, n=n, downloads=params.downloads(n),
                digest=self.digest, size=params.file_size, bound=params.client_server_bound(n), repeat=repeat,
                status_address=self.daemon.address("status"), service=self.server)
        swarm = dict(torrent=self.torrent, seed_dir=self.payload_dir, work=self.work, n=n,
                     uploads=params.uploads(n), downloads=params.downloads(n), server_upload=params.server_upload,
                     churn=params.churn, size=params.file_size, bound=params.p2p_bound(n), repeat=repeat)
        if arch == "p2p":
            return await run_swarm(reactor, tracker=self.tracker, choker=params.choker, children=self.children,
                                   super_seed=params.super_seed, **swarm)
        from twisted_netapps.experiment.lt_swarm import run_libtorrent_swarm  # (libtorrent: optional)

        return await run_libtorrent_swarm(reactor, **swarm)

    async def close(self) -> None:
        """Stop every child (also on Ctrl-C) and remove the work directory."""
        for child in list(self.children):
            await child.stop()
        self.children.clear()
        if self.daemon is not None:
            daemon, self.daemon = self.daemon, None
            await daemon.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def parameters_record(params: Parameters) -> dict:
    """The parameters as results.json records them."""
    record = asdict(params)
    record["peer_upload"] = params.peer_upload.text
    record["peer_download"] = params.peer_download.text if params.peer_download else None
    record["piece_length"] = params.pieces
    record["description"] = params.describe()
    record["uploads_at_max_n"] = params.uploads(max(params.peers))
    record["downloads_at_max_n"] = params.downloads(max(params.peers))
    return record
