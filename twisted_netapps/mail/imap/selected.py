"""Commands on the selected mailbox: FETCH, STORE, SEARCH, COPY/MOVE, EXPUNGE, CLOSE.

Each is ``async def command(session, request) -> Result`` (see
:class:`~twisted_netapps.mail.imap.session.ImapSession`). UIDPLUS (RFC 4315):
COPY answers ``[COPYUID <validity> <source UIDs> <new UIDs>]``, MOVE sends
the same code in an untagged ``OK`` before its EXPUNGEs (RFC 6851 4.3),
``UID EXPUNGE <set>`` removes only the ``\\Deleted`` messages of the set.
"""

from __future__ import annotations

from twisted_netapps.mail.imap import commands as cmd
from twisted_netapps.mail.imap.events import Result
from twisted_netapps.mail.imap.fetch import load_batch, render
from twisted_netapps.mail.imap.fetchspec import FetchItem
from twisted_netapps.mail.imap.keywords import split_flags
from twisted_netapps.mail.imap.search import compile_search
from twisted_netapps.mail.imap.syntax import compact_set


async def close(session, request) -> Result:
    view = session.view
    if view.writable:
        await view.expunge_uids(view.deleted_uids())  # silently: CLOSE sends no EXPUNGE responses
    session.close_view()
    return Result("OK", "CLOSE completed")


async def expunge(session, request: cmd.Expunge) -> Result:
    view = session.view
    if not view.writable:
        return Result("NO", "mailbox is read-only", b"READ-ONLY")
    among = None
    if request.uids is not None:
        among = {uid for _seq, uid in view.select_uids(request.uids, True)}
    for seq in await view.expunge_uids(view.deleted_uids(among)):
        session.untagged(b"%d EXPUNGE" % seq)
    return Result("OK", "EXPUNGE completed")


async def search(session, request: cmd.Search) -> Result:
    if request.charset is not None and request.charset not in ("US-ASCII", "UTF-8"):
        return Result("NO", "unsupported charset", b"BADCHARSET (US-ASCII UTF-8)")
    view = session.view
    state = view.state
    match = compile_search(request.keys, len(view.uids), view.uids[-1] if view.uids else 0, state.keywords.letter)
    messages = [view.message(uid, seq) for seq, uid in enumerate(view.uids, 1) if uid in state.entries]

    def run():  # in a thread: text searches read the messages
        return [m.uid if request.uid else m.seq for m in messages if match(m)]

    hits = await session.run_blocking(run)
    session.untagged(b"SEARCH" + b"".join(b" %d" % h for h in hits))
    return Result("OK", "SEARCH completed")


async def fetch(session, request: cmd.Fetch) -> Result:
    view = session.view
    pairs = view.select_uids(request.messages, request.uid)
    items = request.items
    if request.uid and not any(i.kind == "UID" for i in items):
        items = items + (FetchItem("UID"),)  # UID FETCH always answers the UID
    seen_now: set[int] = set()
    if view.writable and any(i.sets_seen for i in items):
        unseen = [uid for _seq, uid in pairs if view.letters(uid) is not None and "S" not in view.letters(uid)]
        if unseen:
            await view.state.store_flags(unseen, 1, "S", [], view)
            seen_now = set(unseen)
    wants_flags = any(i.kind == "FLAGS" for i in items)
    # Messages expunged elsewhere but not yet announced are left out (RFC 3501 allows it).
    pending = [view.message(uid, seq) for seq, uid in pairs if uid in view.state.entries]
    session.output.start_stream()
    try:
        while pending and not session.output.gone:  # a client that hung up gets no more disk reads
            batch = await session.run_blocking(load_batch, pending, items)
            del pending[: len(batch)]
            for loaded in batch:
                add_flags = loaded.message.uid in seen_now and not wants_flags
                session.output.write_sequence(render(loaded, items, add_flags))
                view.forget_flag_change(loaded.message.uid)
            await session.output.drained()
    finally:
        session.output.end_stream()
    return Result("OK", "FETCH completed")


async def store(session, request: cmd.Store) -> Result:
    view = session.view
    if not view.writable:
        return Result("NO", "mailbox is read-only (EXAMINE)", b"READ-ONLY")
    pairs = view.select_uids(request.messages, request.uid)
    system, keywords = split_flags(request.flags)
    letters = await view.state.store_flags([uid for _seq, uid in pairs], request.mode, system, keywords, view)
    for line in view.keyword_lines():  # new keywords: FLAGS before the FETCH that shows them
        session.untagged(line)
    for seq, uid in pairs:
        if uid not in letters:
            continue
        view.forget_flag_change(uid)
        if not request.silent:
            flags = " ".join(view.message(uid).flags()).encode("ascii")
            uid_part = b" UID %d" % uid if request.uid else b""
            session.untagged(b"%d FETCH (FLAGS (%s)%s)" % (seq, flags, uid_part))
    return Result("OK", "STORE completed")


async def copy(session, request: cmd.Copy) -> Result:
    what = "MOVE" if request.move else "COPY"
    view = session.view
    found = await session.find(request.mailbox)
    if found is None:
        return Result("NO", "no such mailbox", b"TRYCREATE")
    if request.move and not view.writable:
        return Result("NO", "MOVE needs a read-write mailbox", b"READ-ONLY")
    pairs = view.select_uids(request.messages, request.uid)
    entries = view.state.entries
    sources = [(uid, entries[uid].file) for _seq, uid in pairs if uid in entries]
    if not sources:
        return Result("OK", f"{what} completed (nothing to {what.lower()})")
    disk, folder = found
    target = await session.registry.open(disk, folder)
    new_uids = await target.copy_from(view.state, [f for _uid, f in sources])
    code = None
    if None not in new_uids:
        code = b"COPYUID %d %s %s" % (
            target.uidmap.uidvalidity, compact_set([u for u, _f in sources]), compact_set(new_uids))
    if not request.move:
        return Result("OK", "COPY completed", code)
    if code is not None:
        session.untagged(b"OK [" + code + b"] moved")
    for seq in await view.expunge_uids([uid for uid, _f in sources]):
        session.untagged(b"%d EXPUNGE" % seq)
    return Result("OK", "MOVE completed")


HANDLERS = {
    cmd.Close: close,
    cmd.Expunge: expunge,
    cmd.Search: search,
    cmd.Fetch: fetch,
    cmd.Store: store,
    cmd.Copy: copy,
}
