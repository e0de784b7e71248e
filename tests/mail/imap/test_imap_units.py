"""IMAP pieces without sockets: MIME sections, SEARCH, folder views and UIDs."""

import datetime

import pytest
from hypothesis import given, settings, strategies as st
from twisted.internet import defer, task
from twisted.python.failure import Failure

from twisted_netapps.mail.imap.account import FolderError, MaildirAccount, pattern_regex
from twisted_netapps.mail.imap.mailbox import FolderRegistry, SequenceError, open_view
from twisted_netapps.mail.imap.syntax import SeqSet
from twisted_netapps.mail.imap.mime import MimePart, section, split_multipart
from twisted_netapps.mail.imap.search import SearchError, compile_search, parse_date
from twisted_netapps.mail.imap.structure import body_structure, envelope, serialize
from twisted_netapps.mail.store.maildir import MailStore

NESTED = (
    b"Subject: outer\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=A\r\n\r\n"
    b"--A\r\nContent-Type: text/plain\r\n\r\nfirst\r\n"
    b"--A\r\nContent-Type: message/rfc822\r\n\r\n"
    b"Subject: inner\r\nContent-Type: multipart/alternative; boundary=B\r\n\r\n"
    b"--B\r\nContent-Type: text/plain\r\n\r\ninner text\r\n--B\r\nContent-Type: text/html\r\n\r\n<b>x</b>\r\n--B--\r\n"
    b"--A--\r\n"
)


def test_sections_are_byte_exact():
    root = MimePart(NESTED)
    assert root.is_multipart() and len(root.parts()) == 2
    assert section(root, [1]).body == b"first"
    embedded = section(root, [2])
    assert embedded.content_type() == ("message", "rfc822")
    assert embedded.embedded().header.startswith(b"Subject: inner\r\n")
    assert section(root, [2, 1]).body == b"inner text"
    assert section(root, [2, 2]).body == b"<b>x</b>"
    assert section(root, [1]).header == b"Content-Type: text/plain\r\n\r\n"
    with pytest.raises(IndexError):
        section(root, [3])


def test_header_fields_keep_duplicates_and_folding():
    part = MimePart(b"Received: a\r\n  folded\r\nX: 1\r\nReceived: b\r\n\r\nbody")
    assert part.header_fields(["received"]) == b"Received: a\r\n  folded\r\nReceived: b\r\n\r\n"
    assert part.header_fields(["received"], negate=True) == b"X: 1\r\n\r\n"


def test_split_multipart_without_close_delimiter():
    assert split_multipart(b"pre\r\n--x\r\none\r\n--x\r\ntwo", b"x") == [b"one", b"two"]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_mime_never_crashes_on_garbage(raw):
    part = MimePart(raw)
    assert part.header + part.body == raw
    part.header_fields(["subject"])
    for child in part.parts():
        assert child.raw in raw


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=1, max_value=30))
def test_mime_part_bomb_is_bounded(depth):
    raw = b"Content-Type: multipart/mixed; boundary=z\r\n\r\n" + b"--z\r\n\r\nx\r\n" * 2000 + b"--z--\r\n"
    assert len(MimePart(raw).parts()) <= 500


class FakeMessage:
    def __init__(self, seq, uid, letters="", recent=False, size=100, date=(2026, 11, 2), headers=None, body=""):
        self.seq, self.uid = seq, uid
        self._letters, self._recent, self._size = letters, recent, size
        self._date = datetime.date(*date)
        self._headers = headers or {}
        self._body = body

    def letters(self):
        return self._letters

    def is_recent(self):
        return self._recent

    def internal_date(self):
        return self._date

    def header_values(self, name):
        return self._headers.get(name, [])

    def body_text(self):
        return self._body

    def full_text(self):
        return " ".join(v for vs in self._headers.values() for v in vs) + self._body

    def size(self):
        return self._size


MESSAGES = [
    FakeMessage(1, 10, "S", headers={"from": ["Bob <bob@x.test>"], "subject": ["Hello"]}, body="first body"),
    FakeMessage(2, 20, "FT", recent=True, size=5000, date=(2026, 11, 5), headers={"subject": ["Report"]}),
    FakeMessage(3, 35, "", size=50, headers={"from": ["carol@y.test"], "date": ["Tue, 3 Nov 2026 09:00:00 +0100"]}),
]


def run(*tokens):
    match = compile_search(list(tokens), 3, 35)
    return [m.seq for m in MESSAGES if match(m)]


