"""Loading the daemon's configuration: one base, then the command line.

The base is the ``--config`` file or, without one, the embedded default
``data/netapps.toml`` (``netapps config default`` prints it). A file is the
whole configuration: a key it does not set takes its built-in default (the
``Settings`` field's), never the embedded default's demo value. On top of the
base, in order: ``--set SECTION.KEY=VALUE``, ``--listen NAME=ENDPOINT``,
``--data-dir``, ``--services``.

Which services run: ``--services``; else the base's ``netapps.services``;
else the services whose sections the ``--config`` file has (a file with only
``[dns]`` runs dns alone; one with ``[smtp]`` and ``[pop3]`` runs those two).

Keys that belong together are replaced together: a service's ``Settings``
may declare ``REPLACED_TOGETHER = {"zones": ("views",)}``, and then a
``--set dns.zones=...`` drops the base's ``dns.views`` too unless it sets
them as well (the demo hierarchy's views would name zones that are gone).

Listeners have names ``--listen`` can address: a service's ``listen`` key is
the listener named like the service (``smtp``), a ``X_listen`` key is
``SERVICE.X`` (``smtp.submission``), and a ``Settings.named_listeners(table)``
hook adds more (the dns views).

Every key remembers where it was written (file line, ``--set``, ``--listen``)
so that an error names what the user wrote (:meth:`Config.blame`) and
``netapps config show`` says where each value came from. Every table is
validated against its service's ``Settings`` dataclass.

No Twisted imports here.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import tomllib
from pathlib import Path
from typing import Any

from twisted_netapps import registry
from twisted_netapps.datadir import DataDir, locate
from twisted_netapps.errors import ConfigError
from twisted_netapps.settings import from_table, setting
from twisted_netapps.toml_text import KeyPath, format_path, key_lines, parse_path

DEFAULT_CONFIG_NAME = "<embedded default netapps.toml>"
DAEMON_SECTION = "netapps"


@dataclasses.dataclass(frozen=True)
class DaemonSettings:
    """The ``[netapps]`` table."""

    services: list[str] = setting(
        [], "services started when --services is not given: names, or 'all' (empty: the services "
            "whose sections the --config file has)"
    )
    data_dir: str = setting(
        "", "data directory when neither --data-dir nor NETAPPS_DATA_DIR is given (relative: from "
            "this file's directory; empty: ~/.local/share/netapps)"
    )
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
class Origin:
    """Where a key's value was written: ``label`` is what error messages and ``config show`` print."""

    label: str  # "FILE:LINE", "--set a.b=1", "--listen smtp=tcp:25", ...
    kind: str  # "file" (the base), "option" (the command line), "note" (dropped as a consequence)
    path: KeyPath


@dataclasses.dataclass(frozen=True)
class Config:
    """A validated configuration: the daemon table plus one settings object per service."""

    source: str
    daemon: DaemonSettings
    services: dict[str, Any]  # service name -> that module's Settings instance
    enabled: list[str]
    raw: dict[str, Any] = dataclasses.field(default_factory=dict)  # the tables after every override
    origins: dict[KeyPath, Origin] = dataclasses.field(default_factory=dict)
    enabled_by: str = ""  # what chose `enabled`, for config show
    data_dir: DataDir | None = None

    def origin_of(self, path: KeyPath) -> Origin | None:
        """The origin of *path*: of the key itself, else of the nearest enclosing key, else of a key inside it."""
        for length in range(len(path), 0, -1):
            origin = self.origins.get(path[:length])
            if origin is not None:
                return origin
        inside = [o for p, o in self.origins.items() if p[:len(path)] == path]
        inside.sort(key=lambda o: o.kind != "option")
        return inside[0] if inside else None

    def blame(self, message: str) -> str:
        """Rewrite ``SOURCE: key.path: reason`` to name what the user wrote: the file's line or the option."""
        prefix = f"{self.source}: "
        if not message.startswith(prefix):
            return message
        key_text, sep, reason = message[len(prefix):].partition(": ")
        if not sep:
            return message
        path = parse_path(key_text)
        origin = self.origin_of(path)
        if origin is None:
            return message
        if origin.kind == "option" and len(path) <= len(origin.path):
            return f"{origin.label}: {reason}"
        return f"{origin.label}: {key_text}: {reason}"

    def listeners(self, service: str) -> dict[str, tuple[str, list[str]]]:
        """``{listener name: (key path in the service's table, endpoints)}`` of *service*."""
        settings = self.services[service]
        result = {}
        for name, path in listener_keys(service, self.raw.get(service, {})).items():
            value: Any = settings
            for part in path:
                value = value[part] if isinstance(part, int) else getattr(value, part)
            result[name] = (format_path(path), list(value))
        return result


