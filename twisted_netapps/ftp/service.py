"""Service builder for ``ftp``: the FTP server (control port 2121), its jails and FTPS.

Layout under ``root`` (default ``<data_dir>/ftp``)::

    anonymous/        what anonymous logins see as /  (read-only)
      pub/            seeded with a demo file on first start
      <upload>/       only with anonymous_upload: new files may be stored here
    home/<user>/      each account's own writable /, created at its first login
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from twisted.application import service
from twisted.cred import checkers
from twisted.cred.portal import IRealm
from twisted.internet import ssl
from zope.interface import implementer

from twisted_netapps.accounts import USERNAME_RE
from twisted_netapps.auth import make_portal
from twisted_netapps.connections import StreamSettings
from twisted_netapps.context import ServiceContext
from twisted_netapps.errors import ConfigError
from twisted_netapps.fileio import ensure_private_dir, write_file
from twisted_netapps.ftp.filesystem import Access, JailedFilesystem
from twisted_netapps.ftp.protocol import TOO_MANY_CONNECTIONS, FtpAccount, FtpFactory, IFtpAccount
from twisted_netapps.tls import check_cert_key_pair, server_tls_options
from twisted_netapps.settings import setting

USES_ACCOUNTS = True  # the daemon creates the demo account when none exists

COUNTERS: dict[str, str] = {
    "logins": "successful logins (accounts and anonymous)",
    "login_failures": "failed logins",
    "files_sent": "RETR transfers completed",
    "files_received": "STOR/APPE/STOU uploads completed (durable)",
    "bytes_sent": "file bytes sent by RETR",
    "bytes_received": "file bytes received by uploads",
    "listings": "LIST/NLST/MLSD transfers completed",
    "aborts": "transfers stopped by ABOR",
    "sendfile_transfers": "RETR transfers sent with os.sendfile",
    "splice_transfers": "uploads received with os.splice",
}

DEMO_FILE = "welcome.txt"
DEMO_TEXT = (
    b"Welcome to the twisted-netapps FTP server.\n\n"
    b"This is pub/, readable by anonymous logins. Accounts (netapps user add NAME)\n"
    b"get a private writable home; try: lftp -u demo -p 2121 127.0.0.1\n"
)


@dataclasses.dataclass(frozen=True)
class Settings(StreamSettings):
    listen: list[str] = setting(["tcp:2121:interface=127.0.0.1"], "TCP endpoint strings (the control connection)")
    root: str = setting("", 'directory holding anonymous/ and home/ ("" = <data_dir>/ftp)')
    anonymous: bool = setting(True, 'accept "anonymous"/"ftp" logins, read-only, to anonymous/')
    anonymous_upload: str = setting("", 'a directory under anonymous/ where anonymous may store new files ("" = none)')
    passive_ports: list[int] = setting([], "[low, high] range for passive data ports ([] = the kernel's choice)")
    upload_rate: int = setting(
        0, "bytes per second all data connections together may send (a token bucket; 0 = no limit; "
        "no sendfile then): the server's u_s in the distribution experiment", minimum=0,
    )
    passive_address: str = setting("", 'IPv4 address announced in PASV replies, for NAT ("" = the local address)')
    idle_timeout: float = setting(300.0, "seconds a control connection may stay silent (none while a transfer runs)", positive=True)
    data_timeout: float = setting(60.0, "seconds to wait for a data connection, and for progress on one", positive=True)
    max_line: int = setting(4096, "longest command line in bytes; longer gets 500", minimum=512)
    command_timeout: float = setting(60.0, "seconds a command line may take from its first byte to its end", positive=True)
    login_timeout: float = setting(120.0, "seconds from connecting to being logged in", positive=True)
    max_login_failures: int = setting(3, "failed logins before the control connection is closed", minimum=1)
    login_failure_delay: float = setting(
        2.0, "seconds before a failed login's 530 (doubling per recent failure: the login guard)", minimum=0
    )
    tls: bool = setting(True, "offer explicit FTPS (AUTH TLS, PBSZ, PROT)")
    tls_cert: str = setting("", "PEM certificate (default: <data_dir>/tls/cert.pem, self-signed if absent)")
    tls_key: str = setting("", "PEM private key for tls_cert (default: <data_dir>/tls/key.pem)")

    def validate(self, where: str) -> None:
        check_cert_key_pair(self.tls_cert, self.tls_key, where)
        ports = self.passive_ports
        if ports and not (len(ports) == 2 and 1024 <= ports[0] <= ports[1] <= 65535):
            raise ConfigError(f"{where}.passive_ports: expected [low, high] with 1024 <= low <= high <= 65535")
        upload = self.anonymous_upload
        if upload and (upload.startswith("/") or ".." in upload.split("/") or "\x00" in upload):
            raise ConfigError(f"{where}.anonymous_upload: a relative directory name without '..'")


@implementer(IRealm)
class FtpRealm:
    """Avatar = a jailed file system: anonymous/ read-only, or the account's home."""

    def __init__(self, root: Path, anonymous_upload: str) -> None:
        self.root = root
        self.upload_dir = "/" + anonymous_upload.strip("/") if anonymous_upload else None

    def requestAvatar(self, avatarId, mind, *interfaces_):
        if IFtpAccount not in interfaces_:
            raise NotImplementedError("the FTP realm serves IFtpAccount only")
        if avatarId is checkers.ANONYMOUS:
            fs = JailedFilesystem(self.root / "anonymous", Access(writable=False, upload_dir=self.upload_dir))
            return IFtpAccount, FtpAccount("anonymous", fs), lambda: None
        name = avatarId.decode("utf-8") if isinstance(avatarId, bytes) else avatarId
        if not USERNAME_RE.match(name):  # account names are checked on creation; be sure
            raise NotImplementedError(f"unusable account name {name!r}")
        home = self.root / "home" / name
        home.mkdir(mode=0o755, exist_ok=True)
        return IFtpAccount, FtpAccount(name, JailedFilesystem(home, Access(writable=True))), lambda: None


