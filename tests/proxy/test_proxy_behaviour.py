"""Everything else a cache must get right, through the proxy in both modes.

Invalidation (RFC 9111 4.4), stored fields (3.1), Age and Date (4, 5.1),
HEAD from a stored GET, query strings, collapsing, 1xx forwarding, byte
ranges, stale-while-revalidate, Via and loops, write-through methods.
"""

from __future__ import annotations

import concurrent.futures
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from netapps_daemon import wait_for  # noqa: E402
from proxy_origin import Reply, http_date  # noqa: E402
from proxytestlib import origin, proxy, start_proxy  # noqa: E402,F401 (fixtures)

FRESH = [("Expires", http_date(100000)), ("Cache-Control", "max-age=100000"),
         ("Last-Modified", http_date(-100000)), ("Date", http_date())]


def scripted(proxy, *replies, path=None):
    path = path or proxy.new_path()
    proxy.origin.script(path, *replies)
    return path


# -- invalidation ----------------------------------------------------------------------

@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "M-SEARCH", "PATCH", "PURGE"])
def test_unsafe_or_unknown_method_invalidates(proxy, method):
    path = scripted(proxy, Reply(200, FRESH, b"x"))
    proxy.get(path)
    assert proxy.request(method, path, body=b"abc").status == 200
    assert proxy.origin.requests(path)[1].method == method
    assert proxy.origin.requests(path)[1].body == b"abc"
    assert proxy.get(path).x_cache == "MISS"
    assert proxy.origin.count(path) == 3


@pytest.mark.parametrize("method", ["POST", "DELETE"])
def test_failed_unsafe_request_does_not_invalidate(proxy, method):
    path = scripted(proxy, Reply(200, FRESH, b"x"), Reply(500, [], b"oops"), Reply(200, FRESH, b"x"))
    proxy.get(path)
    assert proxy.request(method, path, body=b"abc").status == 500
    assert proxy.get(path).x_cache == "HIT"


@pytest.mark.parametrize("field", ["Location", "Content-Location"])
def test_location_and_content_location_of_the_same_origin_are_invalidated(proxy, field):
    target = scripted(proxy, Reply(200, FRESH, b"target"))
    proxy.get(target)
    poster = scripted(proxy, Reply(200, [(field, f"http://{proxy.origin.authority}{target}")], b"ok"))
    proxy.request("POST", poster, body=b"abc")
    assert proxy.get(target).x_cache == "MISS"


def test_relative_location_is_resolved(proxy):
    target = scripted(proxy, Reply(200, FRESH, b"target"))
    proxy.get(target)
    poster = scripted(proxy, Reply(201, [("Location", target)], b"ok"))
    proxy.request("POST", poster, body=b"abc")
    assert proxy.get(target).x_cache == "MISS"


def test_location_of_another_origin_is_left_alone(proxy):
    target = scripted(proxy, Reply(200, FRESH, b"target"))
    proxy.get(target)
    poster = scripted(proxy, Reply(200, [("Location", f"http://elsewhere.test{target}")], b"ok"))
    proxy.request("POST", poster, body=b"abc")
    assert proxy.get(target).x_cache == "HIT"


def test_chunked_request_body_is_forwarded(proxy):
    path = scripted(proxy, Reply(200, [], b"ok"))
    target = proxy.target(path).encode()
    answer = proxy.raw(b"POST " + target + b" HTTP/1.1\r\nHost: " + proxy.origin.authority.encode() +
                       b"\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200")
    assert proxy.origin.requests(path)[0].body == b"hello world"


