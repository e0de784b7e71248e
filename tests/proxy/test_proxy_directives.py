"""Cache-Control in responses and requests, Pragma, Authorization (RFC 9111 3.5, 5.2, 5.4), both modes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from proxy_origin import Reply, http_date  # noqa: E402
from proxytestlib import origin, proxy  # noqa: E402,F401 (fixtures)

FRESH = ("Cache-Control", "max-age=3600")


def scripted(proxy, *replies):
    path = proxy.new_path()
    proxy.origin.script(path, *replies)
    return path


@pytest.mark.parametrize("value", ["private, max-age=3600", "no-store", "No-StOrE", "max-age=10000, no-store"])
def test_private_and_no_store_responses_are_not_stored(proxy, value):
    path = scripted(proxy, Reply(200, [("Cache-Control", value), ("Expires", http_date(10000))], b"x"))
    proxy.get(path)
    assert proxy.get(path).x_cache == "MISS"
    assert proxy.origin.count(path) == 2


def test_no_store_response_does_not_replace_the_stored_one(proxy):
    path = scripted(proxy, Reply(200, [FRESH, ("A", "1")], b"one"),
                    Reply(200, [("Cache-Control", "no-store"), ("A", "2")], b"two"))
    proxy.get(path)
    assert proxy.get(path, [("Cache-Control", "no-cache")]).header("A") == "2"  # validated: new unstorable answer
    assert proxy.get(path).header("A") == "1"  # the stored response is still there
    assert proxy.origin.count(path) == 2


@pytest.mark.parametrize("value", ["max-age=10000, no-cache", "max-age=10000, No-CaChE"])
def test_no_cache_response_is_validated_on_every_use(proxy, value):
    path = scripted(proxy, Reply(200, [("Cache-Control", value), ("ETag", '"abcd"')], b"body", revalidate=True))
    proxy.get(path)
    second = proxy.get(path)
    assert proxy.origin.count(path) == 2
    assert proxy.origin.requests(path)[1].headers.get("if-none-match") == '"abcd"'
    assert (second.status, second.body, second.x_cache) == (200, b"body", "REVALIDATED")


@pytest.mark.parametrize("listed,kept,dropped", [('"a"', ["b"], ["a"]), ('"a, b"', ["c"], ["a", "b"])])
def test_qualified_no_cache_fields_are_not_served_from_the_store(proxy, listed, kept, dropped):
    path = scripted(proxy, Reply(200, [("Cache-Control", f"no-cache={listed}"), ("a", "1"), ("b", "2"), ("c", "3"),
                                       ("Cache-Control", "max-age=3600"), ("Date", http_date())], b"x"))
    first = proxy.get(path)
    assert first.header("a") == "1"  # the origin's own answer is passed on whole
    second = proxy.get(path)
    assert proxy.origin.count(path) == 1
    for name in kept:
        assert second.header(name) is not None
    for name in dropped:
        assert second.header(name) is None


def test_must_revalidate_stale_response_is_validated(proxy):
    path = scripted(proxy, Reply(200, [("Cache-Control", "max-age=2, must-revalidate"), ("ETag", '"abcd"'),
                                       ("Age", "3")], b"body", revalidate=True))
    proxy.get(path)
    second = proxy.get(path)
    assert proxy.origin.requests(path)[1].headers.get("if-none-match") == '"abcd"'
    assert second.body == b"body"


def test_must_revalidate_fresh_response_is_reused(proxy):
    path = scripted(proxy, Reply(200, [("Cache-Control", "max-age=10000, must-revalidate"), ("ETag", '"x"')], b"b"))
    proxy.get(path)
    proxy.get(path)
    assert proxy.origin.count(path) == 1


@pytest.mark.parametrize("response_cc,reused", [
    (None, False), ("max-age=3600, public", True), ("max-age=3600, must-revalidate", True), ("s-maxage=3600", True),
])
def test_authorization_rules_of_a_shared_cache(proxy, response_cc, reused):
    headers = [("Date", http_date())] + ([("Cache-Control", response_cc)] if response_cc else
                                          [("Expires", http_date(30 * 86400))])
    path = scripted(proxy, Reply(200, headers, b"secret"))
    proxy.get(path, [("Authorization", "FOO")])
    assert proxy.origin.requests(path)[0].headers.get("authorization") == "FOO"
    proxy.get(path)
    assert proxy.origin.count(path) == (1 if reused else 2)


# -- request directives (RFC 9111 5.2.1) ------------------------------------------------

def test_request_max_age_zero_validates(proxy):
    path = scripted(proxy, Reply(200, [FRESH, ("Last-Modified", http_date(-3000)), ("Date", http_date())], b"x",
                                 revalidate=True))
    proxy.get(path)
    answer = proxy.get(path, [("Cache-Control", "max-age=0")])
    assert proxy.origin.count(path) == 2
    assert proxy.origin.requests(path)[1].headers.get("if-modified-since") is not None
    assert (answer.status, answer.body) == (200, b"x")


def test_request_max_age_below_the_age_validates(proxy):
    path = scripted(proxy, Reply(200, [FRESH, ("Age", "1800")], b"x"))
    proxy.get(path)
    proxy.get(path, [("Cache-Control", "max-age=600")])
    assert proxy.origin.count(path) == 2


def test_request_max_stale_accepts_a_stale_response(proxy):
    path = scripted(proxy, Reply(200, [("Cache-Control", "max-age=1500"), ("Age", "2000")], b"x"))
    proxy.get(path)
    answer = proxy.get(path, [("Cache-Control", "max-stale=1000")])
    assert (proxy.origin.count(path), answer.x_cache) == (1, "HIT")
    proxy.get(path, [("Cache-Control", "max-stale=100")])
    assert proxy.origin.count(path) == 2


def test_max_stale_cannot_override_must_revalidate(proxy):
    path = scripted(proxy, Reply(200, [("Cache-Control", "max-age=1, must-revalidate"), ("Age", "5")], b"x"))
    proxy.get(path)
    proxy.get(path, [("Cache-Control", "max-stale")])
    assert proxy.origin.count(path) == 2


@pytest.mark.parametrize("age", ["0", "1000"])
def test_request_min_fresh(proxy, age):
    path = scripted(proxy, Reply(200, [("Cache-Control", "max-age=1500"), ("Age", age)], b"x"))
    proxy.get(path)
    proxy.get(path, [("Cache-Control", "min-fresh=1000" if age == "1000" else "min-fresh=2000")])
    assert proxy.origin.count(path) == 2
    proxy.get(path, [("Cache-Control", "min-fresh=10")])
    assert proxy.origin.count(path) == 2


def test_request_no_cache_validates_with_etag(proxy):
    path = scripted(proxy, Reply(200, [FRESH, ("ETag", '"abc"')], b"x", revalidate=True))
    proxy.get(path)
    answer = proxy.get(path, [("Cache-Control", "no-cache")])
    assert proxy.origin.requests(path)[1].headers.get("if-none-match") == '"abc"'
    assert (answer.status, answer.body, answer.x_cache) == (200, b"x", "REVALIDATED")


def test_request_no_cache_without_validators_fetches_again(proxy):
    path = scripted(proxy, Reply(200, [FRESH], b"x"))
    proxy.get(path)
    proxy.get(path, [("Cache-Control", "no-cache")])
    assert proxy.origin.count(path) == 2


def test_pragma_no_cache_without_cache_control_validates(proxy):
    path = scripted(proxy, Reply(200, [FRESH], b"x"))
    proxy.get(path)
    proxy.get(path, [("Pragma", "no-cache")])
    assert proxy.origin.count(path) == 2
    proxy.get(path, [("Pragma", "no-cache"), ("Cache-Control", "max-stale")])  # Cache-Control wins
    assert proxy.origin.count(path) == 2


@pytest.mark.parametrize("pragma", ["foo", "unrecognised-extension"])
def test_other_pragmas_change_nothing(proxy, pragma):
    path = scripted(proxy, Reply(200, [FRESH, ("Pragma", "no-cache")], b"x"))
    proxy.get(path)
    proxy.get(path, [("Pragma", pragma), ("Cache-Control", "nothing-to-see-here")])
    assert proxy.origin.count(path) == 1


def test_request_no_store_is_not_stored_and_not_served_from_store(proxy):
    path = scripted(proxy, Reply(200, [FRESH], b"x"))
    proxy.get(path, [("Cache-Control", "no-store")])
    proxy.get(path)
    assert proxy.origin.count(path) == 2
    proxy.get(path, [("Cache-Control", "no-store")])
    assert proxy.origin.count(path) == 3


def test_only_if_cached_without_a_stored_response_is_504(proxy):
    path = scripted(proxy, Reply(200, [FRESH], b"x"))
    answer = proxy.get(path, [("Cache-Control", "only-if-cached")])
    assert answer.status == 504
    assert proxy.origin.count(path) == 0


def test_only_if_cached_with_a_fresh_response_serves_it(proxy):
    path = scripted(proxy, Reply(200, [FRESH], b"x"))
    proxy.get(path)
    answer = proxy.get(path, [("Cache-Control", "only-if-cached")])
    assert (answer.status, answer.body, proxy.origin.count(path)) == (200, b"x", 1)


def test_only_if_cached_with_a_stale_response_is_504(proxy):
    path = scripted(proxy, Reply(200, [("Cache-Control", "max-age=1"), ("Age", "5")], b"x"))
    proxy.get(path)
    assert proxy.get(path, [("Cache-Control", "only-if-cached")]).status == 504
    assert proxy.origin.count(path) == 1


def test_request_cookie_does_not_prevent_reuse(proxy):
    path = scripted(proxy, Reply(200, [FRESH], b"x"))
    proxy.get(path)
    proxy.get(path, [("Cookie", "a=b")])
    assert proxy.origin.count(path) == 1