def prepare_root(root: Path, anonymous_upload: str) -> None:
    """Create the tree and seed pub/ with the demo file (never overwriting)."""
    ensure_private_dir(root)
    os.chmod(root, 0o755)  # FTP users' trees are world-readable by nature; data_dir stays 0700
    for sub in ("anonymous", "anonymous/pub", "home"):
        (root / sub).mkdir(mode=0o755, exist_ok=True)
    demo = root / "anonymous" / "pub" / DEMO_FILE
    if not demo.exists():
        write_file(demo, DEMO_TEXT, mode=0o644)
    if anonymous_upload:
        (root / "anonymous" / anonymous_upload).mkdir(mode=0o755, parents=True, exist_ok=True)


def data_connection_tls(control_options: ssl.CertificateOptions) -> ssl.CertificateOptions:
    """TLS for data connections: the control connection's certificate, at most TLS 1.2.

    A TLS 1.3 server sends session tickets after the handshake; a client that
    uploads without ever reading (lftp) then closes a socket with unread
    bytes, the kernel answers with a reset, and the end of the upload still
    in our receive buffer is lost. TLS 1.2 without tickets (Twisted's
    default) sends nothing after the handshake.
    """
    return ssl.CertificateOptions(
        privateKey=control_options.privateKey, certificate=control_options.certificate,
        lowerMaximumSecurityTo=ssl.TLSVersion.TLSv1_2,
    )


class FtpService(service.MultiService):
    """The listeners, plus 421 to every session when the daemon stops."""

    def __init__(self, factory: FtpFactory) -> None:
        super().__init__()
        self.factory = factory

    def stopService(self):
        self.factory.shutdown()
        return super().stopService()


def build(context: ServiceContext):
    s: Settings = context.settings
    where = f"{context.config.source}: {context.name}"
    root = Path(s.root) if s.root else context.data_dir / "ftp"
    try:
        prepare_root(root, s.anonymous_upload)
    except OSError as e:
        raise ConfigError(f"{where}.root: cannot prepare {root}: {e.strerror or e}") from None
    portal = make_portal(FtpRealm(root, s.anonymous_upload), context.accounts, run=context.pools.cpu)
    if s.anonymous:
        portal.registerChecker(checkers.AllowAnonymousAccess())
    tls_options = server_tls_options(context.data_dir, s.tls_cert, s.tls_key, where) if s.tls else None
    data_tls_options = data_connection_tls(tls_options) if tls_options is not None else None
    factory = FtpFactory(
        settings=s, stats=context.stats, reactor=context.reactor, portal=portal, logins=context.logins,
        run_disk=context.pools.disk, tls_options=tls_options, data_tls_options=data_tls_options,
        recent=context.recent,
    )
    context.views.add("sessions", "Sessions (user, directory, transfer in progress)", factory.sessions_view)
    parent = FtpService(factory)
    parent.setName(context.name)
    for child in context.listeners(factory, refuse=TOO_MANY_CONNECTIONS):
        child.setServiceParent(parent)
    return parent
