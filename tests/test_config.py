"""Config loading, validation and command-line overrides."""

import dataclasses

import pytest

from twisted_netapps.config import DEFAULT_CONFIG_NAME, apply_set, load_config, parse_value
from twisted_netapps.errors import ConfigError
from twisted_netapps.settings import from_table, setting


def test_embedded_default_loads_and_listens_on_loopback_only():
    config = load_config()
    assert config.source == DEFAULT_CONFIG_NAME
    assert config.enabled == ["uppercase", "dns", "resolver", "smtp", "pop3", "imap", "ftp", "status", "web", "proxy", "tracker", "bittorrent"]
    for name, settings in config.services.items():
        for endpoint in settings.listen:
            assert "interface=127." in endpoint or "::1" in endpoint or endpoint.startswith("unix:"), (name, endpoint)


def test_etc_reference_is_the_embedded_default(tmp_path):
    from pathlib import Path

    from twisted_netapps.config import default_config_text

    etc = Path(__file__).parent.parent / "etc" / "netapps.toml"
    assert etc.read_text() == default_config_text()


def test_services_option_picks_a_set_and_all_means_every_service():
    from twisted_netapps import registry

    assert load_config(services="uppercase").enabled == ["uppercase"]
    assert load_config(services="all").enabled == list(registry.SERVICES)


def test_unknown_service_is_one_line_naming_it():
    with pytest.raises(ConfigError, match=r"--services: unknown service 'nosuch'") as e:
        load_config(services="uppercase,nosuch")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "assignment, message",
    [
        ("uppercase.max_line=\"long\"", r"^--set uppercase\.max_line=\"long\": expected an integer, got a string$"),
        ("uppercase.max_line=true", r"^--set uppercase\.max_line=true: expected an integer, got a boolean$"),
        ("uppercase.nosuchkey=1", r"^--set uppercase\.nosuchkey=1: unknown key"),
        ("uppercase.idle_timeout=0", r"^--set uppercase\.idle_timeout=0: must be positive"),
        ("uppercase.listen=\"tcp:1\"", r"^--set uppercase\.listen=\"tcp:1\": expected an array"),
        ("nosuchsection.key=1", r"^--set nosuchsection\.key=1: unknown section"),
        ("netapps.services=[\"nope\"]", r"^--set netapps\.services=\[\"nope\"\]: unknown service 'nope'"),
        ("novalue", r"expected section\.key=VALUE"),
    ],
)
def test_bad_values_name_the_key(assignment, message):
    with pytest.raises(ConfigError, match=message):
        load_config(sets=[assignment])


def test_set_parses_toml_values_and_falls_back_to_strings():
    assert parse_value("5") == 5
    assert parse_value("2.5") == 2.5
    assert parse_value("true") is True
    assert parse_value('["a", "b"]') == ["a", "b"]
    assert parse_value("plain words") == "plain words"
    raw = {}
    apply_set(raw, "a.b.c=1")
    assert raw == {"a": {"b": {"c": 1}}}


def test_set_overrides_file_value(tmp_path):
    path = tmp_path / "n.toml"
    path.write_text('[netapps]\nservices = ["uppercase"]\n[uppercase]\nmax_line = 10\n')
    config = load_config(str(path), sets=["uppercase.max_line=20"])
    assert config.services["uppercase"].max_line == 20
    # Keys the file does not set keep their defaults.
    assert config.services["uppercase"].idle_timeout == 300.0


def test_listen_replaces_the_service_listeners():
    config = load_config(listens=["uppercase=tcp:0:interface=127.0.0.1", "uppercase=udp:0"])
    assert config.services["uppercase"].listen == ["tcp:0:interface=127.0.0.1", "udp:0"]
    with pytest.raises(ConfigError, match="unknown service 'smtpx'"):
        load_config(listens=["smtpx=tcp:25"])
    with pytest.raises(ConfigError, match="expected SERVICE=ENDPOINT"):
        load_config(listens=["tcp:25"])


def test_file_values_are_blamed_on_the_file(tmp_path):
    path = tmp_path / "n.toml"
    path.write_text("[uppercase]\nmax_line = true\n")
    with pytest.raises(ConfigError, match=f"^{path}:2: uppercase.max_line: expected an integer, got a boolean$"):
        load_config(str(path))


