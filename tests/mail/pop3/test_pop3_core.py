"""The sans-I/O POP3 state machine, parser, framing and message encoding."""

import base64

import pytest
from hypothesis import given, settings, strategies as st

from twisted_netapps.mail.pop3 import core
from twisted_netapps.mail.store.mailbox import crlf_size_of


def session(**policy):
    return core.Pop3Session(core.Pop3Policy(**policy))


def sent(events):
    return b"".join(e.data for e in events if isinstance(e, core.Send))


def logged_in(sizes=(10, 20, 30), **policy):
    s = session(**policy)
    s.receive_line(b"USER alice")
    events = s.receive_line(b"PASS pw")
    assert events == [core.CheckPassword("alice", "pw")]
    messages = [core.Pop3Message(i, f"uid{i}", size, ref=f"file{i}") for i, size in enumerate(sizes, 1)]
    reply = sent(s.login_accepted("alice", messages))
    assert reply.startswith(b"+OK")
    return s


def test_greeting_has_no_apop_timestamp_unless_configured():
    assert session().greeting() == b"+OK POP3 server ready\r\n"
    assert b"<1.2@host>" in session(apop_timestamp="<1.2@host>").greeting()


def test_apop_refused_when_not_offered():
    s = session()
    assert sent(s.receive_line(b"APOP alice " + b"0" * 32)).startswith(b"-ERR")


def test_apop_digest_event():
    s = session(apop_timestamp="<1.2@host>")
    digest = core.apop_digest("<1.2@host>", "tanstaaf")
    assert s.receive_line(f"APOP alice {digest}".encode()) == [core.CheckApop("alice", digest, "<1.2@host>")]
    # RFC 1939's example digest
    assert core.apop_digest("<1896.697170952@dbc.mtview.ca.us>", "tanstaaf") == "c4c9334bac560ecc979e58001b3e22fb"


def test_authorization_phase_refuses_mail_commands():
    s = session()
    for command in (b"STAT", b"LIST", b"RETR 1", b"DELE 1", b"UIDL", b"TOP 1 1", b"RSET"):
        assert sent(s.receive_line(command)).startswith(b"-ERR")
    assert s.state == core.AUTHORIZATION


def test_pass_without_user():
    assert sent(session().receive_line(b"PASS x")).startswith(b"-ERR")


def test_pass_keeps_spaces_in_password():
    s = session()
    s.receive_line(b"USER bob")
    assert s.receive_line(b"PASS two words ") == [core.CheckPassword("bob", "two words ")]


def test_user_rejected_in_transaction():
    s = logged_in()
    assert sent(s.receive_line(b"USER bob")).startswith(b"-ERR")
    assert sent(s.receive_line(b"PASS x")).startswith(b"-ERR")
    assert s.state == core.TRANSACTION


def test_stat_list_uidl():
    s = logged_in()
    assert sent(s.receive_line(b"STAT")) == b"+OK 3 60\r\n"
    assert sent(s.receive_line(b"LIST")) == b"+OK 3 messages (60 octets)\r\n1 10\r\n2 20\r\n3 30\r\n.\r\n"
    assert sent(s.receive_line(b"LIST 2")) == b"+OK 2 20\r\n"
    assert sent(s.receive_line(b"UIDL 2")) == b"+OK 2 uid2\r\n"  # with the number (stock Twisted omits it)
    assert sent(s.receive_line(b"UIDL")) == b"+OK 3 messages (60 octets)\r\n1 uid1\r\n2 uid2\r\n3 uid3\r\n.\r\n"
    assert sent(s.receive_line(b"LIST 4")).startswith(b"-ERR")
    assert sent(s.receive_line(b"LIST 0")).startswith(b"-ERR")
    assert sent(s.receive_line(b"LIST x")).startswith(b"-ERR")


def test_dele_only_marks_and_quit_commits():
    s = logged_in()
    assert sent(s.receive_line(b"DELE 2")).startswith(b"+OK")
    assert sent(s.receive_line(b"DELE 2")) == b"-ERR message 2 already deleted\r\n"
    assert sent(s.receive_line(b"RETR 2")).startswith(b"-ERR")
    assert sent(s.receive_line(b"STAT")) == b"+OK 2 40\r\n"
    assert sent(s.receive_line(b"LIST")) == b"+OK 2 messages (40 octets)\r\n1 10\r\n3 30\r\n.\r\n"
    events = s.receive_line(b"QUIT")
    assert len(events) == 1 and isinstance(events[0], core.Commit)
    assert [m.number for m in events[0].deleted] == [2]
    assert s.state == core.UPDATE
    assert s.receive_line(b"NOOP") == []
    final = s.update_done(0)
    assert sent(final) == b"+OK Bye\r\n" and isinstance(final[-1], core.Close)


