"""Freshness through the real proxy, both modes (RFC 9111 4.2): Cache-Control, Expires, Age, heuristics, status codes.

Each test asks twice for a fresh path; "reused" means the origin saw one
request. Responses meant to be stale arrive stale (a past Date, an Age), so
no test waits for time to pass.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from proxy_origin import Reply, http_date  # noqa: E402
from proxytestlib import origin, proxy  # noqa: E402,F401 (fixtures)


def twice(proxy, *headers, status: int = 200, body: bytes = b"payload", request_headers=()):
    path = proxy.new_path()
    proxy.origin.script(path, Reply(status, list(headers), body))
    first = proxy.get(path, request_headers)
    second = proxy.get(path, request_headers)
    return first, second, proxy.origin.count(path)


def test_positive_max_age_is_reused(proxy):
    first, second, count = twice(proxy, ("Cache-Control", "max-age=3600"))
    assert count == 1
    assert (first.x_cache, second.x_cache) == ("MISS", "HIT")
    assert second.body == b"payload"


@pytest.mark.parametrize("value", [
    "max-age=0", "max-age=-3600", "max-age=a3600", "max-age=3600a", "max-age='3600'", "max-age =3600",
    "max-age= 3600", "max-age=3600.0", "max-age=1800, max-age=1",
])
def test_zero_invalid_or_contradictory_max_age_is_not_reused(proxy, value):
    assert twice(proxy, ("Cache-Control", value))[2] == 2


@pytest.mark.parametrize("value", ['max-age="3600"', "max-age=003600", "MaX-AgE=3600", "foobar, max-age=3600",
                                   "max-age=2147483648", "max-age=99999999999"])
def test_valid_max_age_spellings_are_reused(proxy, value):
    assert twice(proxy, ("Cache-Control", value))[2] == 1


@pytest.mark.parametrize("value", ['extension="max-age=3600", max-age=1', 'max-age=1, extension="max-age=3600"'])
def test_max_age_inside_a_quoted_string_is_ignored(proxy, value):
    assert twice(proxy, ("Cache-Control", value), ("Age", "5"))[2] == 2


def test_age_above_max_age_means_stale(proxy):
    assert twice(proxy, ("Date", http_date()), ("Cache-Control", "max-age=3600"), ("Age", "7200"))[2] == 2


def test_date_far_in_the_past_means_stale(proxy):
    assert twice(proxy, ("Date", http_date(-7200)), ("Cache-Control", "max-age=3600"))[2] == 2


@pytest.mark.parametrize("age", ["abc", "-7200", "7200.0", "7200;foo=bar"])
def test_invalid_age_is_ignored(proxy, age):
    assert twice(proxy, ("Cache-Control", "max-age=3600"), ("Age", age))[2] == 1


@pytest.mark.parametrize("ages,origin_requests", [
    (["7200, 0"], 2), (["7200", "0"], 2), (["0, 7200"], 1), (["0", "7200"], 1), (["0, 0"], 1),
])
def test_the_first_of_several_age_values_counts(proxy, ages, origin_requests):
    fields = [("Age", age) for age in ages]
    assert twice(proxy, ("Date", http_date()), ("Cache-Control", "max-age=3600"), *fields)[2] == origin_requests


def test_huge_age_means_stale(proxy):
    assert twice(proxy, ("Cache-Control", "max-age=2147483648"), ("Age", "99999999999"))[2] == 2


@pytest.mark.parametrize("value,reused", [
    ("max-age=3600, s-maxage=1", False), ("s-maxage=1, max-age=3600", False),
    ("max-age=1, s-maxage=3600", True), ("max-age=0, s-maxage=3600", True), ("s-maxage=3600", True),
])
def test_shared_cache_prefers_s_maxage(proxy, value, reused):
    assert twice(proxy, ("Cache-Control", value), ("Age", "2"))[2] == (1 if reused else 2)


def test_s_maxage_on_separate_lines(proxy):
    assert twice(proxy, ("Cache-Control", "max-age=3600"), ("Cache-Control", "s-maxage=1"), ("Age", "2"))[2] == 2


def test_future_expires_is_reused(proxy):
    assert twice(proxy, ("Expires", http_date(30 * 86400)), ("Date", http_date()))[2] == 1


@pytest.mark.parametrize("expires", [
    http_date(-30 * 86400), http_date(0), "0", "Thu, 18 Aug 2050 02:01:18 UTC", "Thu, 18 Aug 50 02:01:18 GMT",
    "Thu 18 Aug 2050 02:01:18 GMT", "Thu, 18  Aug  2050 02:01:18 GMT", "Thu, 18-Aug-2050 02:01:18 GMT",
    "Thu, 18 Aug 2050 02.01.18 GMT", "Thu, 18 Aug 2050 2:01:18 GMT",
])
def test_past_present_or_invalid_expires_means_stale(proxy, expires):
    assert twice(proxy, ("Expires", expires), ("Date", http_date()))[2] == 2


def test_expires_before_date_means_stale(proxy):
    assert twice(proxy, ("Expires", http_date(300)), ("Date", http_date(400)))[2] == 2


@pytest.mark.parametrize("date,expires,age", [(-10, 10, "25"), (10, 20, "15")])
def test_age_counts_against_expires_minus_date(proxy, date, expires, age):
    assert twice(proxy, ("Date", http_date(date)), ("Expires", http_date(expires)), ("Age", age))[2] == 2


def test_expires_with_invalid_date_uses_the_receipt_time(proxy):
    assert twice(proxy, ("Date", "foo"), ("Expires", http_date(100)))[2] == 1


@pytest.mark.parametrize("expires", [http_date(-7200), "0"])
def test_max_age_overrides_a_past_or_invalid_expires(proxy, expires):
    assert twice(proxy, ("Cache-Control", "max-age=3600"), ("Expires", expires), ("Date", http_date()))[2] == 1


def test_max_age_zero_overrides_a_future_expires(proxy):
    assert twice(proxy, ("Cache-Control", "max-age=0"), ("Expires", http_date(3600)), ("Date", http_date()))[2] == 2


@pytest.mark.parametrize("expires", ["THU, 18 AUG 2050 02:01:18 GMT", "Thu, 18 Aug 2050 02:01:18 gMT"])
def test_expires_names_in_another_case_are_accepted(proxy, expires):
    assert twice(proxy, ("Expires", expires), ("Date", http_date()))[2] == 1


@pytest.mark.parametrize("status,reused", [
    (200, True), (203, True), (204, True), (404, True), (405, True), (410, True), (414, True), (501, True),
    (201, False), (202, False), (403, False), (502, False), (503, False), (504, False), (599, False),
])
def test_heuristic_freshness_only_for_heuristically_cacheable_statuses(proxy, status, reused):
    first, second, count = twice(proxy, ("Last-Modified", http_date(-86400)), ("Date", http_date()),
                                 status=status, body=b"" if status == 204 else b"payload")
    assert second.status == status
    assert count == (1 if reused else 2)


def test_heuristic_freshness_for_unknown_status_with_public(proxy):
    assert twice(proxy, ("Last-Modified", http_date(-86400)), ("Date", http_date()),
                 ("Cache-Control", "public"), status=599)[2] == 1


def test_no_freshness_information_is_not_reused(proxy):
    assert twice(proxy, ("Date", http_date()))[2] == 2


def test_heuristic_is_ten_percent_of_last_modified_age(proxy):
    # Last-Modified 100 s before Date: fresh for 10 s. An Age of 11 makes it stale, 5 does not.
    assert twice(proxy, ("Last-Modified", http_date(-100)), ("Date", http_date()), ("Age", "11"))[2] == 2
    assert twice(proxy, ("Last-Modified", http_date(-100)), ("Date", http_date()), ("Age", "5"))[2] == 1


@pytest.mark.parametrize("status", [200, 203, 204, 299, 301, 302, 303, 307, 308, 400, 404, 410, 499, 500, 502,
                                    503, 504, 599])
def test_any_final_status_with_explicit_freshness_is_reused(proxy, status):
    fresh = [("Expires", http_date(100000)), ("Cache-Control", "max-age=100000"),
             ("Last-Modified", http_date(-100000)), ("Date", http_date())]
    first, second, count = twice(proxy, *fresh, status=status, body=b"" if status == 204 else b"x")
    assert (count, second.status) == (1, status)


@pytest.mark.parametrize("status", [200, 301, 404, 500, 599])
def test_stale_status_is_not_reused(proxy, status):
    stale = [("Expires", http_date(-5000)), ("Last-Modified", http_date(-100000)), ("Date", http_date())]
    assert twice(proxy, *stale, status=status)[2] == 2