def default_config_text() -> str:
    return importlib.resources.files("twisted_netapps").joinpath("data/netapps.toml").read_text(
        encoding="utf-8"
    )


def read_config_text(path: str | None) -> tuple[str, str]:
    """(source name, text) of the file at *path*, or of the embedded default."""
    if path is None:
        return DEFAULT_CONFIG_NAME, default_config_text()
    try:
        return path, Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text: {e.reason}") from None


def parse_toml(source: str, text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source}: invalid TOML: {e}") from None


def read_config(path: str | None) -> tuple[str, dict[str, Any]]:
    """Return (source name, raw TOML tables) for *path*, or the embedded default."""
    source, text = read_config_text(path)
    return source, parse_toml(source, text)


def parse_value(text: str) -> Any:
    """A ``--set`` value: a TOML value (``5``, ``true``, ``["a", "b"]``), else a bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_set(raw: dict[str, Any], assignment: str) -> KeyPath:
    """Apply one ``--set section.key=VALUE`` to the raw tables, in place; return the key path."""
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
    return tuple(keys)


def listener_keys(service: str, table: dict[str, Any]) -> dict[str, KeyPath]:
    """``{listener name: key path within the service's table}`` for *service* (see the module doc)."""
    settings_class = registry.service_module(service).Settings
    keys: dict[str, KeyPath] = {}
    for field in dataclasses.fields(settings_class):
        if field.name == "listen":
            keys[service] = ("listen",)
        elif field.name.endswith("_listen"):
            keys[f"{service}.{field.name[:-len('_listen')]}"] = (field.name,)
    named = getattr(settings_class, "named_listeners", None)
    if named is not None:
        keys.update({f"{service}.{name}": path for name, path in named(table).items()})
    return keys


class _Layers:
    """The raw tables being built, with the origin of every key."""

    def __init__(self, source: str, text: str) -> None:
        self.source = source
        self.raw = parse_toml(source, text)
        self.origins = {
            path: Origin(f"{source}:{line}", "file", path) for path, line in key_lines(text).items()
        }

    def replaced(self, path: KeyPath, origin: Origin) -> None:
        for old in [p for p in self.origins if p[:len(path)] == path]:
            del self.origins[old]
        self.origins[path] = origin

    def apply_sets(self, sets) -> None:
        set_paths = []
        for assignment in sets:
            path = apply_set(self.raw, assignment)
            self.replaced(path, Origin(f"--set {assignment}", "option", path))
            set_paths.append((path, assignment))
        for path, assignment in set_paths:
            self._replace_together(path, assignment, [p for p, _ in set_paths])

    def _replace_together(self, path: KeyPath, assignment: str, set_paths: list[KeyPath]) -> None:
        if len(path) != 2 or path[0] not in registry.SERVICES:
            return
        service, key = path
        together = getattr(registry.service_module(service).Settings, "REPLACED_TOGETHER", {})
        for other in together.get(key, ()):
            if any(p[:2] == (service, other) for p in set_paths):
                continue
            table = self.raw.get(service)
            if isinstance(table, dict) and table.pop(other, None) is not None:
                note = f"dropped: --set {assignment} replaces {service}.{key} and {service}.{other} together"
                self.replaced((service, other), Origin(note, "note", (service, other)))

    def apply_listens(self, items) -> None:
        grouped: dict[tuple[str, KeyPath], list[tuple[str, str]]] = {}
        for item in items:
            name, sep, endpoint = item.partition("=")
            name, endpoint = name.strip(), endpoint.strip()
            if not sep or not name or not endpoint:
                raise ConfigError(
                    f"--listen {item}: expected SERVICE=ENDPOINT or SERVICE.LISTENER=ENDPOINT "
                    "(netapps config show lists the listeners)"
                )
            service = name.split(".", 1)[0]
            if service not in registry.SERVICES:
                raise ConfigError(
                    f"--listen {item}: unknown service {service!r} (known: {', '.join(sorted(registry.SERVICES))})"
                )
            table = self.raw.setdefault(service, {})
            if not isinstance(table, dict):
                raise ConfigError(f"--listen {item}: {service} is not a table in {self.source}")
            keys = listener_keys(service, table)
            if name not in keys:
                raise ConfigError(
                    f"--listen {item}: {service} has no listener {name!r} (its listeners: {', '.join(keys)})"
                )
            grouped.setdefault((service, keys[name]), []).append((endpoint, item))
        for (service, path), entries in grouped.items():
            container: Any = self.raw[service]
            for part in path[:-1]:
                container = container[part]
            container[path[-1]] = [endpoint for endpoint, _ in entries]
            full = (service, *path)
            self.replaced(full, Origin(f"--listen {entries[0][1]}", "option", full))
            for i, (_endpoint, item) in enumerate(entries):
                self.origins[(*full, i)] = Origin(f"--listen {item}", "option", (*full, i))


def load_config(
    path: str | None = None,
    *,
    services: str | None = None,
    sets: list[str] = (),
    listens: list[str] = (),
    data_dir: str | None = None,
) -> Config:
    """Read, override and validate the configuration; raise ConfigError naming what the user wrote."""
    source, text = read_config_text(path)
    layers = _Layers(source, text)
    file_sections = [name for name in layers.raw if name != DAEMON_SECTION]
    layers.apply_sets(sets)
    layers.apply_listens(list(listens))
    if data_dir is not None:
        layers.raw.setdefault(DAEMON_SECTION, {})["data_dir"] = data_dir
        layers.replaced((DAEMON_SECTION, "data_dir"), Origin("--data-dir", "option", (DAEMON_SECTION, "data_dir")))
    unvalidated = Config(source, DaemonSettings(), {}, [], layers.raw, layers.origins)
    try:
        return _validate(layers, services, file_sections if path is not None else None, data_dir, path)
    except ConfigError as e:
        raise ConfigError(unvalidated.blame(str(e))) from None


def _enabled(requested: str | None, daemon: DaemonSettings, file_sections: list[str] | None,
             source: str, origins: dict[KeyPath, Origin]) -> tuple[list[str], str]:
    """The services to run and what chose them (the rule in the module doc)."""
    if requested is not None:
        names, by = [n.strip() for n in requested.split(",")], "--services"
    elif daemon.services:
        origin = origins.get((DAEMON_SECTION, "services"))
        names, by = daemon.services, f"netapps.services ({origin.label if origin else source})"
    elif file_sections is not None:
        names, by = file_sections, f"the sections of {source}"
        if not names:
            raise ConfigError(
                f"{source}: {DAEMON_SECTION}: the file names no service: add a [SERVICE] table for each "
                f"service to run, or netapps.services, or --services (known: {', '.join(registry.SERVICES)})"
            )
    else:
        names, by = ["all"], "every known service"
    if "all" in names:
        return list(registry.SERVICES), by
    enabled = []
    for name in names:
        if not name:
            continue
        if name not in registry.SERVICES:
            origin = "--services" if requested is not None else f"{source}: {DAEMON_SECTION}.services"
            raise ConfigError(
                f"{origin}: unknown service {name!r} (known: {', '.join(sorted(registry.SERVICES))})"
            )
        if name not in enabled:
            enabled.append(name)
    if not enabled:
        raise ConfigError("no services enabled (use --services=NAME,... or netapps.services)")
    return enabled, by


def _validate(layers: _Layers, services: str | None, file_sections: list[str] | None,
              data_dir: str | None, path: str | None) -> Config:
    source, raw = layers.source, dict(layers.raw)
    daemon_table = raw.pop(DAEMON_SECTION, {})
    if not isinstance(daemon_table, dict):
        raise ConfigError(f"{source}: {DAEMON_SECTION}: expected a table")
    daemon = from_table(DaemonSettings, daemon_table, f"{source}: {DAEMON_SECTION}")
    for name in raw:
        if name not in registry.SERVICES:
            raise ConfigError(
                f"{source}: {name}: unknown section (known: {DAEMON_SECTION}, "
                f"{', '.join(sorted(registry.SERVICES))})"
            )
    enabled, enabled_by = _enabled(services, daemon, file_sections, source, layers.origins)
    settings = {}
    # Validate every section present, not only the enabled ones: a typo in a
    # table that is switched on later should not lie in wait.
    for name in dict.fromkeys([*raw, *enabled]):
        module = registry.service_module(name)
        table = raw.get(name, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: {name}: expected a table")
        settings[name] = from_table(module.Settings, table, f"{source}: {name}")
    return Config(
        source=source, daemon=daemon, services=settings, enabled=enabled, raw=layers.raw,
        origins=layers.origins, enabled_by=enabled_by,
        data_dir=locate(data_dir, daemon.data_dir, path),
    )
