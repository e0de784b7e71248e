"""Exceptions shared by the whole daemon.

A user mistake (bad config, taken port) must reach the user as one line that
names the service/file/key and the reason, never as a traceback; these types
carry exactly that line.
"""


class NetappsError(Exception):
    """Base class for errors that are reported to the user as one line."""


class ConfigError(NetappsError):
    """The configuration (file, --set, --listen, --services) is invalid."""


class ListenError(NetappsError):
    """A listener could not be bound at start-up."""
