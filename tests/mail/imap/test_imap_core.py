"""The IMAP command layer without I/O: framing, literals, state, the commands the core answers itself."""

import base64

import pytest
from hypothesis import given, settings, strategies as st
from twisted.mail import imap4  # noqa: F401  (registers Twisted's "imap4-utf-7" codec: a reference to compare with)

from twisted_netapps.mail.imap import commands as cmd
from twisted_netapps.mail.imap import mutf7
from twisted_netapps.mail.imap.core import ImapCore
from twisted_netapps.mail.imap.events import CheckPassword, Close, IdleDone, Result, Run, Send, StartTls, State
from twisted_netapps.mail.imap.fetchspec import parse_fetch_items
from twisted_netapps.mail.imap.syntax import ParseError, Reader


def sent(events) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, Send))


def logged_in(**kwargs) -> ImapCore:
    core = ImapCore(**kwargs)
    core.greeting()
    events = core.receive_data(b"a LOGIN alice pw\r\n")
    assert events == [CheckPassword("alice", b"pw")]
    core.login_done(True)
    return core


def selected() -> ImapCore:
    core = logged_in()
    (run,) = core.receive_data(b"s SELECT INBOX\r\n")
    assert run == Run(cmd.Select("INBOX", False))
    core.command_done(Result("OK", "SELECT completed", b"READ-WRITE"))
    return core


def test_greeting_lists_what_can_be_used_now():
    greeting = sent(ImapCore(tls_available=True).greeting())
    assert greeting.startswith(b"* OK [CAPABILITY IMAP4rev1 ")
    for cap in (b"LITERAL+", b"SASL-IR", b"ID", b"ENABLE", b"UIDPLUS", b"MOVE", b"SPECIAL-USE", b"UTF8=ACCEPT",
                b"STARTTLS", b"AUTH=PLAIN"):
        assert b" " + cap in greeting
    remote = sent(ImapCore(plaintext_without_tls=False).greeting())
    assert b"LOGINDISABLED" in remote and b"AUTH=PLAIN" not in remote and b"STARTTLS" not in remote


def test_commands_pipelined_behind_login_wait_for_its_outcome():
    core = ImapCore()
    events = core.receive_data(b"a LOGIN alice pw\r\nb SELECT INBOX\r\nc NOOP\r\n")
    assert events == [CheckPassword("alice", b"pw")] and core.busy
    events = core.login_done(True)
    assert sent(events).startswith(b"a OK [CAPABILITY IMAP4rev1 ") and events[-1] == Run(cmd.Select("INBOX", False))
    events = core.command_done(Result("OK", "SELECT completed", b"READ-WRITE"))
    assert sent(events) == b"b OK [READ-WRITE] SELECT completed\r\n" and events[-1] == Run(cmd.Noop())
    assert core.state is State.SELECTED


def test_failed_login_and_wrong_state():
    core = ImapCore()
    core.receive_data(b"a LOGIN alice wrong\r\nb SELECT INBOX\r\n")
    assert sent(core.login_done(False)) == b"a NO [AUTHENTICATIONFAILED] LOGIN failed\r\nb BAD SELECT: log in first\r\n"
    core = logged_in()
    assert sent(core.receive_data(b"f FETCH 1 FLAGS\r\n")) == b"f BAD FETCH: select a mailbox first\r\n"
    assert sent(core.receive_data(b"l LOGIN a b\r\n")) == b"l BAD LOGIN is not allowed now\r\n"


def test_failed_select_leaves_no_mailbox_selected():
    core = selected()
    core.receive_data(b"t SELECT Nope\r\n")
    core.command_done(Result("NO", "no such mailbox", b"NONEXISTENT"))
    assert core.state is State.AUTHENTICATED


def test_literal_plus_needs_no_continuation():
    core = ImapCore()
    events = core.receive_data(b"a LOGIN {5+}\r\nalice {2+}\r\npw\r\n")
    assert events == [CheckPassword("alice", b"pw")]