@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_body_sent_with_the_head_reaches_a_new_origin_connection(origin, tmp_path, mode):
    # A fresh daemon has no pooled origin connection: the body (in the same
    # packet as the head) arrives while the connection is still being made.
    fresh = start_proxy(tmp_path, origin, mode)
    try:
        path = scripted(fresh, Reply(201, [], b"created"))
        target = fresh.target(path).encode()
        answer = fresh.raw(b"PUT " + target + b" HTTP/1.1\r\nHost: " + origin.authority.encode() +
                           b"\r\nContent-Length: 12\r\nConnection: close\r\n\r\n[{\"id\":\"x\"}]")
        assert answer.startswith(b"HTTP/1.1 201")
        assert origin.requests(path)[0].body == b'[{"id":"x"}]'
    finally:
        fresh.daemon.stop()


# -- fields --------------------------------------------------------------------------------

def test_set_cookie_is_stored(proxy):
    path = scripted(proxy, Reply(200, FRESH + [("Set-Cookie", "a=b"), ("Set-Cookie", "c=d")], b"x"))
    proxy.get(path)
    answer = proxy.get(path)
    assert (answer.x_cache, answer.all("Set-Cookie")) == ("HIT", ["a=b", "c=d"])


def test_fields_named_in_connection_are_not_stored_or_forwarded(proxy):
    path = scripted(proxy, Reply(200, FRESH + [("Connection", "a, b"), ("a", "1"), ("b", "2"), ("c", "3"),
                                               ("Keep-Alive", "timeout=5"), ("Proxy-Authenticate", "Basic")], b"x"))
    for answer in (proxy.get(path), proxy.get(path)):
        assert answer.header("c") == "3"
        assert answer.header("a") is None and answer.header("b") is None
        assert answer.header("Keep-Alive") is None
    assert proxy.get(path).header("Proxy-Authenticate") is None  # proxy-specific: never stored


@pytest.mark.parametrize("name,value", [("Test-Header", "v"), ("Content-Type", "text/plain"),
                                        ("Strict-Transport-Security", "max-age=1"), ("WWW-Authenticate", "Basic"),
                                        ("Clear-Site-Data", "cookies"), ("X-Frame-Options", "deny")])
def test_end_to_end_fields_are_stored(proxy, name, value):
    path = scripted(proxy, Reply(200, FRESH + [(name, value)], b"x"))
    proxy.get(path)
    answer = proxy.get(path)
    assert (answer.x_cache, answer.header(name)) == ("HIT", value)


def test_age_is_generated_and_date_kept(proxy):
    date = http_date(-40)
    path = scripted(proxy, Reply(200, [("Expires", http_date(3600)), ("Date", date), ("Age", "30")], b"x"))
    first = proxy.get(path)
    assert first.header("Age") == "30"  # passed on as received
    second = proxy.get(path)
    assert second.header("Date") == date
    assert int(second.header("Age")) >= 40


def test_date_is_added_when_the_origin_sent_none(proxy):
    path = scripted(proxy, Reply(200, [("Cache-Control", "max-age=3600")], b"x"))
    first = proxy.get(path)
    assert first.header("Date") is not None
    assert proxy.get(path).header("Date") == first.header("Date")


def test_query_strings_are_part_of_the_key(proxy):
    path = scripted(proxy, Reply(200, FRESH, b"x"))
    proxy.get(path + "?test=1")
    proxy.get(path + "?test=2")
    proxy.get(path + "?test=1")
    assert proxy.origin.count(path + "?test=1") == 1
    assert proxy.origin.count(path + "?test=2") == 1


def test_head_is_served_from_a_stored_get(proxy):
    path = scripted(proxy, Reply(200, FRESH, b"0123456789"))
    proxy.get(path)
    answer = proxy.request("HEAD", path)
    assert (answer.status, answer.body, answer.header("Content-Length"), answer.x_cache) == (200, b"", "10", "HIT")
    assert proxy.origin.count(path) == 1


def test_head_miss_is_forwarded_as_head(proxy):
    path = scripted(proxy, Reply(200, FRESH, b"0123456789"))
    answer = proxy.request("HEAD", path)
    assert (answer.status, answer.header("Content-Length")) == (200, "10")
    assert proxy.origin.requests(path)[0].method == "HEAD"
    assert proxy.get(path).x_cache == "MISS"  # nothing of a HEAD is stored


