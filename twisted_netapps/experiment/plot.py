"""The seeds' figure, measured: distribution time against N, both bounds as lines,
the measured runs as points with their spread (matplotlib, optional extra)."""

from __future__ import annotations

from pathlib import Path

from twisted_netapps.experiment.params import Parameters
from twisted_netapps.experiment.results import LABELS, RunResult, summarise

STYLE = {
    "client-server": {"color": "tab:red", "marker": "s"},
    "p2p": {"color": "tab:blue", "marker": "o"},
    "p2p-libtorrent": {"color": "tab:green", "marker": "^"},
}


def plot(results: list[RunResult], params: Parameters, out_dir: Path) -> list[Path]:
    """Write distribution.png and distribution.svg into *out_dir*."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "netapps"  # the same run gives the same file
    from matplotlib import pyplot
    from matplotlib.ticker import MaxNLocator

    ns = range(1, max(params.peers) + 1)
    figure, axes = pyplot.subplots(figsize=(7.5, 4.8), layout="constrained")
    axes.plot(ns, [params.client_server_bound(n) for n in ns], color=STYLE["client-server"]["color"],
              label="client-server bound  max(NF/u_s, F/d_min)")
    axes.plot(ns, [params.p2p_bound(n) for n in ns], color=STYLE["p2p"]["color"],
              label="P2P bound  max(F/u_s, F/d_min, NF/(u_s+Σu_i))")
    for s in summarise(results):
        style = STYLE[s.architecture]
        axes.errorbar([s.n], [s.mean], yerr=[[s.mean - s.low], [s.high - s.mean]],
                      fmt=style["marker"], color=style["color"], markerfacecolor="white", capsize=3,
                      label=f"{LABELS[s.architecture]}, measured")
    handles, labels = axes.get_legend_handles_labels()
    unique = dict(zip(labels, handles))  # one legend entry per series
    axes.legend(unique.values(), unique.keys(), loc="upper left", fontsize="small")
    axes.set_xlabel("N (peers)")
    axes.set_ylabel("minimum distribution time (s)")
    axes.set_xlim(0, max(params.peers) + 1)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylim(0, None)
    axes.grid(True, alpha=0.3)
    axes.set_title("Distribution time vs N: the bounds and our services, measured", fontsize="medium")
    figure.text(0.5, -0.02, params.describe(), ha="center", va="top", fontsize="x-small", wrap=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "distribution.png", out_dir / "distribution.svg"]
    figure.savefig(paths[0], dpi=120, bbox_inches="tight")
    figure.savefig(paths[1], bbox_inches="tight", metadata={"Date": None})
    pyplot.close(figure)
    return paths
