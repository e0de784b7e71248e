"""``netapps mail queue|flush``: look at the SMTP relay queue, and ask for a retry now.

Works on the queue directory directly (``<data_dir>/smtp-queue``), so it
needs no connection to the daemon: ``flush`` leaves a request file that the
running daemon's queue runner picks up within a second (or at start-up if it
is not running).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from twisted_netapps.mail.store.queue import QueueStore

QUEUE_DIR = "smtp-queue"  # the same name smtp_service uses


def register(subparsers) -> None:
    p = subparsers.add_parser("mail", help="the SMTP relay queue: list it, or retry it now")
    p.add_argument("--data-dir", default="./netapps-data", help="the daemon's data directory")
    sub = p.add_subparsers(dest="action", required=True)
    sub.add_parser("queue", help="list queued messages (like mailq)").set_defaults(func=_queue)
    sub.add_parser("flush", help="ask the daemon to retry every queued message now").set_defaults(func=_flush)


def _store(args) -> QueueStore | None:
    root = Path(args.data_dir) / QUEUE_DIR
    if not root.is_dir():
        return None
    return QueueStore(root)


def _queue(args) -> int:
    store = _store(args)
    entries = store.entries() if store is not None else []
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
    if store is None:
        print(f"netapps mail flush: no queue in {args.data_dir}", file=sys.stderr)
        return 1
    store.request_flush()
    print(f"flush requested ({len(store.entries())} queued); the running daemon retries them within a second")
    return 0
