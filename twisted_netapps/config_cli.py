"""``netapps config show|default``: the effective configuration, and the embedded default.

``show`` takes the daemon's own options (``--config``, ``--set``,
``--listen``, ``--services``, ``--data-dir``), validates exactly as
``twistd netapps`` would, and prints the result as TOML: every key of every
section, a comment after each value set by the file or the command line
saying where, which services run and why, and every named listener
(what ``--listen NAME=...`` can address). ``default`` prints the commented
embedded default, to start a file from. Neither needs the daemon, nor
creates anything.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from twisted_netapps.config import DAEMON_SECTION, DEFAULT_CONFIG_NAME, Config, default_config_text, load_config
from twisted_netapps.toml_text import KeyPath, format_key, format_value


def register(subparsers) -> None:
    p = subparsers.add_parser("config", help="print the effective configuration, or the embedded default")
    sub = p.add_subparsers(dest="action", required=True)
    show = sub.add_parser(
        "show", help="the configuration twistd netapps would run with these options, as TOML, with sources"
    )
    show.add_argument("--config", metavar="FILE", help="TOML configuration file (default: the embedded default)")
    show.add_argument("--services", metavar="NAME,...", help="services to run, or 'all'")
    show.add_argument("--data-dir", metavar="DIR", help="data directory")
    show.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                      help="override a key (repeatable)")
    show.add_argument("--listen", action="append", default=[], metavar="NAME=ENDPOINT",
                      help="replace a listener's endpoints (repeatable)")
    show.set_defaults(func=_show)
    sub.add_parser("default", help="the commented embedded default, to start a file from").set_defaults(
        func=_default
    )


def _default(args) -> int:
    print(default_config_text(), end="")
    return 0


def _show(args) -> int:
    config = load_config(
        args.config, services=args.services, sets=args.set, listens=args.listen, data_dir=args.data_dir
    )
    print(render(config), end="")
    return 0


def render(config: Config) -> str:
    """*config* as TOML text, with where each value came from in comments."""
    base = "the embedded default (netapps config default)" if config.source == DEFAULT_CONFIG_NAME else config.source
    lines = [
        f"# Effective configuration: {base}, then the command line.",
        "# A comment after a value says where it was set; the other values are",
        "# the base's" + (" (the embedded default)." if config.source == DEFAULT_CONFIG_NAME else
                          " or, where it is silent, the built-in defaults."),
        f"# Services that run: {', '.join(config.enabled)} (chosen by {config.enabled_by}).",
        f"# Data directory: {config.data_dir.path} (from {config.data_dir.origin}).",
        "#",
        "# Listeners (move one with --listen NAME=ENDPOINT):",
    ]
    for service in config.enabled:
        for name, (_path, endpoints) in config.listeners(service).items():
            for i, endpoint in enumerate(endpoints or ["(none)"]):
                lines.append(f"#   {name if i == 0 else '':<20} {endpoint}")
    not_running = [name for name in config.services if name not in config.enabled]
    if not_running:
        lines.append(f"# Sections validated but not running: {', '.join(not_running)}.")
    lines.append("")
    # The daemon table shows what the daemon will do, not only what was written.
    effective = {
        "services": (config.enabled, f"chosen by {config.enabled_by}"),
        "data_dir": (str(config.data_dir.path), f"from {config.data_dir.origin}"),
    }
    lines += _table([DAEMON_SECTION], config.daemon, config, effective=effective)
    for name, settings in config.services.items():
        lines.append("")
        if name not in config.enabled:
            lines.append(f"# [{name}] is not running (not among the services above).")
        lines += _table([name], settings, config)
    return "\n".join(lines) + "\n"


def _comment(config: Config, path: KeyPath) -> str:
    origin = config.origins.get(path)
    if origin is None or (origin.kind == "file" and config.source == DEFAULT_CONFIG_NAME):
        return ""
    return f"  # {origin.label}"


def _is_table_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(dataclasses.is_dataclass(v) for v in value)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _table(path: list, settings: Any, config: Config, *, array_item: int | None = None,
           effective: dict[str, tuple[Any, str]] | None = None) -> list[str]:
    """``[a.b]`` (or ``[[a.b]]`` for an array item) and its keys, then its sub-tables.

    *effective* replaces some keys' values, with a comment saying why.
    """
    key_path: KeyPath = (*path, array_item) if array_item is not None else tuple(path)
    header = ".".join(format_key(p) for p in path)
    lines = [f"[[{header}]]" if array_item is not None else f"[{header}]"]
    lines[0] += _comment(config, key_path) or (_comment(config, key_path[:-1]) if array_item is not None else "")
    later: list[str] = []
    for field in dataclasses.fields(settings):
        value = getattr(settings, field.name)
        sub_path = (*key_path, field.name)
        if effective and field.name in effective:
            value, why = effective[field.name]
            lines.append(f"{format_key(field.name)} = {format_value(value)}  # {why}")
        elif dataclasses.is_dataclass(value):
            later += ["", *_table([*path, field.name], value, config)]
        elif _is_table_list(value):
            for i, item in enumerate(value):
                later += ["", *_table([*path, field.name], item, config, array_item=i)]
        elif value is None:
            lines.append(f"# {format_key(field.name)}: not set{_comment(config, sub_path)}")
        else:
            lines.append(f"{format_key(field.name)} = {format_value(_plain(value))}{_comment(config, sub_path)}")
    return lines + later
