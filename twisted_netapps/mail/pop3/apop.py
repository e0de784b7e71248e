"""APOP (RFC 1939 section 7) secrets: a plaintext-equivalent secret per user.

The account store keeps only scrypt hashes, which APOP cannot use (the client
proves knowledge of md5(timestamp + secret)). So APOP is opt-in per user: an
administrator puts ``user:secret`` lines in ``<data_dir>/mail/apop-secrets``
(mode 0600, checked; a group/world readable file is ignored). The POP3
greeting offers an APOP timestamp only while that file holds at least one
secret; otherwise APOP is not offered at all and answers ``-ERR``.
The file is re-read (in the disk pool, never on the reactor thread) per APOP
login, and for the greeting at most once a second, so edits take effect
without a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
from pathlib import Path

from twisted.cred import credentials, error
from twisted.cred.checkers import ICredentialsChecker
from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from twisted_netapps.fileio import write_atomically

SECRETS_FILE = "apop-secrets"

log = Logger(namespace="netapps.pop3")


def load_secrets(path: Path) -> dict[str, str]:
    """``user -> secret`` from *path*; empty if missing or not private (0600)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return {}
    with os.fdopen(fd, "rb") as handle:
        if stat.S_IMODE(os.fstat(handle.fileno()).st_mode) & 0o077:
            log.warn("ignoring {path}: readable by group/others (chmod 600 it)", path=str(path))
            return {}
        text = handle.read(1 << 20).decode("utf-8", "replace")
    secrets = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        user, sep, secret = line.partition(":")
        if sep and user and secret:
            secrets[user] = secret
    return secrets


def save_secrets(path: Path, secrets: dict[str, str]) -> None:
    """Write *secrets* to *path* (0600, atomically): the inverse of :func:`load_secrets`."""
    for user, secret in secrets.items():
        if ":" in user or any(c in user + secret for c in "\r\n"):
            raise ValueError(f"APOP user or secret for {user!r} holds ':' or a line break")
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    text = "".join(f"{user}:{secret}\n" for user, secret in sorted(secrets.items()))
    write_atomically(path, text.encode("utf-8"), mode=0o600)


@implementer(credentials.IUsernameHashedPassword)
class ApopCredentials:
    def __init__(self, timestamp: str, username: str, digest: str) -> None:
        self.timestamp = timestamp
        self.username = username
        self.digest = digest

    def checkPassword(self, password: str) -> bool:
        expected = hashlib.md5((self.timestamp + password).encode("utf-8")).hexdigest()
        return hmac.compare_digest(expected, self.digest.lower())


def _blocking(function, *args):
    """Run *function* right here (tests and tools without a reactor)."""
    return defer.maybeDeferred(function, *args)


class ApopSecrets:
    """Whether the greeting offers APOP: the secrets file's state, re-read in the
    background (*run*: the disk pool) when the last look is over *max_age* seconds old."""

    def __init__(self, path: Path, clock, run=_blocking, max_age: float = 1.0) -> None:
        self.path = Path(path)
        self.clock = clock
        self.run = run
        self.max_age = max_age
        self._offered = bool(load_secrets(self.path))  # at start-up, before serving
        self._checked = clock.seconds()
        self._refreshing = False

    def available(self) -> bool:
        """Whether at least one secret exists (as of at most about *max_age* ago)."""
        if not self._refreshing and self.clock.seconds() - self._checked > self.max_age:
            self._refreshing = True
            self.run(load_secrets, self.path).addBoth(self._refreshed)
        return self._offered

    def _refreshed(self, result) -> None:
        self._refreshing = False
        self._checked = self.clock.seconds()
        if isinstance(result, dict):
            self._offered = bool(result)
        # (load_secrets handles a missing or unreadable file itself; anything else keeps the last state)


@implementer(ICredentialsChecker)
class ApopSecretChecker:
    credentialInterfaces = (credentials.IUsernameHashedPassword,)

    def __init__(self, path: Path, run=_blocking) -> None:
        self.path = Path(path)
        self.run = run  # the disk pool: the secrets file is read off the reactor thread

    def requestAvatarId(self, creds):
        def check(secrets: dict[str, str]):
            # Account names are case-insensitive: the avatar is the name as kept in the file.
            folded = creds.username.lower()
            user = next((u for u in secrets if u.lower() == folded), None)
            secret = secrets.get(user) if user is not None else None
            if secret is not None and creds.checkPassword(secret):
                return user
            raise error.UnauthorizedLogin(f"bad APOP login for {creds.username!r}")

        return self.run(load_secrets, self.path).addCallback(check)
