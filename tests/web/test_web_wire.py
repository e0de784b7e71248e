"""The web service's connection core over the shared HTTP codec: request
heads as the handlers see them, bodies, limits, pipelining."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from twisted_netapps.http.body import ChunkedDecoder
from twisted_netapps.http.events import Data, EndOfMessage, MessageError
from twisted_netapps.sansio import Close
from twisted_netapps.web.connection import RequestReceived, ServerConnection, State
from twisted_netapps.web.wire import BadRequest, Limits

from webtestlib import request_head as head


def events_of(data: bytes, limits: Limits = Limits()):
    return ServerConnection(limits).receive_data(data)


def error_of(data: bytes, limits: Limits = Limits()) -> tuple[int, str]:
    errors = [e for e in events_of(data, limits) if isinstance(e, MessageError)]
    assert errors, f"no error for {data!r}"
    return errors[0].status, errors[0].detail


# ------------------------------------------------------------ request heads


def test_origin_form_with_query():
    h = head(b"GET /a/b?x=1&y HTTP/1.1\r\nHost: example.test\r\nUser-Agent: t")
    assert (h.method, h.path, h.query, h.version, h.host) == ("GET", b"/a/b", b"x=1&y", 11, b"example.test")
    assert h.keep_alive and not h.has_body


def test_absolute_form_authority_wins_over_host():
    h = head(b"GET http://origin.test:8080/p?q HTTP/1.1\r\nHost: other.test")
    assert (h.path, h.query, h.host) == (b"/p", b"q", b"origin.test:8080")


def test_absolute_form_without_path_is_root():
    assert head(b"GET http://origin.test HTTP/1.1\r\nHost: origin.test").path == b"/"


def test_asterisk_only_for_options():
    assert head(b"OPTIONS * HTTP/1.1\r\nHost: a").path == b""
    with pytest.raises(BadRequest) as e:
        head(b"GET * HTTP/1.1\r\nHost: a")
    assert e.value.status == 400


@pytest.mark.parametrize("line, status", [
    (b"GET / HTTP/2.0", 505),
    (b"GET / HTTP/3.0", 505),
    (b"GET / HTTP/0.9", 505),
    (b"GET / HTTP/1", 400),
    (b"GET / http/1.1", 400),
    (b"GET /", 400),
    (b"GET  / HTTP/1.1", 400),
    (b"GET / HTTP/1.1 extra", 400),
    (b"GET /a#frag HTTP/1.1", 400),
    (b"GET ftp://x/ HTTP/1.1", 400),
    (b"GET http://user@x/ HTTP/1.1", 400),
    (b"G(T / HTTP/1.1", 400),
])
def test_bad_request_lines(line, status):
    with pytest.raises(BadRequest) as e:
        head(line + b"\r\nHost: a")
    assert e.value.status == status


def test_http_1_2_is_served_as_1_1():
    assert head(b"GET / HTTP/1.2\r\nHost: a").version == 11


def test_http_1_0_without_host_and_keep_alive_rules():
    h = head(b"GET / HTTP/1.0")
    assert h.version == 10 and not h.keep_alive
    assert head(b"GET / HTTP/1.0\r\nConnection: keep-alive").keep_alive
    assert not head(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close").keep_alive


@pytest.mark.parametrize("fields", [
    b"",  # HTTP/1.1 without Host
    b"\r\nHost: a\r\nHost: b",
    b"\r\nHost: a b",
    b"\r\nHost: a\r\nX : y",  # whitespace before the colon
    b"\r\nHost: a\r\nX: y\r\n folded",  # obsolete line folding
    b"\r\nHost: a\r\nX: nul\x00byte",
    b"\r\nHost: a\r\nX: bare\rcr",
    b"\r\nHost: a\r\nNoColon",
    b"\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked",
    b"\r\nHost: a\r\nContent-Length: 5, 6",
    b"\r\nHost: a\r\nContent-Length: -1",
    b"\r\nHost: a\r\nContent-Length: 0x10",
    b"\r\nHost: a\r\nTransfer-Encoding: gzip",
])
def test_bad_fields_are_400(fields):
    with pytest.raises(BadRequest) as e:
        head(b"POST / HTTP/1.1" + fields)
    assert e.value.status == 400


def test_transfer_encoding_in_http_1_0_is_refused():
    with pytest.raises(BadRequest):
        head(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked")


def test_unknown_coding_before_chunked_is_501():
    with pytest.raises(BadRequest) as e:
        head(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked")
    assert e.value.status == 501


def test_repeated_content_length_is_refused():
    # RFC 9110 8.6 lets a recipient either take "5, 5" as one length or reject
    # it; the shared codec rejects every Content-Length that is not one plain
    # number (one reading of the framing, for the proxy and the origin alike).
    with pytest.raises(BadRequest) as e:
        head(b"PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5")
    assert e.value.status == 400


def test_expect_other_than_continue_is_417():
    with pytest.raises(BadRequest) as e:
        head(b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: teapot")
    assert e.value.status == 417


def test_repeated_fields_are_joined_and_cookies_with_semicolons():
    h = head(b"GET / HTTP/1.1\r\nHost: a\r\nAccept: a\r\nACCEPT: b\r\nCookie: x=1\r\nCookie: y=2")
    assert h.headers[b"accept"] == b"a, b"
    assert h.headers[b"cookie"] == b"x=1; y=2"


def test_header_count_limit_is_431():
    fields = b"".join(b"\r\nX-%d: v" % i for i in range(20))
    with pytest.raises(BadRequest) as e:
        head(b"GET / HTTP/1.1\r\nHost: a" + fields, Limits(max_headers=10))
    assert e.value.status == 431


# ------------------------------------------------------------ the connection core


def test_pipelined_requests_come_one_at_a_time():
    conn = ServerConnection()
    events = conn.receive_data(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n")
    assert [type(e) for e in events] == [RequestReceived, EndOfMessage]
    assert events[0].head.path == b"/1"
    assert conn.buffered > 0 and conn.state is State.DONE
    head_bytes = conn.response_head(200, b"Content-Length: 0\r\n")
    assert head_bytes == b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    events = conn.response_finished()
    assert [type(e) for e in events] == [RequestReceived, EndOfMessage]
    assert events[0].head.path == b"/2"


def test_bare_lf_and_leading_empty_lines():
    events = events_of(b"\r\n\nGET / HTTP/1.1\nHost: a\n\n")
    assert isinstance(events[0], RequestReceived) and isinstance(events[1], EndOfMessage)


def test_content_length_body_in_pieces():
    conn = ServerConnection()
    events = conn.receive_data(b"PUT /f HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nhello")
    assert [type(e) for e in events] == [RequestReceived, Data]
    events = conn.receive_data(b"worldGET")
    assert events == [Data(b"world"), EndOfMessage()]
    assert conn.buffered == 3


def test_chunked_body_with_extensions_and_trailers():
    conn = ServerConnection()
    data = b"PUT /f HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\n"
    body = b""
    done = False
    for i in range(len(data)):  # byte by byte: every split point
        for e in conn.receive_data(data[i:i + 1]):
            if isinstance(e, Data):
                body += e.data
            done = done or isinstance(e, EndOfMessage)
    assert body == b"hello world" and done


@pytest.mark.parametrize("chunks", [b"zz\r\n", b"5\r\nhelloXX\r\n", b"1" * 20 + b"\r\n"])
def test_bad_chunking_is_400(chunks):
    status, _ = error_of(b"PUT /f HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks)
    assert status == 400


def test_long_request_line_is_414_before_the_line_ends():
    assert error_of(b"GET /" + b"a" * 9000, Limits(max_request_line=8192))[0] == 414


def test_huge_header_section_is_431():
    data = b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X-Filler: " + b"y" * 30000
    assert error_of(data, Limits(max_header_bytes=16384))[0] == 431


def test_noise_is_400_at_once():
    assert error_of(b"\x16\x03\x01\x02\x00")[0] == 400  # a TLS ClientHello on the plain port


def test_after_an_error_nothing_more_is_parsed_and_the_connection_closes():
    conn = ServerConnection()
    conn.receive_data(b"GET / HTTP/9.9\r\n\r\n")
    assert conn.state is State.ERROR
    assert conn.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n") == []
    assert b"Connection: close" in conn.response_head(505, b"")
    assert conn.response_finished() == [Close()]


def test_http_1_0_keep_alive_is_answered_with_keep_alive():
    conn = ServerConnection()
    conn.receive_data(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert conn.response_head(200, b"").endswith(b"Connection: keep-alive\r\n\r\n")


def test_response_before_the_body_closes():
    conn = ServerConnection()
    conn.receive_data(b"PUT /f HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nabc")
    assert b"Connection: close" in conn.response_head(401, b"")
    assert conn.response_finished() == [Close()]


def test_expect_continue_interim_response():
    conn = ServerConnection()
    conn.receive_data(b"PUT /f HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
    assert conn.informational() == b"HTTP/1.1 100 Continue\r\n\r\n"


def test_eof_mid_request_closes_and_eof_while_answering_closes_after():
    conn = ServerConnection()
    conn.receive_data(b"GET / HTTP/1.1\r\nHo")
    assert conn.receive_eof() == [Close()]
    conn = ServerConnection()
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert conn.receive_eof() == []
    assert b"Connection: close" in conn.response_head(200, b"")
    assert conn.response_finished() == [Close()]


# ------------------------------------------------------------ properties


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_give_events_never_an_exception(data):
    conn = ServerConnection(Limits(max_request_line=64, max_header_bytes=128, max_headers=5))
    events = conn.receive_data(data[: len(data) // 2]) + conn.receive_data(data[len(data) // 2:])
    for e in events:
        if isinstance(e, MessageError):
            assert e.status in (400, 414, 431, 501, 505, 417)


request_lines = st.builds(
    lambda method, path, version: b"%s /%s HTTP/%s" % (method, path, version),
    st.sampled_from([b"GET", b"HEAD", b"PUT", b"POST", b"DELETE", b"BREW"]),
    st.binary(max_size=20).map(lambda b: b.hex().encode()),
    st.sampled_from([b"1.0", b"1.1", b"2.0", b"1.x"]),
)


@settings(max_examples=300, deadline=None)
@given(request_lines, st.lists(st.tuples(st.binary(min_size=1, max_size=8), st.binary(max_size=12)), max_size=6),
       st.integers(min_value=1, max_value=40))
def test_split_points_do_not_change_the_result(line, fields, step):
    data = line + b"\r\nHost: a\r\n" + b"".join(b"%s: %s\r\n" % f for f in fields) + b"\r\n"
    whole = ServerConnection().receive_data(data)
    conn = ServerConnection()
    pieces = []
    for i in range(0, len(data), step):
        pieces += conn.receive_data(data[i:i + step])
    assert pieces == whole


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=0, max_size=200), st.integers(min_value=1, max_value=17))
def test_chunked_encoding_round_trip(body, chunk):
    encoded = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + chunk]), body[i:i + chunk]) for i in range(0, len(body), chunk))
    encoded += b"0\r\n\r\n"
    decoder = ChunkedDecoder()
    pieces = decoder.feed(encoded)
    assert decoder.done and decoder.leftover == b"" and b"".join(pieces) == body
