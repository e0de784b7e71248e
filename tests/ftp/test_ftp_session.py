"""The FTP core as a pure state machine: bytes in, events out (no reactor, no disk)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from twisted_netapps.ftp import events as ev
from twisted_netapps.ftp.filesystem import BAD_OFFSET, DENIED, NOT_FILE, NOT_FOUND, NO_SPACE, FileError
from twisted_netapps.sansio import LocalProtocolError
from twisted_netapps.ftp.session import ABORTED, NO_CONNECTION, FtpSession, Phase, SessionPolicy, TRANSITIONS


def new(**policy) -> FtpSession:
    session = FtpSession(SessionPolicy(peer_host="127.0.0.1", tls_available=True, **policy))
    session.greeting()
    return session


def replies(events) -> list[str]:
    return [e.data.decode() for e in events if isinstance(e, ev.Send)]


def codes(events) -> list[int]:
    return [int(r[:3]) for r in replies(events)]


def send(session, *lines) -> list:
    return session.receive_data(b"".join(line.encode() + b"\r\n" for line in lines))


def logged_in(**policy) -> FtpSession:
    session = new(**policy)
    events = send(session, "USER alice", "PASS pw")
    assert events[-1] == ev.CheckLogin("alice", "pw", False)
    assert codes(session.login_done(True)) == [230]
    return session


def test_greeting_and_login_flow():
    session = FtpSession(SessionPolicy(peer_host="127.0.0.1"))
    assert codes(session.greeting()) == [220]
    assert codes(send(session, "USER alice")) == [331]
    events = send(session, "PASS secret", "PWD")  # PWD waits for the login's outcome
    assert events == [ev.CheckLogin("alice", "secret", False)]
    assert session.phase is Phase.LOGGING_IN
    assert codes(session.login_done(True)) == [230, 257]


@pytest.mark.parametrize("command", ["PWD", "CWD /", "LIST", "RETR x", "STOR x", "PASV", "EPSV", "PORT 127,0,0,1,4,0",
                                     "TYPE I", "MKD d", "DELE x", "SIZE x", "REST 5", "ABOR", "MLSD", "STOU"])
def test_commands_before_login_are_530(command):
    assert codes(send(new(), command)) == [530]


@pytest.mark.parametrize("command", ["SYST", "FEAT", "NOOP", "HELP", "STAT", "OPTS UTF8 ON"])
def test_information_commands_need_no_login(command):
    assert codes(send(new(), command))[0] in (200, 211, 214, 215)


def test_out_of_order_commands_are_503():
    session = new()
    assert codes(send(session, "PASS x")) == [503]
    assert codes(send(session, "PBSZ 0")) == [503]  # before AUTH TLS
    session = logged_in()
    assert codes(send(session, "RNTO b")) == [503]
    assert codes(send(session, "USER bob")) == [503]
    assert codes(send(session, "PASS x")) == [503]
    assert codes(send(session, "PROT P")) == [503]  # before PBSZ


def test_failed_logins_then_close():
    session = new(max_login_failures=2)
    send(session, "USER a", "PASS b")
    assert codes(session.login_failed()) == [530]
    send(session, "USER a", "PASS c")
    events = session.login_failed()
    assert codes(events) == [421] and isinstance(events[-1], ev.Close)


def test_login_refused_is_421_and_close():
    session = new()
    send(session, "USER a", "PASS b")
    events = session.login_refused()
    assert codes(events) == [421] and isinstance(events[-1], ev.Close)


def test_anonymous_login_and_disabled_anonymous():
    session = new()
    assert codes(send(session, "USER anonymous")) == [331]
    assert send(session, "PASS me@x")[-1] == ev.CheckLogin("anonymous", "me@x", True)
    assert codes(send(new(anonymous=False), "USER ftp")) == [530]


def test_unknown_malformed_and_overlong_lines():
    session = new(max_line=512)
    assert codes(send(session, "FOOBAR", "NOOP")) == [500, 200]
    assert codes(send(session, "SITE CHMOD 777 x")) == [502]
    assert codes(session.receive_data(b"N\xffOOP\r\n")) == [500]
    assert codes(session.receive_data(b"NOOP " + b"x" * 2000 + b"\r\nNOOP\r\n")) == [500, 200]
    assert codes(session.receive_data(b"\xff\xf4\xff\xf2NOOP\r\n")) == [200]  # Telnet IP + Synch stripped


def test_rename_must_follow_rnfr_at_once():
    session = logged_in()
    assert send(session, "RNFR a")[-1] == ev.FileRequest("rnfr", "/a")
    assert codes(session.file_done(None)) == [350]
    assert send(session, "RNTO b")[-1] == ev.FileRequest("rnto", "/a", target="/b")
    assert codes(session.file_done(None)) == [250]
    send(session, "RNFR a")
    session.file_done(None)
    assert codes(send(session, "NOOP", "RNTO b")) == [200, 503]


def test_file_errors_map_to_reply_codes():
    session = logged_in()
    send(session, "RNFR missing")
    assert codes(session.file_failed(FileError(NOT_FOUND, "missing: No such file"))) == [550]
    send(session, "SIZE /dir")
    assert codes(session.file_failed(FileError(NOT_FILE, "not a regular file"))) == [550]
    send(session, "MKD x")
    assert codes(session.file_failed(FileError(DENIED, "denied"))) == [553]


def test_cwd_changes_directory_only_when_done_and_paths_stay_inside():
    session = logged_in()
    assert send(session, "CWD ../../etc")[-1] == ev.FileRequest("cwd", "/etc")
    session.file_done("/etc")
    assert replies(send(session, "PWD")) == ['257 "/etc" is the current directory.\r\n']
    assert send(session, "CDUP")[-1] == ev.FileRequest("cwd", "/")
    session.file_done("/")
    assert send(session, 'MKD a"b')[-1] == ev.FileRequest("mkd", '/a"b')
    assert replies(session.file_done(None)) == ['257 "/a""b" created.\r\n']


def test_transfer_needs_a_data_connection_set_up():
    session = logged_in()
    assert codes(send(session, "RETR x")) == [425]


def test_passive_transfer_flow_and_commands_while_pending():
    session = logged_in()
    assert send(session, "PASV") == [ev.OpenPassive(False)]
    assert codes(session.passive_ready("127.0.0.1", 50000)) == [227]
    assert codes(send(session, "NOOP", "TYPE I")) == [200, 200]  # while the data connection is pending
    events = send(session, "RETR f")
    assert events == [ev.StartTransfer("retr", "/f", 0, False, session.mlst_facts)]
    assert session.phase is Phase.TRANSFER
    assert codes(send(session, "NOOP", "PWD")) == []  # queued behind the transfer
    assert codes(session.transfer_started(False, "f")) == [150]
    assert codes(session.transfer_done()) == [226, 200, 257]
    assert session.data_mode is None  # the next transfer needs a new PASV
    assert codes(send(session, "LIST")) == [425]


def test_epsv_reply_and_epsv_all():
    session = logged_in()
    assert send(session, "EPSV") == [ev.OpenPassive(True)]
    assert replies(session.passive_ready("127.0.0.1", 50001)) == ["229 Entering Extended Passive Mode (|||50001|)\r\n"]
    assert codes(send(session, "EPSV ALL", "PASV", "PORT 127,0,0,1,200,1", "EPRT |1|127.0.0.1|5000|")) == [200, 503, 503, 503]
    assert codes(send(session, "EPSV 2")) == [522]


def test_no_data_connection_gives_425_and_replies_stay_in_step():
    session = logged_in()
    send(session, "PASV")
    session.passive_ready("127.0.0.1", 50000)
    send(session, "LIST", "NOOP")
    assert codes(session.transfer_started(False)) == [150]
    assert codes(session.transfer_failed(NO_CONNECTION)) == [425, 200]


def test_abor_during_transfer_is_426_then_226_and_stat_answers():
    session = logged_in()
    send(session, "PASV")
    session.passive_ready("127.0.0.1", 50000)
    send(session, "RETR big")
    session.transfer_started(True, "big")
    assert codes(send(session, "STAT"))[0] == 211
    assert send(session, "ABOR") == [ev.AbortTransfer()]
    assert codes(session.transfer_failed(ABORTED)) == [426, 226]
    assert codes(send(session, "ABOR")) == [226]  # nothing to abort


def test_abor_racing_the_end_of_a_transfer():
    session = logged_in()
    send(session, "PASV")
    session.passive_ready("127.0.0.1", 50000)
    send(session, "RETR f")
    send(session, "ABOR")
    assert codes(session.transfer_done()) == [226]


@pytest.mark.parametrize("command", ["PORT 10,0,0,1,4,0", "PORT 127,0,0,2,4,0", "EPRT |1|192.168.1.1|5000|",
                                     "EPRT |2|::1|5000|", "PORT 127,0,0,1,0,21"])
def test_bounce_is_refused(command):
    assert codes(send(logged_in(), command))[0] in (504, 522)


def test_port_to_the_peer_is_accepted():
    session = logged_in()
    events = send(session, "PORT 127,0,0,1,200,10")
    assert events[0] == ev.UseActive("127.0.0.1", 200 * 256 + 10) and codes(events) == [200]
    events = send(session, "EPRT |1|127.0.0.1|6000|")
    assert events[0] == ev.UseActive("127.0.0.1", 6000)


@pytest.mark.parametrize("command", ["PORT 1,2,3", "PORT a,b,c,d,e,f", "PORT 999,0,0,1,1,1", "EPRT x", "EPRT |3|x|1|",
                                     "EPRT |1|::1|5|", "REST -1", "REST x", "TYPE X", "MODE Z"])
def test_malformed_arguments_are_501_or_504_or_522(command):
    assert codes(send(logged_in(), command))[0] in (501, 504, 522)


def test_rest_then_transfer_and_offset_errors():
    session = logged_in()
    send(session, "TYPE I", "REST 100", "PASV")
    session.passive_ready("127.0.0.1", 1)
    assert send(session, "STOR f")[-1].kind == "rest"
    assert codes(session.file_failed(FileError(BAD_OFFSET, "past the end"))) == [554]
    send(session, "REST 5", "PASV")
    session.passive_ready("127.0.0.1", 1)
    assert codes(send(session, "APPE f")) == [503]


def test_upload_disk_full_is_452():
    session = logged_in()
    send(session, "PASV")
    session.passive_ready("127.0.0.1", 1)
    send(session, "STOR f")
    session.transfer_started(True, "f")
    assert codes(session.transfer_failed("", FileError(NO_SPACE, "full"))) == [452]


def test_tls_commands():
    session = new()
    events = send(session, "AUTH TLS")
    assert codes(events) == [234] and events[-1] == ev.StartTls()
    assert codes(send(session, "AUTH TLS")) == [503]
    assert codes(send(session, "PROT P")) == [503]
    assert codes(send(session, "PBSZ 0", "PROT P", "PROT S", "PROT X")) == [200, 200, 536, 504]
    assert session.protect
    assert codes(send(FtpSession(SessionPolicy(peer_host="127.0.0.1")), "AUTH TLS")) == [502]


def test_feat_lists_the_extensions():
    feat = replies(send(new(), "FEAT"))[0]
    for name in ("UTF8", "EPSV", "EPRT", "MLST type*;size*;modify*;perm*;unique*;", "REST STREAM", "SIZE", "MDTM",
                 "TVFS", "AUTH TLS", "PBSZ", "PROT"):
        assert f"\r\n {name}\r\n" in feat
    assert feat.startswith("211-") and feat.endswith("211 End\r\n")


def test_nlst_without_argument_lists_the_current_directory():
    session = logged_in()
    send(session, "CWD pub")
    session.file_done("/pub")
    send(session, "PASV")
    session.passive_ready("127.0.0.1", 1)
    assert send(session, "NLST")[-1].path == "/pub"
    session.transfer_done()
    send(session, "PASV")
    session.passive_ready("127.0.0.1", 1)
    assert send(session, "LIST -la")[-1].path == "/pub"


def test_eof_during_transfer_aborts_and_closes():
    session = logged_in()
    send(session, "PASV")
    session.passive_ready("127.0.0.1", 1)
    send(session, "RETR f")
    assert session.receive_eof() == [ev.AbortTransfer(), ev.Close()]


def test_shutdown_and_idle_are_421():
    assert codes(logged_in().shutdown()) == [421]
    assert codes(new().idle_timeout()) == [421]


def test_transitions_are_checked():
    session = new()
    with pytest.raises(LocalProtocolError):
        session._move(Phase.TRANSFER)
    assert Phase.TRANSFER in TRANSITIONS[Phase.READY]


_COMMANDS = st.sampled_from(["USER a", "PASS b", "PWD", "CWD x", "PASV", "EPSV", "LIST", "RETR f", "STOR f",
                             "ABOR", "STAT", "NOOP", "RNFR a", "RNTO b", "REST 1", "QUIT", "TYPE I", "FEAT",
                             "PORT 127,0,0,1,10,0", "MLSD", "\xff\xfe", "x" * 10])


@settings(max_examples=200, deadline=None)
@given(st.lists(_COMMANDS, max_size=30), st.lists(st.binary(max_size=40), max_size=5))
def test_any_input_never_raises_and_every_line_answered_before_login(lines, noise):
    session = FtpSession(SessionPolicy(peer_host="127.0.0.1", max_line=512))
    data = b"".join(line.encode("utf-8", "surrogateescape") + b"\r\n" for line in lines)
    data += b"".join(n.replace(b"\n", b"") + b"\r\n" for n in noise)
    events = session.receive_data(data)
    for event in events:
        assert isinstance(event, (ev.Send, ev.Close, ev.CheckLogin))
        if isinstance(event, ev.Send):
            assert event.data.endswith(b"\r\n") and event.data[:3].isdigit()
