"""The IMAP server over a fake transport: robustness of command handling, EXPUNGE rules, IDLE."""

import re

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from twisted.internet import task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from imap_harness import connect, make, say


@pytest.fixture
def session(tmp_path):
    store, clock, factory = make(tmp_path)
    proto, transport = connect(factory)
    assert b"a OK " in say(proto, transport, b"a LOGIN alice pw")
    assert b"a OK [READ-WRITE]" in say(proto, transport, b"a SELECT INBOX")
    return store, clock, proto, transport


def test_failed_login_answers_after_the_delay(tmp_path):
    store, clock, factory = make(tmp_path)
    proto, transport = connect(factory)
    assert say(proto, transport, b"a LOGIN alice wrong") == b""
    clock.advance(1.1)
    assert transport.value().startswith(b"a NO")


def test_login_deadline_counts_from_the_greeting_and_noops_do_not_extend_it(tmp_path):
    # The case: NOOP every 4 s kept an unauthenticated session for 24 s with a 6 s limit.
    store, clock, factory = make(tmp_path)
    factory.login_timeout, factory.idle_timeout = 6.0, 30.0
    proto, transport = connect(factory)
    clock.advance(4)
    assert say(proto, transport, b"n NOOP").startswith(b"n OK")
    clock.advance(2.1)  # 6.1 s after the greeting, 2.1 s after the last NOOP
    assert transport.value().endswith(b"* BYE Autologout; connection idle too long\r\n")
    assert transport.disconnecting


def test_after_login_the_idle_timeout_counts_from_the_last_command(tmp_path):
    store, clock, factory = make(tmp_path)
    factory.login_timeout, factory.idle_timeout = 6.0, 10.0
    proto, transport = connect(factory)
    assert b"a OK " in say(proto, transport, b"a LOGIN alice pw")
    for _ in range(3):
        clock.advance(8)
        assert say(proto, transport, b"n NOOP").startswith(b"n OK")  # 24 s in, still there
    assert not transport.disconnecting
    clock.advance(10.1)
    assert transport.disconnecting


def test_expunge_held_during_fetch_sent_at_noop(session):
    store, clock, proto, transport = session
    folder = proto.mbox.state.folder
    victim = proto.mbox.state.entries[1].file
    folder.remove(victim)  # another client
    proto.mbox.state.refresh()
    out = say(proto, transport, b"f FETCH 1:* (FLAGS)")
    assert b"EXPUNGE" not in out and out.rstrip().endswith(b"f OK FETCH completed")
    assert b"* 1 FETCH" not in out  # the vanished message is left out, never sent as garbage
    out = say(proto, transport, b"n NOOP")
    assert out.startswith(b"* 1 EXPUNGE\r\n")


def test_idle_pushes_and_needs_done(session):
    store, clock, proto, transport = session
    assert say(proto, transport, b"i IDLE") == b"+ idling\r\n"
    transport.clear()
    store.deliver("alice", b"Subject: new\r\n\r\nx\r\n")
    clock.advance(1.0)  # the folder poll
    assert transport.value() == b"* 4 EXISTS\r\n* 4 RECENT\r\n"
    assert say(proto, transport, b"DONE").startswith(b"i OK")
    assert say(proto, transport, b"j IDLE") == b"+ idling\r\n"
    assert say(proto, transport, b"nonsense").startswith(b"j BAD")


def test_copy_move_uid_responses(session):
    store, clock, proto, transport = session
    say(proto, transport, b"c CREATE Archive")
    assert re.fullmatch(rb"c OK \[COPYUID \d+ 1 1\] COPY completed\r\n", say(proto, transport, b"c COPY 1 Archive"))
    out = say(proto, transport, b"m UID MOVE 2 Archive")
    assert re.fullmatch(rb"\* OK \[COPYUID \d+ 2 2\] moved\r\n\* 2 EXPUNGE\r\nm OK MOVE completed\r\n", out), out
    assert b"TRYCREATE" in say(proto, transport, b"c COPY 1 Nowhere")
    assert b"1 FETCH (UID 1)" in say(proto, transport, b"u UID FETCH 1:* (UID)")


