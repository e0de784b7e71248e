"""The sans-I/O POP3 state machine, parser, framing and message encoding."""

import base64

import pytest
from hypothesis import given, settings, strategies as st

from twisted_netapps.mail.pop3 import core, multiline
from twisted_netapps.mail.store.mailbox import crlf_size_of


def session(**policy):
    return core.Pop3Session(core.Pop3Policy(**policy))


def sent(events):
    return b"".join(e.data for e in events if isinstance(e, core.Send))


def feed(s, line: bytes) -> list:
    """One command line in; a RETR/TOP reply is taken as sent by the adapter at once."""
    events = s.receive_data(line + b"\r\n")
    if events and isinstance(events[-1], core.SendMessage):
        events = events + s.message_sent()
    return events


def logged_in(sizes=(10, 20, 30), **policy):
    s = session(**policy)
    feed(s, b"USER alice")
    events = feed(s, b"PASS pw")
    assert events == [core.CheckPassword("alice", "pw")]
    messages = [core.Pop3Message(i, f"uid{i}", size, ref=f"file{i}") for i, size in enumerate(sizes, 1)]
    reply = sent(s.login_accepted("alice", messages))
    assert reply.startswith(b"+OK")
    return s


def test_greeting_has_no_apop_timestamp_unless_configured():
    assert sent(session().greeting()) == b"+OK POP3 server ready\r\n"
    assert b"<1.2@host>" in sent(session(apop_timestamp="<1.2@host>").greeting())


def test_apop_refused_when_not_offered():
    s = session()
    assert sent(feed(s, b"APOP alice " + b"0" * 32)).startswith(b"-ERR")


def test_apop_digest_event():
    s = session(apop_timestamp="<1.2@host>")
    digest = core.apop_digest("<1.2@host>", "tanstaaf")
    assert feed(s, f"APOP alice {digest}".encode()) == [core.CheckApop("alice", digest, "<1.2@host>")]
    # RFC 1939's example digest
    assert core.apop_digest("<1896.697170952@dbc.mtview.ca.us>", "tanstaaf") == "c4c9334bac560ecc979e58001b3e22fb"


def test_authorization_phase_refuses_mail_commands():
    s = session()
    for command in (b"STAT", b"LIST", b"RETR 1", b"DELE 1", b"UIDL", b"TOP 1 1", b"RSET"):
        assert sent(feed(s, command)).startswith(b"-ERR")
    assert s.state is core.State.AUTHORIZATION


def test_pass_without_user():
    assert sent(feed(session(), b"PASS x")).startswith(b"-ERR")


def test_pass_keeps_spaces_in_password():
    s = session()
    feed(s, b"USER bob")
    assert feed(s, b"PASS two words ") == [core.CheckPassword("bob", "two words ")]


def test_user_rejected_in_transaction():
    s = logged_in()
    assert sent(feed(s, b"USER bob")).startswith(b"-ERR")
    assert sent(feed(s, b"PASS x")).startswith(b"-ERR")
    assert s.state is core.State.TRANSACTION


def test_stat_list_uidl():
    s = logged_in()
    assert sent(feed(s, b"STAT")) == b"+OK 3 60\r\n"
    assert sent(feed(s, b"LIST")) == b"+OK 3 messages (60 octets)\r\n1 10\r\n2 20\r\n3 30\r\n.\r\n"
    assert sent(feed(s, b"LIST 2")) == b"+OK 2 20\r\n"
    assert sent(feed(s, b"UIDL 2")) == b"+OK 2 uid2\r\n"  # with the number (stock Twisted omits it)
    assert sent(feed(s, b"UIDL")) == b"+OK 3 messages (60 octets)\r\n1 uid1\r\n2 uid2\r\n3 uid3\r\n.\r\n"
    assert sent(feed(s, b"LIST 4")).startswith(b"-ERR")
    assert sent(feed(s, b"LIST 0")).startswith(b"-ERR")
    assert sent(feed(s, b"LIST x")).startswith(b"-ERR")


