"""FTP servers for bench/ftp_transfer.py other than ours, each a subprocess on a free port.

    python bench/ftp_peers.py pyftpdlib PORT ROOT    # pyftpdlib, anonymous with upload rights
    python bench/ftp_peers.py twisted PORT ROOT      # stock twisted.protocols.ftp (what twistd ftp runs)

vsftpd gets a private config file written by :func:`vsftpd_config` (its own
port, anonymous root and upload directory; nothing from /etc/vsftpd.conf).
Every server serves ROOT with ``pub/small.txt``, ``big.bin`` and an
``incoming/`` upload directory laid out by bench/ftp_transfer.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

STOCK_USER, STOCK_PASSWORD = "bench", "bench-password"


def vsftpd_config(port: int, root: Path) -> str:
    return "\n".join([
        "listen=YES", "listen_ipv6=NO", "listen_address=127.0.0.1", f"listen_port={port}", "background=NO",
        "anonymous_enable=YES", "no_anon_password=YES", f"anon_root={root}", "local_enable=NO",
        "write_enable=YES", "anon_upload_enable=YES", "anon_mkdir_write_enable=NO",
        "ftp_username=ftp", "secure_chroot_dir=/var/run/vsftpd/empty", "xferlog_enable=NO",
        "dirmessage_enable=NO", "pasv_enable=YES", "max_clients=0", "max_per_ip=0",
        "seccomp_sandbox=NO", "",
    ])


def run_pyftpdlib(port: int, root: str) -> None:
    import logging

    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler
    from pyftpdlib.servers import FTPServer

    logging.basicConfig(level=logging.WARNING)  # no per-command log lines (vsftpd logs nothing either)
    authorizer = DummyAuthorizer()
    authorizer.add_anonymous(root, perm="elrw")
    FTPHandler.authorizer = authorizer
    FTPHandler.use_sendfile = True
    server = FTPServer(("127.0.0.1", port), FTPHandler)
    server.max_cons = 0
    server.serve_forever()


def run_twisted(port: int, root: str) -> None:
    """Stock Twisted FTP: what ``twistd ftp -r ROOT`` runs, plus a user (its anonymous
    shell is read-only) whose home is ROOT/../stock-home/bench for uploads."""
    from twisted.cred.checkers import AllowAnonymousAccess, InMemoryUsernamePasswordDatabaseDontUse
    from twisted.cred.portal import Portal
    from twisted.internet import reactor
    from twisted.protocols.ftp import FTPFactory, FTPRealm
    from twisted.python.filepath import FilePath

    homes = Path(root).parent / "stock-home"
    (homes / STOCK_USER).mkdir(parents=True, exist_ok=True)
    # Stock FTP hands the checker str credentials; the keyword form stores bytes
    # names that never match them on Python 3, so the user is added as str.
    users = InMemoryUsernamePasswordDatabaseDontUse()
    users.addUser(STOCK_USER, STOCK_PASSWORD)
    portal = Portal(FTPRealm(FilePath(root).path, userHome=str(homes)), [AllowAnonymousAccess(), users])
    reactor.listenTCP(port, FTPFactory(portal), interface="127.0.0.1")
    reactor.run()


if __name__ == "__main__":
    kind, port_text, root_dir = sys.argv[1:4]
    {"pyftpdlib": run_pyftpdlib, "twisted": run_twisted}[kind](int(port_text), root_dir)