COMMANDS = st.sampled_from([
    b"NOOP", b"CAPABILITY", b"FETCH 1 (FLAGS)", b"FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])", b"FETCH * BODY[]<2.3>",
    b"FETCH 9 FLAGS", b"FETCH 0 FLAGS", b"FETCH x", b"FETCH 1 (BODY[1.2.3])", b"FETCH 1 BODYSTRUCTURE", b"FETCH 1 ENVELOPE",
    b"STORE 1 +FLAGS (\\Seen)", b"STORE 1:* -FLAGS.SILENT (\\Deleted)", b"STORE 1 FLAGS (", b"STORE 2 +FLAGS \\Deleted",
    b"SEARCH ALL", b"SEARCH OR (FROM x) SUBJECT m1", b"SEARCH BOGUS", b"SEARCH (", b"UID SEARCH UID 1:*",
    b"UID FETCH 1:* (UID FLAGS)", b"UID STORE 2 +FLAGS (\\Flagged)", b"UID EXPUNGE 1", b"UID BOGUS",
    b"EXPUNGE", b"CHECK", b"LIST \"\" *", b"LIST \"\" \"\"", b"LSUB \"\" *", b"STATUS INBOX (MESSAGES UIDNEXT)",
    b"STATUS INBOX (BOGUS)", b"STATUS Nope (MESSAGES)", b"CREATE A.B", b"CREATE ..", b"DELETE A.B", b"RENAME A X",
    b"SUBSCRIBE INBOX", b"UNSUBSCRIBE Nope", b"EXAMINE INBOX", b"SELECT INBOX", b"SELECT Nope", b"COPY 1 A",
    b"MOVE 1:2 A", b"MOVE 5 A", b"NAMESPACE", b"UNSELECT", b"CLOSE", b"", b"FOO", b"FETCH", b"\xff\xfe",
    b"LOGIN a b", b"AUTHENTICATE XYZ", b"STARTTLS",
    # 8-bit and NUL bytes anywhere (issue 7: Twisted logged a traceback and answered "* BAD Server error")
    b"\xe9\xe9", b"NO\xe9P", b'SELECT "\xe9"', b"FETCH 1 (BODY[\xe9])", b'SEARCH SUBJECT "caf\xc3\xa9"',
    b"STORE 1 +FLAGS (\xe9)", b'CREATE "\xff"', b'LIST "" "\xe9*"', b"\x00", b'LOGIN "\x00" x', b"UID \xe9 1",
    b"STORE 1 +FLAGS ($Junk $label1)", b"STORE 1 FLAGS (\\Bogus)", b"UID EXPUNGE 1:*", b"ID NIL",
    b"ENABLE UTF8=ACCEPT", b"APPEND INBOX (\\Seen $x) {1+}\r\nx", b"LIST (SPECIAL-USE) \"\" *",
])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(COMMANDS, min_size=1, max_size=12))
def test_every_command_gets_its_tagged_reply_and_the_session_lives(tmp_path_factory, commands):
    store, clock, factory = make(tmp_path_factory.mktemp("fuzz"))
    proto, transport = connect(factory)
    say(proto, transport, b"a LOGIN alice pw")
    say(proto, transport, b"a SELECT INBOX")
    for i, command in enumerate(commands):
        tag = b"t%d" % i
        out = say(proto, transport, tag + b" " + command if command else tag)
        clock.advance(2)  # delayed replies (failed logins) and polls
        out += transport.value()
        assert not transport.disconnecting, (command, out)
        assert re.search(rb"(^|\n)" + tag + rb" (OK|NO|BAD)", out) or re.search(rb"(^|\n)\* BAD", out), (command, out)
    say(proto, transport, b"z LOGOUT")
    assert transport.disconnecting


def test_commands_pipelined_behind_login_wait_for_it(tmp_path):
    store, clock, factory = make(tmp_path)
    proto, transport = connect(factory)
    transport.clear()
    proto.dataReceived(b"a LOGIN alice pw\r\nb SELECT INBOX\r\nc NOOP\r\n")
    clock.advance(0)
    out = transport.value()
    assert out.index(b"a OK") < out.index(b"b OK [READ-WRITE]") < out.index(b"c OK"), out
    proto2, transport2 = connect(factory)
    transport2.clear()
    proto2.dataReceived(b"a LOGIN alice wrong\r\nb SELECT INBOX\r\n")
    clock.advance(0)
    assert transport2.value() == b""  # both wait out the failure delay, in order
    clock.advance(1.0)
    clock.advance(0)
    out = transport2.value()
    assert out.startswith(b"a NO") and b"\r\nb BAD" in out


def test_commands_pipelined_behind_append_see_its_result(tmp_path):
    store, clock, factory = make(tmp_path)
    factory.registry.run_blocking = lambda f, *a: task.deferLater(clock, 0.5, f, *a)  # a slow disk
    proto, transport = connect(factory)
    say(proto, transport, b"a LOGIN alice pw")
    say(proto, transport, b"a CREATE Sent")
    clock.advance(0.5)  # the CREATE's disk work
    transport.clear()
    proto.dataReceived(b"b APPEND Sent {3}\r\n")
    assert transport.value().startswith(b"+")
    proto.dataReceived(b"x\r\n\r\nc STATUS Sent (MESSAGES)\r\n")
    clock.advance(0.4)
    assert b"b OK" not in transport.value() and b"c OK" not in transport.value()
    while b"c OK" not in transport.value() and clock.seconds() < 60:
        clock.advance(0.5)
    out = transport.value()
    assert out.index(b"b OK [APPENDUID ") < out.index(b"MESSAGES 1") < out.index(b"c OK"), out


