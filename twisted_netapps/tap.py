"""``twistd netapps``: command-line options and ``makeService``.

Imported lazily by the plugin in ``twisted/plugins/netapps_plugin.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

from twisted.python import usage

from twisted_netapps import registry
from twisted_netapps.config import blame_command_line, load_config
from twisted_netapps.errors import ConfigError, NetappsError
from twisted_netapps.fileio import ensure_private_dir


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Run the classic Internet applications in one daemon. Without --config the "
        "embedded default configuration is used (etc/netapps.toml in the source). "
        f"Services: {', '.join(registry.SERVICES)}."
    )
    optParameters = [
        ["config", "c", None, "TOML configuration file (default: the embedded default)."],
        ["services", "s", None, "Comma-separated services to run, or 'all' (default: netapps.services)."],
        ["data-dir", "d", None, "Data directory (default: netapps.data_dir, ./netapps-data)."],
        ["log-format", None, "text", "Log lines as 'text' (twistd's usual) or 'json' (one JSON object per "
         "line: twisted.logger's fields, service and peer among them), to twistd's -l file or stdout."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []
        self["set"] = []

    def opt_listen(self, value: str) -> None:
        """SERVICE=ENDPOINT: replace SERVICE's listeners (repeatable), e.g. uppercase=tcp:12000:interface=127.0.0.1 or uppercase=udp:12000"""
        self["listen"].append(value)

    def opt_set(self, value: str) -> None:
        """section.key=VALUE: override a config key, VALUE parsed as TOML (repeatable)"""
        self["set"].append(value)


def _chown_for_privilege_drop(options: Options, *paths: Path) -> None:
    # Running as root with twistd -u/-g: the data dir must belong to the user
    # the daemon becomes, or it cannot write its own data after the drop.
    parent = getattr(options, "parent", None)
    if parent is None or os.getuid() != 0:
        return
    uid, gid = parent.get("uid"), parent.get("gid")
    if uid is not None or gid is not None:
        for path in paths:
            os.chown(path, uid if uid is not None else -1, gid if gid is not None else -1)


def makeService(options: Options):
    from twisted.internet import reactor

    from twisted_netapps.daemon import NetappsService

    try:
        if options["log-format"] not in ("text", "json"):
            raise NetappsError(f"--log-format: expected text or json, got {options['log-format']!r}")
        config = load_config(
            options["config"],
            services=options["services"],
            sets=options["set"],
            listens=options["listen"],
            data_dir=options["data-dir"],
        )
        data_dir = Path(config.daemon.data_dir).resolve()
        try:
            ensure_private_dir(data_dir)
            run_dir = ensure_private_dir(data_dir / "run")
        except OSError as e:
            raise NetappsError(f"data dir {data_dir}: {e.strerror}") from None
        _chown_for_privilege_drop(options, data_dir, run_dir)
        parent = getattr(options, "parent", None)
        foreground = bool(parent["nodaemon"]) if parent is not None else True
        try:
            service = NetappsService(config, data_dir, reactor, foreground=foreground)
        except ConfigError as e:  # found while building (bad endpoint, zone file...)
            raise ConfigError(blame_command_line(str(e), config.source, options["set"], options["listen"])) from None
        if options["log-format"] == "json":
            service.log_observer = json_log_observer(parent, foreground)
        return service
    except NetappsError as e:
        # One line, no traceback: this is a user mistake, not a bug.
        raise SystemExit(str(e)) from None


def json_log_observer(parent, foreground: bool):
    """twisted.logger's JSON observer, writing where twistd would write its text lines."""
    import sys

    from twisted.logger import jsonFileLogObserver
    from twisted.python import logfile

    path = parent.get("logfile") if parent is not None else "-"
    if path == "-" or (not path and foreground):
        return jsonFileLogObserver(sys.stdout, recordSeparator="")
    return jsonFileLogObserver(logfile.LogFile.fromFullPath(path or "twistd.log"), recordSeparator="")