def test_rset_unmarks():
    s = logged_in()
    s.receive_line(b"DELE 1")
    s.receive_line(b"DELE 3")
    assert sent(s.receive_line(b"RSET")).startswith(b"+OK")
    assert sent(s.receive_line(b"STAT")) == b"+OK 3 60\r\n"
    commit = s.receive_line(b"QUIT")[0]
    assert commit.deleted == []


def test_quit_in_authorization_commits_nothing():
    s = session()
    events = s.receive_line(b"QUIT")
    assert sent(events) == b"+OK Bye\r\n" and isinstance(events[-1], core.Close)


def test_retr_and_top_events():
    s = logged_in()
    (event,) = s.receive_line(b"RETR 1")
    assert isinstance(event, core.SendMessage) and event.top_lines is None and event.ok == b"+OK 10 octets\r\n"
    (event,) = s.receive_line(b"TOP 2 5")
    assert event.top_lines == 5 and event.message.number == 2
    assert sent(s.receive_line(b"TOP 2")).startswith(b"-ERR")
    commit = s.receive_line(b"QUIT")[0]
    assert [m.number for m in commit.retrieved] == [1]


def test_errors_do_not_close_until_too_many():
    s = logged_in(max_bad_commands=3)
    assert sent(s.receive_line(b"BOGUS")) == b"-ERR unknown command\r\n"
    assert sent(s.receive_line(b"RETR")).startswith(b"-ERR")
    events = s.receive_line(b"XYZZ")
    assert isinstance(events[-1], core.Close)


def test_failed_logins_then_close():
    s = session(max_login_failures=2)
    s.receive_line(b"USER a")
    s.receive_line(b"PASS b")
    assert s.waiting
    assert sent(s.receive_line(b"STAT")) == b""  # nothing processed while the login is pending
    assert sent(s.login_rejected()) == b"-ERR [AUTH] invalid user name or password\r\n"
    s.receive_line(b"USER a")
    s.receive_line(b"PASS c")
    events = s.login_rejected()
    assert isinstance(events[-1], core.Close)


def test_in_use():
    s = session()
    s.receive_line(b"USER a")
    s.receive_line(b"PASS b")
    assert sent(s.login_rejected(in_use=True)).startswith(b"-ERR [IN-USE]")
    assert s.state == core.AUTHORIZATION


def test_capa_by_state():
    s = session(tls_available=True)
    capa = sent(s.receive_line(b"CAPA"))
    for cap in (b"TOP", b"UIDL", b"USER", b"RESP-CODES", b"AUTH-RESP-CODE", b"PIPELINING", b"STLS", b"SASL PLAIN"):
        assert b"\r\n" + cap + b"\r\n" in capa
    assert b"PIPELINE\r\n" not in capa
    s = logged_in(tls_available=True)
    capa = sent(s.receive_line(b"CAPA"))
    assert b"USER" not in capa and b"STLS" not in capa and b"SASL" not in capa


def test_plaintext_refused_without_tls():
    s = session(plaintext_allowed=False, tls_available=True)
    assert sent(s.receive_line(b"USER a")).startswith(b"-ERR [AUTH]")
    assert b"USER" not in sent(s.receive_line(b"CAPA"))
    events = s.receive_line(b"STLS")
    assert sent(events) == b"+OK Begin TLS negotiation\r\n" and isinstance(events[-1], core.StartTls)
    s.tls_started()
    assert sent(s.receive_line(b"USER a")) == b"+OK send PASS\r\n"
    assert sent(s.receive_line(b"STLS")).startswith(b"-ERR")


def test_auth_plain():
    s = session()
    token = base64.b64encode(b"\x00alice\x00pw one").decode()
    assert s.receive_line(f"AUTH PLAIN {token}".encode()) == [core.CheckPassword("alice", "pw one")]
    s = session()
    assert sent(s.receive_line(b"AUTH PLAIN")) == b"+ \r\n"
    assert s.receive_line(token.encode()) == [core.CheckPassword("alice", "pw one")]
    s = session()
    s.receive_line(b"AUTH PLAIN")
    assert sent(s.receive_line(b"*")).startswith(b"-ERR")
    assert sent(session().receive_line(b"AUTH PLAIN !!!")).startswith(b"-ERR")
    assert b"PLAIN" in sent(session().receive_line(b"AUTH"))


