"""Conditional requests, byte ranges and HTTP dates as pure functions."""

from __future__ import annotations

import calendar

import pytest
from hypothesis import given, strategies as st

from twisted_netapps.http.dates import format_http_date, parse_http_date
from twisted_netapps.web.conditional import (
    Validators, evaluate_preconditions, if_range_allows, parse_entity_tags, strong_match, weak_match,
)
from twisted_netapps.web.ranges import multipart_layout, parse_byte_ranges, select_ranges

LM = calendar.timegm((2024, 1, 2, 3, 4, 5, 0, 0, 0))
NOW = LM + 3600
ETAG = b'"abc"'
V = Validators(ETAG, LM)


def pre(method="GET", **headers):
    fields = {k.replace("_", "-").encode(): v for k, v in headers.items()}
    return evaluate_preconditions(method, fields, V, NOW)


# ------------------------------------------------------------ dates


def test_three_date_formats():
    for text in (b"Tue, 02 Jan 2024 03:04:05 GMT", b"Tuesday, 02-Jan-24 03:04:05 GMT", b"Tue Jan  2 03:04:05 2024"):
        assert parse_http_date(text, NOW) == LM, text


@pytest.mark.parametrize("text", [
    b"Tue 02 Jan 2024 03:04:05 GMT",  # missing comma
    b"Tue, 02 Jan 2024 03:04:05 +0000",  # a zone other than GMT
    b"Tue, 2 Jan 2024 03:04:05 GMT",  # one-digit day
    b"Tue, 31 Feb 2024 03:04:05 GMT",  # no such day
    b"Tue, 02 Jan 2024 25:04:05 GMT",
    b"2024-01-02T03:04:05Z",
    b"", b"yesterday", b"Tue, 02 Jan 2024 03:04:05 GMT, Tue, 02 Jan 2024 03:04:05 GMT",
])
def test_invalid_dates(text):
    assert parse_http_date(text, NOW) is None


@given(st.integers(min_value=0, max_value=253402300799))
def test_format_parse_round_trip(seconds):
    assert parse_http_date(format_http_date(seconds)) == seconds


# ------------------------------------------------------------ entity-tags


def test_entity_tag_lists():
    assert parse_entity_tags(b'"a", W/"b" ,"c"') == [(False, b'"a"'), (True, b'"b"'), (False, b'"c"')]
    assert parse_entity_tags(b" * ") is None
    assert parse_entity_tags(b'bogus, "x"') == [(False, b'"x"')]


def test_strong_and_weak_comparison():
    assert strong_match(b'"abc"', ETAG) and not strong_match(b'W/"abc"', ETAG)
    assert weak_match(b'W/"abc"', ETAG) and weak_match(b'"abc"', b'W/"abc"')
    assert not strong_match(b'"abc"', b'W/"abc"')


# ------------------------------------------------------------ preconditions (RFC 9110 13.2.2)


def test_if_none_match_gives_304_for_get_and_412_for_put():
    assert pre(if_none_match=ETAG) == 304
    assert pre("HEAD", if_none_match=b'"x", W/"abc"') == 304
    assert pre("PUT", if_none_match=ETAG) == 412
    assert pre(if_none_match=b'"other"') is None
    assert pre(if_none_match=b"*") == 304


def test_if_none_match_wins_over_if_modified_since():
    # the tag differs, so the date (which alone would give 304) is ignored
    assert pre(if_none_match=b'"other"', if_modified_since=format_http_date(NOW)) is None
    assert pre(if_none_match=ETAG, if_modified_since=format_http_date(LM - 100)) == 304


def test_if_modified_since():
    assert pre(if_modified_since=format_http_date(LM)) == 304
    assert pre(if_modified_since=format_http_date(LM + 10)) == 304
    assert pre(if_modified_since=format_http_date(LM - 1)) is None
    assert pre(if_modified_since=b"not a date") is None
    assert pre(if_modified_since=format_http_date(NOW + 60)) is None  # from the future: ignored
    assert pre("POST", if_modified_since=format_http_date(LM)) is None


