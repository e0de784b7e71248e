"""``netapps torrent get|seed``: one torrent in the foreground, for people and scripts.

Exit status: 0 once every piece is verified and fsync'd (``get``), or after a
SIGTERM/SIGINT that found our copy complete (``seed``, ``get --seed``); 2 when
stopped before completing; 1 for errors (one line on stderr). On the way out
``event=stopped`` is sent to the trackers (waiting at most 5 s).
"""

from __future__ import annotations

import signal
import sys

from twisted.internet import defer, endpoints, error, task
from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)

from twisted_netapps.bittorrent.metainfo import Metainfo
from twisted_netapps.bittorrent.peer.choker import POLICIES
from twisted_netapps.bittorrent.peer.protocol import PeerFactory, TorrentDirectory
from twisted_netapps.bittorrent.peer.runner import TorrentRunner
from twisted_netapps.errors import NetappsError
from twisted_netapps.units import format_rate


def _parse_peer(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    try:
        return host, int(port)
    except ValueError:
        raise NetappsError(f"--peer {text}: expected HOST:PORT") from None


def run_foreground(args, meta: Metainfo) -> int:
    from twisted.internet import reactor

    predicate = LogLevelFilterPredicate(
        defaultLogLevel=LogLevel.debug if args.verbose else LogLevel.warn)
    globalLogBeginner.beginLoggingTo(
        [FilteringLogObserver(textFileLogObserver(sys.stderr), [predicate])], redirectStandardIO=False)
    seeding_mode = args.mode == "seed"
    keep_seeding = bool(getattr(args, "seed", False))
    args.dir.mkdir(parents=True, exist_ok=True)
    directory = TorrentDirectory(reactor)
    outcome = {"status": 2, "stopping": False}
    bound = {"port": args.port}
    extra = [_parse_peer(p) for p in args.peer or []]

    def on_complete() -> None:
        if not args.quiet:
            print(f"\rcomplete: {meta.name} ({meta.total_length} bytes) in "
                  f"{reactor.seconds() - runner.started_at:.2f}s", file=sys.stderr, flush=True)
        print(f"complete {meta.info_hash.hex()} {reactor.seconds() - runner.started_at:.3f}", flush=True)
        if not keep_seeding:
            outcome["status"] = 0
            shutdown()

    runner = TorrentRunner(
        reactor, meta, args.dir, directory, bind=args.bind, listen_port=lambda: bound["port"],
        upload_rate=args.upload_rate, download_rate=args.download_rate, trackers=args.tracker,
        extra_peers=extra, super_seed=args.super_seed, choke_policy=POLICIES[args.choker],
        on_complete=on_complete,
    )

    def shutdown(*_sig) -> None:
        if outcome["stopping"]:
            return
        outcome["stopping"] = True
        if runner.core is not None and runner.core.complete:
            outcome["status"] = 0
        if runner.core is not None:
            print(f"totals uploaded {runner.core.uploaded} downloaded {runner.core.downloaded}", flush=True)
        d = defer.ensureDeferred(runner.stop())
        d.addErrback(lambda f: print(f"netapps torrent: {f.getErrorMessage()}", file=sys.stderr))
        d.addBoth(lambda _: reactor.stop())

    def progress() -> None:
        if args.quiet or runner.core is None:
            return
        p = runner.progress()
        percent = 100.0 * p["pieces"] / max(1, p["piece_count"])
        print(f"\r{meta.name}: {percent:5.1f}%  down {format_rate(p['download_rate'])}  "
              f"up {format_rate(p['upload_rate'])}  peers {p['peers']}   ", end="", file=sys.stderr, flush=True)

    async def begin() -> None:
        endpoint = endpoints.TCP4ServerEndpoint(reactor, args.port, interface=args.bind)
        try:
            port = await endpoint.listen(PeerFactory(directory))
        except error.CannotListenError as e:
            raise NetappsError(f"cannot listen on {args.bind}:{args.port}: {e.socketError}") from None
        bound["port"] = port.getHost().port
        await runner.start()
        print(f"ready {args.bind}:{bound['port']} {runner.core.picker.have_count}/{meta.piece_count}", flush=True)
        if seeding_mode and not runner.core.complete:
            raise NetappsError(f"{args.dir / meta.name}: not a complete copy "
                               f"({runner.core.picker.have_count}/{meta.piece_count} pieces verified)")

    def failed(f) -> None:
        f.trap(NetappsError, OSError)
        print(f"netapps torrent: {f.getErrorMessage()}", file=sys.stderr)
        outcome["status"] = 1
        if runner.running:
            shutdown()
        else:
            reactor.stop()

    ticker = task.LoopingCall(progress)
    ticker.clock = reactor
    reactor.callWhenRunning(lambda: defer.ensureDeferred(begin()).addErrback(failed))
    reactor.callWhenRunning(ticker.start, 1.0, False)
    reactor.callWhenRunning(signal.signal, signal.SIGTERM, lambda *a: reactor.callFromThread(shutdown))
    reactor.callWhenRunning(signal.signal, signal.SIGINT, lambda *a: reactor.callFromThread(shutdown))
    reactor.run(installSignalHandlers=False)
    if not args.quiet:
        print(file=sys.stderr)
    return outcome["status"]