def test_search_keys():
    assert run(b"ALL") == [1, 2, 3]
    assert run(b"SEEN") == [1] and run(b"UNSEEN") == [2, 3]
    assert run(b"FLAGGED", b"DELETED") == [2]
    assert run(b"NEW") == [2] and run(b"OLD") == [1, 3] and run(b"RECENT") == [2]
    assert run(b"FROM", b"BOB") == [1]
    assert run(b"OR", b"FROM", b"carol", b"SUBJECT", b"report") == [2, 3]
    assert run(b"NOT", b"FROM", b"bob") == [2, 3]
    assert run(b"LARGER", b"100") == [2] and run(b"SMALLER", b"100") == [3]
    assert run(b"SINCE", b"3-Nov-2026") == [2] and run(b"BEFORE", b"3-Nov-2026") == [1, 3]
    assert run(b"ON", b"2-Nov-2026") == [1, 3]
    assert run(b"SENTON", b"3-Nov-2026") == [3]
    assert run(b"UID", b"20:*") == [2, 3] and run(b"2,3") == [2, 3] and run(b"*") == [3]
    assert run([b"SEEN", b"FROM", b"bob"]) == [1]
    assert run(b"BODY", b"first") == [1] and run(b"TEXT", b"hello") == [1]
    assert run(b"HEADER", b"subject", b"rep") == [2]


@pytest.mark.parametrize("tokens", [[], [b"FROM"], [b"BOGUS"], [b"SINCE", b"32-Foo-2020"], [b"LARGER", b"x"], [b"UID", b"a:b"]])
def test_search_errors(tokens):
    with pytest.raises(SearchError):
        compile_search(tokens, 3, 35)


def test_parse_date():
    assert parse_date(b"1-Feb-1994") == datetime.date(1994, 2, 1)


atoms = st.sampled_from([b"ALL", b"SEEN", b"NOT", b"OR", b"FROM", b"x", b"1:*", b"UID", b"SINCE", b"1-Jan-2020",
                         b"LARGER", b"10", b"HEADER", b"(", b"*", b"", b"\xff"])
token_lists = st.recursive(st.lists(atoms, max_size=8), lambda inner: st.lists(st.one_of(atoms, inner), max_size=5), max_leaves=30)


@settings(max_examples=300, deadline=None)
@given(token_lists)
def test_search_parser_only_raises_search_error(tokens):
    try:
        match = compile_search(tokens, 3, 35)
    except SearchError:
        return
    for m in MESSAGES:
        assert match(m) in (True, False)


def test_list_patterns():
    assert pattern_regex("A.%").match("A.b") and not pattern_regex("A.%").match("A.b.c")
    assert pattern_regex("*").match("A.b.c")


def done(value):
    """The result of a Deferred or coroutine that must already have finished (synchronous disk)."""
    d = defer.ensureDeferred(value)
    results = []
    d.addBoth(results.append)
    assert results, "did not finish"
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]


def synchronous_registry():
    return FolderRegistry(task.Clock(), poll_interval=1.0, run_blocking=lambda f, *a: defer.maybeDeferred(f, *a))


@pytest.fixture
def account(tmp_path):
    store = MailStore(tmp_path / "mail")
    return store, MaildirAccount("alice", store, synchronous_registry())


def select(acct, name, writable=True):
    found = acct.folder(name)
    if found is None:
        return None
    state = done(acct.registry.open(*found))
    return done(open_view(state, writable))


def test_view_uids_flags_expunge_and_changes_from_elsewhere(account):
    store, acct = account
    for i in range(3):
        store.deliver("alice", b"Subject: %d\r\n\r\nx\r\n" % i)
    view = select(acct, "INBOX")
    other = select(acct, "INBOX")
    assert len(view.uids) == 3 and len(view.recent) == 3
    assert other.recent == set()  # \Recent went to the first session
    assert view.uids == [1, 2, 3]
    done(view.state.store_flags([2], 1, "ST", [], view))
    assert sorted(view.message(2).flags()) == ["\\Deleted", "\\Recent", "\\Seen"]
    assert done(other.take_updates(allow_expunge=True)) == [b"2 FETCH (FLAGS (\\Seen \\Deleted) UID 2)"]
    assert done(view.expunge_uids(view.deleted_uids())) == [2]
    assert done(other.take_updates(allow_expunge=False)) == []  # held back (e.g. during FETCH)
    assert done(other.take_updates(allow_expunge=True)) == [b"2 EXPUNGE"]
    store.deliver("alice", b"Subject: new\r\n\r\nx\r\n")
    done(view.state.refresh())
    assert done(view.take_updates(allow_expunge=True)) == [b"3 EXISTS", b"3 RECENT"]
    assert view.uids[2] == 4 and view.state.uidmap.uidnext == 5
    view.close()
    other.close()
    # a new process (new registry) sees the same UIDs and UIDVALIDITY
    fresh = select(MaildirAccount("alice", store, synchronous_registry()), "INBOX")
    assert fresh.uids == [1, 3, 4]
    assert fresh.state.uidmap.uidvalidity == view.state.uidmap.uidvalidity
    assert fresh.recent == set()  # claimed by the first process, durably


