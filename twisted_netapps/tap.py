"""``twistd netapps``: command-line options and ``makeService``.

Imported lazily by the plugin in ``twisted/plugins/netapps_plugin.py``.
"""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path

from twisted.python import usage

from twisted_netapps import __version__, logfilter, registry
from twisted_netapps.config import load_config
from twisted_netapps.datadir import ENV_VAR
from twisted_netapps.errors import ConfigError, NetappsError


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Run the classic Internet applications in one daemon. Without --config the "
        "embedded default configuration is used: 'netapps config default' prints it "
        "(commented, to start a file from) and 'netapps config show' prints the "
        "effective configuration with the same options as here. "
        f"Services: {', '.join(registry.SERVICES)}."
    )
    optParameters = [
        ["config", "c", None, "TOML configuration file (default: the embedded default, see 'netapps config default')."],
        ["services", "s", None, "Comma-separated services to run, or 'all' (default: netapps.services, "
                                "else the sections of the --config file)."],
        ["data-dir", "d", None, f"Data directory (default: ${ENV_VAR}, netapps.data_dir, ~/.local/share/netapps)."],
        ["log-format", None, "text", "Log lines as 'text' (twistd's usual) or 'json' (one JSON object per "
         "line: twisted.logger's fields, service and peer among them), to twistd's -l file or stdout."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []
        self["set"] = []

    def opt_listen(self, value: str) -> None:
        """NAME=ENDPOINT: replace a listener's endpoints (repeatable). NAME is a service for its main listener (uppercase=udp:12000) or a named one (smtp.submission=tcp:2587:interface=127.0.0.1); 'netapps config show' lists them"""
        self["listen"].append(value)

    def opt_set(self, value: str) -> None:
        """section.key=VALUE: override a config key, VALUE parsed as TOML (repeatable)"""
        self["set"].append(value)

    def opt_version(self) -> None:
        """Print the netapps version and exit"""
        print(f"netapps {__version__}")
        sys.exit(0)


def _chown_for_privilege_drop(options: Options, paths: list[Path]) -> None:
    # Running as root with twistd -u/-g: the data dir must belong to the user
    # the daemon becomes, or it cannot write its own data after the drop.
    parent = getattr(options, "parent", None)
    if parent is None or os.getuid() != 0:
        return
    uid, gid = parent.get("uid"), parent.get("gid")
    if uid is not None or gid is not None:
        for path in paths:
            os.chown(path, uid if uid is not None else -1, gid if gid is not None else -1)


def _freeze_startup_heap() -> None:
    """Leave what start-up built (modules, classes, config, services) out of future GC passes.

    Those objects live as long as the daemon, yet every full collection
    walked all of them again -- some 85,000, tens of milliseconds a pass,
    which a busy cache (its index growing by an entry per miss) triggers
    every few seconds. Collected first, so no garbage is frozen with them.
    """
    gc.collect()
    gc.freeze()


def makeService(options: Options):
    from twisted.internet import reactor

    from twisted_netapps.daemon import NetappsService

    config = None
    try:
        if options["log-format"] not in logfilter.FORMATS:
            raise NetappsError(f"--log-format: expected text or json, got {options['log-format']!r}")
        config = load_config(
            options["config"],
            services=options["services"],
            sets=options["set"],
            listens=options["listen"],
            data_dir=options["data-dir"],
        )
        parent = getattr(options, "parent", None)
        foreground = bool(parent["nodaemon"]) if parent is not None else True
        service = NetappsService(
            config, config.data_dir.path, reactor, foreground=foreground,
            prepare_data_dir=lambda paths: _chown_for_privilege_drop(options, paths), log_options=parent,
        )
        service.log_format = options["log-format"]
        reactor.callWhenRunning(_freeze_startup_heap)
        return service
    except NetappsError as e:
        # One line, no traceback: this is a user mistake, not a bug. Errors
        # found while binding or building name the option or file line.
        message = config.blame(str(e)) if config is not None and isinstance(e, ConfigError) else str(e)
        raise SystemExit(message) from None

