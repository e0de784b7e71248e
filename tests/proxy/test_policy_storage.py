"""Unit tests of what is stored, Vary, reuse, validation and invalidation (RFC 9111 3, 4.1, 4.2.4, 4.3, 4.4)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from twisted_netapps.http.fields import Headers
from twisted_netapps.proxy.policy.directives import (
    NO_REQUEST_DIRECTIVES,
    RequestDirectives,
    ResponseDirectives,
    parse_request_directives,
    parse_response_directives,
)
from twisted_netapps.proxy.policy.freshness import Freshness
from twisted_netapps.proxy.policy.invalidation import invalidated_uris, invalidates
from twisted_netapps.proxy.policy.reuse import Action, choose, stale_on_error_allowed
from twisted_netapps.proxy.policy.storability import fields_to_store, refusal
from twisted_netapps.proxy.policy.validation import (
    client_not_modified,
    freshen_fields,
    head_matches,
    parse_entity_tag,
    selects,
    strong_match,
    validation_fields,
    weak_match,
)
from twisted_netapps.proxy.policy.vary import normalize, secondary_key, vary_matches, vary_names

NOW = 1_800_000_000.0


def h(*pairs) -> Headers:
    return Headers([(n.encode("latin-1"), v.encode("latin-1")) for n, v in pairs])


def why_not(response=(), request=(), status=200, method=b"GET"):
    request_headers, response_headers = h(*request), h(*response)
    return refusal(method, request_headers, parse_request_directives(request_headers), status, response_headers,
                   parse_response_directives(response_headers))


FRESH = ("Cache-Control", "max-age=60")

# -- storability (3, 3.5) ------------------------------------------------------------------


def test_fresh_get_response_is_storable():
    assert why_not([FRESH]) is None


def test_only_get_responses_are_stored():
    assert why_not([FRESH], method=b"HEAD") and why_not([FRESH], method=b"POST")


def test_interim_partial_and_not_modified_are_not_entries():
    assert all(why_not([FRESH], status=s) for s in (103, 206, 304))


def test_no_store_response_is_not_stored():
    assert why_not([("Cache-Control", "max-age=60, no-store")])


def test_must_understand_overrides_no_store_for_understood_status_only():
    assert why_not([("Cache-Control", "max-age=60, no-store, must-understand")]) is None
    assert why_not([("Cache-Control", "max-age=60, no-store, must-understand")], status=599)


def test_request_no_store_prevents_storing():
    assert why_not([FRESH], [("Cache-Control", "no-store")])


def test_private_is_not_stored_by_a_shared_cache():
    assert why_not([("Cache-Control", "private, max-age=60")])
    assert why_not([("Cache-Control", 'private="X-Secret", max-age=60')]) is None


def test_authorization_needs_public_must_revalidate_or_s_maxage():
    auth = [("Authorization", "Basic x")]
    assert why_not([FRESH], auth)
    for cc in ("public, max-age=60", "must-revalidate, max-age=60", "s-maxage=60"):
        assert why_not([("Cache-Control", cc)], auth) is None, cc


def test_vary_star_is_not_stored():
    assert why_not([FRESH, ("Vary", "Foo, *")])


def test_without_freshness_information_only_heuristic_statuses_are_stored():
    assert why_not([], status=200) is None
    assert why_not([], status=201)
    assert why_not([("Cache-Control", "public")], status=201) is None
    assert why_not([("Expires", "0")], status=201) is None  # stored, but stale at once


def test_hop_by_hop_connection_listed_and_proxy_fields_are_not_stored():
    headers = h(("Connection", "close, X-Opt"), ("X-Opt", "1"), ("Keep-Alive", "5"), ("Transfer-Encoding", "chunked"),
                ("Proxy-Authenticate", "Basic"), ("Set-Cookie", "a=b"), ("X-Keep", "1"))
    kept = fields_to_store(headers, parse_response_directives(headers))
    assert kept.names() == {b"set-cookie", b"x-keep"}


def test_fields_named_by_no_cache_and_private_are_not_stored():
    headers = h(("Cache-Control", 'no-cache="a", private="b"'), ("a", "1"), ("b", "2"), ("c", "3"))
    kept = fields_to_store(headers, parse_response_directives(headers))
    assert b"a" not in kept and b"b" not in kept and kept.get(b"c") == b"3"


# -- Vary (4.1) -----------------------------------------------------------------------------

def test_vary_names_in_order_without_duplicates():
    assert vary_names(h(("Vary", "Foo, bar"), ("Vary", "FOO"))) == (b"foo", b"bar")


def test_vary_star_anywhere_never_matches():
    for lines in (["*"], ["*, *"], ["Foo, *"], ["", "*"], [", *"]):
        names = vary_names(h(*[("Vary", v) for v in lines]))
        assert names is None
        assert not vary_matches(names, (), h())


def test_vary_normalises_whitespace_and_lines():
    assert normalize(b"foo", [b" 1, 2 "]) == normalize(b"foo", [b"1,2"]) == normalize(b"foo", [b"1", b"2"])


def test_vary_folds_case_only_where_values_are_case_insensitive():
    assert normalize(b"accept-language", [b"eN, De"]) == normalize(b"accept-language", [b"en,de"])
    assert normalize(b"accept-encoding", [b"GZIP"]) == normalize(b"accept-encoding", [b"gzip"])
    assert normalize(b"foo", [b"ABC"]) != normalize(b"foo", [b"abc"])
    assert normalize(b"accept-language", [b"en, de"]) != normalize(b"accept-language", [b"de, en"])


def test_absent_matches_only_absent():
    names = (b"foo",)
    assert secondary_key(names, h()) == (None,)
    assert not vary_matches(names, (None,), h(("Foo", "")))
    assert vary_matches(names, (None,), h())


# -- reuse (4, 4.2.4, 5.2.1) --------------------------------------------------------------

def fresh_for(seconds, age=0.0):
    return Freshness(lifetime=seconds, initial_age=age, response_time=NOW)


def decide(freshness, response="", request="", now=NOW):
    rd = parse_response_directives(h(("Cache-Control", response))) if response else ResponseDirectives()
    qd = parse_request_directives(h(("Cache-Control", request))) if request else NO_REQUEST_DIRECTIVES
    return choose(freshness, rd, qd, now)


def test_fresh_is_served_stale_is_validated():
    assert decide(fresh_for(60)) is Action.SERVE
    assert decide(fresh_for(60), now=NOW + 61) is Action.VALIDATE


def test_nothing_stored_is_fetched_or_504_with_only_if_cached():
    assert choose(None, None, NO_REQUEST_DIRECTIVES, NOW) is Action.FETCH
    assert choose(None, None, RequestDirectives(only_if_cached=True), NOW) is Action.GATEWAY_TIMEOUT


def test_no_cache_response_is_always_validated():
    assert decide(fresh_for(60), "no-cache") is Action.VALIDATE


def test_request_no_cache_max_age_and_min_fresh_validate():
    assert decide(fresh_for(60), request="no-cache") is Action.VALIDATE
    assert decide(fresh_for(60, age=30), request="max-age=10") is Action.VALIDATE
    assert decide(fresh_for(60, age=30), request="min-fresh=40") is Action.VALIDATE
    assert decide(fresh_for(60, age=30), request="min-fresh=20") is Action.SERVE


def test_max_stale_serves_stale_within_its_bound():
    assert decide(fresh_for(60), request="max-stale=100", now=NOW + 100) is Action.SERVE_STALE
    assert decide(fresh_for(60), request="max-stale=10", now=NOW + 100) is Action.VALIDATE
    assert decide(fresh_for(60), request="max-stale", now=NOW + 10**6) is Action.SERVE_STALE


def test_must_revalidate_proxy_revalidate_s_maxage_forbid_stale():
    for cc in ("must-revalidate", "proxy-revalidate", "s-maxage=60"):
        assert decide(fresh_for(60), cc, "max-stale", now=NOW + 100) is Action.VALIDATE, cc


def test_only_if_cached_turns_any_origin_contact_into_504():
    assert decide(fresh_for(60), request="only-if-cached", now=NOW + 100) is Action.GATEWAY_TIMEOUT
    assert decide(fresh_for(60), "no-cache", "only-if-cached") is Action.GATEWAY_TIMEOUT
    assert decide(fresh_for(60), request="only-if-cached") is Action.SERVE


def test_stale_while_revalidate():
    assert decide(fresh_for(0), "max-age=0, stale-while-revalidate=60", now=NOW + 30) is \
        Action.SERVE_STALE_AND_REVALIDATE
    assert decide(fresh_for(0), "max-age=0, stale-while-revalidate=60", now=NOW + 90) is Action.VALIDATE


def test_stale_if_error_window_and_prohibitions():
    f = fresh_for(0)
    allowed = parse_response_directives(h(("Cache-Control", "max-age=0, stale-if-error=60")))
    assert stale_on_error_allowed(f, allowed, NO_REQUEST_DIRECTIVES, NOW + 30)
    assert not stale_on_error_allowed(f, allowed, NO_REQUEST_DIRECTIVES, NOW + 90)
    assert stale_on_error_allowed(f, ResponseDirectives(), RequestDirectives(stale_if_error=60), NOW + 30)
    forbidden = parse_response_directives(h(("Cache-Control", "max-age=0, stale-if-error=60, must-revalidate")))
    assert not stale_on_error_allowed(f, forbidden, NO_REQUEST_DIRECTIVES, NOW + 30)
    assert not stale_on_error_allowed(f, ResponseDirectives(), NO_REQUEST_DIRECTIVES, NOW + 1)


# -- validation (4.3) ----------------------------------------------------------------------

def test_entity_tag_comparisons():
    strong, weak = parse_entity_tag(b'"a"'), parse_entity_tag(b'W/"a"')
    assert weak_match(strong, weak) and not strong_match(strong, weak) and strong_match(strong, strong)


def test_if_none_match_uses_the_weak_comparison_and_wins_over_ims():
    stored = h(("ETag", '"abc"'), ("Last-Modified", "Sun, 06 Nov 1994 08:49:37 GMT"))
    assert client_not_modified(h(("If-None-Match", 'W/"abc"')), stored, NOW)
    assert client_not_modified(h(("If-None-Match", '"x", "abc"')), stored, NOW)
    assert client_not_modified(h(("If-None-Match", "*")), stored, NOW)
    assert not client_not_modified(h(("If-None-Match", '"x"'), ("If-Modified-Since", "Sun, 06 Nov 2044 08:49:37 GMT")),
                                   stored, NOW)


def test_if_modified_since_uses_last_modified_then_date():
    stored = h(("Last-Modified", "Sun, 06 Nov 1994 08:49:37 GMT"))
    assert client_not_modified(h(("If-Modified-Since", "Sun, 06 Nov 1994 08:49:37 GMT")), stored, NOW)
    assert not client_not_modified(h(("If-Modified-Since", "Sat, 05 Nov 1994 08:49:37 GMT")), stored, NOW)
    assert client_not_modified(h(("If-Modified-Since", "Sun, 06 Nov 1994 08:49:37 GMT")), h(), 784111777.0)
    assert not client_not_modified(h(("If-Modified-Since", "garbage")), stored, NOW)


def test_validation_request_carries_etag_and_last_modified():
    stored = h(("ETag", 'W/"x"'), ("Last-Modified", "Sun, 06 Nov 1994 08:49:37 GMT"))
    assert validation_fields(stored) == [(b"If-None-Match", b'W/"x"'),
                                         (b"If-Modified-Since", b"Sun, 06 Nov 1994 08:49:37 GMT")]
    assert validation_fields(h(("Last-Modified", "yesterday"))) == []


def test_304_selection():
    assert selects(h(("ETag", '"a"')), h(("ETag", '"a"')), validated=False)
    assert not selects(h(("ETag", '"a"')), h(("ETag", '"b"')), validated=True)
    assert selects(h(("ETag", 'W/"a"')), h(("ETag", 'W/"a"')), validated=False)
    assert selects(h(("Last-Modified", "x")), h(("Last-Modified", "x")), validated=False)
    assert not selects(h(("Last-Modified", "x")), h(("Last-Modified", "y")), validated=True)
    assert selects(h(("ETag", '"a"')), h(), validated=True)  # the one we validated
    assert not selects(h(("ETag", '"a"')), h(), validated=False)
    assert selects(h(), h(), validated=False)


def test_304_updates_fields_but_not_content_length_or_hop_by_hop():
    stored = h(("Content-Length", "5"), ("A", "1"), ("B", "1"), ("ETag", '"e"'))
    new = h(("Content-Length", "10"), ("B", "2"), ("Connection", "close, X-Hop"), ("X-Hop", "1"), ("C", "3"))
    merged = freshen_fields(stored, new)
    assert (merged.get(b"content-length"), merged.get(b"a"), merged.get(b"b"), merged.get(b"c")) == (
        b"5", b"1", b"2", b"3")
    assert b"x-hop" not in merged and b"connection" not in merged and merged.get(b"etag") == b'"e"'


def test_head_response_updates_only_when_it_matches():
    stored = h(("ETag", '"a"'), ("Content-Length", "10"))
    assert head_matches(stored, 10, h(("ETag", '"a"'), ("Content-Length", "10")))
    assert not head_matches(stored, 10, h(("ETag", '"b"')))
    assert not head_matches(stored, 10, h(("Content-Length", "11")))


# -- invalidation (4.4) --------------------------------------------------------------------

def test_unsafe_and_unknown_methods_invalidate_on_success_only():
    for method in (b"POST", b"PUT", b"DELETE", b"PATCH", b"M-SEARCH", b"FOO"):
        assert invalidates(method, 200) and invalidates(method, 302) and not invalidates(method, 500)
    for method in (b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"CONNECT"):
        assert not invalidates(method, 200)


def test_location_and_content_location_of_the_same_origin():
    uris = invalidated_uris(b"http://a.test/x", h(("Location", "/y"), ("Content-Location", "http://b.test/z")))
    assert uris == [b"http://a.test/x", b"http://a.test/y"]
    assert invalidated_uris(b"http://a.test:80/x", h(("Location", "http://A.test/q#f"))) == [
        b"http://a.test:80/x", b"http://A.test/q"]


# -- properties -----------------------------------------------------------------------------

field_names = st.sampled_from(["Cache-Control", "Expires", "Vary", "ETag", "Authorization", "X-Other", "Pragma",
                               "Last-Modified", "Age", "Set-Cookie"])
field_values = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789=,\" -*", max_size=30)
headers_strategy = st.lists(st.tuples(field_names, field_values), max_size=8)


@given(headers_strategy, headers_strategy, st.sampled_from([200, 203, 204, 301, 404, 410, 500, 599]),
       st.sampled_from(["no-store", "No-Store, max-age=60", "public, no-store", "no-store, s-maxage=9"]))
def test_a_no_store_response_is_never_stored(request_pairs, response_pairs, status, cc):
    response = response_pairs + [("Cache-Control", cc)]
    assert why_not(response, request_pairs, status=status) is not None


@given(st.lists(st.sampled_from(["Foo", "Bar", "Accept", "*", ""]), min_size=1, max_size=5), headers_strategy)
def test_vary_with_a_star_never_matches(members, request_pairs):
    if "*" not in members:
        members.append("*")
    names = vary_names(h(("Vary", ", ".join(members))))
    assert names is None and not vary_matches(names, (), h(*request_pairs))


@given(st.floats(0, 10**6), st.floats(0, 10**6), st.floats(0, 10**6))
def test_without_permission_a_stale_response_is_never_served(lifetime, age, elapsed):
    f = Freshness(lifetime, age, NOW)
    action = choose(f, ResponseDirectives(), NO_REQUEST_DIRECTIVES, NOW + elapsed)
    assert (action is Action.SERVE) == f.is_fresh(NOW + elapsed)
