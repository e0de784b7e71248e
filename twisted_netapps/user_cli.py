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