def test_synchronizing_literal_gets_a_continuation_in_any_chunking():
    data = b"a LOGIN {5}\r\nalice \"p\\\"w\"\r\n"
    for cut in range(1, len(data)):
        core = ImapCore()
        events = core.receive_data(data[:cut]) + core.receive_data(data[cut:])
        assert sent(events) == b"+ Ready for literal data\r\n"
        assert events[-1] == CheckPassword("alice", b'p"w')


def test_literal_too_big():
    core = logged_in(max_append=1000)
    assert sent(core.receive_data(b"a APPEND INBOX {1001}\r\n")) == b"a BAD [TOOBIG] literal larger than 1000 octets\r\n"
    assert sent(core.receive_data(b"b NOOP\r\n")) == b""  # the session goes on (NOOP is the session's work)
    core = logged_in(max_append=1000)
    events = core.receive_data(b"a APPEND INBOX {1001+}\r\n")
    assert sent(events).endswith(b"* BYE cannot skip a non-synchronizing literal\r\n") and events[-1] == Close()


def test_no_continuation_for_a_command_that_cannot_run():
    core = ImapCore()
    assert sent(core.receive_data(b"a APPEND INBOX {10}\r\n")) == b"a BAD APPEND: log in first\r\n"


def test_sasl_ir_and_continuation():
    token = base64.b64encode(b"\0alice\0pw")
    assert ImapCore().receive_data(b"a AUTHENTICATE PLAIN " + token + b"\r\n") == [CheckPassword("alice", b"pw")]
    core = ImapCore()
    assert sent(core.receive_data(b"a AUTHENTICATE PLAIN\r\n")) == b"+ \r\n"
    assert core.receive_data(token + b"\r\n") == [CheckPassword("alice", b"pw")]
    core = ImapCore()
    core.receive_data(b"a AUTHENTICATE PLAIN\r\n")
    assert sent(core.receive_data(b"*\r\n")) == b"a BAD AUTHENTICATE cancelled\r\n"
    assert sent(ImapCore().receive_data(b"a AUTHENTICATE PLAIN =\r\n")).startswith(b"a BAD")
    assert sent(ImapCore().receive_data(b"a AUTHENTICATE CRAM-MD5\r\n")).startswith(b"a NO [CANNOT]")
    other = base64.b64encode(b"bob\0alice\0pw")
    assert sent(ImapCore().receive_data(b"a AUTHENTICATE PLAIN " + other + b"\r\n")).startswith(
        b"a NO [AUTHORIZATIONFAILED]")


def test_plaintext_refused_until_tls():
    core = ImapCore(plaintext_without_tls=False, tls_available=True)
    assert sent(core.receive_data(b"a LOGIN x y\r\n")).startswith(b"a NO [PRIVACYREQUIRED]")
    events = core.receive_data(b"b STARTTLS\r\nc LOGIN alice pw\r\n")
    assert sent(events) == b"b OK begin TLS negotiation now\r\n" and events[-1] == StartTls()
    core.tls_started()
    assert core.receive_data(b"") == []  # "c LOGIN", sent in the clear, is gone
    assert b"AUTH=PLAIN" in b" ".join(core.capabilities()) and b"STARTTLS" not in b" ".join(core.capabilities())
    assert core.receive_data(b"d LOGIN alice pw\r\n") == [CheckPassword("alice", b"pw")]


def test_id_and_enable():
    core = logged_in()
    out = sent(core.receive_data(b'i ID ("name" "mbsync" "version" NIL)\r\n'))
    assert out == b'* ID ("name" "twisted-netapps")\r\ni OK ID completed\r\n'
    assert sent(core.receive_data(b"i ID (\"a\")\r\n")).startswith(b"i BAD")
    out = sent(core.receive_data(b"e ENABLE CONDSTORE UTF8=ACCEPT\r\n"))
    assert out == b"* ENABLED UTF8=ACCEPT\r\ne OK ENABLE completed\r\n" and core.utf8
    assert core.receive_data("c CREATE \"Entwürfe\"\r\n".encode()) == [Run(cmd.Create("Entwürfe"))]


