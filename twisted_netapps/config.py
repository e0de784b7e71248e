"""Loading the daemon's configuration.

Precedence, highest first: ``--listen`` / ``--set`` on the command line, the
``--config`` file, or (without one) the embedded default ``data/netapps.toml``
that ships inside the package (``etc/netapps.toml`` in the source tree is the
same file). Every table is validated against its service's ``Settings``
dataclass, so a typo is a one-line error naming file and key.

No Twisted imports here.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import tomllib
from pathlib import Path
from typing import Any

from twisted_netapps import registry
from twisted_netapps.errors import ConfigError
from twisted_netapps.settings import from_table, setting

DEFAULT_CONFIG_NAME = "<embedded default netapps.toml>"


@dataclasses.dataclass(frozen=True)
class DaemonSettings:
    """The ``[netapps]`` table."""

    services: list[str] = setting(
        ["all"], "services started when --services is not given ('all' = every known one)"
    )
    data_dir: str = setting("./netapps-data", "where mailboxes, queues, caches and accounts live")
    # The login guard (twisted_netapps.logins), shared by every service that logs users in.
    login_failures_per_address: int = setting(
        10, "failed logins an address may have (all services together) before it is refused for a while",
        minimum=1,
    )
    login_block_seconds: float = setting(
        60.0, "how long an address over its failure budget is refused; doubles for each block in a row",
        positive=True,
    )
    login_quiet_seconds: float = setting(
        900.0, "an address's or account's failed logins are forgotten after this long without one",
        positive=True,
    )
    login_max_delay: float = setting(
        30.0, "longest delay before a failed login is answered (the delay doubles per recent failure)",
        minimum=0,
    )
    # Thread pools for blocking work (twisted_netapps.pools): one per kind, so none starves another.
    disk_threads: int = setting(4, "threads for blocking disk work (fsync'd writes, scans)", minimum=1, maximum=64)
    cpu_threads: int = setting(2, "threads for CPU-bound work (password hashing)", minimum=1, maximum=64)
    fd_reserve: int = setting(
        256, "file descriptors kept back from accepting connections (upstream sockets, files, logs)", minimum=16,
    )


@dataclasses.dataclass(frozen=True)
class Config:
    """A validated configuration: the daemon table plus one settings object per service."""

    source: str
    daemon: DaemonSettings
    services: dict[str, Any]  # service name -> that module's Settings instance
    enabled: list[str]


def default_config_text() -> str:
    return importlib.resources.files("twisted_netapps").joinpath("data/netapps.toml").read_text(
        encoding="utf-8"
    )


def read_config(path: str | None) -> tuple[str, dict[str, Any]]:
    """Return (source name, raw TOML tables) for *path*, or the embedded default."""
    if path is None:
        text, source = default_config_text(), DEFAULT_CONFIG_NAME
    else:
        source = path
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"{path}: cannot read config: {e.strerror}") from None
        except UnicodeDecodeError as e:
            raise ConfigError(f"{path}: not UTF-8 text: {e.reason}") from None
    try:
        return source, tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source}: invalid TOML: {e}") from None


def parse_value(text: str) -> Any:
    """A ``--set`` value: a TOML value (``5``, ``true``, ``["a", "b"]``), else a bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_set(raw: dict[str, Any], assignment: str) -> None:
    """Apply one ``--set section.key=VALUE`` to the raw tables, in place."""
    path, sep, value = assignment.partition("=")
    keys = path.strip().split(".")
    if not sep or len(keys) < 2 or not all(keys):
        raise ConfigError(f"--set {assignment}: expected section.key=VALUE")
    table = raw
    for key in keys[:-1]:
        table = table.setdefault(key, {})
        if not isinstance(table, dict):
            raise ConfigError(f"--set {assignment}: {key} is not a table")
    table[keys[-1]] = parse_value(value.strip())


def apply_listen(raw: dict[str, Any], overrides: list[str]) -> None:
    """Apply ``--listen SERVICE=ENDPOINT`` options: each named service's list is replaced."""
    replaced: dict[str, list[str]] = {}
    for item in overrides:
        name, sep, endpoint = item.partition("=")
        if not sep or not name or not endpoint:
            raise ConfigError(f"--listen {item}: expected SERVICE=ENDPOINT")
        replaced.setdefault(name.strip(), []).append(endpoint.strip())
    for name, endpoints in replaced.items():
        registry.service_module(name)  # unknown service -> ConfigError
        raw.setdefault(name, {})["listen"] = endpoints


def resolve_enabled(requested: str | None, daemon: DaemonSettings, where: str) -> list[str]:
    names = daemon.services if requested is None else [n.strip() for n in requested.split(",")]
    if "all" in names:
        return list(registry.SERVICES)
    enabled = []
    for name in names:
        if not name:
            continue
        if name not in registry.SERVICES:
            origin = "--services" if requested is not None else f"{where}: netapps.services"
            raise ConfigError(
                f"{origin}: unknown service {name!r} (known: {', '.join(sorted(registry.SERVICES))})"
            )
        if name not in enabled:
            enabled.append(name)
    if not enabled:
        raise ConfigError("no services enabled (use --services=NAME,... or netapps.services)")
    return enabled


def load_config(
    path: str | None = None,
    *,
    services: str | None = None,
    sets: list[str] = (),
    listens: list[str] = (),
    data_dir: str | None = None,
) -> Config:
    """Read, override and validate the configuration; raise ConfigError on any mistake."""
    source, raw = read_config(path)
    for assignment in sets:
        apply_set(raw, assignment)
    apply_listen(raw, list(listens))
    try:
        return _validate(source, raw, services, data_dir)
    except ConfigError as e:
        raise ConfigError(blame_command_line(str(e), source, sets, listens)) from None


def blame_command_line(message: str, source: str, sets, listens) -> str:
    """Name ``--set``/``--listen`` rather than the file when the bad value came from them."""
    prefix = f"{source}: "
    if not message.startswith(prefix):
        return message
    key = message[len(prefix):].split(":", 1)[0]
    for assignment in sets:
        path = assignment.partition("=")[0].strip()
        if key == path or path.startswith(key + ".") or key.startswith((path + ".", path + "[")):
            return f"--set {assignment}: " + message[len(prefix) + len(key) + 2:]
    for item in listens:
        if key.startswith(item.partition("=")[0].strip() + ".listen"):
            return "--listen " + message[len(prefix):]
    return message


def _validate(source: str, raw: dict[str, Any], services: str | None, data_dir: str | None) -> Config:
    if data_dir is not None:
        raw.setdefault("netapps", {})["data_dir"] = data_dir
    daemon_table = raw.pop("netapps", {})
    if not isinstance(daemon_table, dict):
        raise ConfigError(f"{source}: netapps: expected a table")
    daemon = from_table(DaemonSettings, daemon_table, f"{source}: netapps")
    for name in raw:
        if name not in registry.SERVICES:
            raise ConfigError(
                f"{source}: {name}: unknown section (known: netapps, {', '.join(sorted(registry.SERVICES))})"
            )
    enabled = resolve_enabled(services, daemon, source)
    settings = {}
    # Validate every section present, not only the enabled ones: a typo in a
    # table that is switched on later should not lie in wait.
    for name in dict.fromkeys([*raw, *enabled]):
        module = registry.service_module(name)
        table = raw.get(name, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: {name}: expected a table")
        settings[name] = from_table(module.Settings, table, f"{source}: {name}")
    return Config(source=source, daemon=daemon, services=settings, enabled=enabled)
