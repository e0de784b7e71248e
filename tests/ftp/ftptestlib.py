"""Shared pieces of the FTP tests: a daemon with accounts, ftplib sessions, big files."""

from __future__ import annotations

import ftplib
import hashlib
import os
from pathlib import Path

import pytest

from twisted_netapps.accounts import AccountStore

PASSWORD = "s3cret pw"


def start_ftp(netapps_daemon, data: Path, sets=()):
    data.mkdir(exist_ok=True)
    store = AccountStore(data)
    if not store.exists("alice"):
        store.add("alice", PASSWORD, log2_n=10)
    daemon = netapps_daemon(
        ["ftp"], data_dir=data, listen={"ftp": ["tcp:0:interface=127.0.0.1"]},
        sets=["ftp.login_failure_delay=0.2", "ftp.data_timeout=5.0", *sets],
    )
    daemon.root = data / "ftp"
    daemon.home = data / "ftp" / "home" / "alice"
    daemon.home.mkdir(parents=True, exist_ok=True)
    return daemon


@pytest.fixture
def ftpd(netapps_daemon, tmp_path):
    return start_ftp(netapps_daemon, tmp_path / "data")


def login(daemon, user="alice", password=PASSWORD, cls=ftplib.FTP) -> ftplib.FTP:
    host, port = daemon.address("ftp")
    client = cls(timeout=20)
    client.connect(host, port)
    client.login(user, password)
    return client


def random_file(path: Path, size: int) -> str:
    """Write *size* random bytes to *path*; their SHA-256."""
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(left, 1 << 20))
            f.write(chunk)
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