def test_dele_only_marks_and_quit_commits():
    s = logged_in()
    assert sent(feed(s, b"DELE 2")).startswith(b"+OK")
    assert sent(feed(s, b"DELE 2")) == b"-ERR message 2 already deleted\r\n"
    assert sent(feed(s, b"RETR 2")).startswith(b"-ERR")
    assert sent(feed(s, b"STAT")) == b"+OK 2 40\r\n"
    assert sent(feed(s, b"LIST")) == b"+OK 2 messages (40 octets)\r\n1 10\r\n3 30\r\n.\r\n"
    events = feed(s, b"QUIT")
    assert len(events) == 1 and isinstance(events[0], core.Commit)
    assert [m.number for m in events[0].deleted] == [2]
    assert s.state is core.State.UPDATE
    assert feed(s, b"NOOP") == []
    final = s.update_done(0)
    assert sent(final) == b"+OK Bye\r\n" and isinstance(final[-1], core.Close)


def test_rset_unmarks():
    s = logged_in()
    feed(s, b"DELE 1")
    feed(s, b"DELE 3")
    assert sent(feed(s, b"RSET")).startswith(b"+OK")
    assert sent(feed(s, b"STAT")) == b"+OK 3 60\r\n"
    commit = feed(s, b"QUIT")[0]
    assert commit.deleted == []


def test_quit_in_authorization_commits_nothing():
    s = session()
    events = feed(s, b"QUIT")
    assert sent(events) == b"+OK Bye\r\n" and isinstance(events[-1], core.Close)


def test_retr_and_top_events():
    s = logged_in()
    (event,) = feed(s, b"RETR 1")
    assert isinstance(event, core.SendMessage) and event.top_lines is None and event.ok == b"+OK 10 octets\r\n"
    (event,) = feed(s, b"TOP 2 5")
    assert event.top_lines == 5 and event.message.number == 2
    assert sent(feed(s, b"TOP 2")).startswith(b"-ERR")
    commit = feed(s, b"QUIT")[0]
    assert [m.number for m in commit.retrieved] == [1]


def test_errors_do_not_close_until_too_many():
    s = logged_in(max_bad_commands=3)
    assert sent(feed(s, b"BOGUS")) == b"-ERR unknown command\r\n"
    assert sent(feed(s, b"RETR")).startswith(b"-ERR")
    events = feed(s, b"XYZZ")
    assert isinstance(events[-1], core.Close)


def test_failed_logins_then_close():
    s = session(max_login_failures=2)
    feed(s, b"USER a")
    feed(s, b"PASS b")
    assert s.waiting
    assert sent(feed(s, b"STAT")) == b""  # nothing processed while the login is pending: answered after it
    assert sent(s.login_rejected()) == (
        b"-ERR [AUTH] invalid user name or password\r\n-ERR STAT not allowed in the AUTHORIZATION state\r\n"
    )
    feed(s, b"USER a")
    feed(s, b"PASS c")
    events = s.login_rejected()
    assert isinstance(events[-1], core.Close)


def test_in_use():
    s = session()
    feed(s, b"USER a")
    feed(s, b"PASS b")
    assert sent(s.login_rejected(in_use=True)).startswith(b"-ERR [IN-USE]")
    assert s.state is core.State.AUTHORIZATION


def test_capa_by_state():
    s = session(tls_available=True)
    capa = sent(feed(s, b"CAPA"))
    for cap in (b"TOP", b"UIDL", b"USER", b"RESP-CODES", b"AUTH-RESP-CODE", b"PIPELINING", b"STLS", b"SASL PLAIN"):
        assert b"\r\n" + cap + b"\r\n" in capa
    assert b"PIPELINE\r\n" not in capa
    s = logged_in(tls_available=True)
    capa = sent(feed(s, b"CAPA"))
    assert b"USER" not in capa and b"STLS" not in capa and b"SASL" not in capa


