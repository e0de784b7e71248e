"""The [dns] config section: shape, validation, paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from twisted_netapps.config import DEFAULT_CONFIG_NAME, load_config
from twisted_netapps.dns.service import zone_base_dir
from twisted_netapps.errors import ConfigError

BASE = """
[dns]
listen = ["udp:0:interface=127.0.0.1"]
[[dns.zones]]
name = "example.test."
file = "zones/example.test.zone"
"""


def load(tmp_path: Path, text: str):
    path = tmp_path / "netapps.toml"
    path.write_text(text)
    return load_config(str(path), services="dns")


def test_default_config_documents_the_demo_hierarchy():
    s = load_config(None, services="dns").services["dns"]
    assert [v.zones for v in s.views] == [["."], ["test."], ["example.test."], ["lab.example.test."]]
    assert [v.listen[1] for v in s.views] == [f"udp:5300:interface=127.0.0.{i}" for i in range(2, 6)]
    assert s.listen == ["tcp:5300:interface=127.0.0.1", "udp:5300:interface=127.0.0.1"]
    assert (zone_base_dir(DEFAULT_CONFIG_NAME) / "zones" / "root.zone").is_file()


def test_zone_paths_are_relative_to_the_config_file(tmp_path):
    assert zone_base_dir(str(tmp_path / "etc" / "netapps.toml")) == tmp_path / "etc"


def test_a_valid_section(tmp_path):
    s = load(tmp_path, BASE + 'allow_transfer = ["127.0.0.0/8", "::1"]\nnotify = ["127.0.0.2:5399", "127.0.0.3"]\n'
             '[[dns.views]]\nlisten = ["udp:0:interface=127.0.0.2"]\nzones = ["example.test"]\n').services["dns"]
    assert s.zones[0].notify == ["127.0.0.2:5399", "127.0.0.3"]


@pytest.mark.parametrize("extra, message", [
    ('allow_transfer = ["not-a-net"]\n', r"dns\.zones\[0\]\.allow_transfer\[0\]"),
    ('notify = ["127.0.0.1:99999"]\n', r"dns\.zones\[0\]\.notify\[0\]"),
    ('notify = ["mail.example.test"]\n', r"expected ADDRESS\[:PORT\]"),
    ('bogus = 1\n', r"dns\.zones\[0\]\.bogus: unknown key"),
    ('[[dns.views]]\nlisten = ["udp:0"]\nzones = ["other.test."]\n', r"dns\.views\[0\]\.zones\[0\]: 'other.test.' is not in dns.zones"),
    ('[[dns.views]]\nzones = ["example.test."]\n', r"dns\.views\[0\]\.listen: a view needs"),
    ('[[dns.zones]]\nname = "example.test"\nfile = "x"\n', r"zones\[1\]\.name: zone example.test. is also zones\[0\]"),
    ('[[dns.zones]]\nname = "a..b"\nfile = "x"\n', r"zones\[1\]\.name: 'a..b' is not a domain name"),
    ('[[dns.zones]]\nname = "x.test."\n', r"zones\[1\]\.file: required"),
])
def test_mistakes_are_one_line_errors(tmp_path, extra, message):
    with pytest.raises(ConfigError, match=message):
        load(tmp_path, BASE + extra)


def test_limits(tmp_path):
    with pytest.raises(ConfigError, match="max_udp_payload"):
        load(tmp_path, BASE.replace("[dns]\n", "[dns]\nmax_udp_payload = 100\n"))


def test_etc_zones_is_the_packaged_zones_dir():
    root = Path(__file__).resolve().parents[2]
    assert (root / "etc" / "zones").resolve() == (root / "twisted_netapps" / "data" / "zones").resolve()
    # --config=etc/netapps.toml finds them too (relative to the config file)
    assert (zone_base_dir(str(root / "etc" / "netapps.toml")) / "zones" / "test.zone").is_file()