def test_mailbox_names_are_modified_utf7_before_enable():
    core = logged_in()
    assert core.receive_data(b"c CREATE Entw&APw-rfe\r\n") == [Run(cmd.Create("Entwürfe"))]
    core.command_done(Result("OK", "done"))
    assert sent(core.receive_data(b"c CREATE &Jjo\r\n")) == b"c BAD CREATE: invalid mailbox name\r\n"


@pytest.mark.parametrize("line, reply", [
    (b"a \xe9\xe9", b"a BAD unknown command\r\n"),  # issue 7: a traceback and "Server error" before
    (b"\xe9 NOOP", b"* BAD invalid tag or command\r\n"),
    (b"a NO\xe9P", b"a BAD unknown command\r\n"),
    (b"a", b"a BAD missing command\r\n"),
    (b"", b"* BAD invalid tag or command\r\n"),
    (b"a LOGIN \"x\x00\" y", b"a BAD LOGIN: NUL in a quoted string\r\n"),
    (b"a LOGIN x", b"a BAD LOGIN: expected a space\r\n"),
])
def test_malformed_commands_get_bad(line, reply):
    core = ImapCore()
    assert sent(core.receive_data(line + b"\r\n")) == reply


def test_idle_ends_with_done_and_then_pipelined_commands_run():
    core = selected()
    events = core.receive_data(b"i IDLE\r\n")
    assert events == [Send(b"+ idling\r\n"), Run(cmd.Idle())] and core.idling
    assert core.receive_data(b"DONE\r\nn NOOP\r\n") == [IdleDone()]
    events = core.command_done(Result("OK", "IDLE terminated"))
    assert sent(events) == b"i OK IDLE terminated\r\n" and events[-1] == Run(cmd.Noop())
    core.command_done(Result("OK", "NOOP completed"))
    core.receive_data(b"j IDLE\r\n")
    assert core.receive_data(b"nonsense\r\n") == [IdleDone()]
    assert sent(core.command_done(Result("OK", "IDLE terminated"))) == b"j BAD expected DONE\r\n"


def test_half_close_answers_everything_then_closes():
    core = ImapCore()
    core.receive_data(b"a LOGIN alice pw\r\nb CAPABILITY\r\n")
    assert core.receive_eof() == []  # waiting for the login
    events = core.login_done(True)
    assert b"b OK CAPABILITY completed" in sent(events) and events[-1] == Close()


def test_line_too_long_is_bye():
    core = ImapCore(max_line=1024)
    events = core.receive_data(b"a NOOP " + b"x" * 2000)
    assert events == [Send(b"* BYE line too long\r\n"), Close()]
    assert core.receive_data(b"\r\nb NOOP\r\n") == []


def test_logout():
    core = logged_in()
    events = core.receive_data(b"z LOGOUT\r\ny NOOP\r\n")
    assert sent(events) == b"* BYE logging out\r\nz OK LOGOUT completed\r\n" and events[-1] == Close()
    assert core.state is State.LOGOUT


# ------------------------------------------------------------ arguments


def test_fetch_items_echo_header_fields_as_sent():
    (item,) = parse_fetch_items(Reader(b"BODY.PEEK[HEADER.FIELDS (X-TUID)]"))
    assert item.label == b"BODY[HEADER.FIELDS (X-TUID)]" and item.peek and item.fields == (b"X-TUID",)
    (item,) = parse_fetch_items(Reader(b"body[1.2.header.fields.not (Received x-Mixed \"A B\")]<5.10>"))
    assert item.label == b'BODY[1.2.HEADER.FIELDS.NOT (Received x-Mixed "A B")]' and item.partial == (5, 10)
    assert [i.kind for i in parse_fetch_items(Reader(b"FAST"))] == ["FLAGS", "INTERNALDATE", "RFC822.SIZE"]
    for bad in (b"BODY[1.]", b"BODY[MIME]", b"BODY[HEADER.FIELDS ()]", b"BODY[1]<x>", b"BOGUS", b"(FLAGS", b"()"):
        with pytest.raises(ParseError):
            parse_fetch_items(Reader(bad))


