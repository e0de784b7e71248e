"""The experiment's parameters: sizes, rates (one for all peers, a list, or a distribution), N values.

Pure: parsing, the per-peer rates, the bounds for each N and the time the
whole run should take.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from twisted_netapps.experiment.bounds import client_server_bound, p2p_bound
from twisted_netapps.units import format_rate, format_size, parse_rate, parse_size

# The seeds' example, scaled down 180 times so that the default run takes a
# few minutes: F/u = 60 min, u_s = 10u, d_min >= u_s becomes F = 4 MiB,
# u_s = 2 MiB/s (F/u_s = 2 s), u = 204.8 KiB/s (F/u = 20 s), d = u_s.
DEFAULT_FILE_SIZE = "4MiB"
DEFAULT_SERVER_UPLOAD = "2MiB/s"
DEFAULT_PEER_UPLOAD = "204.8KiB/s"
DEFAULT_PEERS = (1, 2, 4, 8, 16)
PIECES = 128  # a torrent of about this many pieces (finer pieces spread sooner)
MIN_PIECE = 16 * 1024
MAX_PEERS = 250
# What a run costs beyond its bound, for the estimate up front: P2P runs
# start N + 1 processes and land near 1.1x their bound.
P2P_FACTOR = 1.15
PROCESS_START = 0.35  # seconds of CPU to start one peer process (2 cores)


SEED_ADDRESS = "127.0.1.1"  # the P2P seed's loopback "host"


def peer_address(i: int) -> str:
    """The *i*-th client's (or leecher's) address: each is its own loopback "host"."""
    return f"127.0.{2 + i // 250}.{1 + i % 250}"


@dataclass(frozen=True)
class RateSpec:
    """Per-peer rates: one for every peer, a list (repeated over the peers), or
    a distribution whose evenly spaced quantiles give the peers' rates (so a
    run is reproducible and the mean is the distribution's)."""

    text: str
    kind: str  # "list", "uniform", "normal"
    values: tuple[float, ...]

    def rates(self, n: int) -> list[float]:
        if self.kind == "list":
            return [self.values[i % len(self.values)] for i in range(n)]
        quantiles = [(i + 0.5) / n for i in range(n)]
        if self.kind == "uniform":
            low, high = self.values
            return [low + (high - low) * q for q in quantiles]
        mean, sd = self.values
        dist = statistics.NormalDist(mean, sd)
        return [max(mean / 20, dist.inv_cdf(q)) for q in quantiles]

    def describe(self) -> str:
        if self.kind == "list":
            return ", ".join(format_rate(v) for v in self.values)
        if self.kind == "uniform":
            return f"uniform {format_rate(self.values[0])} .. {format_rate(self.values[1])}"
        return f"normal, mean {format_rate(self.values[0])}, sd {format_rate(self.values[1])}"


def parse_rate_spec(text: str) -> RateSpec:
    """``1MiB/s``; ``100KiB/s,300KiB/s`` (repeated over the peers);
    ``uniform:100KiB/s..300KiB/s``; ``normal:200KiB/s,50KiB/s`` (mean, sd).
    ValueError with the reason."""
    body = text.strip()
    kind, _, rest = body.partition(":")
    if not rest:
        values = tuple(float(parse_rate(part)) for part in body.split(","))
        return RateSpec(text, "list", values)
    if kind == "uniform":
        low, sep, high = rest.partition("..")
        if not sep:
            raise ValueError(f"{text!r}: expected uniform:LOW..HIGH (e.g. uniform:100KiB/s..300KiB/s)")
        values = (float(parse_rate(low)), float(parse_rate(high)))
        if values[0] > values[1]:
            raise ValueError(f"{text!r}: LOW is above HIGH")
        return RateSpec(text, "uniform", values)
    if kind == "normal":
        mean, sep, sd = rest.partition(",")
        if not sep:
            raise ValueError(f"{text!r}: expected normal:MEAN,SD (e.g. normal:200KiB/s,50KiB/s)")
        return RateSpec(text, "normal", (float(parse_rate(mean)), float(parse_rate(sd, zero=True))))
    raise ValueError(f"{text!r}: a rate, a comma-separated list, uniform:LOW..HIGH or normal:MEAN,SD")