def test_sequence_numbers_out_of_range(account):
    store, acct = account
    store.deliver("alice", b"x\r\n")
    view = select(acct, "INBOX")
    with pytest.raises(SequenceError):
        view.select_uids(SeqSet(((5, 5),)), uid=False)
    assert view.select_uids(SeqSet(((5, 9),)), uid=True) == []
    assert acct.folder("../evil") is None
    assert view.select_uids(SeqSet(((1, None),)), uid=True) == [(1, 1)]


def test_account_folders(account):
    store, acct = account
    acct.create("Work.Projects")
    names = lambda pattern: [f.name for f in acct.list("", (pattern,))]
    assert names("*") == ["INBOX", "Work", "Work.Projects"]
    assert names("%") == ["INBOX", "Work"]
    assert names("inbox") == ["INBOX"]
    with pytest.raises(FolderError):
        acct.create("Work")
    assert acct.folder("Nope") is None
    with pytest.raises(FolderError):
        acct.create("../evil")


HEADERS = st.sampled_from([
    b"Content-Type: multipart/mixed; boundary=q\r\n", b"Content-Type: text/plain; charset=\"utf-8\"\r\n",
    b"Content-Type: message/rfc822\r\n", b"Content-Type: ;;;\r\n", b"From: <>\r\n",
    b"To: a@b, \"x\" <y@z>, undisclosed-recipients:;\r\n", b"Subject: =?utf-8?b?w6k=?=\r\n",
    b"Content-Disposition: attachment; filename=\"A b.PDF\"\r\n", b"Content-Type: text/plain; name*=utf-8''%C3%A9\r\n",
    b"Date: garbage\r\n", b"Content-Type: multipart/alternative\r\n", b"Content-Transfer-Encoding: base64\r\n",
    b"X: \xff\xfe\r\n", b"Subject: caf\xc3\xa9\r\n", b"From: J\xc3\xb6rg <j@x>\r\n",
])
BODIES = st.sampled_from([
    b"", b"text\r\n", b"--q\r\nContent-Type: text/plain\r\n\r\nx\r\n--q--\r\n",
    b"--q\r\n\r\n--q\r\nContent-Type: message/rfc822\r\n\r\nSubject: in\r\n\r\nb\r\n--q--\r\n", b"\xff\x00",
])


@settings(max_examples=500, deadline=None)
@given(st.lists(HEADERS, max_size=6), BODIES)
def test_envelope_and_bodystructure_never_crash(headers, body):
    part = MimePart(b"".join(headers) + b"\r\n" + body)
    for data in (serialize([body_structure(part, True)]), serialize([body_structure(part, False)]),
                 serialize([envelope(part)])):
        assert data.startswith(b"(") and data.endswith(b")")


def test_structure_keeps_case_and_8bit_as_literals():
    part = MimePart(
        b"Subject: caf\xc3\xa9\r\nFrom: J\xc3\xb6rg <j@x.test>\r\nContent-Type: multipart/mixed; boundary=QQ\r\n\r\n"
        b"--QQ\r\nContent-Disposition: attachment; filename=\"Report.PDF\"\r\nContent-Type: application/pdf\r\n\r\nxx\r\n--QQ--\r\n"
    )
    assert serialize([body_structure(part, True)]) == (
        b'(("application" "pdf" NIL NIL NIL "7bit" 2 NIL ("attachment" ("filename" "Report.PDF")) NIL NIL)'
        b' "mixed" ("boundary" "QQ") NIL NIL NIL)'
    )
    env = serialize([envelope(part)])
    assert env.startswith(b"(NIL {5}\r\ncaf\xc3\xa9 (({5}\r\nJ\xc3\xb6rg NIL \"j\" \"x.test\"))")
