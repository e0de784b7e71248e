"""``netapps user add|passwd|list|del|apop``: manage the shared account store.

The data directory follows :mod:`twisted_netapps.datadir` (``--data-dir`` is
accepted before or after the action). Only ``add`` creates it; the other
actions need an existing one and say which path they looked at.
"""

from __future__ import annotations

import getpass
import sys
from pathlib import Path

from twisted_netapps import datadir
from twisted_netapps.accounts import ACCOUNTS_FILE, AccountError, AccountStore
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
    datadir.add_options(p)
    sub = p.add_subparsers(dest="action", required=True)

    def action(name: str, func, help: str, *, takes_name: bool = True):
        parser = sub.add_parser(name, help=help)
        if takes_name:
            parser.add_argument("name")
        datadir.add_options(parser, repeat=True)
        parser.set_defaults(func=func)
        return parser

    action("add", _add, "add an account; password from stdin or a prompt (names are case-insensitive)")
    action("passwd", _passwd, "change an account's password; from stdin or a prompt")
    action("list", _list, "list account names", takes_name=False)
    action("del", _del, "delete an account")
    apop = action(
        "apop", _apop, "set (stdin or prompt) or --remove a user's POP3 APOP secret (kept in plain text, 0600)"
    )
    apop.add_argument("--remove", action="store_true", help="remove the secret: no APOP for this user")


def _existing_store(args) -> AccountStore:
    """The store of an existing data dir that has accounts; else a one-line error."""
    where = datadir.from_args(args)
    store = AccountStore(datadir.require_existing(where))
    if not store.path.exists():
        raise AccountError(
            f"no accounts in {where.path} (no {ACCOUNTS_FILE}; from {where.origin}): "
            f"add one with 'netapps user add NAME', or {datadir.HOW_TO_POINT}"
        )
    return store


def _add(args) -> int:
    where = datadir.from_args(args)
    store = AccountStore(ensure_private_dir(where.path))
    stored = store.add(args.name, _read_password(args.name))
    print(f"added user {stored} (in {store.path})")
    return 0


def _passwd(args) -> int:
    store = _existing_store(args)
    stored = store.canonical(args.name)
    if stored is None:
        raise AccountError(f"no such user {args.name!r} in {store.path}")
    store.set_password(stored, _read_password(stored))
    print(f"changed the password of {stored}")
    return 0


def _list(args) -> int:
    for name in _existing_store(args).names():
        print(name)
    return 0


def _del(args) -> int:
    stored = _existing_store(args).remove(args.name)
    print(f"deleted user {stored}")
    return 0


def _apop(args) -> int:
    # APOP needs a plaintext-equivalent secret (the account store keeps only
    # scrypt hashes), so it is a separate, opt-in secret per account.
    from twisted_netapps.mail.pop3.apop import SECRETS_FILE, load_secrets, save_secrets

    store = _existing_store(args)
    path = Path(store.path.parent) / "mail" / SECRETS_FILE
    secrets = load_secrets(path)
    stored = store.canonical(args.name)
    if args.remove:
        key = next((u for u in secrets if u.lower() == args.name.lower()), None)
        if key is None:
            raise AccountError(f"user {args.name!r} has no APOP secret")
        del secrets[key]
        save_secrets(path, secrets)
        print(f"removed the APOP secret of {key}")
        return 0
    if stored is None:
        raise AccountError(f"no such user {args.name!r} (add it first: netapps user add {args.name})")
    secret = _read_password(stored)
    if not secret:
        raise AccountError("empty secret")
    try:
        for key in [u for u in secrets if u.lower() == stored.lower()]:
            del secrets[key]
        secrets[stored] = secret
        save_secrets(path, secrets)
    except ValueError as e:
        raise AccountError(str(e)) from None
    print(f"set the APOP secret of {stored} (in {path})")
    return 0
