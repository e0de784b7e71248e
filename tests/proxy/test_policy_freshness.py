"""Unit tests of Cache-Control parsing and freshness (RFC 9111 1.2.2, 4.2, 5.2, 5.3, 5.4): one test per rule."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from twisted_netapps.http.dates import format_http_date
from twisted_netapps.http.fields import Headers
from twisted_netapps.proxy.policy.directives import (
    ANY_STALENESS,
    DELTA_MAX,
    delta_seconds,
    parse_request_directives,
    parse_response_directives,
)
from twisted_netapps.proxy.policy.freshness import (
    HeuristicRule,
    compute_freshness,
    corrected_initial_age,
    date_value,
    freshness_lifetime,
    parse_age,
)

NOW = 1_800_000_000.0


def h(*pairs) -> Headers:
    return Headers([(n.encode("latin-1"), v.encode("latin-1")) for n, v in pairs])


def date(offset: float) -> str:
    return format_http_date(NOW + offset).decode()


def lifetime(*pairs, status: int = 200, response_time: float = NOW) -> float:
    headers = h(*pairs)
    return freshness_lifetime(status, headers, parse_response_directives(headers), date_value(headers, response_time))


# -- delta-seconds and directives ------------------------------------------------------

def test_delta_seconds_is_plain_digits():
    assert [delta_seconds(v) for v in (b"0", b"003600", b"-1", b"1.0", b"a1", b"1a", b"", None)] == [
        0, 3600, None, None, None, None, None, None]


def test_delta_seconds_larger_than_2_31_is_2_31():
    assert delta_seconds(b"99999999999") == DELTA_MAX == 2**31


def test_directive_names_are_case_insensitive():
    d = parse_response_directives(h(("Cache-Control", "MaX-AgE=5, No-StOrE, PUBLIC")))
    assert (d.max_age, d.no_store, d.public) == (5, True, True)


def test_quoted_max_age_is_accepted():
    assert parse_response_directives(h(("Cache-Control", 'max-age="3600"'))).max_age == 3600


def test_invalid_max_age_makes_the_response_stale():
    for value in ("max-age=a100", "max-age=100a", "max-age=-1", "max-age='3600'", "max-age =5", "max-age= 5",
                  "max-age=", "max-age=3600.0"):
        assert parse_response_directives(h(("Cache-Control", value))).max_age == 0, value


def test_contradictory_max_age_makes_the_response_stale():
    assert parse_response_directives(h(("Cache-Control", "max-age=1800, max-age=1"))).max_age == 0
    assert parse_response_directives(h(("Cache-Control", "max-age=5"), ("Cache-Control", "max-age=5"))).max_age == 5


def test_a_quoted_string_hides_what_looks_like_directives():
    d = parse_response_directives(h(("Cache-Control", 'extension="max-age=100, no-store", max-age=1')))
    assert (d.max_age, d.no_store) == (1, False)


def test_no_cache_and_private_with_field_names_are_qualified():
    d = parse_response_directives(h(("Cache-Control", 'no-cache="A, b", private="Set-Cookie"')))
    assert (d.no_cache, d.no_cache_fields, d.private, d.private_fields) == (
        False, frozenset({b"a", b"b"}), False, frozenset({b"set-cookie"}))
    assert parse_response_directives(h(("Cache-Control", 'no-cache="unterminated'))).no_cache


def test_stale_extensions_rfc5861():
    d = parse_response_directives(h(("Cache-Control", "stale-if-error=60, stale-while-revalidate=30")))
    assert (d.stale_if_error, d.stale_while_revalidate) == (60, 30)


def test_request_directives():
    d = parse_request_directives(h(("Cache-Control", "max-age=60, max-age=30, min-fresh=5, max-stale, no-cache, "
                                                      "no-store, only-if-cached, stale-if-error=9")))
    assert (d.max_age, d.min_fresh, d.max_stale, d.no_cache, d.no_store, d.only_if_cached, d.stale_if_error) == (
        30, 5, ANY_STALENESS, True, True, True, 9)


def test_invalid_request_directive_values_are_ignored():
    assert parse_request_directives(h(("Cache-Control", "max-age=abc"))).max_age is None


def test_pragma_no_cache_counts_only_without_cache_control():
    assert parse_request_directives(h(("Pragma", "no-cache"))).no_cache
    assert not parse_request_directives(h(("Pragma", "no-cache"), ("Cache-Control", "max-stale"))).no_cache
    assert not parse_request_directives(h(("Pragma", "foo"))).no_cache


def test_pragma_means_nothing_in_responses():
    assert parse_response_directives(h(("Pragma", "no-cache"))).no_cache is False


# -- freshness lifetime (4.2.1) --------------------------------------------------------

def test_s_maxage_wins_over_max_age_in_a_shared_cache():
    assert lifetime(("Cache-Control", "max-age=3600, s-maxage=1")) == 1
    assert lifetime(("Cache-Control", "max-age=1, s-maxage=3600")) == 3600


def test_max_age_wins_over_expires():
    assert lifetime(("Cache-Control", "max-age=60"), ("Expires", date(-1000)), ("Date", date(0))) == 60


def test_expires_minus_date():
    assert lifetime(("Expires", date(500)), ("Date", date(100))) == 400


def test_past_expires_is_stale():
    assert lifetime(("Expires", date(-10)), ("Date", date(0))) == 0


def test_invalid_expires_means_already_expired():
    for value in ("0", "Thu, 18 Aug 2050 02:01:18 UTC", "Thu, 18 Aug 50 02:01:18 GMT", "Thu 18 Aug 2050 02:01:18 GMT",
                  "Thu, 18-Aug-2050 02:01:18 GMT", "Thu, 18 Aug 2050 2:01:18 GMT", "tomorrow"):
        assert lifetime(("Expires", value), ("Date", date(0)), ("Last-Modified", date(-99999))) == 0, value


def test_two_different_expires_mean_stale():
    assert lifetime(("Expires", date(100)), ("Expires", date(200)), ("Date", date(0))) == 0


def test_missing_or_invalid_date_is_the_receipt_time():
    assert date_value(h(), NOW) == NOW
    assert date_value(h(("Date", "foo")), NOW) == NOW
    assert lifetime(("Expires", date(10)), ("Date", "foo")) == 10


def test_heuristic_is_a_fraction_of_the_last_modified_age():
    assert lifetime(("Last-Modified", date(-1000)), ("Date", date(0))) == 100


def test_heuristic_is_capped():
    headers = h(("Last-Modified", date(-10**8)), ("Date", date(0)))
    d = parse_response_directives(headers)
    assert freshness_lifetime(200, headers, d, NOW, heuristic=HeuristicRule(0.1, 3600)) == 3600


def test_heuristic_only_for_heuristically_cacheable_statuses_or_public():
    assert lifetime(("Last-Modified", date(-1000)), ("Date", date(0)), status=201) == 0
    assert lifetime(("Last-Modified", date(-1000)), ("Date", date(0)), status=404) == 100
    assert lifetime(("Last-Modified", date(-1000)), ("Date", date(0)), ("Cache-Control", "public"), status=599) == 100


def test_no_heuristic_when_an_explicit_expiry_is_present():
    assert lifetime(("Last-Modified", date(-100000)), ("Date", date(0)), ("Expires", date(-1))) == 0


def test_no_heuristic_from_a_last_modified_after_date():
    assert lifetime(("Last-Modified", date(100)), ("Date", date(0))) == 0


# -- age (4.2.3, 5.1) -------------------------------------------------------------------

def test_age_must_be_digits():
    assert [parse_age(h(("Age", v))) for v in ("15", "abc", "-7200", "7200.0", "7200;foo=bar", " 15 ")] == [
        15, 0, 0, 0, 0, 15]


def test_the_first_of_several_age_values_counts():
    assert [parse_age(h(("Age", v))) for v in ("7200, 0", "0, 7200", "0,7200", "3600, 3600", "abc, 7200")] == [
        7200, 0, 0, 3600, 0]
    assert parse_age(h(("Age", "7200"), ("Age", "0"))) == 7200
    assert parse_age(h(("Age", "0"), ("Age", "7200"))) == 0


def test_huge_age_is_capped_and_stale():
    assert parse_age(h(("Age", "99999999999"))) == DELTA_MAX
    f = compute_freshness(200, h(("Age", "99999999999"), ("Cache-Control", "max-age=99999999999")),
                          parse_response_directives(h(("Cache-Control", "max-age=99999999999"))), NOW, NOW)
    assert not f.is_fresh(NOW)


def test_corrected_initial_age_takes_the_larger_estimate():
    assert corrected_initial_age(0, NOW - 100, NOW - 1, NOW) == 100  # apparent age (Date slow)
    assert corrected_initial_age(30, NOW, NOW - 2, NOW) == 32  # Age plus the response delay


def test_age_counts_against_expires_minus_date():
    headers = h(("Date", date(-10)), ("Expires", date(10)), ("Age", "25"))
    f = compute_freshness(200, headers, parse_response_directives(headers), NOW, NOW)
    assert (f.lifetime, f.age(NOW), f.is_fresh(NOW)) == (20, 25, False)


def test_resident_time_adds_to_age():
    headers = h(("Date", date(0)), ("Cache-Control", "max-age=10"))
    f = compute_freshness(200, headers, parse_response_directives(headers), NOW, NOW)
    assert f.is_fresh(NOW + 9.9) and not f.is_fresh(NOW + 10)
    assert f.fresh_until == NOW + 10


# -- properties ---------------------------------------------------------------------------

@given(st.binary(max_size=200))
def test_any_cache_control_parses(value):
    parse_response_directives(Headers([(b"Cache-Control", value)]))
    parse_request_directives(Headers([(b"Cache-Control", value)]))


@given(st.binary(max_size=50))
def test_age_parsing_never_fails_and_is_bounded(value):
    assert 0 <= parse_age(Headers([(b"Age", value)])) <= DELTA_MAX


@given(st.text(alphabet="0123456789 ,:-ADFJMNOSTUacdeghilnoprtuvy", max_size=40))
def test_unparseable_expires_is_always_stale(value):
    headers = h(("Expires", value), ("Date", date(0)))
    from twisted_netapps.http.dates import parse_http_date

    if parse_http_date(value.encode()) is None:
        assert lifetime(("Expires", value), ("Date", date(0))) == 0


@given(st.integers(0, 10**6), st.integers(0, 10**6), st.floats(0, 10**6))
def test_fresh_exactly_while_lifetime_exceeds_age(max_age, age, resident):
    headers = h(("Date", date(0)), ("Cache-Control", f"max-age={max_age}"), ("Age", str(age)))
    f = compute_freshness(200, headers, parse_response_directives(headers), NOW, NOW)
    assert f.is_fresh(NOW + resident) == (max_age > age + resident)