def test_if_match_and_if_unmodified_since_give_412():
    assert pre(if_match=ETAG) is None
    assert pre(if_match=b'"other"') == 412
    assert pre(if_match=b'W/"abc"') == 412  # weak never matches If-Match
    assert pre(if_match=b"*") is None
    assert pre(if_unmodified_since=format_http_date(LM - 1)) == 412
    assert pre(if_unmodified_since=format_http_date(LM)) is None
    # If-Match present: If-Unmodified-Since is not looked at
    assert pre(if_match=ETAG, if_unmodified_since=format_http_date(LM - 1)) is None


def test_missing_resource():
    missing = Validators(None, None, exists=False)
    assert evaluate_preconditions("PUT", {b"if-match": b"*"}, missing, NOW) == 412
    assert evaluate_preconditions("PUT", {b"if-none-match": b"*"}, missing, NOW) is None
    assert evaluate_preconditions("PUT", {b"if-none-match": b"*"}, V, NOW) == 412


def test_if_range():
    assert if_range_allows(None, V, NOW)
    assert if_range_allows(ETAG, V, NOW)
    assert not if_range_allows(b'"other"', V, NOW)
    assert not if_range_allows(b'W/"abc"', V, NOW)
    assert if_range_allows(format_http_date(LM), V, NOW)
    assert not if_range_allows(format_http_date(LM + 1), V, NOW)  # only an exact date
    assert not if_range_allows(format_http_date(LM), V, LM)  # a Last-Modified of this second is weak
    assert not if_range_allows(ETAG, Validators(b'W/"abc"', LM), NOW)


# ------------------------------------------------------------ ranges


@pytest.mark.parametrize("value, expected", [
    (b"bytes=0-99", [(0, 99)]),
    (b"bytes=100-", [(100, 999)]),
    (b"bytes=-100", [(900, 999)]),
    (b"bytes=-5000", [(0, 999)]),
    (b"bytes=990-2000", [(990, 999)]),
    (b"bytes=0-0,-1", [(0, 0), (999, 999)]),
    (b"bytes=500-599,0-99", [(500, 599), (0, 99)]),  # client order kept
    (b"bytes=0-499,400-599", [(0, 599)]),  # overlapping: coalesced
    (b"bytes=0-9,10-19", [(0, 19)]),  # adjacent: coalesced
    (b"BYTES = 0-9", [(0, 9)]),
    (b"bytes=5000-", []),  # unsatisfiable: 416
    (b"bytes=-0", []),
    (b"bytes=10-5", None),  # invalid: ignored
    (b"bytes=abc", None),
    (b"items=0-5", None),
    (b"bytes=", None),
])
def test_select_ranges(value, expected):
    assert select_ranges(value, 1000, 16) == expected


def test_too_many_ranges_are_ignored_and_empty_files_have_no_ranges():
    many = b"bytes=" + b",".join(b"%d-%d" % (i * 10, i * 10) for i in range(20))
    assert select_ranges(many, 1000, 16) is None
    assert select_ranges(b"bytes=0-0", 0, 16) is None


def test_multipart_layout_length_is_exact():
    parts, closing, total = multipart_layout([(0, 9), (20, 29)], 100, b"text/plain", b"BOUNDARY")
    body = b"".join(h + b"x" * (last - first + 1) for h, first, last in parts) + closing
    assert len(body) == total
    assert body.startswith(b"--BOUNDARY\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-9/100\r\n\r\n")
    assert body.endswith(b"\r\n--BOUNDARY--\r\n")


@given(st.integers(min_value=1, max_value=5000), st.lists(
    st.tuples(st.one_of(st.none(), st.integers(0, 6000)), st.one_of(st.none(), st.integers(0, 6000))),
    min_size=1, max_size=8))
def test_selected_ranges_are_inside_and_disjoint(size, specs):
    parts = []
    for first, last in specs:
        if first is None and last is None:
            continue
        parts.append(f"-{last}" if first is None else f"{first}-{'' if last is None else last}")
    if not parts:
        return
    value = ("bytes=" + ",".join(parts)).encode()
    result = select_ranges(value, size, 16)
    if parse_byte_ranges(value) is None:
        assert result is None
        return
    assert result is not None
    for first, last in result:
        assert 0 <= first <= last < size
    ordered = sorted(result)
    assert all(a[1] < b[0] for a, b in zip(ordered, ordered[1:]))