def test_plaintext_refused_without_tls():
    s = session(plaintext_auth="tls", tls_available=True)
    assert sent(feed(s, b"USER a")).startswith(b"-ERR [AUTH]")
    assert b"USER" not in sent(feed(s, b"CAPA"))
    events = feed(s, b"STLS")
    assert sent(events) == b"+OK Begin TLS negotiation\r\n" and isinstance(events[-1], core.StartTls)
    assert s.tls_started() == []
    assert sent(feed(s, b"USER a")) == b"+OK send PASS\r\n"
    assert sent(feed(s, b"STLS")).startswith(b"-ERR")


def test_auth_plain():
    s = session()
    token = base64.b64encode(b"\x00alice\x00pw one").decode()
    assert feed(s, f"AUTH PLAIN {token}".encode()) == [core.CheckPassword("alice", "pw one")]
    s = session()
    assert sent(feed(s, b"AUTH PLAIN")) == b"+ \r\n"
    assert feed(s, token.encode()) == [core.CheckPassword("alice", "pw one")]
    s = session()
    feed(s, b"AUTH PLAIN")
    assert sent(feed(s, b"*")).startswith(b"-ERR")
    assert sent(feed(session(), b"AUTH PLAIN !!!")).startswith(b"-ERR")
    assert b"PLAIN" in sent(feed(session(), b"AUTH"))


def test_session_frames_lines_and_discards_an_overlong_one():
    s = core.Pop3Session(core.Pop3Policy(), max_line=12)
    assert sent(s.receive_data(b"CAPA\r\nNOOP\nCA")).startswith(b"+OK Capability")
    assert s.partial_line and s.lines == 2
    assert sent(s.receive_data(b"PA" + b"X" * 20)) == b"-ERR line too long\r\n"
    # The rest of the long line is dropped, even a RETR-looking tail, up to its end.
    assert s.receive_data(b"RETR 1\r\n") == []
    assert sent(s.receive_data(b"QUIT\r\n")) == b"+OK Bye\r\n"


@pytest.mark.parametrize("data", [
    b"a\r\n.b\r\n..\r\n.\r\nend\r\n",
    b".starts with dot\r\n",
    b"bare\nlf\n.dot\n",
    b"no final newline",
    b"ends with cr\r",
    b"",
])
def test_encoder_stuffs_and_counts_like_list(data):
    for chunk_size in (1, 2, 3, 7, 4096):
        enc = multiline.MessageEncoder()
        out = b"".join(enc.feed(data[i:i + chunk_size]) for i in range(0, len(data), chunk_size)) + enc.finish()
        assert out.endswith(b".\r\n")
        body = out[:-3]
        unstuffed = b"\r\n".join(line[1:] if line.startswith(b".") else line for line in body.split(b"\r\n"))
        # the octet count LIST reports is the unstuffed size (without the terminator)
        if data:
            assert len(unstuffed) == crlf_size_of(data), (data, chunk_size, out)
        assert b"\n" not in body.replace(b"\r\n", b"")


def test_top_of_message():
    lines = [b"Subject: x\r\n", b"From: y\r\n", b"\r\n", b"one\r\n", b"two\r\n", b"three\r\n"]
    assert multiline.top_of_message(lines, 0) == b"Subject: x\r\nFrom: y\r\n\r\n"
    assert multiline.top_of_message(lines, 2) == b"Subject: x\r\nFrom: y\r\n\r\none\r\ntwo\r\n"
    assert multiline.top_of_message(lines, 99) == b"".join(lines)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_line_gets_a_reply_or_an_event(line):
    s = logged_in(max_bad_commands=1000)
    line = line.replace(b"\n", b"")
    events = feed(s, line)
    assert events, line
    for event in events:
        if isinstance(event, core.Send):
            assert event.data.startswith((b"+OK", b"-ERR")) and event.data.endswith(b"\r\n")


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([b"LIST", b"UIDL", b"DELE", b"RETR", b"TOP", b"AUTH", b"USER", b"PASS", b"APOP", b"NOOP"]),
       st.binary(max_size=60).map(lambda b: b.replace(b"\n", b"")))
