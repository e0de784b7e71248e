"""``netapps experiment distribution`` end to end, small: N = 2, a 512 KiB file.

It starts the real daemon (web, tracker, status), two HTTP clients and a
swarm of ``netapps torrent`` peers. A measured time below its bound would
mean the measurement is wrong (the caps are honest: nothing runs ahead of
rate * elapsed), so every ratio must be at least 1.0.
"""

import csv
import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

NETAPPS = [sys.executable, "-m", "twisted_netapps.cli"]
SMALL = ["--peers", "2", "--repeat", "1", "--file-size", "512KiB", "--server-upload", "512KiB/s",
         "--peer-upload", "128KiB/s", "-q"]


def run(*args, timeout=180):
    return subprocess.run([*NETAPPS, "experiment", "distribution", *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("protocol", ["http", "ftp"])
def test_small_run_writes_the_table_and_files(tmp_path, protocol):
    pytest.importorskip("matplotlib")
    out = tmp_path / "out"
    done = run(*SMALL, "--protocol", protocol, "--out", str(out))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("F = 512KiB, u_s = 512KiB/s, u_i = 128KiB/s")
    assert "estimated time" in lines[1]
    header = next(i for i, line in enumerate(lines) if line.split()[:3] == ["N", "D_cs", "bound"])
    row = lines[header + 2].split()
    # N=2: D_cs = 2F/u_s = 2 s; D_P2P = 2F/(u_s + 2u) = 4/3 s
    assert row[:2] == ["2", "2.00"] and row[4] == "1.33"
    assert sorted(path.name for path in out.iterdir()) == [
        "distribution.png", "distribution.svg", "results.csv", "results.json"]
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert [(r["architecture"], r["n"]) for r in runs] == [("client-server", 2), ("p2p", 2)]
    for r in runs:
        assert r["ratio"] >= 1.0, r  # below the bound: the measurement would be wrong
        assert len(r["finish_times"]) == 2 and max(r["finish_times"]) == pytest.approx(r["measured"], abs=1e-3)
    cs, p2p = runs
    assert cs["ratio"] <= 1.3 and p2p["ratio"] <= 2.0  # loose: CI machines are busy
    assert cs["server_copies"] == pytest.approx(2.0, abs=0.01)  # headers aside, two copies
    assert 1.0 <= p2p["server_copies"] < 2.0  # the seed sent each piece at least once, and less than N copies
    assert len(list(csv.DictReader((out / "results.csv").open()))) == 2


def test_bad_arguments_get_one_line():
    done = run("--peers", "0")
    assert done.returncode == 2 and "each N must be between 1 and" in done.stderr
    done = run("--peer-upload", "uniform:1MiB/s")
    assert done.returncode == 2 and "expected uniform:LOW..HIGH" in done.stderr
