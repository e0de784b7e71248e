"""The sans-I/O SMTP session: pipelining, DATA framing, limits, AUTH, STARTTLS."""

import base64

from hypothesis import given, settings, strategies as st

from twisted_netapps.mail.smtp.core import (
    Authenticate, Close, MessageReady, Reply, Send, ServerSession, SessionConfig, StartTLS, State,
)
from twisted_netapps.mail.smtp.syntax import Address

LOCAL = {"alice", "bob", "postmaster"}


def check(info, sender, rcpt):
    if rcpt.domain in ("example.test", "") and rcpt.local in LOCAL:
        return None
    if rcpt.domain == "example.test":
        return Reply(550, "5.1.1", "No such user")
    if info.auth_user:
        return None
    return Reply(554, "5.7.1", "Relay access denied")


def session(**kw):
    s = ServerSession(SessionConfig(hostname="mx.example.test", **kw), check, "127.0.0.1")
    s.start()
    return s


def sent(events):
    return b"".join(e.data for e in events if isinstance(e, Send))


def codes(events):
    return [int(line[:3]) for line in sent(events).split(b"\r\n") if line and line[3:4] == b" "]


def messages(events):
    return [e for e in events if isinstance(e, MessageReady)]


def test_greeting_and_ehlo_features():
    s = ServerSession(SessionConfig(hostname="mx", starttls_available=True), check, "127.0.0.1")
    assert sent(s.start()).startswith(b"220 mx ESMTP")
    out = sent(s.receive_data(b"EHLO client\r\n"))
    for feature in (b"PIPELINING", b"SIZE 26214400", b"8BITMIME", b"ENHANCEDSTATUSCODES", b"STARTTLS"):
        assert b"250-" + feature in out or b"250 " + feature in out
    assert b"AUTH" not in out  # not before TLS


def test_pipelined_transaction_replies_in_order_and_message_unstuffed():
    s = session()
    ev = s.receive_data(
        b"EHLO c\r\nMAIL FROM:<x@remote.test> SIZE=100 BODY=8BITMIME\r\nRCPT TO:<alice@example.test>\r\n"
        b"RCPT TO:<nobody@example.test>\r\nDATA\r\nSubject: t\r\n\r\n..dotted\r\nbare\n..lf\r\n.\r\nNOOP\r\n"
    )
    assert codes(ev) == [250, 250, 250, 550, 354]
    [m] = messages(ev)
    assert m.data == b"Subject: t\r\n\r\n.dotted\r\nbare\n.lf\r\n"
    assert m.envelope.recipients == [Address("alice", "example.test")]
    assert m.envelope.mail_from == Address("x", "remote.test")
    assert m.envelope.body == "8BITMIME"
    # NOOP is held back until the message is durable: replies stay in order
    ev = s.message_result(Reply(250, "2.0.0", "Queued"))
    assert codes(ev) == [250, 250]


