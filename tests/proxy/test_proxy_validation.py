"""Validation through the proxy (RFC 9111 4.3, 4.2.4, 5.2.2.2; RFC 5861), both modes.

A stale entry costs exactly one conditional GET; a 304 updates the stored
header fields (but never Content-Length) and the stored body is served;
clients' own If-None-Match / If-Modified-Since are answered from the store.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from proxy_origin import Reply, http_date  # noqa: E402
from proxytestlib import origin, proxy  # noqa: E402,F401 (fixtures)

FRESH = [("Expires", http_date(100000)), ("Date", http_date())]


def scripted(proxy, *replies):
    path = proxy.new_path()
    proxy.origin.script(path, *replies)
    return path


# -- clients' conditional requests, answered from the store (4.3.2) --------------------

@pytest.mark.parametrize("etag,asked", [
    ('"abcdef"', '"abcdef"'), ('W/"abcdef"', 'W/"abcdef"'), ('"abcdef"', '"abcdef", "1234", "5678"'),
    ('"abcdef"', '"1234", "abcdef", "5678"'), ('"abcdef"', '"1234", "5678", "abcdef"'), ('"abcdef"', 'W/"abcdef"'),
    ('"abcdef"', "*"),
])
def test_if_none_match_from_the_store(proxy, etag, asked):
    path = scripted(proxy, Reply(200, FRESH + [("ETag", etag)], b"x"))
    proxy.get(path)
    answer = proxy.get(path, [("If-None-Match", asked)])
    assert (answer.status, answer.header("ETag"), proxy.origin.count(path)) == (304, etag, 1)


def test_obs_text_etag_survives(proxy):
    etag = '"abcdef\xfc"'
    path = scripted(proxy, Reply(200, FRESH + [("ETag", etag)], b"x"))
    proxy.get(path)
    answer = proxy.get(path, [("If-None-Match", etag)])
    assert (answer.status, answer.header("ETag")) == (304, etag)


def test_if_none_match_mismatch_gets_the_body(proxy):
    path = scripted(proxy, Reply(200, FRESH + [("ETag", '"abcdef"')], b"x"))
    proxy.get(path)
    answer = proxy.get(path, [("If-None-Match", '"other"')])
    assert (answer.status, answer.body, proxy.origin.count(path)) == (200, b"x", 1)


def test_if_none_match_takes_precedence_over_if_modified_since(proxy):
    path = scripted(proxy, Reply(200, FRESH + [("Last-Modified", http_date(-5000)), ("ETag", '"abcdef"')], b"x"))
    proxy.get(path)
    # IMS alone would say "modified" (it is older than Last-Modified); If-None-Match matches.
    answer = proxy.get(path, [("If-None-Match", '"abcdef"'), ("If-Modified-Since", http_date(-9000))])
    assert answer.status == 304
    answer = proxy.get(path, [("If-None-Match", '"nope"'), ("If-Modified-Since", http_date(-1))])
    assert answer.status == 200


@pytest.mark.parametrize("since,status", [(-3000, 304), (-2000, 304), (-4000, 200)])
def test_if_modified_since_from_the_store(proxy, since, status):
    path = scripted(proxy, Reply(200, [("Cache-Control", "max-age=100000"), ("Last-Modified", http_date(-3000)),
                                       ("Date", http_date())], b"x"))
    proxy.get(path)
    assert proxy.get(path, [("If-Modified-Since", http_date(since))]).status == status
    assert proxy.origin.count(path) == 1


def test_if_modified_since_without_last_modified_uses_date(proxy):
    path = scripted(proxy, Reply(200, [("Cache-Control", "max-age=100000"), ("Date", http_date(-100))], b"x"))
    proxy.get(path)
    assert proxy.get(path, [("If-Modified-Since", http_date(-10))]).status == 304
    assert proxy.get(path, [("If-Modified-Since", http_date(-1000))]).status == 200


def test_conditional_request_on_a_miss_is_forwarded(proxy):
    path = scripted(proxy, Reply(200, [("ETag", '"abcdef"'), ("Cache-Control", "max-age=3600")], b"x",
                                 revalidate=True))
    answer = proxy.get(path, [("If-None-Match", '"abcdef"')])
    assert answer.status == 304
    assert proxy.origin.requests(path)[0].headers.get("if-none-match") == '"abcdef"'


# -- validating stored responses (4.3.1, 4.3.3, 4.3.4) ----------------------------------

@pytest.mark.parametrize("validator,field", [("ETag", "if-none-match"), ("Last-Modified", "if-modified-since")])
def test_stale_entry_sends_exactly_one_conditional_get_and_304_serves_the_stored_body(proxy, validator, field):
    value = '"v1"' if validator == "ETag" else http_date(-86400)
    path = scripted(proxy, Reply(200, [("Cache-Control", "max-age=1"), ("Age", "2"), (validator, value)],
                                 b"stored body", revalidate=True))
    proxy.get(path)
    answer = proxy.get(path)
    requests = proxy.origin.requests(path)
    assert len(requests) == 2
    assert requests[1].headers.get(field) == value
    assert (answer.status, answer.body, answer.x_cache) == (200, b"stored body", "REVALIDATED")


def test_weak_etag_is_sent_for_validation(proxy):
    path = scripted(proxy, Reply(200, [("Expires", http_date(-1)), ("ETag", 'W/"abcdef"'), ("Date", http_date())],
                                 b"x", revalidate=True))
    proxy.get(path)
    proxy.get(path)
    assert proxy.origin.requests(path)[1].headers.get("if-none-match") == 'W/"abcdef"'


@pytest.mark.parametrize("name,a,b", [
    ("Test-Header", "A", "B"), ("X-Test-Header", "A", "B"), ("Content-Foo", "A", "B"), ("X-Content-Foo", "A", "B"),
    ("Cache-Control", "max-age=1", "max-age=3600"), ("Content-Type", "text/plain", "text/plain;charset=utf-8"),
    ("Set-Cookie", "a=b", "a=c"), ("X-Frame-Options", "deny", "sameorigin"),
])
def test_304_updates_the_stored_fields(proxy, name, a, b):
    def reply(value, status=200):
        fields = [("Date", http_date()), (name, value), ("ETag", '"tag"')]
        if name != "Cache-Control":
            fields.append(("Cache-Control", "max-age=1"))
        fields.append(("Age", "2"))  # arrives stale
        return Reply(status, fields, b"body")
    fields_b = [("Date", http_date()), (name, b), ("ETag", '"tag"')]
    if name != "Cache-Control":
        fields_b.append(("Cache-Control", "max-age=3600"))
    path = scripted(proxy, reply(a), Reply(304, fields_b, b""))
    assert proxy.get(path).header(name) == a
    validated = proxy.get(path)
    assert (validated.header(name), validated.body, validated.x_cache) == (b, b"body", "REVALIDATED")
    again = proxy.get(path)
    assert (again.header(name), again.x_cache, proxy.origin.count(path)) == (b, "HIT", 2)


def test_304_that_omits_a_field_keeps_the_stored_one(proxy):
    lm = "Wed, 01 Jan 2020 00:00:00 GMT"
    path = scripted(proxy, Reply(200, [("Cache-Control", "max-age=2"), ("Last-Modified", lm), ("Date", http_date()),
                                       ("Test-Header", "A"), ("Age", "3")], b"body"),
                    Reply(304, [("Last-Modified", lm), ("Date", http_date())]))
    proxy.get(path)
    answer = proxy.get(path)
    assert proxy.origin.requests(path)[1].headers.get("if-modified-since") == lm
    assert (answer.header("Test-Header"), answer.body) == ("A", b"body")


def test_304_does_not_change_content_length(proxy):
    path = scripted(proxy, Reply(200, [("Cache-Control", "max-age=1"), ("Age", "2"), ("ETag", '"e"')], b"12345"),
                    Reply(304, [("ETag", '"e"'), ("Content-Length", "10"), ("Cache-Control", "max-age=3600")],
                          content_length=False))
    proxy.get(path)
    answer = proxy.get(path)
    assert (answer.body, answer.header("Content-Length")) == (b"12345", "5")
    assert proxy.get(path).header("Content-Length") == "5"


def test_304_keeps_the_etag(proxy):
    path = scripted(proxy, Reply(200, [("Cache-Control", "max-age=1"), ("Age", "2"), ("ETag", '"e1"')], b"x"),
                    Reply(304, [("ETag", '"e1"'), ("Cache-Control", "max-age=3600")]))
    proxy.get(path)
    assert proxy.get(path).header("ETag") == '"e1"'
    answer = proxy.get(path, [("If-None-Match", '"e1"')])
    assert (answer.status, answer.header("ETag")) == (304, '"e1"')


def test_304_for_another_representation_is_not_applied(proxy):
    path = scripted(proxy, Reply(200, [("Cache-Control", "max-age=1"), ("Age", "2"), ("ETag", '"one"')], b"old"),
                    Reply(304, [("ETag", '"two"'), ("Cache-Control", "max-age=3600")]),
                    Reply(200, [("ETag", '"two"'), ("Cache-Control", "max-age=3600")], b"new"))
    proxy.get(path)
    answer = proxy.get(path)
    assert (answer.status, answer.body) == (200, b"new")
    assert "if-none-match" not in proxy.origin.requests(path)[2].headers


def test_full_response_to_validation_replaces_the_entry(proxy):
    path = scripted(proxy, Reply(200, [("Cache-Control", "max-age=1"), ("Age", "2"), ("ETag", '"1"')], b"old"),
                    Reply(200, [("Cache-Control", "max-age=3600"), ("ETag", '"2"')], b"new"))
    proxy.get(path)
    assert proxy.get(path).body == b"new"
    assert (proxy.get(path).body, proxy.origin.count(path)) == (b"new", 2)


# -- stale responses and failing origins (4.2.4, RFC 5861) ----------------------------

def test_stale_if_error_serves_the_stale_response_on_a_500(proxy):
    path = scripted(proxy, Reply(200, [("Cache-Control", "max-age=0, stale-if-error=3600")], b"stale"),
                    Reply(500, [], b"error"))
    proxy.get(path)
    answer = proxy.get(path)
    assert (answer.status, answer.body) == (200, b"stale")


def test_expired_stale_if_error_passes_the_error_on(proxy):
    path = scripted(proxy, Reply(200, [("Cache-Control", "max-age=0, stale-if-error=1"), ("Age", "5")], b"stale"),
                    Reply(500, [], b"error"))
    proxy.get(path)
    assert proxy.get(path).status == 500


def test_request_stale_if_error(proxy):
    path = scripted(proxy, Reply(200, [("Cache-Control", "max-age=0")], b"stale"), Reply(503, [], b"error"))
    proxy.get(path)
    answer = proxy.get(path, [("Cache-Control", "stale-if-error=3600")])
    assert (answer.status, answer.body) == (200, b"stale")
    path = scripted(proxy, Reply(200, [("Cache-Control", "max-age=0"), ("Age", "5")], b"stale"),
                    Reply(503, [], b"error"))
    proxy.get(path)
    assert proxy.get(path, [("Cache-Control", "stale-if-error=1")]).status == 503


def test_stale_if_error_when_the_origin_closes(proxy):
    path = scripted(proxy, Reply(200, [("Cache-Control", "max-age=0, stale-if-error=60")], b"stale"),
                    Reply(disconnect=True))
    proxy.get(path)
    answer = proxy.get(path)
    assert (answer.status, answer.body) == (200, b"stale")


@pytest.mark.parametrize("directive", ["must-revalidate", "proxy-revalidate", "no-cache", "s-maxage=2"])
def test_stale_is_never_served_when_forbidden_even_with_stale_if_error(proxy, directive):
    path = scripted(proxy, Reply(200, [("Cache-Control", f"max-age=2, {directive}, stale-if-error=60"),
                                       ("Age", "5")], b"stale"),
                    Reply(disconnect=True))
    proxy.get(path)
    answer = proxy.get(path)
    assert answer.status == 504
    assert answer.body != b"stale"


def test_unreachable_origin_with_a_stale_entry_is_504(proxy):
    path = scripted(proxy, Reply(200, [("Cache-Control", "max-age=1"), ("Age", "3")], b"stale"),
                    Reply(disconnect=True))
    proxy.get(path)
    assert proxy.get(path).status == 504
