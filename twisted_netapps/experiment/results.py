"""The experiment's results: one record per run, the summary per N, the table, CSV and JSON.

Pure (no Twisted, no matplotlib): the plot is :mod:`.plot`.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

from twisted_netapps.fileio import write_atomically

ARCHITECTURES = ("client-server", "p2p", "p2p-libtorrent")
LABELS = {"client-server": "client-server", "p2p": "P2P (ours)", "p2p-libtorrent": "P2P (libtorrent)"}


@dataclass
class RunResult:
    architecture: str  # one of ARCHITECTURES
    n: int
    repeat: int
    bound: float  # D_cs or D_P2P for the same parameters, seconds
    measured: float  # seconds from the start until the last peer held a verified copy
    server_bytes: int  # what the server (client-server) or the seed (P2P) uploaded
    file_size: int
    finish_times: list[float] = field(default_factory=list)  # per peer, seconds from the start

    @property
    def ratio(self) -> float:
        return self.measured / self.bound

    @property
    def server_copies(self) -> float:
        return self.server_bytes / self.file_size

    def as_dict(self) -> dict:
        record = asdict(self)
        record["finish_times"] = [round(t, 4) for t in self.finish_times]
        record.update(ratio=round(self.ratio, 4), server_copies=round(self.server_copies, 4))
        return record


@dataclass(frozen=True)
class Summary:
    """Every repeat of one architecture at one N."""

    architecture: str
    n: int
    bound: float
    mean: float
    low: float
    high: float
    server_copies: float
    runs: int

    @property
    def ratio(self) -> float:
        return self.mean / self.bound

    @property
    def worst_ratio(self) -> float:
        return self.high / self.bound

    @property
    def best_ratio(self) -> float:
        return self.low / self.bound


def summarise(results: list[RunResult]) -> list[Summary]:
    groups: dict[tuple[str, int], list[RunResult]] = {}
    for r in results:
        groups.setdefault((r.architecture, r.n), []).append(r)
    out = []
    for (arch, n), runs in sorted(groups.items(), key=lambda kv: (ARCHITECTURES.index(kv[0][0]), kv[0][1])):
        times = [r.measured for r in runs]
        out.append(Summary(arch, n, runs[0].bound, statistics.fmean(times), min(times), max(times),
                           statistics.fmean(r.server_copies for r in runs), len(runs)))
    return out


def _cell(s: Summary | None) -> list[str]:
    if s is None:
        return ["-", "-", "-"]
    spread = f" ({s.low:.2f}-{s.high:.2f})" if s.runs > 1 else ""
    return [f"{s.bound:.2f}", f"{s.mean:.2f}{spread}", f"{s.ratio:.2f}"]


def table(results: list[RunResult]) -> str:
    """The terminal table: per N, each architecture's bound, measured mean
    (min-max over the repeats) and ratio, and the seed's uploads in copies of F."""
    summaries = {(s.architecture, s.n): s for s in summarise(results)}
    archs = [a for a in ARCHITECTURES if any(s[0] == a for s in summaries)]
    ns = sorted({n for _, n in summaries})
    header = ["N"]
    names = {"client-server": "D_cs", "p2p": "D_P2P", "p2p-libtorrent": "libtorrent"}
    for arch in archs:
        header += [f"{names[arch]} bound", "measured s", "ratio"]
        if arch != "client-server":
            header.append("seed copies")
    rows = [header]
    for n in ns:
        row = [str(n)]
        for arch in archs:
            s = summaries.get((arch, n))
            row += _cell(s)
            if arch != "client-server":
                row.append(f"{s.server_copies:.2f}" if s else "-")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(r, widths)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


CSV_FIELDS = ["architecture", "n", "repeat", "bound_s", "measured_s", "ratio", "server_copies",
              "first_finish_s", "median_finish_s", "last_finish_s", "finish_times_s"]


def to_csv(results: list[RunResult]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for r in results:
        times = r.finish_times or [r.measured]
        writer.writerow([
            r.architecture, r.n, r.repeat, f"{r.bound:.4f}", f"{r.measured:.4f}", f"{r.ratio:.4f}",
            f"{r.server_copies:.4f}", f"{min(times):.4f}", f"{statistics.median(times):.4f}",
            f"{max(times):.4f}", ";".join(f"{t:.4f}" for t in times),
        ])
    return out.getvalue()


def to_json(results: list[RunResult], parameters: dict) -> str:
    document = {
        "parameters": parameters,
        "runs": [r.as_dict() for r in results],
        "summary": [
            {**asdict(s), "ratio": round(s.ratio, 4)} for s in summarise(results)
        ],
    }
    return json.dumps(document, indent=2) + "\n"


def write(results: list[RunResult], parameters: dict, out_dir: Path) -> list[Path]:
    """results.csv and results.json in *out_dir* (each written atomically)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "results.csv", out_dir / "results.json"]
    write_atomically(paths[0], to_csv(results).encode(), mode=0o644)
    write_atomically(paths[1], to_json(results, parameters).encode(), mode=0o644)
    return paths
