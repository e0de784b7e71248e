"""The sans-I/O HTTP/1.1 codec: fields, dates, heads, framing, both connection ends, with hypothesis."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twisted_netapps.http.body import LAST_CHUNK, ChunkedDecoder, encode_chunk
from twisted_netapps.http.client import ClientConnection
from twisted_netapps.http.dates import format_http_date, parse_http_date
from twisted_netapps.http.errors import ProtocolError
from twisted_netapps.http.events import (
    Data,
    EndOfMessage,
    InterimResponse,
    MessageError,
    RequestReceived,
    ResponseReceived,
)
from twisted_netapps.http.fields import INVALID, Headers, parse_directives, split_list, strip_hop_by_hop, unquote
from twisted_netapps.http.server import ServerConnection

# -- fields -------------------------------------------------------------------------------


def test_headers_keep_lines_and_join_on_get():
    headers = Headers([(b"Set-Cookie", b"a=b"), (b"set-cookie", b"c=d"), (b"X", b"1")])
    assert headers.get_all(b"set-cookie") == (b"a=b", b"c=d")
    assert headers.get(b"set-cookie") == b"a=b, c=d"
    headers.set(b"X", b"2")
    assert headers.serialize() == b"Set-Cookie: a=b\r\nset-cookie: c=d\r\nX: 2\r\n"


def test_split_list_respects_quotes_and_drops_empty_members():
    assert split_list(b' a , "b, c" ,, d ') == [b"a", b'"b, c"', b"d"]
    assert split_list(b'"x\\", y", z') == [b'"x\\", y"', b"z"]


def test_unquote():
    assert unquote(b'"a\\"b"') == b'a"b'
    assert unquote(b'"a"b"') is None and unquote(b'"open') is None


def test_parse_directives():
    assert parse_directives([b'a, B=1, c="x, y", d=, e =1, f=\'q\'']) == [
        (b"a", None), (b"b", b"1"), (b"c", b"x, y"), (b"d", INVALID), (b"e", INVALID), (b"f", b"'q'")]


def test_strip_hop_by_hop_removes_connection_options():
    headers = Headers([(b"Connection", b"close, X-A"), (b"X-A", b"1"), (b"Upgrade", b"h2c"), (b"Keep", b"1")])
    assert list(strip_hop_by_hop(headers)) == [(b"Keep", b"1")]


@given(st.binary(max_size=100))
def test_list_and_directive_parsing_never_fail(value):
    split_list(value)
    parse_directives([value])


# -- dates --------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [b"Sun, 06 Nov 1994 08:49:37 GMT", b"Sunday, 06-Nov-94 08:49:37 GMT",
                                  b"Sun Nov  6 08:49:37 1994"])
def test_the_three_date_formats(text):
    assert parse_http_date(text) == 784111777


@pytest.mark.parametrize("text", [b"0", b"Sun, 06 Nov 94 08:49:37 GMT", b"Sun, 06 Nov 1994 08:49:37 UTC",
                                  b"Sun 06 Nov 1994 08:49:37 GMT", b"Sun, 06  Nov 1994 08:49:37 GMT",
                                  b"Sun, 06-Nov-1994 08:49:37 GMT", b"Sun, 06 Nov 1994 08.49.37 GMT",
                                  b"Sun, 06 Nov 1994 8:49:37 GMT", b"Sun, 31 Feb 1994 08:49:37 GMT",
                                  b"Sun, 06 Nov 1994 24:49:37 GMT", b""])
def test_invalid_dates(text):
    assert parse_http_date(text) is None


def test_two_digit_years_more_than_50_years_ahead_are_in_the_past():
    now = parse_http_date(b"Fri, 04 Dec 2026 00:00:00 GMT")
    assert parse_http_date(b"Sunday, 06-Nov-94 08:49:37 GMT", now) == 784111777  # 1994, not 2094
    assert parse_http_date(b"Sunday, 06-Nov-60 08:49:37 GMT", now) > now  # 2060: within 50 years


@given(st.integers(0, 253402300799))
def test_format_then_parse_round_trips(timestamp):
    assert parse_http_date(format_http_date(timestamp)) == timestamp


@given(st.binary(max_size=40))
def test_date_parsing_never_fails(value):
    parse_http_date(value)


# -- the server side ----------------------------------------------------------------------

def feed(core, data: bytes, pieces: list[int] | None = None) -> list:
    events = []
    cuts = sorted({min(p, len(data)) for p in (pieces or [])}) + [len(data)]
    start = 0
    for cut in cuts:
        events += core.receive_data(data[start:cut])
        start = cut
    return events


def test_request_with_length_body_and_pipelining():
    core = ServerConnection()
    events = feed(core, b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcGET /b HTTP/1.1\r\nHost: h\r\n\r\n")
    assert [type(e) for e in events] == [RequestReceived, Data, EndOfMessage]
    assert events[1].data == b"abc"
    more = core.next_request()
    assert [type(e) for e in more] == [RequestReceived, EndOfMessage] and more[0].head.target == b"/b"


@pytest.mark.parametrize("data,status", [
    (b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
    (b"GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", 400),  # 9112 6.3: MUST 400
    (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),  # an invalid Host (9112 3.2)
    (b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400),
    (b"\x16\x03\x01\x02\x00", 400),  # noise (a TLS ClientHello): refused before a head ends
    (b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1, 1\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: h\r\nX : y\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: h\r\nX: y\r\n folded\r\n\r\n", 400),
    (b"GET / HTTP/3.0\r\nHost: h\r\n\r\n", 505),
    (b"GET / HTTP/1.1\r\n\r\n", 400),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\nHost: h\r\n" + b"X: y\r\n" * 101 + b"\r\n", 431),
    (b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"y" * 80000, 431),  # incomplete, past line + section
])
def test_bad_requests_give_one_error_event(data, status):
    core = ServerConnection()
    events = feed(core, data)
    assert isinstance(events[-1], MessageError) and events[-1].status == status
    assert core.receive_data(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n") == []  # dead from then on


def test_http_1_0_keep_alive_rules():
    core = ServerConnection()
    assert not feed(core, b"GET / HTTP/1.0\r\n\r\n")[0].keep_alive
    core = ServerConnection()
    assert feed(core, b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")[0].keep_alive


requests = st.lists(st.tuples(st.sampled_from([b"GET", b"POST", b"PUT"]), st.binary(max_size=50),
                              st.booleans()), min_size=1, max_size=4)


@given(requests, st.lists(st.integers(0, 400), max_size=10))
@settings(max_examples=200)
def test_any_chunking_of_a_request_stream_gives_the_same_events(reqs, cuts):
    stream = b""
    for method, body, chunked in reqs:
        if chunked:
            framed = b"".join(encode_chunk(body[i:i + 7]) for i in range(0, len(body), 7)) + LAST_CHUNK
            stream += method + b" /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" + framed
        else:
            stream += method + b" /x HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % len(body) + body

    def run(pieces):
        core, seen, bodies = ServerConnection(), [], []
        events = feed(core, stream, pieces)
        while True:
            for event in events:
                if isinstance(event, RequestReceived):
                    seen.append(event.head.method)
                    bodies.append(b"")
                elif isinstance(event, Data):
                    bodies[-1] += event.data
            if not events or not isinstance(events[-1], EndOfMessage):
                break
            events = core.next_request()
        return seen, bodies

    assert run(cuts) == run([]) == ([m for m, _b, _c in reqs], [b for _m, b, _c in reqs])


@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=5))
def test_arbitrary_bytes_never_raise_out_of_the_server_core(data, cuts):
    core = ServerConnection(max_field_section=200, max_request_line=100)
    for event in feed(core, data, cuts) + core.receive_eof():
        assert isinstance(event, (RequestReceived, Data, EndOfMessage, MessageError))


# -- chunked coding --------------------------------------------------------------------------

@given(st.lists(st.binary(min_size=1, max_size=40), max_size=6), st.lists(st.integers(0, 300), max_size=6))
def test_chunked_round_trip_under_any_split(chunks, cuts):
    encoded = b"".join(encode_chunk(c) for c in chunks) + LAST_CHUNK + b"NEXT"
    decoder = ChunkedDecoder()
    out = b""
    start = 0
    for cut in sorted(set(min(c, len(encoded)) for c in cuts)) + [len(encoded)]:
        out += b"".join(decoder.feed(encoded[start:cut]))
        start = cut
    assert out == b"".join(chunks) and decoder.done and decoder.leftover == b"NEXT"


@given(st.binary(max_size=100))
def test_chunked_garbage_is_a_protocol_error_or_more_input(data):
    try:
        ChunkedDecoder().feed(data)
    except ProtocolError as e:
        assert e.status == 400


# -- the client side ------------------------------------------------------------------------

def test_interim_then_final_response():
    core = ClientConnection()
    core.start(b"GET")
    events = core.receive_data(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert [type(e) for e in events] == [InterimResponse, ResponseReceived, Data, EndOfMessage]
    assert events[-1].reusable


def test_head_response_has_no_body_and_close_delimited_is_not_reusable():
    core = ClientConnection()
    core.start(b"HEAD")
    assert [type(e) for e in core.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n")] == [
        ResponseReceived, EndOfMessage]
    core = ClientConnection()
    core.start(b"GET")
    assert [type(e) for e in core.receive_data(b"HTTP/1.1 200 OK\r\n\r\nabc")] == [ResponseReceived, Data]
    assert core.receive_eof() == [EndOfMessage(reusable=False)]


@pytest.mark.parametrize("data", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
    b"HTTP/2 200\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX: a\x00b\r\n\r\n",
])
def test_bad_responses_are_502(data):
    core = ClientConnection()
    core.start(b"GET")
    events = core.receive_data(data)
    assert isinstance(events[-1], MessageError) and events[-1].status == 502


def test_short_body_is_an_error_not_a_complete_message():
    core = ClientConnection()
    core.start(b"GET")
    core.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort")
    assert isinstance(core.receive_eof()[0], MessageError)


def test_folded_response_fields_are_unfolded():
    core = ClientConnection()
    core.start(b"GET")
    events = core.receive_data(b"HTTP/1.1 204 No Content\r\nX: a\r\n  b\r\n\r\n")
    assert events[0].head.headers.get(b"x") == b"a b"


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise_out_of_the_client_core(data):
    core = ClientConnection(max_head=200)
    core.start(b"GET")
    core.receive_data(data)
    core.receive_eof()
