"""Vary and secondary keys through the proxy (RFC 9111 4.1), both modes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from proxy_origin import Reply, http_date  # noqa: E402
from proxytestlib import origin, proxy  # noqa: E402,F401 (fixtures)


def varying(proxy, vary, *more):
    path = proxy.new_path()
    proxy.origin.script(path, Reply(200, [("Cache-Control", "max-age=5000"), ("Date", http_date()),
                                          *[("Vary", v) for v in vary], *more], b"variant"))
    return path


@pytest.mark.parametrize("stored,asked,reused", [
    ([("Foo", "1")], [("Foo", "1")], True),
    ([("Foo", "1")], [("Foo", "2")], False),
    ([("Foo", "1")], [], False),
    ([("Foo", "1"), ("Other", "2")], [("Foo", "1"), ("Other", "3")], True),
    ([("Foo", "1,2")], [("Foo", " 1, 2 ")], True),
    ([("Foo", "1, 2")], [("Foo", "1"), ("Foo", "2")], True),
])
def test_one_field(proxy, stored, asked, reused):
    path = varying(proxy, ["Foo"])
    proxy.get(path, stored)
    proxy.get(path, asked)
    assert proxy.origin.count(path) == (1 if reused else 2)


@pytest.mark.parametrize("stored,asked,reused", [
    ("en, de", "eN, De", True),  # language ranges are case-insensitive
    ("en, de", " en ,   de", True),
    ("en, de", "de, en", False),  # order can be the preference: kept
    ("de", "fr;q=0.5, de;q=1.0", False),
])
def test_accept_language_ignores_case_and_whitespace_only(proxy, stored, asked, reused):
    path = varying(proxy, ["Accept-Language"])
    proxy.get(path, [("Accept-Language", stored)])
    proxy.get(path, [("Accept-Language", asked)])
    assert proxy.origin.count(path) == (1 if reused else 2)


def test_case_is_kept_in_other_fields(proxy):
    path = varying(proxy, ["Foo"])
    proxy.get(path, [("Foo", "abc")])
    proxy.get(path, [("Foo", "ABC")])
    assert proxy.origin.count(path) == 2


@pytest.mark.parametrize("asked,reused", [
    ([("Foo", "1"), ("Bar", "abc"), ("Baz", "789")], True),
    ([("Foo", "2"), ("Bar", "abc"), ("Baz", "789")], False),
    ([("Foo", "1"), ("Bar", "abc4"), ("Baz", "789")], False),
    ([("Foo", "1"), ("Baz", "789")], False),
])
def test_three_fields(proxy, asked, reused):
    path = varying(proxy, ["Foo, Bar, Baz"])
    proxy.get(path, [("Foo", "1"), ("Bar", "abc"), ("Baz", "789")])
    proxy.get(path, asked)
    assert proxy.origin.count(path) == (1 if reused else 2)


def test_absent_field_matches_absent(proxy):
    path = varying(proxy, ["Foo, Bar, Baz"])
    proxy.get(path, [("Foo", "1"), ("Baz", "789")])
    proxy.get(path, [("Foo", "1"), ("Baz", "789")])
    assert proxy.origin.count(path) == 1


def test_variants_live_side_by_side(proxy):
    path = proxy.new_path()
    proxy.origin.script(path, *[Reply(200, [("Cache-Control", "max-age=5000"), ("Vary", "Foo")], body)
                                for body in (b"foo_1", b"foo_2")])
    assert proxy.get(path, [("Foo", "1")]).body == b"foo_1"
    assert proxy.get(path, [("Foo", "2")]).body == b"foo_2"
    assert proxy.get(path, [("Foo", "1")]).body == b"foo_1"
    assert proxy.get(path, [("Foo", "2")]).body == b"foo_2"
    assert proxy.origin.count(path) == 2


@pytest.mark.parametrize("vary", [["*"], ["*, *"], ["*", "*"], [", *"], ["", "*"], ["*, Foo"], ["Foo, *"]])
def test_star_anywhere_never_matches(proxy, vary):
    path = varying(proxy, vary)
    proxy.get(path, [("Foo", "1"), ("Baz", "789")])
    proxy.get(path, [("Foo", "1"), ("Baz", "789")])
    assert proxy.origin.count(path) == 2


def test_validation_request_carries_the_varying_fields(proxy):
    path = proxy.new_path()
    proxy.origin.script(path, Reply(200, [("Expires", http_date(-1)), ("ETag", '"abcdef"'), ("Date", http_date()),
                                          ("Vary", "Abc")], b"x", revalidate=True))
    proxy.get(path, [("Abc", "123")])
    proxy.get(path, [("Abc", "123")])
    second = proxy.origin.requests(path)[1]
    assert second.headers.get("abc") == "123"
    assert second.headers.get("if-none-match") == '"abcdef"'