def test_file_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(str(tmp_path / "missing.toml"))
    bad = tmp_path / "bad.toml"
    bad.write_text("[uppercase\n")
    with pytest.raises(ConfigError, match=f"{bad}: invalid TOML"):
        load_config(str(bad))


def test_data_dir_option_wins():
    assert load_config(data_dir="/tmp/x").daemon.data_dir == "/tmp/x"


@dataclasses.dataclass(frozen=True)
class _Inner:
    host: str = setting("h")
    port: int = setting(1)


@dataclasses.dataclass(frozen=True)
class _Outer:
    ratio: float = setting(1.0)
    names: dict[str, int] = setting({})
    inner: _Inner = setting(_Inner())
    items: list[_Inner] = setting([])
    maybe: str | None = setting(None)


def test_settings_types_nested_tables_and_optional():
    outer = from_table(
        _Outer,
        {"ratio": 2, "names": {"a": 1}, "inner": {"port": 5}, "items": [{"host": "x"}], "maybe": "y"},
        "t",
    )
    assert outer.ratio == 2.0 and outer.inner == _Inner("h", 5) and outer.items == [_Inner("x", 1)]
    assert outer.maybe == "y"
    with pytest.raises(ConfigError, match=r"t\.items\[0\]\.port: expected an integer"):
        from_table(_Outer, {"items": [{"port": "1"}]}, "t")
    with pytest.raises(ConfigError, match=r"t\.names\.a: expected an integer"):
        from_table(_Outer, {"names": {"a": "b"}}, "t")


def test_reference_config_and_readme_name_every_settings_key():
    """etc/netapps.toml and README.rst are the references: every key must be in both."""
    from pathlib import Path

    from twisted_netapps import registry
    from twisted_netapps.config import DaemonSettings, default_config_text
    from twisted_netapps.connections import StreamSettings
    from twisted_netapps.settings import field_docs

    toml_text = default_config_text()
    readme = (Path(__file__).parent.parent / "README.rst").read_text()
    reference = readme[readme.index("Configuration reference"):]
    sections = {"netapps": DaemonSettings}
    sections.update({name: registry.service_module(name).Settings for name in registry.SERVICES})
    # The keys every TCP service inherits from the frame are documented once, in their own paragraph.
    shared = {key for key, _default, _doc in field_docs(StreamSettings)}
    shared_block = reference[reference.index("Every service with TCP listeners"):].split("\n``[", 1)[0]
    for key in shared:
        assert key in toml_text, f"{key} missing from etc/netapps.toml"
        assert f"``{key}``" in shared_block, f"{key} missing from README's paragraph on TCP listeners"
    for section, settings_class in sections.items():
        assert f"[{section}]" in toml_text, section
        heading = f"\n``[{section}]``\n"
        assert heading in reference, section
        block = reference[reference.index(heading) + 1:].split("\n``[", 1)[0]
        for key, _default, doc in field_docs(settings_class):
            assert doc, f"{section}.{key} has no doc string"
            if key in shared and issubclass(settings_class, StreamSettings):
                continue
            assert key in toml_text, f"{section}.{key} missing from etc/netapps.toml"
            assert f"``{key}``" in block, f"{section}.{key} missing from README's configuration reference"


@dataclasses.dataclass(frozen=True)
class _Bounded:
    port: int = setting(1, minimum=1, maximum=65535)
    timeout: float = setting(1.0, positive=True)
    count: int = setting(5, minimum=1)
    mode: str = setting("a", choices=("a", "b"))


@pytest.mark.parametrize(
    "table, message",
    [
        ({"port": 0}, r"^t\.port: must be between 1 and 65535$"),
        ({"port": 70000}, r"^t\.port: must be between 1 and 65535$"),
        ({"timeout": 0}, r"^t\.timeout: must be positive$"),
        ({"count": 0}, r"^t\.count: must be at least 1$"),
        ({"mode": "c"}, r"^t\.mode: must be one of a, b$"),
    ],
)
def test_declared_bounds_are_checked_with_the_key(table, message):
    with pytest.raises(ConfigError, match=message):
        from_table(_Bounded, table, "t")
    assert from_table(_Bounded, {"port": 65535, "timeout": 0.1, "mode": "b"}, "t").port == 65535
