"""The table of services: name -> module that builds it.

Adding a service is one line here. Each module named must define

- ``Settings``: a frozen dataclass (see :mod:`twisted_netapps.settings`) for its
  ``[name]`` config table, with a ``listen: list[str]`` field;
- ``build(context) -> IService``: the service, given a
  :class:`twisted_netapps.context.ServiceContext`.

Modules are imported only when the daemon is configured, never by
``twistd --help``. Services not built yet are absent, not stubbed.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from twisted_netapps.errors import ConfigError

SERVICES: dict[str, str] = {
    "uppercase": "twisted_netapps.uppercase.service",
    "dns": "twisted_netapps.dns.service",
    "pop3": "twisted_netapps.mail.pop3.service",
    "imap": "twisted_netapps.mail.imap.service",
    "smtp": "twisted_netapps.mail.smtp.service",
    "resolver": "twisted_netapps.resolver.service",
    "ftp": "twisted_netapps.ftp.service",
    "status": "twisted_netapps.status.service",
    "web": "twisted_netapps.web.service",
    "proxy": "twisted_netapps.proxy.service",
    "tracker": "twisted_netapps.bittorrent.tracker.service",
    "bittorrent": "twisted_netapps.bittorrent.peer.service",
}


def service_module(name: str) -> ModuleType:
    """Import and return the module that builds service *name*."""
    try:
        path = SERVICES[name]
    except KeyError:
        raise ConfigError(
            f"unknown service {name!r} (known: {', '.join(sorted(SERVICES))})"
        ) from None
    return importlib.import_module(path)