def test_replies_stay_7bit_whatever_bytes_come_in(verb, argument):
    """Issue 7's class of input: 8-bit (UTF-8 or not) and control bytes are refused, never echoed."""
    for s in (session(), logged_in(max_bad_commands=1000)):
        out = sent(feed(s, (verb + b" " + argument).replace(b"\r", b"")))
        assert out and all(0x20 <= c <= 0x7E for c in out.replace(b"\r\n", b"")), out


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([
    b"STAT", b"LIST", b"LIST 1", b"UIDL 2", b"DELE 1", b"DELE 3", b"RSET", b"NOOP", b"RETR 2", b"TOP 1 0",
    b"USER x", b"CAPA", b"DELE 9", b"list 2",
]), max_size=30))
def test_command_sequences_keep_stat_consistent(commands):
    s = logged_in(max_bad_commands=1000)
    for command in commands:
        feed(s, command)
        assert s.state is core.State.TRANSACTION
        live = [m for m in s.messages if not m.deleted]
        assert sent(feed(s, b"STAT")) == f"+OK {len(live)} {sum(m.size for m in live)}\r\n".encode()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=60), max_size=8), st.integers(min_value=6, max_value=50))
def test_any_bytes_in_any_chunks_get_well_formed_replies(chunks, limit):
    s = core.Pop3Session(core.Pop3Policy(max_bad_commands=1000), max_line=limit)
    for chunk in chunks:
        for event in s.receive_data(chunk):
            if isinstance(event, core.Send):
                assert event.data.startswith((b"+OK", b"-ERR", b"+ ")) and event.data.endswith(b"\r\n")
            elif isinstance(event, core.CheckPassword):
                s.login_rejected()


@pytest.mark.parametrize("data", [
    b"Subject: x\r\n\r\nbody\r\n.dot\r\n",
    b"Subject: x\n\nbody\n.dot\n",  # LF file whose name claims S=<its length> (Courier style)
    b"Subject: x\r\n\r\nmixed\nline\r\n",
    b"no newline at all",
])
def test_encode_message_fast_path_agrees_with_the_exact_encoder(data):
    encoder = multiline.MessageEncoder()
    exact = encoder.feed(data) + encoder.finish()
    assert multiline.encode_message(data) == exact
    if data.find(b"\n") <= 0 or data[data.find(b"\n") - 1] == 0x0D:
        if b"mixed" not in data:
            assert multiline.encode_message(data, len(data)) == exact
    else:
        assert multiline.encode_message(data, len(data)) == exact  # LF-only: detected, exact path


def test_uidl_is_the_unique_name_or_a_stable_digest():
    short = "1795257058.M486035P23683Q1Rdeadea1ed104a3c6.vm,S=4111"
    assert core.uidl_for(short) == short
    long = "1795257058.M486035P23683Q1Rdeadea1ed104a3c6.mail-server-01.example.com,S=4111"
    digest = core.uidl_for(long)
    assert digest == core.uidl_for(long) and len(digest) <= 70 and digest != long
    assert core.uidl_for("with space") != "with space"


def test_quick_retr_matches_the_general_path_or_declines():
    s = logged_in()
    (general,) = feed(s, b"RETR  2")  # two spaces: not the quick path's shape
    (quick,) = s.receive_data(b"RETR 2\r\n")
    assert quick == general and s.state is core.State.SENDING
    s.message_sent()
    feed(s, b"DELE 3")
    for arg in (b"3", b"0", b"4", b"x", b"", b"1 2", b"0001234567890"):
        # errors and oddities take the general path: the same answer as a slow RETR
        assert sent(s.receive_data(b"RETR " + arg + b"\r\n")) == sent(feed(s, b"RETR  " + arg))
    assert sent(session().receive_data(b"RETR 1\r\n")).startswith(b"-ERR RETR not allowed")