def test_store_on_examined_mailbox_is_no(session):
    store, clock, proto, transport = session
    say(proto, transport, b"e EXAMINE INBOX")
    assert say(proto, transport, b"s STORE 1 +FLAGS (\\Seen)").startswith(b"s NO [READ-ONLY]")
    assert say(proto, transport, b"s STORE 7 +FLAGS (\\Seen)").startswith(b"s NO [READ-ONLY]")
    say(proto, transport, b"e SELECT INBOX")
    assert say(proto, transport, b"s STORE 7 +FLAGS (\\Seen)").startswith(b"s BAD")


def test_no_plaintext_login_for_remote_clients_without_tls(tmp_path):
    store, clock, factory = make(tmp_path)
    proto = factory.buildProtocol(None)
    transport = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.7", 4000))
    proto.makeConnection(transport)
    assert b"LOGINDISABLED" in transport.value() and b"AUTH=PLAIN" not in transport.value()
    assert say(proto, transport, b"a LOGIN alice pw").startswith(b"a NO [PRIVACYREQUIRED]")
    assert say(proto, transport, b"b AUTHENTICATE PLAIN").startswith(b"b NO [PRIVACYREQUIRED]")


def test_a_thunderbird_like_session(tmp_path):
    """The command sequence a desktop MUA sends on startup and when reading/deleting mail."""
    store, clock, factory = make(tmp_path)
    proto, transport = connect(factory)
    assert b"IDLE" in say(proto, transport, b"1 capability")
    assert say(proto, transport, b"1 authenticate PLAIN") == b"+ \r\n"  # RFC 3501: "+" SP
    assert say(proto, transport, b"AGFsaWNlAHB3").startswith(b"1 OK")  # base64("\0alice\0pw")
    assert b'* NAMESPACE (("" "."))' in say(proto, transport, b"2 namespace")
    say(proto, transport, b'3 create "Trash"')
    assert b'"Trash"' not in say(proto, transport, b'4 lsub "" "*"')  # not subscribed yet
    assert say(proto, transport, b'5 subscribe "Trash"').startswith(b"5 OK")
    assert b'"Trash"' in say(proto, transport, b'4 lsub "" "*"')
    listing = say(proto, transport, b'6 list "" "*"')
    assert b'(\\HasNoChildren) "." "INBOX"' in listing and b'"Trash"' in listing
    out = say(proto, transport, b'7 select "INBOX"')
    assert b"* 3 EXISTS" in out and b"[UIDVALIDITY " in out and b"[UIDNEXT 4]" in out and b"[PERMANENTFLAGS (" in out
    out = say(proto, transport, b"8 UID fetch 1:* (FLAGS)")
    assert out.count(b"FETCH (FLAGS") == 3 and b"8 OK" in out
    out = say(proto, transport, b"9 UID fetch 1:3 (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS "
                                b"(From To Cc Bcc Subject Date Message-ID Priority X-Priority References "
                                b"Newsgroups In-Reply-To Content-Type Reply-To)])")
    assert out.count(b"Subject: m") == 3
    out = say(proto, transport, b"10 UID fetch 2 (UID RFC822.SIZE BODY.PEEK[])")
    assert b"body 1" in out and b"\\Seen" not in out
    assert say(proto, transport, b"11 UID store 2 +FLAGS (\\Seen)").endswith(b"11 OK STORE completed\r\n")
    assert re.fullmatch(rb"12 OK \[COPYUID \d+ 2 1\] COPY completed\r\n", say(proto, transport, b'12 UID copy 2 "Trash"'))
    say(proto, transport, b"13 UID store 2 +FLAGS.SILENT (\\Deleted \\Seen)")
    assert say(proto, transport, b"14 expunge") == b"* 2 EXPUNGE\r\n14 OK EXPUNGE completed\r\n"
    assert b"MESSAGES 1" in say(proto, transport, b'15 STATUS "Trash" (MESSAGES UNSEEN)')
    assert say(proto, transport, b"16 IDLE") == b"+ idling\r\n"
    assert say(proto, transport, b"DONE").startswith(b"16 OK")
    assert b"* BYE" in say(proto, transport, b"17 logout")
