"""``netapps user add|list|del``: manage the shared account store."""

from __future__ import annotations

import getpass
import sys
from pathlib import Path

from twisted_netapps.accounts import AccountError, AccountStore
from twisted_netapps.fileio import ensure_private_dir


def _read_password(name: str) -> str:
    if not sys.stdin.isatty():
        line = sys.stdin.readline()
        return line.rstrip("\r\n")
    first = getpass.getpass(f"password for {name}: ")
    if getpass.getpass("again: ") != first:
        raise AccountError("passwords do not match")
    return first


def register(subparsers) -> None:
    p = subparsers.add_parser("user", help="manage accounts (used by SMTP AUTH, POP3, IMAP, FTP)")
    p.add_argument("--data-dir", default="./netapps-data", help="the daemon's data directory")
    sub = p.add_subparsers(dest="action", required=True)
    add = sub.add_parser("add", help="add an account; password from stdin or a prompt")
    add.add_argument("name")
    add.set_defaults(func=_add)
    sub.add_parser("list", help="list account names").set_defaults(func=_list)
    rm = sub.add_parser("del", help="delete an account")
    rm.add_argument("name")
    rm.set_defaults(func=_del)
    apop = sub.add_parser(
        "apop", help="set (stdin or prompt) or --remove a user's POP3 APOP secret (kept in plain text, 0600)"
    )
    apop.add_argument("name")
    apop.add_argument("--remove", action="store_true", help="remove the secret: no APOP for this user")
    apop.set_defaults(func=_apop)


def _store(args) -> AccountStore:
    return AccountStore(ensure_private_dir(Path(args.data_dir)))


def _add(args) -> int:
    store = _store(args)
    store.add(args.name, _read_password(args.name))
    print(f"added user {args.name}")
    return 0


def _list(args) -> int:
    for name in _store(args).names():
        print(name)
    return 0


def _del(args) -> int:
    _store(args).remove(args.name)
    print(f"deleted user {args.name}")
    return 0


def _apop(args) -> int:
    # APOP needs a plaintext-equivalent secret (the account store keeps only
    # scrypt hashes), so it is a separate, opt-in secret per account.
    from twisted_netapps.mail.pop3.apop import SECRETS_FILE, load_secrets, save_secrets

    store = _store(args)
    path = Path(args.data_dir) / "mail" / SECRETS_FILE
    secrets = load_secrets(path)
    if args.remove:
        if secrets.pop(args.name, None) is None:
            raise AccountError(f"user {args.name!r} has no APOP secret")
        save_secrets(path, secrets)
        print(f"removed the APOP secret of {args.name}")
        return 0
    if not store.exists(args.name):
        raise AccountError(f"no such user {args.name!r} (add it first: netapps user add {args.name})")
    secret = _read_password(args.name)
    if not secret:
        raise AccountError("empty secret")
    try:
        secrets[args.name] = secret
        save_secrets(path, secrets)
    except ValueError as e:
        raise AccountError(str(e)) from None
    print(f"set the APOP secret of {args.name} (in {path})")
    return 0
