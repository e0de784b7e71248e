"""What the FTP core asks its adapter to do, and what it tells it (frozen dataclasses).

Each request that needs work (a login, a listening socket, a file
operation, a transfer) is answered by one explicit method call on
:class:`twisted_netapps.ftp.session.FtpSession`, named in its docstring.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted_netapps.sansio import Close, Send  # noqa: F401  (the shared events, re-exported)


@dataclass(frozen=True, slots=True)
class CheckLogin:
    """Log in *user* with *password* (an e-mail address when *anonymous*).
    Answer: ``login_done(writable)``, ``login_failed()`` or ``login_refused()``."""

    user: str
    password: str
    anonymous: bool


@dataclass(frozen=True, slots=True)
class StartTls:
    """The 234 for AUTH TLS is queued: start TLS on the control connection now."""


@dataclass(frozen=True, slots=True)
class OpenPassive:
    """Listen for the data connection (PASV/EPSV). Answer: ``passive_ready(host, port)``
    or ``passive_failed()``. A listener already open is replaced."""

    extended: bool


@dataclass(frozen=True, slots=True)
class UseActive:
    """PORT/EPRT: connect to *host*:*port* for the next transfer (already checked to be
    the control connection's peer). Any passive listener is closed."""

    host: str
    port: int


@dataclass(frozen=True, slots=True)
class CloseData:
    """Forget the prepared data connection (passive listener or active address)."""


@dataclass(frozen=True, slots=True)
class FileRequest:
    """A file-system operation on virtual *path*. Answer: ``file_done(result)`` or
    ``file_failed(FileError)``.

    *op*: ``cwd``, ``mkd``, ``rmd``, ``dele``, ``rnfr``, ``rnto`` (to *target*),
    ``size``, ``mdtm``, ``mlst`` (with *facts*), ``stat`` (a listing for STAT).
    """

    op: str
    path: str
    target: str = ""
    facts: tuple = ()


@dataclass(frozen=True, slots=True)
class StartTransfer:
    """Open *path* and move it over the data connection.

    *kind*: ``retr``, ``stor``, ``appe``, ``stou`` (a unique name in *path*'s
    directory), ``list``, ``nlst`` or ``mlsd``; *offset* from REST.
    Answers, in order: ``transfer_started(connected, name)`` once the file
    is open (or ``file_failed``), then ``transfer_done()`` or
    ``transfer_failed(reason)``.
    """

    kind: str
    path: str
    offset: int = 0
    ascii: bool = False
    facts: tuple = ()


@dataclass(frozen=True, slots=True)
class AbortTransfer:
    """ABOR: stop the transfer in progress; answer ``transfer_failed(ABORTED)``."""