def test_head_with_a_different_etag_outdates_the_stored_get(proxy):
    path = scripted(proxy, Reply(200, [("Cache-Control", "max-age=1"), ("Age", "2"), ("ETag", '"1"')], b"old"),
                    Reply(200, [("Cache-Control", "max-age=3600"), ("ETag", '"2"')], b"new"))
    proxy.get(path)
    proxy.request("HEAD", path)
    assert proxy.get(path, [("Cache-Control", "max-stale")]).body == b"new"


def test_x_cache_tells_miss_hit_revalidated(proxy):
    path = scripted(proxy, Reply(200, [("Cache-Control", "max-age=1"), ("Age", "2"), ("ETag", '"x"')], b"x"),
                    Reply(304, [("ETag", '"x"'), ("Cache-Control", "max-age=3600")]))
    assert [proxy.get(path).x_cache for _ in range(3)] == ["MISS", "REVALIDATED", "HIT"]


# -- collapsing, interim responses, ranges, background revalidation ------------------------

def test_concurrent_misses_collapse_into_one_fetch(proxy):
    path = scripted(proxy, Reply(200, [("Cache-Control", "max-age=3600")], b"slow" * 1000, delay=1.0))
    with concurrent.futures.ThreadPoolExecutor(5) as pool:
        answers = list(pool.map(lambda _: proxy.get(path), range(5)))
    assert proxy.origin.count(path) == 1
    assert all(a.status == 200 and a.body == b"slow" * 1000 for a in answers)
    assert sorted(a.x_cache for a in answers) == ["HIT"] * 4 + ["MISS"]


def test_uncacheable_response_releases_collapsed_requests(proxy):
    path = scripted(proxy, Reply(200, [("Cache-Control", "private")], b"mine", delay=0.5))
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda _: proxy.get(path), range(3)))
    assert all(a.body == b"mine" for a in answers)
    assert proxy.origin.count(path) == 3


def test_interim_responses_are_forwarded_and_the_final_one_cached(proxy):
    path = scripted(proxy, Reply(200, [("Cache-Control", "max-age=100000"), ("Date", http_date())], b"x",
                                 interim=[(103, [("Link", "</styles.css>; rel=preload; as=style")])]))
    target = proxy.target(path).encode()
    raw = proxy.raw(b"GET " + target + b" HTTP/1.1\r\nHost: " + proxy.origin.authority.encode() +
                    b"\r\nConnection: close\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 103 ")
    assert b"Link: </styles.css>; rel=preload; as=style\r\n" in raw
    assert b"\r\n\r\nHTTP/1.1 200 OK\r\n" in raw
    assert proxy.get(path).x_cache == "HIT"


@pytest.mark.parametrize("asked,status,body", [
    ("bytes=0-1", 206, b"01"), ("bytes=1-", 206, b"1234567890"), ("bytes=-1", 206, b"0"),
    ("bytes=20-", 416, b""), ("bytes=0-1,3-4", 200, b"01234567890"),
])
def test_ranges_are_served_from_a_stored_complete_response(proxy, asked, status, body):
    path = scripted(proxy, Reply(200, [("Cache-Control", "max-age=3600")], b"01234567890"))
    proxy.get(path)
    answer = proxy.get(path, [("Range", asked)])
    assert (answer.status, answer.body, proxy.origin.count(path)) == (status, body, 1)


def test_stale_while_revalidate_serves_stale_and_refreshes(proxy):
    path = scripted(proxy, Reply(200, [("Cache-Control", "max-age=0, stale-while-revalidate=3600"),
                                       ("ETag", '"abc"')], b"old"),
                    Reply(200, [("Cache-Control", "max-age=3600"), ("ETag", '"def"')], b"new"))
    proxy.get(path)
    assert proxy.get(path).body == b"old"
    wait_for(lambda: proxy.origin.count(path) == 2, 5, what="background revalidation")
    answer = wait_for(lambda: (lambda a: a if a.body == b"new" else None)(proxy.get(path)), 5, what="new body")
    assert (answer.header("ETag"), answer.x_cache) == ('"def"', "HIT")


