"""The experiment's parameters (rate lists and distributions) and its result writer."""

import csv
import json

import pytest

from twisted_netapps.experiment import params as p
from twisted_netapps.experiment.results import RunResult, summarise, table, to_csv, write

MiB = 1024 * 1024


def test_rate_specs():
    assert p.parse_rate_spec("1MiB/s").rates(3) == [MiB] * 3
    assert p.parse_rate_spec("100KiB/s,300KiB/s").rates(3) == [102400, 307200, 102400]
    uniform = p.parse_rate_spec("uniform:100KiB/s..300KiB/s").rates(4)
    assert uniform == pytest.approx([128000, 179200, 230400, 281600])  # evenly spaced quantiles
    assert sum(uniform) / 4 == pytest.approx(204800)  # the distribution's mean
    normal = p.parse_rate_spec("normal:200KiB/s,50KiB/s").rates(5)
    assert normal == sorted(normal) and sum(normal) / 5 == pytest.approx(204800)
    assert min(p.parse_rate_spec("normal:100KiB/s,1MiB/s").rates(9)) >= 102400 / 20  # clipped, never <= 0
    for bad in ("", "fast", "uniform:1MiB/s", "uniform:2MiB/s..1MiB/s", "normal:1MiB/s", "zipf:1MiB/s"):
        with pytest.raises(ValueError):
            p.parse_rate_spec(bad)


def test_peers_and_pieces():
    assert p.parse_peers("16,1,4,4") == (1, 4, 16)
    for bad in ("", "0", "a,b", "1,-2", "1000"):
        with pytest.raises(ValueError):
            p.parse_peers(bad)
    assert p.default_piece_length(4 * MiB) == 32 * 1024  # 128 pieces
    assert p.default_piece_length(100 * 1024) == 16 * 1024  # never below one block
    assert p.peer_address(0) == "127.0.2.1" and p.peer_address(250) == "127.0.3.1"


def test_default_parameters_are_the_seeds_example_scaled():
    d = p.Parameters()
    u = d.uploads(1)[0]
    assert d.server_upload == pytest.approx(10 * u) and d.downloads(3) == [d.server_upload] * 3
    assert d.file_size / u == pytest.approx(20.0)  # F/u = 20 s (the seeds' 60 min / 180)
    # the seeds' figure, in units of F/u: D_cs = N/10, D_P2P = N/(10+N) past N=1
    assert d.client_server_bound(16) / 20 == pytest.approx(1.6)
    assert d.p2p_bound(16) / 20 == pytest.approx(16 / 26)
    assert [run[0] for run in d.runs()[:4]] == ["client-server", "p2p", "client-server", "p2p"]
    assert len(d.runs()) == 5 * 2 * 2
    assert d.total_estimate() < 300  # the default run fits in five minutes on paper


def sample_results():
    return [
        RunResult("client-server", 2, 1, 4.0, 4.1, 2 * 1000 + 10, 1000, [4.05, 4.1]),
        RunResult("client-server", 2, 2, 4.0, 4.3, 2 * 1000 + 10, 1000, [4.2, 4.3]),
        RunResult("p2p", 2, 1, 3.0, 3.3, 1500, 1000, [3.1, 3.3]),
        RunResult("p2p", 2, 2, 3.0, 3.6, 1700, 1000, [3.6, 3.2]),
    ]


def test_summary_and_table():
    summary = {s.architecture: s for s in summarise(sample_results())}
    cs = summary["client-server"]
    assert (cs.mean, cs.low, cs.high, cs.runs) == pytest.approx((4.2, 4.1, 4.3, 2))
    assert cs.ratio == pytest.approx(1.05) and summary["p2p"].server_copies == pytest.approx(1.6)
    text = table(sample_results()).splitlines()
    assert text[0].split() == ["N", "D_cs", "bound", "measured", "s", "ratio", "D_P2P", "bound", "measured", "s",
                               "ratio", "seed", "copies"]
    assert text[2].split() == ["2", "4.00", "4.20", "(4.10-4.30)", "1.05", "3.00", "3.45", "(3.30-3.60)", "1.15",
                               "1.60"]


def test_csv_and_json_files(tmp_path):
    results = sample_results()
    paths = write(results, {"file_size": 1000}, tmp_path)
    assert [path.name for path in paths] == ["results.csv", "results.json"]
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert len(rows) == 4 and rows[3]["architecture"] == "p2p" and rows[3]["last_finish_s"] == "3.6000"
    assert rows[3]["finish_times_s"] == "3.6000;3.2000" and rows[0]["ratio"] == "1.0250"
    document = json.loads((tmp_path / "results.json").read_text())
    assert document["parameters"] == {"file_size": 1000}
    assert document["runs"][2]["server_copies"] == 1.5 and document["runs"][2]["finish_times"] == [3.1, 3.3]
    assert [(s["architecture"], s["n"], s["ratio"]) for s in document["summary"]] == [
        ("client-server", 2, 1.05), ("p2p", 2, 1.15)]
    assert to_csv(results) == (tmp_path / "results.csv").read_text()


def test_plot_files(tmp_path):
    pytest.importorskip("matplotlib")
    from twisted_netapps.experiment.plot import plot

    paths = plot(sample_results(), p.Parameters(peers=(1, 2)), tmp_path)
    assert [path.name for path in paths] == ["distribution.png", "distribution.svg"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and b"<svg" in paths[1].read_bytes()[:500]


def test_without_the_extra_the_command_says_what_to_install(monkeypatch, capsys):
    from twisted_netapps import cli
    from twisted_netapps.experiment import cli as experiment_cli

    monkeypatch.setattr(experiment_cli, "_missing", lambda modules: [m for m in modules if m == "matplotlib"])
    assert cli.main(["experiment", "distribution"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["netapps experiment: needs matplotlib: pip install 'twisted-netapps[experiment]'"]
