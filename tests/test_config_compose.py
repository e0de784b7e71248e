"""How a configuration composes: base file, --set, --listen; which services run;
errors naming what the user wrote; named listeners; config show/default."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from twisted_netapps.config import DEFAULT_CONFIG_NAME, load_config
from twisted_netapps.config_cli import render
from twisted_netapps.errors import ConfigError
from twisted_netapps.toml_text import format_path, format_value, key_lines, parse_path

NETAPPS = str(Path(sys.executable).parent / "netapps")


def write(tmp_path, text: str, name: str = "lab.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# --- which services run ------------------------------------------------------

def test_a_file_with_only_dns_runs_dns_alone(tmp_path):
    path = write(tmp_path, '[dns]\nlisten = ["udp:5353:interface=127.0.0.53"]\n')
    config = load_config(path)
    assert config.enabled == ["dns"] and config.enabled_by == f"the sections of {path}"


def test_a_file_with_smtp_and_pop3_runs_those_two(tmp_path):
    config = load_config(write(tmp_path, "[smtp]\nhostname = \"mx.lab.test\"\n[pop3]\n"))
    assert config.enabled == ["smtp", "pop3"]


def test_services_key_and_option_win_over_sections(tmp_path):
    path = write(tmp_path, '[netapps]\nservices = ["uppercase"]\n[dns]\n')
    assert load_config(path).enabled == ["uppercase"]
    assert load_config(path, services="dns,smtp").enabled == ["dns", "smtp"]


def test_a_file_naming_no_service_is_one_line_saying_how(tmp_path):
    path = write(tmp_path, '[netapps]\ndata_dir = "d"\n')
    with pytest.raises(ConfigError, match=r"names no service: add a \[SERVICE\] table") as e:
        load_config(path)
    assert "\n" not in str(e.value)
    assert load_config(path, services="uppercase").enabled == ["uppercase"]


def test_set_and_listen_do_not_add_services(tmp_path):
    path = write(tmp_path, "[dns]\n")
    assert load_config(path, sets=["smtp.hostname=x"], listens=["uppercase=tcp:1"]).enabled == ["dns"]


def test_keys_a_file_leaves_out_are_built_in_defaults_not_the_demo(tmp_path):
    config = load_config(write(tmp_path, "[dns]\n[resolver]\n[smtp]\n"))
    assert config.services["dns"].zones == [] and config.services["dns"].views == []
    assert config.services["resolver"].root_hints == "named.root"
    assert config.services["smtp"].aliases == {}


# --- parts of the embedded default replaced predictably --------------------

def test_set_zones_replaces_the_demo_zones_and_their_views():
    config = load_config(sets=['dns.zones=[{name="lab.test.", file="/srv/lab.test.zone"}]'])
    dns = config.services["dns"]
    assert [z.name for z in dns.zones] == ["lab.test."] and dns.views == []
    assert "replaces dns.zones and dns.views together" in config.origins[("dns", "views")].label
    assert list(config.listeners("dns")) == ["dns"]


def test_set_zones_and_views_together_keeps_the_views_given():
    config = load_config(sets=[
        'dns.zones=[{name="lab.test.", file="/srv/lab.test.zone"}]',
        'dns.views=[{name="lab", listen=["udp:5300:interface=127.0.0.9"], zones=["lab.test."]}]',
    ])
    assert config.listeners("dns")["dns.lab"] == ("views[0].listen", ["udp:5300:interface=127.0.0.9"])


def test_a_view_naming_a_zone_that_is_gone_names_the_set_to_fix():
    with pytest.raises(ConfigError) as e:
        load_config(sets=['dns.views=[{listen=["udp:1"], zones=["nosuch."]}]'])
    assert str(e.value).startswith("--set dns.views=") and "'nosuch.' is not in dns.zones" in str(e.value)


def test_named_listeners_of_the_embedded_default():
    config = load_config()
    assert list(config.listeners("smtp")) == ["smtp", "smtp.submission"]
    assert list(config.listeners("dns")) == ["dns", "dns.root", "dns.test", "dns.example", "dns.lab"]
    assert config.listeners("dns")["dns.lab"][1] == ["tcp:5300:interface=127.0.0.5", "udp:5300:interface=127.0.0.5"]


def test_listen_addresses_one_named_listener():
    config = load_config(listens=["smtp.submission=tcp:2588:interface=127.0.0.1", "dns.root=udp:53:interface=127.0.0.2"])
    assert config.services["smtp"].submission_listen == ["tcp:2588:interface=127.0.0.1"]
    assert config.services["smtp"].listen == ["tcp:2525:interface=127.0.0.1"]  # the main one stays
    assert config.services["dns"].views[0].listen == ["udp:53:interface=127.0.0.2"]
    assert config.services["dns"].views[1].listen == ["tcp:5300:interface=127.0.0.3", "udp:5300:interface=127.0.0.3"]


@pytest.mark.parametrize("item, message", [
    ("nosuch=tcp:1", "--listen nosuch=tcp:1: unknown service 'nosuch'"),
    ("smtp.nope=tcp:1", "--listen smtp.nope=tcp:1: smtp has no listener 'smtp.nope' (its listeners: smtp, smtp.submission)"),
    ("dns.nope=udp:1", "--listen dns.nope=udp:1: dns has no listener 'dns.nope' (its listeners: dns, dns.root,"),
])
def test_listen_mistakes_name_the_option(item, message):
    with pytest.raises(ConfigError) as e:
        load_config(listens=[item])
    assert str(e.value).startswith(message)


# --- errors name the file line or the option --------------------------------

@pytest.mark.parametrize("text, line, message", [
    ('[uppercase]\nmax_line = "long"\n', 2, "uppercase.max_line: expected an integer, got a string"),
    ("[uppercase]\n\nmax_lines = 5\n", 3, "uppercase.max_lines: unknown key"),
    ("[dns]\n[[dns.zones]]\nname = \"a.\"\nfile = \"a.zone\"\n\n[[dns.zones]]\nname = \"b.\"\nfiel = \"b\"\n",
     8, "dns.zones[1].fiel: unknown key"),
    ('[dns]\nviews = [{listen = ["udp:1"], zones = ["x."]}]\n', 2, "dns.views[0].zones[0]: 'x.' is not in dns.zones"),
    ("[nosuch]\n", 1, "nosuch: unknown section"),
    ('[netapps]\nservices = ["nope"]\n', 2, "netapps.services: unknown service 'nope'"),
])
def test_file_errors_name_the_line(tmp_path, text, line, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value).startswith(f"{path}:{line}: {message}"), str(e.value)


def test_blame_prefers_the_option_that_set_a_key(tmp_path):
    path = write(tmp_path, "[uppercase]\nmax_line = 5\n")
    with pytest.raises(ConfigError, match=r'^--set uppercase\.max_line="x": expected an integer'):
        load_config(path, sets=['uppercase.max_line="x"'])


# --- TOML text helpers -------------------------------------------------------

def test_key_lines_tables_arrays_dotted_and_multiline():
    text = (
        "# comment\n[a]\nx = 1\ny = [\n  1,\n  2,\n]\nz.w = 3\n\"q.k\" = 4\n"
        "[[b.c]]\nn = 1\n[[b.c]]\nn = 2\ns = \"\"\"\nk = not a key\n\"\"\"\n"
    )
    lines = key_lines(text)
    assert lines[("a",)] == 2 and lines[("a", "x")] == 3 and lines[("a", "y")] == 4
    assert lines[("a", "z", "w")] == 8 and lines[("a", "q.k")] == 9
    assert lines[("b", "c", 0)] == 10 and lines[("b", "c", 1, "n")] == 13
    assert ("b", "c", 1, "k") not in lines


@given(st.lists(st.one_of(st.text(alphabet="abc_", min_size=1, max_size=4), st.integers(0, 9)), min_size=1, max_size=5)
       .filter(lambda p: isinstance(p[0], str)))
def test_paths_round_trip(path):
    assert parse_path(format_path(tuple(path))) == tuple(path)


@given(st.recursive(
    st.one_of(st.booleans(), st.integers(), st.floats(allow_nan=False), st.text()),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(min_size=1), inner, max_size=3)),
    max_leaves=10,
))
def test_format_value_is_toml(value):
    assert tomllib.loads(f"v = {format_value(value)}")["v"] == value


# --- config show / default ---------------------------------------------------

def test_config_show_is_toml_with_sources_and_loads_back_the_same(tmp_path):
    config = load_config(sets=["uppercase.max_line=77"], listens=["smtp.submission=tcp:2588:interface=127.0.0.1"])
    text = render(config)
    assert "max_line = 77  # --set uppercase.max_line=77" in text
    assert 'submission_listen = ["tcp:2588:interface=127.0.0.1"]  # --listen smtp.submission=' in text
    assert "#   smtp.submission      tcp:2588:interface=127.0.0.1" in text
    shown = write(tmp_path, text, "shown.toml")
    again = load_config(shown)
    assert again.enabled == config.enabled
    for name in config.enabled:
        assert again.services[name] == config.services[name], name


def test_config_show_names_the_file_lines(tmp_path):
    path = write(tmp_path, "[uppercase]\nmax_line = 9\n")
    text = render(load_config(path))
    assert f"max_line = 9  # {path}:2" in text
    assert "idle_timeout = 300.0\n" in text  # a built-in default: no comment


def test_netapps_config_commands_from_any_directory(tmp_path):
    out = subprocess.run([NETAPPS, "config", "default"], capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.startswith("# twisted-netapps configuration")
    tomllib.loads(out.stdout)
    out = subprocess.run([NETAPPS, "config", "show", "--services", "dns", "--listen", "dns=udp:5353"],
                         capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert out.returncode == 0 and "Services that run: dns (chosen by --services)" in out.stdout
    out = subprocess.run([NETAPPS, "config", "show", "--set", "uppercase.max_line=x"],
                         capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert out.returncode == 1
    assert out.stderr == "netapps config: --set uppercase.max_line=x: expected an integer, got a string\n"
    assert list(tmp_path.iterdir()) == []  # nothing created


def test_config_default_copied_out_runs_from_elsewhere(tmp_path):
    """A copy of the embedded default finds the demo zones and hints from any directory."""
    from twisted_netapps.config import default_config_text
    from twisted_netapps.dns.service import _zone_path

    path = write(tmp_path, default_config_text(), "copy.toml")
    config = load_config(path)
    assert config.enabled == load_config().enabled
    assert _zone_path("zones/root.zone", tmp_path).exists()
    assert config.source != DEFAULT_CONFIG_NAME