def test_overlong_data_line_does_not_return_to_command_mode():
    s = session()
    s.receive_data(b"EHLO c\r\nMAIL FROM:<x@r.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
    injected = b"A" * 2000 + b"\r\nMAIL FROM:<evil@r.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nevil\r\n.\r\n"
    ev = s.receive_data(injected)
    # the first "." ends DATA: the message is rejected, and nothing in it ran as a command
    assert codes(ev) == [554]
    assert messages(ev) == []
    assert not s.in_data
    ev = s.receive_data(b"NOOP\r\n")
    assert codes(ev) == [250]


def test_overlong_line_split_across_reads_with_dot_after_boundary():
    s = session()
    s.receive_data(b"EHLO c\r\nMAIL FROM:<x@r.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
    assert s.receive_data(b"B" * 1500) == []
    # ".\r\n" continuing the long line is not an end of data
    assert s.receive_data(b".\r\n") == []
    assert s.in_data
    ev = s.receive_data(b"more\r\n.\r\n")
    assert codes(ev) == [554]


def test_line_of_exactly_1000_octets_is_accepted():
    s = session()
    s.receive_data(b"EHLO c\r\nMAIL FROM:<x@r.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
    ev = s.receive_data(b"C" * 998 + b"\r\n.\r\n")
    assert len(messages(ev)) == 1


def test_bare_lf_dot_does_not_end_data_smuggling():
    s = session()
    s.receive_data(b"EHLO c\r\nMAIL FROM:<x@r.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
    ev = s.receive_data(b"hello\n.\nMAIL FROM:<evil@r.test>\r\n")
    assert ev == [] and s.in_data
    ev = s.receive_data(b"x\r\n.\n\r\n.\r\n")
    [m] = messages(ev)
    assert b"MAIL FROM:<evil" in m.data


def test_size_enforced_at_mail_and_in_data():
    s = session(max_message_size=100)
    assert codes(s.receive_data(b"EHLO c\r\nMAIL FROM:<x@r.test> SIZE=101\r\n")) == [250, 552]
    ev = s.receive_data(b"MAIL FROM:<x@r.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n" + b"x" * 60 + b"\r\n" + b"y" * 60 + b"\r\n.\r\nNOOP\r\n")
    assert codes(ev) == [250, 250, 354, 552, 250]
    assert messages(ev) == []


def test_sequence_errors_and_unknown_commands():
    s = session()
    assert codes(s.receive_data(b"MAIL FROM:<a@b.test>\r\n")) == [503]
    assert codes(s.receive_data(b"HELO c\r\nRCPT TO:<alice@example.test>\r\nDATA\r\nFOO\r\n")) == [250, 503, 503, 500]
    assert codes(s.receive_data(b"MAIL FROM:<a@b.test> SIZE=5\r\n")) == [555]  # HELO: no ESMTP params
    assert codes(s.receive_data(b"VRFY alice\r\nRSET\r\nNOOP\r\nHELP\r\nEXPN x\r\n")) == [252, 250, 250, 214, 502]


def test_relay_denied_and_unknown_local_user():
    s = session()
    ev = s.receive_data(b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<u@elsewhere.test>\r\nRCPT TO:<zed@example.test>\r\nRCPT TO:<postmaster>\r\n")
    assert codes(ev) == [250, 250, 554, 550, 250]


def test_too_many_recipients():
    s = session(max_recipients=2)
    ev = s.receive_data(b"EHLO c\r\nMAIL FROM:<>\r\n" + b"RCPT TO:<alice@example.test>\r\n" * 3)
    assert codes(ev) == [250, 250, 250, 250, 452]


def test_quit_closes_and_ignores_rest():
    s = session()
    ev = s.receive_data(b"QUIT\r\nNOOP\r\n")
    assert codes(ev) == [221] and isinstance(ev[-1], Close)
    assert s.receive_data(b"NOOP\r\n") == []


def test_long_command_line_rejected_and_skipped():
    s = session()
    ev = s.receive_data(b"NOOP " + b"x" * 5000)
    assert codes(ev) == [500]
    ev = s.receive_data(b"yyy\r\nNOOP\r\n")
    assert codes(ev) == [250]


def test_too_many_errors_closes():
    s = session(max_errors=3)
    ev = s.receive_data(b"X\r\nY\r\nZ\r\nNOOP\r\n")
    assert codes(ev) == [500, 500, 500, 421] and isinstance(ev[-1], Close)


def test_starttls_discards_pipelined_plaintext_and_requires_new_ehlo():
    s = session(starttls_available=True)
    ev = s.receive_data(b"EHLO c\r\nSTARTTLS\r\nMAIL FROM:<injected@r.test>\r\n")
    assert codes(ev) == [250, 220] and isinstance(ev[-1], StartTLS)
    assert s.tls_started() == []
    assert codes(s.receive_data(b"MAIL FROM:<a@r.test>\r\n")) == [503]
    out = sent(s.receive_data(b"EHLO c\r\n"))
    assert b"STARTTLS" not in out and b"AUTH PLAIN LOGIN" in out


def test_auth_requires_tls_by_default():
    s = session()
    assert codes(s.receive_data(b"EHLO c\r\nAUTH PLAIN AGEAYg==\r\n")) == [250, 538]


def test_auth_plain_and_login():
    s = session(plaintext_auth="always")
    token = base64.b64encode(b"\0alice\0secret").decode()
    ev = s.receive_data(f"EHLO c\r\nAUTH PLAIN {token}\r\nMAIL FROM:<alice@example.test>\r\n".encode())
    assert ev[-1] == Authenticate("PLAIN", "alice", "secret")
    ev = s.auth_result("alice")
    assert codes(ev) == [235, 250]
    assert codes(s.receive_data(b"RCPT TO:<someone@far.test>\r\n")) == [250]  # authenticated: relay ok

    s = session(plaintext_auth="always")
    s.receive_data(b"EHLO c\r\n")
    assert sent(s.receive_data(b"AUTH LOGIN\r\n")) == b"334 VXNlcm5hbWU6\r\n"
    assert sent(s.receive_data(base64.b64encode(b"bob") + b"\r\n")) == b"334 UGFzc3dvcmQ6\r\n"
    ev = s.receive_data(base64.b64encode(b"pw") + b"\r\n")
    assert ev == [Authenticate("LOGIN", "bob", "pw")]
    assert codes(s.auth_result(None)) == [535]
    assert codes(s.receive_data(b"AUTH PLAIN\r\n*\r\n")) == [334, 501]


def test_submission_requires_auth():
    s = session(auth_required=True, plaintext_auth="always")
    assert codes(s.receive_data(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\n")) == [250, 530]


@settings(max_examples=300)
@given(st.lists(st.binary(max_size=80), max_size=8))
def test_arbitrary_input_gives_only_well_formed_replies(chunks):
    s = session(max_errors=1000)
    s.receive_data(b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<alice@example.test>\r\n")
    for chunk in chunks:
        for event in s.receive_data(chunk):
            if isinstance(event, Send):
                for line in event.data.split(b"\r\n")[:-1]:
                    assert line[:3].isdigit() and line[3:4] in (b" ", b"-")
            elif isinstance(event, MessageReady):
                s.message_result(Reply(250, "2.0.0", "ok"))
            elif isinstance(event, Authenticate):
                s.auth_result(None)


_VERBS = st.sampled_from([b"EHLO ", b"HELO ", b"MAIL FROM:", b"RCPT TO:", b"VRFY ", b"EXPN ", b"NOOP ", b"HELP ",
                          b"AUTH ", b"AUTH PLAIN ", b"DATA ", b"RSET ", b"", b"EH\xe9LO "])


@settings(max_examples=300)
@given(st.lists(st.tuples(_VERBS, st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"").replace(b"\r", b""))),
                max_size=6))
def test_replies_stay_7bit_whatever_bytes_come_in(commands):
    """Issue 7's class of input: 8-bit and control bytes in a command are refused, never echoed."""
    s = session(max_errors=1000, plaintext_auth="always")
    for verb, argument in commands:
        for event in s.receive_data(verb + argument + b"\r\n"):
            if isinstance(event, Send):
                assert all(0x20 <= c <= 0x7E for c in event.data.replace(b"\r\n", b"")), event.data
            elif isinstance(event, Authenticate):
                s.auth_result(None)
        if s.state in (State.AUTH_PLAIN, State.AUTH_LOGIN_USER, State.AUTH_LOGIN_PASSWORD):
            s.receive_data(b"*\r\n")


def test_ehlo_with_8bit_or_control_bytes_is_refused():
    s = session()
    assert sent(s.receive_data(b"EHLO \xe9\xe9\r\n")) == b"501 5.5.4 Invalid domain name in EHLO\r\n"
    assert sent(s.receive_data(b"HELO a\x1b[2Jb\r\n")) == b"501 5.5.4 Invalid domain name in HELO\r\n"
    assert codes(s.receive_data(b"MAIL FROM:<a@b.test>\r\n")) == [503]  # still not greeted
    assert codes(s.receive_data(b"EHLO [127.0.0.1]\r\n")) == [250]


@given(st.text(alphabet=st.characters(min_codepoint=1, max_codepoint=127), max_size=200))
def test_command_parser_never_crashes(line):
    s = session(max_errors=1000, plaintext_auth="always")
    s.receive_data(b"EHLO c\r\n")
    line = line.replace("\n", " ").replace("\r", " ")
    for verb in ("MAIL FROM:", "RCPT TO:", "", "AUTH "):
        for event in s.receive_data((verb + line + "\r\n").encode()):
            assert isinstance(event, (Send, Authenticate, Close, StartTLS))
        if s.state is State.AUTHENTICATING:
            s.auth_result(None)
        in_exchange = s.state in (State.AUTH_PLAIN, State.AUTH_LOGIN_USER, State.AUTH_LOGIN_PASSWORD)
        s.receive_data(b"*\r\nRSET\r\n") if in_exchange else s.receive_data(b"RSET\r\n")


@settings(max_examples=300)
@given(
    st.lists(st.text(alphabet=st.sampled_from(list("ab.\r\n ")), max_size=40), max_size=12),
    st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=10),
)
def test_dot_stuffed_body_round_trips_in_any_chunking(lines, cuts):
    from twisted_netapps.mail.store.maildir import normalise_crlf
    from twisted_netapps.mail.smtp.syntax import dot_stuff

    body = normalise_crlf("\r\n".join(lines).encode())
    wire = dot_stuff(body)
    s = session()
    s.receive_data(b"EHLO c\r\nMAIL FROM:<x@r.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
    events, pos, i = [], 0, 0
    while pos < len(wire):
        step = cuts[i % len(cuts)]
        events += s.receive_data(wire[pos:pos + step])
        pos += step
        i += 1
    [m] = messages(events)
    assert m.data == body
    assert not s.in_data


def test_mail_loop_refused_by_hop_count():
    s = session(max_hops=3)
    s.receive_data(b"EHLO c\r\nMAIL FROM:<x@r.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
    ev = s.receive_data(b"Received: a\r\nreceived: b\r\nRECEIVED: c\r\nReceived: d\r\n\r\nbody\r\n.\r\n")
    assert codes(ev) == [554] and b"5.4.6" in sent(ev)
    s.receive_data(b"MAIL FROM:<x@r.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
    ev = s.receive_data(b"Received: a\r\n\r\nReceived: in the body does not count\r\n" * 1 + b".\r\n")
    assert len(messages(ev)) == 1


def test_large_pipelined_burst_is_linear():
    import time

    s = session(max_errors=10)
    burst = b"NOOP\r\n" * 50000
    start = time.perf_counter()
    out = sent(s.receive_data(burst))
    assert out.count(b"250 2.0.0 OK\r\n") == 50000
    assert time.perf_counter() - start < 2.0  # generous: linear work is ~0.2 s here


def test_half_close_answers_what_was_sent_then_closes():
    s = session()
    s.receive_data(b"EHLO c\r\nMAIL FROM:<x@r.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\nbody\r\n.\r\nNOOP\r\n")
    assert s.receive_eof() == []  # the message is still being delivered: nothing closes yet
    ev = s.message_result(Reply(250, "2.0.0", "Queued"))
    assert codes(ev) == [250, 250] and isinstance(ev[-1], Close) and s.state is State.CLOSED


def test_half_close_in_the_middle_of_data_delivers_nothing():
    s = session()
    s.receive_data(b"EHLO c\r\nMAIL FROM:<x@r.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\nhalf a mess")
    ev = s.receive_eof()
    assert messages(ev) == [] and ev == [Close()]


def test_adapter_misuse_raises_local_protocol_error():
    import pytest

    from twisted_netapps.sansio import LocalProtocolError

    s = session()
    with pytest.raises(LocalProtocolError):
        s.message_result(Reply(250, "2.0.0", "ok"))  # no message was handed out
    with pytest.raises(LocalProtocolError):
        s.tls_started()


def test_commands_come_from_the_state_verb_table():
    from twisted_netapps.mail.smtp.core import COMMANDS, TRANSITIONS

    assert {state for state, _verb in COMMANDS} == {State.COMMAND}
    assert set(TRANSITIONS) == set(State)
    # every verb the HELP text names is in the table, and nothing else
    assert {verb for _state, verb in COMMANDS} == set(
        "EHLO HELO MAIL RCPT DATA RSET NOOP VRFY HELP QUIT STARTTLS AUTH EXPN".split()
    )


def test_plaintext_auth_loopback_policy():
    remote = ServerSession(SessionConfig(plaintext_auth="loopback"), check, "192.0.2.1")
    assert b"AUTH" not in sent(remote.receive_data(b"EHLO c\r\n"))
    local = ServerSession(SessionConfig(plaintext_auth="loopback"), check, "127.0.0.1", loopback=True)
    assert b"AUTH PLAIN LOGIN" in sent(local.receive_data(b"EHLO c\r\n"))


def test_partial_line_tracks_unfinished_commands():
    s = session()
    s.receive_data(b"NO")
    assert s.partial_line and s.lines == 0
    s.receive_data(b"OP\r\n")
    assert not s.partial_line and s.lines == 1
    s.receive_data(b"EHLO c\r\nMAIL FROM:<x@r.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\nsome")
    assert s.in_data and not s.partial_line  # DATA has its own deadline
