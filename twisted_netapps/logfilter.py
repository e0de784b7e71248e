"""The daemon's log observer: text or JSON, where twistd would write, without Twisted's per-port lines.

Every listening port logs ``DNSStreamFactory starting on 5300`` when it
starts and ``(UDP Port 5300 Closed)`` when it stops: a port number without
its address, once per listener, twice over for a daemon with twenty. The
daemon says it better: one line per listener with its address at start
(:mod:`twisted_netapps.listeners`), one stop line for the daemon.

Those lines come from ``twisted.python.log.msg`` inside the reactor's port
classes, so they can only be dropped by the log observer. twistd lets an
application supply its observer (an ``ILogObserver`` component of the
application, used unless ``--logger`` is given); :func:`install` sets one
that writes where twistd would have (``-l FILE``, ``-l -``, stdout under
``-n``, ``twistd.log`` otherwise, reopened on SIGUSR1 as twistd does), as
text lines or, with ``--log-format=json``, one JSON object per line
(twisted.logger's JSON observer), through a
:class:`~twisted.logger.FilteringLogObserver` dropping those lines. Where
twistd would do something else (``--syslog``, ``--logger``, an observer
already set), it is left alone.
"""

from __future__ import annotations

import re
import signal
import sys

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    PredicateResult,
    jsonFileLogObserver,
    textFileLogObserver,
)
from twisted.python import logfile
from twisted.python.components import Componentized

_PORT_NOISE = re.compile(r"^(?:\S+ starting on \d+|\((?:TCP|UDP|Unix) Port \S+ Closed\))$")


def port_noise(event: dict) -> PredicateResult:
    """Drop Twisted's legacy "X starting on N" and "(TCP Port N Closed)" lines; keep everything else."""
    if event.get("log_namespace") == "log_legacy" and _PORT_NOISE.match(str(event.get("log_text", ""))):
        return PredicateResult.no
    return PredicateResult.maybe


def _twistd_destination(options):
    """The file object twistd's Unix logger would write to for *options*, or None to leave it to twistd."""
    if options.get("syslog") or options.get("logger"):
        return None
    name = options.get("logfile") or ""
    nodaemon = options.get("nodaemon")
    if name == "-":
        return sys.stdout if nodaemon else None  # twistd refuses a daemon on stdout with its own message
    if nodaemon and not name:
        return sys.stdout
    log_file = logfile.LogFile.fromFullPath(name or "twistd.log")
    if not signal.getsignal(signal.SIGUSR1):  # as twistd: SIGUSR1 rotates, unless someone else took it

        def rotate(signum, frame):
            from twisted.internet import reactor

            reactor.callFromThread(log_file.rotate)

        signal.signal(signal.SIGUSR1, rotate)
    return log_file


FORMATS = ("text", "json")


def install(application, options, log_format: str = "text") -> None:
    """Give twistd's *application* a *log_format* observer without Twisted's per-port lines (module doc)."""
    if options is None or not isinstance(application, Componentized) or sys.platform == "win32":
        return
    if application.getComponent(ILogObserver, None) is not None:
        return
    destination = _twistd_destination(options)
    if destination is None:
        return
    if log_format == "json":
        observer = jsonFileLogObserver(destination, recordSeparator="")
    else:
        observer = textFileLogObserver(destination)
    application.setComponent(ILogObserver, FilteringLogObserver(observer, [port_noise]))
