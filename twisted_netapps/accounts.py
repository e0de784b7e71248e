"""The account store shared by every login (SMTP AUTH, POP3, IMAP, FTP).

Storage layer only (no Twisted): a JSON file ``accounts.json`` under the data
directory, mode 0600, rewritten atomically. Passwords are kept as salted
``hashlib.scrypt`` hashes in a self-describing string::

    scrypt$<log2 n>$<r>$<p>$<salt b64>$<hash b64>

Verification compares in constant time, and an unknown user costs the same
scrypt work as a known one, so timing does not reveal which names exist.
Account names are case-insensitive everywhere, as mail addresses' local
parts are here: ``Alice`` and ``alice`` are one account (adding the second is
refused), and a lookup in any case finds the name as it was added, which
names the Maildir (case-preserving, like most file systems on a Mac).

The Twisted side (``twisted.cred`` checker) is :mod:`twisted_netapps.auth`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
from pathlib import Path

from twisted_netapps.errors import NetappsError
from twisted_netapps.fileio import write_atomically

ACCOUNTS_FILE = "accounts.json"
# RFC 7914's interactive-login recommendation: ~16 MiB, tens of ms per check.
SCRYPT_LOG2_N, SCRYPT_R, SCRYPT_P = 14, 8, 1
USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_PASSWORD_BYTES = 1024
DEMO_USER = "demo"


class AccountError(NetappsError):
    """An account operation failed (bad name, duplicate, missing user)."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, *, log2_n: int = SCRYPT_LOG2_N) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=2**log2_n, r=SCRYPT_R, p=SCRYPT_P,
        maxmem=256 * 1024 * 1024, dklen=32,
    )
    return f"scrypt${log2_n}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    """True when *password* matches *encoded*; a malformed hash never matches."""
    try:
        scheme, log2_n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode("utf-8"), salt=base64.b64decode(salt), n=2 ** int(log2_n),
            r=int(r), p=int(p), maxmem=256 * 1024 * 1024, dklen=len(expected),
        )
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


# A hash of a random password, checked when the user is unknown so that a
# missing account costs the same time as a wrong password.
_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))


class AccountStore:
    """Accounts in ``<data_dir>/accounts.json``. Re-read on every lookup so the
    ``netapps user`` CLI takes effect in a running daemon without a restart."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / ACCOUNTS_FILE

    def _load(self) -> dict[str, dict]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        try:
            users = json.loads(raw)["users"]
        except (ValueError, KeyError, TypeError) as e:
            raise AccountError(f"{self.path}: corrupt accounts file: {e}") from None
        if not isinstance(users, dict):
            raise AccountError(f"{self.path}: corrupt accounts file: users is not an object")
        return users

    def _save(self, users: dict[str, dict]) -> None:
        data = json.dumps({"users": users}, indent=1, sort_keys=True).encode("utf-8")
        write_atomically(self.path, data, mode=0o600)
        os.chmod(self.path, 0o600)

    def names(self) -> list[str]:
        return sorted(self._load())

    @staticmethod
    def _find(users: dict[str, dict], name: str) -> str | None:
        """The stored spelling of *name* (case-insensitive), or None."""
        if name in users:
            return name
        folded = name.lower()
        return next((stored for stored in users if stored.lower() == folded), None)

    def canonical(self, name: str) -> str | None:
        """The stored name of account *name* in any case, or None if there is none."""
        return self._find(self._load(), name)

    def exists(self, name: str) -> bool:
        return self.canonical(name) is not None

    def _check_new_password(self, password: str) -> None:
        if not password:
            raise AccountError("empty password")
        if len(password.encode("utf-8")) > MAX_PASSWORD_BYTES:
            raise AccountError(f"password longer than {MAX_PASSWORD_BYTES} bytes")

    def add(self, name: str, password: str, *, log2_n: int = SCRYPT_LOG2_N) -> str:
        """Create account *name*; return the stored name."""
        if not USERNAME_RE.match(name):
            raise AccountError(
                f"invalid user name {name!r}: 1-64 of letters, digits, '.', '_', '-', starting with a letter or digit"
            )
        self._check_new_password(password)
        users = self._load()
        existing = self._find(users, name)
        if existing is not None:
            raise AccountError(f"user {existing!r} already exists")
        users[name] = {"password": hash_password(password, log2_n=log2_n)}
        self._save(users)
        return name

    def set_password(self, name: str, password: str, *, log2_n: int = SCRYPT_LOG2_N) -> str:
        """Replace the password of account *name*; return the stored name."""
        self._check_new_password(password)
        users = self._load()
        stored = self._find(users, name)
        if stored is None:
            raise AccountError(f"no such user {name!r}")
        users[stored] = {**users[stored], "password": hash_password(password, log2_n=log2_n)}
        self._save(users)
        return stored

    def remove(self, name: str) -> str:
        """Delete account *name*; return the stored name."""
        users = self._load()
        stored = self._find(users, name)
        if stored is None:
            raise AccountError(f"no such user {name!r}")
        del users[stored]
        self._save(users)
        return stored

    def authenticate(self, name: str, password: str) -> str | None:
        """The stored account name if *password* is right, else None.

        Blocking (tens of ms of scrypt): call it from a thread in a server.
        """
        if len(password.encode("utf-8", "surrogatepass")) > MAX_PASSWORD_BYTES:
            return None
        users = self._load()
        stored = self._find(users, name)
        record = users.get(stored) if stored is not None else None
        encoded = record.get("password", "") if isinstance(record, dict) else ""
        ok = verify_password(password, encoded or _DUMMY_HASH)
        return stored if ok and record is not None else None

    def check(self, name: str, password: str) -> bool:
        """Blocking (tens of ms of scrypt): call it from a thread in a server."""
        return self.authenticate(name, password) is not None

    def ensure_demo_account(self) -> str | None:
        """With no accounts at all, create ``demo`` with a random password and
        return that password (to be shown once); otherwise return None."""
        if self._load():
            return None
        password = secrets.token_urlsafe(12)
        self.add(DEMO_USER, password)
        return password
