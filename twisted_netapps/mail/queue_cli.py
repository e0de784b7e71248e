"""``netapps mail queue|flush``: look at the SMTP relay queue, and ask for a retry now.

Works on the queue directory directly (``<data_dir>/smtp-queue``), so it
needs no connection to the daemon: ``flush`` leaves a request file that the
running daemon's queue runner picks up within a second (or at start-up if it
is not running).
"""

from __future__ import annotations

import time

from twisted_netapps import datadir
from twisted_netapps.errors import NetappsError
from twisted_netapps.mail.store.queue import QueueStore

QUEUE_DIR = "smtp-queue"  # the same name smtp_service uses


def register(subparsers) -> None:
    p = subparsers.add_parser("mail", help="the SMTP relay queue: list it, or retry it now")
    datadir.add_options(p)
    sub = p.add_subparsers(dest="action", required=True)
    for name, func, help in (
        ("queue", _queue, "list queued messages (like mailq)"),
        ("flush", _flush, "ask the daemon to retry every queued message now"),
    ):
        action = sub.add_parser(name, help=help)
        datadir.add_options(action, repeat=True)
        action.set_defaults(func=func)


def _store(args) -> QueueStore:
    """The queue of an existing data dir; a one-line error naming the path otherwise."""
    where = datadir.from_args(args)
    root = datadir.require_existing(where) / QUEUE_DIR
    if not root.is_dir():
        raise NetappsError(
            f"no mail queue at {root} (smtp has not run with the data dir from {where.origin}); "
            f"{datadir.HOW_TO_POINT}"
        )
    return QueueStore(root)


def _queue(args) -> int:
    entries = _store(args).entries()
    if not entries:
        print("Mail queue is empty")
        return 0
    now = time.time()
    for entry in entries:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(entry.created))
        due = max(0, int(entry.next_attempt - now))
        print(f"{entry.id}  {entry.size:>8} bytes  {created} UTC  <{entry.sender}>"
              f"  attempts={entry.attempts}  next in {due}s")
        for rcpt in entry.recipients:
            print(f"    <{rcpt.address}>" + (f"  ({rcpt.last_error})" if rcpt.last_error else ""))
    print(f"-- {len(entries)} message(s) queued")
    return 0


def _flush(args) -> int:
    store = _store(args)
    store.request_flush()
    print(f"flush requested ({len(store.entries())} queued); the running daemon retries them within a second")
    return 0