# -- intermediary duties --------------------------------------------------------------------

def test_via_is_added_both_ways(proxy):
    path = scripted(proxy, Reply(200, [("Via", "1.1 upstream")], b"x"))
    answer = proxy.get(path)
    assert answer.header("Via").startswith("1.1 upstream, 1.1 netapps-")
    assert proxy.origin.requests(path)[0].headers["via"].startswith("1.1 netapps-")


def test_a_request_that_looped_back_is_refused(proxy):
    path = scripted(proxy, Reply(200, [], b"x"))
    pseudonym = proxy.get(path).header("Via").split()[-1]
    answer = proxy.get(path, [("Via", f"1.1 {pseudonym}")])
    assert answer.status == 508
    assert proxy.origin.count(path) == 1


def test_hop_by_hop_request_fields_are_not_forwarded(proxy):
    path = scripted(proxy, Reply(200, [], b"x"))
    proxy.get(path, [("Connection", "close, X-Secret"), ("X-Secret", "1"), ("Proxy-Authorization", "Basic x"),
                     ("TE", "trailers"), ("Keep-Alive", "1")])
    seen = proxy.origin.requests(path)[0].headers
    assert not {"x-secret", "proxy-authorization", "te", "keep-alive"} & set(seen)


def test_options_with_max_forwards_zero_is_answered_here(proxy):
    path = scripted(proxy, Reply(200, [], b"x"))
    answer = proxy.request("OPTIONS", path, [("Max-Forwards", "0")])
    assert answer.status == 200 and "GET" in answer.header("Allow")
    assert proxy.origin.count(path) == 0
    proxy.request("OPTIONS", path, [("Max-Forwards", "3")])
    assert proxy.origin.requests(path)[0].headers["max-forwards"] == "2"


def test_large_body_streams_through_and_is_stored(proxy):
    big = bytes(range(256)) * 8192  # 2 MiB: bigger than the memory cache's largest object
    path = scripted(proxy, Reply(200, [("Cache-Control", "max-age=3600")], big, chunked=True))
    assert proxy.get(path).body == big
    answer = proxy.get(path)
    assert (answer.body == big, answer.x_cache, answer.header("Content-Length")) == (True, "HIT", str(len(big)))
    assert proxy.get(path, [("Range", "bytes=1000000-1000009")]).body == big[1000000:1000010]


def test_keep_alive_connection_carries_many_requests(proxy):
    import http.client

    path = scripted(proxy, Reply(200, [("Cache-Control", "max-age=3600")], b"x"))
    conn = http.client.HTTPConnection(proxy.host, proxy.port, timeout=5)
    try:
        for _ in range(5):
            conn.request("GET", proxy.target(path), headers={"Host": proxy.origin.authority})
            response = conn.getresponse()
            assert response.read() == b"x"
    finally:
        conn.close()
    assert proxy.origin.count(path) == 1


def test_pipelined_requests_are_answered_in_order(proxy):
    paths = [scripted(proxy, Reply(200, [("Cache-Control", "max-age=3600")], f"body{i}".encode())) for i in range(3)]
    host = proxy.origin.authority.encode()
    data = b"".join(b"GET " + proxy.target(p).encode() + b" HTTP/1.1\r\nHost: " + host + b"\r\n\r\n" for p in paths)
    data += b"GET " + proxy.target(paths[0]).encode() + b" HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n"
    raw = proxy.raw(data)
    assert raw.count(b"HTTP/1.1 200") == 4
    positions = [raw.find(b"body%d" % i) for i in range(3)]
    assert positions == sorted(positions) and -1 not in positions
