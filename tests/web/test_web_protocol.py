"""The Twisted adapter over an in-memory transport and a task.Clock."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings, strategies as st

from webtestlib import connect, make_factory, request_head, responses, settled


def site(tmp_path):
    (tmp_path / "index.html").write_bytes(b"<h1>hi</h1>")
    (tmp_path / "big.bin").write_bytes(os.urandom(300 * 1024))
    settled(tmp_path / "index.html")
    settled(tmp_path / "big.bin")
    return tmp_path


def test_pipelined_requests_are_answered_in_order_in_one_write(tmp_path):
    factory = make_factory(site(tmp_path), log_path=tmp_path / "access.log")
    proto, transport = connect(factory)
    proto.dataReceived(
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
        b"HEAD /index.html HTTP/1.1\r\nHost: a\r\n\r\n"
        b"GET /missing HTTP/1.1\r\nHost: a\r\n\r\n"
    )
    got = responses(transport.value(), bodyless=(1,))
    assert [s for s, _, _ in got] == [200, 200, 404]
    assert got[0][2] == b"<h1>hi</h1>"
    assert got[1][1][b"content-length"] == b"11" and got[1][2] == b""  # HEAD: no body
    assert factory.stats["requests"] == 3
    factory.access_log.flush()
    lines = (tmp_path / "access.log").read_bytes().splitlines()
    assert [l.split(b'"')[1] for l in lines] == [b"GET / HTTP/1.1", b"HEAD /index.html HTTP/1.1", b"GET /missing HTTP/1.1"]
    assert not transport.disconnecting


def test_slowloris_gets_408_from_the_first_byte(tmp_path):
    factory = make_factory(site(tmp_path), header=10.0, idle=30.0)
    proto, transport = connect(factory)
    clock = factory.clock
    proto.dataReceived(b"GET / HTTP/1.1\r\n")
    for i in range(9):  # one header byte a second: each resets nothing
        clock.advance(1)
        proto.dataReceived(b"X")
    assert transport.value() == b""
    clock.advance(1.5)
    assert responses(transport.value())[0][0] == 408
    assert transport.disconnecting and factory.stats["timeouts"] == 1


def test_idle_keep_alive_connection_is_closed_without_a_response(tmp_path):
    factory = make_factory(site(tmp_path), idle=5.0)
    proto, transport = connect(factory)
    proto.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    transport.clear()
    factory.clock.advance(4)
    assert not transport.disconnecting
    factory.clock.advance(2)
    assert transport.disconnecting and transport.value() == b""


def test_slow_body_gets_408(tmp_path):
    factory = make_factory(site(tmp_path), request=20.0)
    proto, transport = connect(factory)
    proto.dataReceived(b"POST /form HTTP/1.1\r\nHost: a\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\na=")
    factory.clock.advance(21)
    assert responses(transport.value())[0][0] == 408 and transport.disconnecting


def test_form_post_and_too_large_body(tmp_path):
    factory = make_factory(site(tmp_path))
    proto, transport = connect(factory)
    body = b"name=%3Cb%3EAda&x=1"
    proto.dataReceived(b"POST /form HTTP/1.1\r\nHost: a\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                       b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    status, _, page = responses(transport.value())[0]
    assert status == 200 and b"&lt;b&gt;Ada" in page and b"<b>Ada" not in page
    transport.clear()
    proto.dataReceived(b"POST /form HTTP/1.1\r\nHost: a\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 5000\r\n\r\n")
    assert responses(transport.value())[0][0] == 413 and transport.disconnecting


def test_chunked_form_over_the_limit_is_413(tmp_path):
    factory = make_factory(site(tmp_path))
    proto, transport = connect(factory)
    proto.dataReceived(b"POST /form HTTP/1.1\r\nHost: a\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                       b"Transfer-Encoding: chunked\r\n\r\n" + b"400\r\n" + b"a" * 1024 + b"\r\n" + b"400\r\n" + b"b" * 1024)
    assert responses(transport.value())[0][0] == 413 and transport.disconnecting


def test_unwanted_small_body_is_discarded_and_the_connection_kept(tmp_path):
    factory = make_factory(site(tmp_path))
    proto, transport = connect(factory)
    proto.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nbodyGET /index.html HTTP/1.1\r\nHost: a\r\n\r\n")
    assert [s for s, _, _ in responses(transport.value())] == [200, 200]
    assert not transport.disconnecting


def test_large_file_streams_through_a_producer(tmp_path):
    factory = make_factory(site(tmp_path))
    proto, transport = connect(factory)
    proto.dataReceived(b"GET /big.bin HTTP/1.1\r\nHost: a\r\n\r\n")
    assert transport.producer is not None and not transport.streaming
    rounds = 0
    while transport.producer is not None:
        transport.producer.resumeProducing()
        rounds += 1
    status, fields, body = responses(transport.value())[0]
    assert status == 200 and body == (tmp_path / "big.bin").read_bytes()
    assert rounds >= 2  # sent in pieces, never one 300 KiB write


def test_malformed_request_gets_one_error_and_a_close(tmp_path):
    factory = make_factory(site(tmp_path))
    proto, transport = connect(factory)
    proto.dataReceived(b"GET / HTTP/1.1\r\nBad Header\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")
    got = responses(transport.value())
    assert [s for s, _, _ in got] == [400]
    assert got[0][1][b"connection"] == b"close" and transport.disconnecting
    assert factory.stats["bad_requests"] == 1


def test_half_close_after_a_request_still_gets_the_response(tmp_path):
    factory = make_factory(site(tmp_path))
    proto, transport = connect(factory)
    proto.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    proto.readConnectionLost()
    assert responses(transport.value())[0][0] == 200 and transport.disconnecting


def test_connection_lost_mid_stream_closes_the_file(tmp_path):
    factory = make_factory(site(tmp_path))
    proto, transport = connect(factory)
    proto.dataReceived(b"GET /big.bin HTTP/1.1\r\nHost: a\r\n\r\n")
    streamer = transport.producer
    fd = streamer.regions.version.fd
    streamer.stopProducing()
    proto.connectionLost(None)
    assert streamer.regions.version.fd is None
    try:
        os.fstat(fd)
        assert False, "descriptor still open"
    except OSError:
        pass


def test_login_guard_refusal_is_429_with_retry_after():
    from twisted.internet import defer

    from twisted_netapps.logins import LoginRefused
    from twisted_netapps.web.auth import Authenticator
    from twisted_netapps.web.messages import Request, Response

    def refusing_login(portal, creds, host, account, *interfaces):
        return defer.fail(LoginRefused(host, 42.4))

    auth = Authenticator(None, refusing_login, "r", [], refused_error=LoginRefused)
    head = request_head(b"PUT /x HTTP/1.1\r\nHost: a\r\nAuthorization: Basic YWxpY2U6cHc=")
    results = []
    auth.authenticate(Request(head, "127.0.0.9", 0.0), "127.0.0.9").addCallback(results.append)
    (response,) = results
    assert isinstance(response, Response) and response.status == 429 and b"Retry-After: 42\r\n" in response.fields
    no_auth = request_head(b"PUT /x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer x")
    assert auth.authenticate(Request(no_auth, "h", 0.0), "h") is None


def test_multipart_ranges_of_a_large_file_stream(tmp_path):
    import email

    factory = make_factory(site(tmp_path))
    proto, transport = connect(factory)
    data = (tmp_path / "big.bin").read_bytes()
    # the digest of a large file is computed first (synchronously here)
    proto.dataReceived(b"GET /big.bin HTTP/1.1\r\nHost: a\r\nRange: bytes=0-9,100000-299999,-5\r\n\r\n")
    while transport.producer is not None:
        transport.producer.resumeProducing()
    status, fields, body = responses(transport.value())[0]
    assert status == 206 and int(fields[b"content-length"]) == len(body)
    message = email.message_from_bytes(b"Content-Type: " + fields[b"content-type"] + b"\r\n\r\n" + body)
    assert [p.get_payload(decode=True) for p in message.get_payload()] == [data[:10], data[100000:300000], data[-5:]]


def test_a_client_that_stops_reading_a_download_is_dropped(tmp_path):
    factory = make_factory(site(tmp_path), idle=5.0)
    proto, transport = connect(factory)
    proto.dataReceived(b"GET /big.bin HTTP/1.1\r\nHost: a\r\n\r\n")
    assert transport.producer is not None  # first chunk written; the client reads no more
    factory.clock.advance(4)
    assert not transport.disconnecting
    transport.producer.resumeProducing()  # it read a bit: the clock starts again
    factory.clock.advance(4)
    assert not transport.disconnecting
    factory.clock.advance(2)
    assert transport.disconnected and factory.stats["timeouts"] == 1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(
    st.sampled_from([
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", b"GET /big.bin HTTP/1.1\r\nHost: a\r\nIf-Match: \"x\"\r\n\r\n",
        b"GET /big.bin HTTP/1.1\r\nHost: a\r\nRange: bytes=0-5,7-9\r\n\r\n",
        b"POST /form HTTP/1.1\r\nHost: a\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 3\r\n\r\na=b",
        b"GET /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        b"GET / HTTP/1.0\r\n\r\n", b"\r\n", b"GET /%2e%2e/ HTTP/1.1\r\nHost: a\r\n\r\n",
    ]),
    st.binary(max_size=40),
), max_size=6), st.integers(min_value=1, max_value=64))
def test_any_input_in_any_pieces_gets_well_formed_responses(tmp_path, inputs, step):
    factory = make_factory(site(tmp_path))
    proto, transport = connect(factory)
    data = b"".join(inputs)
    for i in range(0, len(data), step):
        if transport.disconnecting:
            break
        proto.dataReceived(data[i:i + step])
        while transport.producer is not None:
            transport.producer.resumeProducing()
    proto.readConnectionLost()
    while transport.producer is not None:
        transport.producer.resumeProducing()
    out = transport.value()
    if out:
        for status, fields, body in responses(out):  # no HEAD requests here: every body is framed
            assert 100 <= status < 600 and len(body) == int(fields.get(b"content-length", b"0"))
            assert b"date" in fields and b"server" in fields