def test_replies_wait_while_a_message_is_sent():
    s = logged_in()
    (event,) = s.receive_data(b"RETR 1\r\nSTAT\r\n")
    assert isinstance(event, core.SendMessage) and s.waiting
    assert s.receive_data(b"NOOP\r\n") == []  # still sending: buffered, answered in order
    assert sent(s.message_sent()) == b"+OK 3 60\r\n+OK nothing happens\r\n"
    (event,) = s.receive_data(b"RETR 9999\r\n") or [None]
    assert event is not None and sent([event]).startswith(b"-ERR no such message")
    s.receive_data(b"RETR 2\r\n")
    assert sent(s.message_sent(missing=True)) == b"-ERR [SYS/PERM] message was removed by another client\r\n"


def test_table_and_transitions_cover_the_states():
    assert set(core.TRANSITIONS) == set(core.State)
    assert {state for state, _ in core.COMMANDS} == {core.State.AUTHORIZATION, core.State.TRANSACTION}
    with pytest.raises(core.LocalProtocolError):
        session().message_sent()  # nothing was being sent


def test_half_close_answers_then_closes_without_update():
    s = logged_in()
    s.receive_data(b"DELE 1\r\nSTAT\r\n")
    events = s.receive_eof()
    assert events == [core.Close()] and s.state is core.State.CLOSED
    s = logged_in()
    s.receive_data(b"DELE 1\r\nQUIT\r\n")
    assert s.receive_eof() == []  # the UPDATE phase runs first
    assert isinstance(s.update_done(0)[-1], core.Close)


def test_stls_discards_pipelined_plaintext():
    s = session(tls_available=True, plaintext_auth="tls")
    events = s.receive_data(b"STLS\r\nUSER injected\r\n")
    assert sent(events) == b"+OK Begin TLS negotiation\r\n" and isinstance(events[-1], core.StartTls)
    assert s.tls_started() == []  # USER injected was dropped, not answered
    assert sent(s.receive_data(b"CAPA\r\n")).count(b"USER") == 1


def _reference_body(data: bytes) -> bytes:
    """RFC 1939 multi-line body of *data*, line by line: every LF (with or without
    its CR) and a final lone CR end a line, sent as CRLF; a line starting with
    "." gets another "."; then the terminating ".". The slow, obvious version."""
    ends_with_cr = data.endswith(b"\r")
    pieces = (data[:-1] if ends_with_cr else data).split(b"\n")
    lines = [p[:-1] if p.endswith(b"\r") else p for p in pieces[:-1]]
    if pieces[-1] or ends_with_cr:
        lines.append(pieces[-1])
    return b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines) + b".\r\n"


_MAIL_BYTES = st.lists(st.sampled_from([b".", b"\r", b"\n", b"\r\n", b"\n.", b"..", b"a", b"n", b" x."]), max_size=60).map(b"".join)


@settings(max_examples=500, deadline=None)
@given(st.one_of(_MAIL_BYTES, st.binary(max_size=200)), st.integers(min_value=1, max_value=9))
def test_dot_stuffing_equals_the_line_by_line_reference(data, chunk_size):
    expected = _reference_body(data)
    assert multiline.encode_message(data) == expected
    encoder = multiline.MessageEncoder()
    chunked = b"".join(encoder.feed(data[i:i + chunk_size]) for i in range(0, len(data), chunk_size))
    assert chunked + encoder.finish() == expected
    # A CRLF-clean file whose name carries its size takes the fast path: same bytes.
    clean = expected[:-3].replace(b"\r\n..", b"\r\n.")
    if clean.startswith(b".."):
        clean = clean[1:]
    assert multiline.encode_message(clean, len(clean)) == _reference_body(clean) == expected


@settings(max_examples=200, deadline=None)
@given(_MAIL_BYTES, st.sampled_from([b"", b"+OK 12 octets\r\n"]))
def test_encode_message_prefix_is_only_prepended(data, prefix):
    for size in (None, len(data)):
        assert multiline.encode_message(data, size, prefix) == prefix + multiline.encode_message(data, size)