def test_store_and_append_arguments():
    store = cmd.PARSERS[b"UID"](Reader(b" STORE 1:*,7 -FLAGS.SILENT ($Junk \\Seen)"), False)
    assert store.mode == -1 and store.silent and store.uid and store.flags == (b"$Junk", b"\\Seen")
    assert store.messages.resolve(9) == [(1, 9), (7, 7)]
    core = logged_in()
    (run,) = core.receive_data(b'a APPEND INBOX (\\Seen $Junk) "14-Nov-2023 22:13:20 +0100" {2+}\r\nhi\r\n')
    assert run == Run(cmd.Append("INBOX", (b"\\Seen", b"$Junk"), 1699996400.0, b"hi"))
    core.command_done(Result("OK", "done"))
    core.receive_data(b"u ENABLE UTF8=ACCEPT\r\n")
    (run,) = core.receive_data(b"a APPEND Sent UTF8 (~{3+}\r\n\xc3\xa9!)\r\n")
    assert run == Run(cmd.Append("Sent", (), None, b"\xc3\xa9!"))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30))
def test_modified_utf7_round_trips_and_agrees_with_twisted(name):
    encoded = mutf7.encode(name)
    assert mutf7.decode(encoded) == name
    if not any(ord(c) < 0x20 for c in name):  # Twisted's encoder turns control characters into "&-"
        assert encoded == name.encode("imap4-utf-7")


# ------------------------------------------------------------ any bytes at all

_PIECES = st.sampled_from([
    b"a ", b"b1 ", b"LOGIN ", b"alice ", b"pw", b"SELECT INBOX", b"FETCH 1:* (FLAGS)", b"UID ", b"STORE 1 +FLAGS (x)",
    b"{3}", b"{2+}", b"~{1}", b"{999999999999}", b"(", b")", b"[", b"]", b'"', b"\\", b" ", b"\r\n", b"\n", b"*",
    b"\xe9", b"\xff\xfe", b"\xc3\xa9", b"\x00", b"\x7f", b"%", b"IDLE", b"DONE", b"AUTHENTICATE PLAIN", b"=",
    b"ENABLE UTF8=ACCEPT", b"ID NIL", b"STARTTLS", b"LOGOUT", b"APPEND INBOX ",
])


@settings(max_examples=500, deadline=None)
@given(st.lists(_PIECES, max_size=40), st.lists(st.integers(1, 20), min_size=1, max_size=10), st.booleans())
def test_any_input_gives_events_never_an_exception(pieces, chunks, approve):
    """8-bit bytes, NUL, broken literals and parentheses in any order and chunking: only events come out."""
    core = ImapCore(max_line=200, max_append=100, tls_available=True)
    data = b"".join(pieces)
    events = list(core.greeting())
    i = 0
    while i < len(data):
        for size in chunks:
            events += core.receive_data(data[i: i + size])
            i += size
            # play the adapter: finish whatever work the core asked for
            for _ in range(20):
                pending = [e for e in events if isinstance(e, (CheckPassword, Run))]
                if not core.busy or not pending:
                    break
                last = pending[-1]
                events.remove(last)
                if isinstance(last, CheckPassword):
                    events += core.login_done(approve)
                else:
                    if isinstance(last.request, cmd.Idle) and core.idling:
                        events += core.receive_eof()
                    events += core.command_done(Result("OK" if approve else "NO", "done"))
    events += core.receive_eof()
    for event in events:
        assert isinstance(event, (Send, Close, CheckPassword, Run, IdleDone, StartTls))
        if isinstance(event, Send):
            assert event.data.endswith(b"\r\n")
