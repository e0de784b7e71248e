"""The ``netapps`` console script: client and admin commands.

Each application contributes its subcommands through a ``register(subparsers)``
function listed in :data:`COMMAND_MODULES`; adding one is one line.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from twisted_netapps import __version__
from twisted_netapps.errors import NetappsError

COMMAND_MODULES = [
    "twisted_netapps.config_cli",
    "twisted_netapps.user_cli",
    "twisted_netapps.stats_cli",
    "twisted_netapps.uppercase.client",
    "twisted_netapps.mail.queue_cli",
    "twisted_netapps.resolver.trace",
    "twisted_netapps.bittorrent.cli",
    "twisted_netapps.experiment.cli",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="netapps",
        description="twisted-netapps clients and admin tools. The daemon itself runs as "
                    "'twistd -n netapps'; 'netapps config default' prints its commented default "
                    "configuration and 'netapps config show' the effective one.",
    )
    parser.add_argument("--version", action="version", version=f"netapps {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except NetappsError as e:
        print(f"netapps {args.command}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