def parse_peers(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"{text!r}: expected N values like 1,2,4,8,16") from None
    if not values or any(n < 1 or n > MAX_PEERS for n in values):
        raise ValueError(f"{text!r}: each N must be between 1 and {MAX_PEERS}")
    return tuple(sorted(set(values)))


def default_piece_length(file_size: int) -> int:
    """The power of two giving about :data:`PIECES` pieces, at least 16 KiB."""
    length = MIN_PIECE
    while length * 2 * PIECES <= file_size:
        length *= 2
    return length


@dataclass(frozen=True)
class Parameters:
    file_size: int = parse_size(DEFAULT_FILE_SIZE)
    server_upload: float = float(parse_rate(DEFAULT_SERVER_UPLOAD))
    peer_upload: RateSpec = field(default_factory=lambda: parse_rate_spec(DEFAULT_PEER_UPLOAD))
    peer_download: RateSpec | None = None  # None: every peer downloads at u_s (the seeds' d_min >= u_s)
    peers: tuple[int, ...] = DEFAULT_PEERS
    repeat: int = 2
    protocol: str = "http"
    churn: bool = False
    choker: str = "tit-for-tat"
    super_seed: bool = False  # our seed hands out each piece once (BEP 16)
    with_libtorrent: bool = False
    piece_length: int = 0  # 0: default_piece_length(file_size)
    client_server: bool = True  # False: the P2P runs only

    @property
    def pieces(self) -> int:
        return self.piece_length or default_piece_length(self.file_size)

    def uploads(self, n: int) -> list[float]:
        return self.peer_upload.rates(n)

    def downloads(self, n: int) -> list[float]:
        if self.peer_download is None:
            return [self.server_upload] * n
        return self.peer_download.rates(n)

    def client_server_bound(self, n: int) -> float:
        return client_server_bound(n, self.file_size, self.server_upload, self.downloads(n))

    def p2p_bound(self, n: int) -> float:
        return p2p_bound(n, self.file_size, self.server_upload, self.uploads(n), self.downloads(n))

    def architectures(self) -> list[str]:
        return (["client-server"] if self.client_server else []) + ["p2p"] + (
            ["p2p-libtorrent"] if self.with_libtorrent else [])

    def runs(self) -> list[tuple[str, int, int]]:
        """(architecture, N, repeat) in the order they run: N ascending, repeats
        interleaved so that a change of machine load spreads over both."""
        return [(arch, n, r) for n in self.peers for r in range(1, self.repeat + 1)
                for arch in self.architectures()]

    def estimate(self, architecture: str, n: int) -> float:
        """Seconds a run should take, set-up included (for the progress bar)."""
        if architecture == "client-server":
            return self.client_server_bound(n) + 0.2
        return self.p2p_bound(n) * P2P_FACTOR + PROCESS_START * (n + 1) + 0.5

    def total_estimate(self) -> float:
        return sum(self.estimate(arch, n) for arch, n, _ in self.runs()) + 3.0  # + the daemon's start

    def describe(self) -> str:
        down = self.peer_download.describe() if self.peer_download else f"{format_rate(self.server_upload)} (= u_s)"
        return (f"F = {format_size(self.file_size)}, u_s = {format_rate(self.server_upload)}, "
                f"u_i = {self.peer_upload.describe()}, d_i = {down}, "
                f"pieces of {format_size(self.pieces)}, choker {self.choker}"
                f"{', super-seeding' if self.super_seed else ''}"
                f"{', churn (leechers leave when done)' if self.churn else ''}, protocol {self.protocol}")
