"""The one data-directory rule: --data-dir, NETAPPS_DATA_DIR, netapps.data_dir of --config, the per-user default."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from twisted_netapps import datadir
from twisted_netapps.errors import NetappsError


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    monkeypatch.delenv(datadir.ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    return monkeypatch


def test_order_of_the_rule(clean_env, tmp_path):
    config = tmp_path / "etc" / "lab.toml"
    config.parent.mkdir()
    assert datadir.locate(None) == datadir.DataDir(tmp_path / "xdg" / "netapps", "the per-user default")
    found = datadir.locate(None, "data", str(config))
    assert found.path == tmp_path / "etc" / "data" and found.origin == f"{config}: netapps.data_dir"
    clean_env.setenv(datadir.ENV_VAR, str(tmp_path / "env"))
    assert datadir.locate(None, "data", str(config)).path == tmp_path / "env"
    assert datadir.locate(str(tmp_path / "opt"), "data", str(config)) == datadir.DataDir(tmp_path / "opt", "--data-dir")


def test_subcommand_options_before_or_after_the_action(clean_env, tmp_path):
    parser = argparse.ArgumentParser()
    datadir.add_options(parser)
    sub = parser.add_subparsers(dest="action")
    datadir.add_options(sub.add_parser("list"), repeat=True)
    assert datadir.from_args(parser.parse_args(["--data-dir", "/a", "list"])).path == Path("/a")
    assert datadir.from_args(parser.parse_args(["list", "--data-dir", "/b"])).path == Path("/b")
    assert datadir.from_args(parser.parse_args(["--data-dir", "/a", "list", "--data-dir", "/b"])).path == Path("/b")
    config = tmp_path / "c.toml"
    config.write_text('[netapps]\ndata_dir = "/srv/lab"\n')
    assert datadir.from_args(parser.parse_args(["list", "--config", str(config)])).path == Path("/srv/lab")


def test_a_missing_one_is_one_line_and_not_created(tmp_path):
    missing = datadir.DataDir(tmp_path / "nope", "--data-dir")
    with pytest.raises(NetappsError, match=rf"^no data directory at {tmp_path / 'nope'} \(from --data-dir\)"):
        datadir.require_existing(missing)
    assert not (tmp_path / "nope").exists()
