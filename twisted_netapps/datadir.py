"""Where the daemon and every ``netapps`` command keep their data: one rule.

The data directory is, first match wins:

1. ``--data-dir DIR`` on the command line (``twistd netapps`` and every
   ``netapps`` command, before or after the subcommand's action);
2. the environment variable ``NETAPPS_DATA_DIR``;
3. ``data_dir`` in the ``[netapps]`` table of the ``--config FILE`` given
   (a relative path is taken from that file's directory);
4. the per-user default ``$XDG_DATA_HOME/netapps`` (``~/.local/share/netapps``).

It never depends on the current directory. Only the daemon and the commands
that write (``netapps user add``) create it; a read-only command given a
missing data dir fails with one line naming the path it looked at and where
that path came from.

No Twisted imports here.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

from twisted_netapps.errors import NetappsError

ENV_VAR = "NETAPPS_DATA_DIR"
HOW_TO_POINT = f"use --data-dir DIR or {ENV_VAR}"


@dataclass(frozen=True)
class DataDir:
    """A data directory and what chose it (for messages)."""

    path: Path
    origin: str

    def describe(self) -> str:
        return f"{self.path} (from {self.origin})"


def user_default() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "netapps"


def locate(explicit: str | None, config_value: str = "", config_source: str | None = None) -> DataDir:
    """Apply the rule: *explicit* (``--data-dir``), the environment, the config's value, the default.

    *config_value* is ``netapps.data_dir`` of the config file *config_source*
    (None for the embedded default, which leaves it empty).
    """
    if explicit:
        return DataDir(Path(explicit).expanduser().resolve(), "--data-dir")
    env = os.environ.get(ENV_VAR)
    if env:
        return DataDir(Path(env).expanduser().resolve(), ENV_VAR)
    if config_value:
        path = Path(config_value).expanduser()
        if not path.is_absolute() and config_source is not None:
            path = Path(config_source).resolve().parent / path
        return DataDir(path.resolve(), f"{config_source}: netapps.data_dir")
    return DataDir(user_default(), "the per-user default")


def require_existing(data_dir: DataDir) -> Path:
    """The path of *data_dir*, or a one-line error when it does not exist (never created here)."""
    if not data_dir.path.is_dir():
        raise NetappsError(
            f"no data directory at {data_dir.describe()}: start the daemon with it first, "
            f"or {HOW_TO_POINT}"
        )
    return data_dir.path


def add_options(parser: argparse.ArgumentParser, *, repeat: bool = False) -> None:
    """Give *parser* ``--data-dir`` and ``--config`` (the file whose ``netapps.data_dir`` counts).

    With *repeat*, the options are for a sub-action's parser: given there
    (after the action) they win, absent they leave the parent's value alone.
    """
    default = argparse.SUPPRESS if repeat else None
    parser.add_argument(
        "--data-dir", default=default, metavar="DIR",
        help=f"the daemon's data directory (default: ${ENV_VAR}, the config's netapps.data_dir, "
             "or ~/.local/share/netapps)",
    )
    parser.add_argument(
        "--config", default=default, metavar="FILE", help="config file whose netapps.data_dir to use",
    )


def from_args(args: argparse.Namespace) -> DataDir:
    """The data dir for a ``netapps`` command's parsed *args* (see :func:`add_options`)."""
    explicit = getattr(args, "data_dir", None)
    config_path = getattr(args, "config", None)
    config_value = ""
    if not explicit and not os.environ.get(ENV_VAR) and config_path:
        from twisted_netapps.config import read_config

        source, raw = read_config(config_path)
        table = raw.get("netapps", {})
        config_value = table.get("data_dir", "") if isinstance(table, dict) else ""
        if not isinstance(config_value, str):
            raise NetappsError(f"{source}: netapps.data_dir: expected a string")
    return locate(explicit, config_value, config_path)