def test_line_buffer_bounds_and_discards():
    buf = core.LineBuffer(10)
    buf.feed(b"STAT\r\nLIST 1\nNOOP")
    assert buf.next_line() == b"STAT"
    assert buf.next_line() == b"LIST 1"
    assert buf.next_line() is None
    buf.feed(b"X" * 20)
    assert buf.next_line() is core.OVERLONG
    buf.feed(b"YYY\r\nQUIT\r\n")
    assert buf.next_line() == b"QUIT"  # the rest of the long line was discarded


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
        enc = core.MessageEncoder()
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
    assert core.top_of_message(lines, 0) == b"Subject: x\r\nFrom: y\r\n\r\n"
    assert core.top_of_message(lines, 2) == b"Subject: x\r\nFrom: y\r\n\r\none\r\ntwo\r\n"
    assert core.top_of_message(lines, 99) == b"".join(lines)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_line_gets_a_reply_or_an_event(line):
    s = logged_in(max_bad_commands=1000)
    line = line.replace(b"\n", b"")
    events = s.receive_line(line)
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
        out = sent(s.receive_line(verb + b" " + argument))
        assert out and all(0x20 <= c <= 0x7E for c in out.replace(b"\r\n", b"")), out


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([
    b"STAT", b"LIST", b"LIST 1", b"UIDL 2", b"DELE 1", b"DELE 3", b"RSET", b"NOOP", b"RETR 2", b"TOP 1 0",
    b"USER x", b"CAPA", b"DELE 9", b"list 2",
]), max_size=30))
def test_command_sequences_keep_stat_consistent(commands):
    s = logged_in(max_bad_commands=1000)
    for command in commands:
        s.receive_line(command)
        assert s.state == core.TRANSACTION
        live = [m for m in s.messages if not m.deleted]
        assert sent(s.receive_line(b"STAT")) == f"+OK {len(live)} {sum(m.size for m in live)}\r\n".encode()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.integers(min_value=1, max_value=50))
def test_line_buffer_never_returns_more_than_the_limit(data, limit):
    buf = core.LineBuffer(limit)
    buf.feed(data)
    while True:
        line = buf.next_line()
        if line is None:
            break
        if line is not core.OVERLONG:
            assert len(line) <= limit and b"\n" not in line


@pytest.mark.parametrize("data", [
    b"Subject: x\r\n\r\nbody\r\n.dot\r\n",
    b"Subject: x\n\nbody\n.dot\n",  # LF file whose name claims S=<its length> (Courier style)
    b"Subject: x\r\n\r\nmixed\nline\r\n",
    b"no newline at all",
])
def test_encode_message_fast_path_agrees_with_the_exact_encoder(data):
    encoder = core.MessageEncoder()
    exact = encoder.feed(data) + encoder.finish()
    assert core.encode_message(data) == exact
    if data.find(b"\n") <= 0 or data[data.find(b"\n") - 1] == 0x0D:
        if b"mixed" not in data:
            assert core.encode_message(data, len(data)) == exact
    else:
        assert core.encode_message(data, len(data)) == exact  # LF-only: detected, exact path


def test_uidl_is_the_unique_name_or_a_stable_digest():
    short = "1795257058.M486035P23683Q1Rdeadea1ed104a3c6.vm,S=4111"
    assert core.uidl_for(short) == short
    long = "1795257058.M486035P23683Q1Rdeadea1ed104a3c6.mail-server-01.example.com,S=4111"
    digest = core.uidl_for(long)
    assert digest == core.uidl_for(long) and len(digest) <= 70 and digest != long
    assert core.uidl_for("with space") != "with space"


def test_quick_retr_matches_receive_line_or_declines():
    s = logged_in()
    (general,) = s.receive_line(b"RETR 2")
    quick = s.quick_retr(b"2")
    assert quick == general
    s.receive_line(b"DELE 3")
    for arg in (b"3", b"0", b"4", b"x", b"", b"1 2", b"0001234567890"):
        assert s.quick_retr(arg) is None  # errors and oddities take the general path
    assert session().quick_retr(b"1") is None  # not in TRANSACTION


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
    assert core.encode_message(data) == expected
    encoder = core.MessageEncoder()
    chunked = b"".join(encoder.feed(data[i:i + chunk_size]) for i in range(0, len(data), chunk_size))
    assert chunked + encoder.finish() == expected
    # A CRLF-clean file whose name carries its size takes the fast path: same bytes.
    clean = expected[:-3].replace(b"\r\n..", b"\r\n.")
    if clean.startswith(b".."):
        clean = clean[1:]
    assert core.encode_message(clean, len(clean)) == _reference_body(clean) == expected


@settings(max_examples=200, deadline=None)
@given(_MAIL_BYTES, st.sampled_from([b"", b"+OK 12 octets\r\n"]))
def test_encode_message_prefix_is_only_prepended(data, prefix):
    for size in (None, len(data)):
        assert core.encode_message(data, size, prefix) == prefix + core.encode_message(data, size)
