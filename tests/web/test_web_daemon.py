"""The web service in the real daemon, driven by http.client and raw sockets."""

from __future__ import annotations

import email
import hashlib
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from netapps_daemon import wait_for  # noqa: E402
from webtestlib import basic, http, raw_exchange, responses, settled, start_web  # noqa: E402

SETS = ['web.cache_control={ "*.html" = "no-cache", "*" = "max-age=60" }', "web.header_timeout=1.5"]


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("web") / "data"
    daemon = start_web(data_dir, SETS)
    www = data_dir / "www"
    for path in www.rglob("*"):
        settled(path)  # as if seeded a while ago: strong, cached ETags
    daemon.www = www
    yield daemon
    daemon.stop()


def access_lines(daemon) -> list[str]:
    path = daemon.data_dir / "web" / "access.log"
    return path.read_text().splitlines() if path.exists() else []


# ------------------------------------------------------------ GET, HEAD, validators


def test_index_page_with_validators(web):
    status, headers, body = http(web, "GET", "/")
    assert status == 200 and b"The Web and HTTP" in body
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert headers["etag"].startswith('"') and headers["cache-control"] == "no-cache"
    assert headers["last-modified"].endswith(" GMT") and headers["accept-ranges"] == "bytes"
    assert int(headers["content-length"]) == len(body) == (web.www / "index.html").stat().st_size
    status, head_headers, head_body = http(web, "HEAD", "/index.html")
    assert status == 200 and head_body == b""
    assert head_headers["etag"] == headers["etag"] and head_headers["content-length"] == headers["content-length"]


def test_browser_like_revalidation(web):
    status, first, body = http(web, "GET", "/style.css")
    assert status == 200 and first["cache-control"] == "max-age=60"
    status, h, body = http(web, "GET", "/style.css", headers={"If-None-Match": first["etag"]})
    assert status == 304 and body == b"" and h["etag"] == first["etag"] and h["cache-control"] == "max-age=60"
    assert "content-length" not in h
    status, _, _ = http(web, "GET", "/style.css", headers={"If-Modified-Since": first["last-modified"]})
    assert status == 304
    # If-None-Match wins over If-Modified-Since
    status, _, body = http(web, "GET", "/style.css", headers={
        "If-None-Match": '"something-else"', "If-Modified-Since": first["last-modified"]})
    assert status == 200 and body


def test_if_match_and_if_unmodified_since_412(web):
    _, first, _ = http(web, "GET", "/style.css")
    assert http(web, "GET", "/style.css", headers={"If-Match": '"nope"'})[0] == 412
    assert http(web, "GET", "/style.css", headers={"If-Match": first["etag"]})[0] == 200
    assert http(web, "GET", "/style.css", headers={"If-Unmodified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"})[0] == 412


def test_content_changes_give_a_new_etag(web):
    path = web.www / "changing.txt"
    path.write_bytes(b"version one")
    settled(path)
    _, one, body = http(web, "GET", "/changing.txt")
    assert body == b"version one"
    path.write_bytes(b"version two")
    status, two, body = http(web, "GET", "/changing.txt", headers={"If-None-Match": one["etag"]})
    assert status == 200 and body == b"version two" and two["etag"] != one["etag"]


# ------------------------------------------------------------ ranges


def test_single_range_multipart_and_416(web):
    full = (web.www / "files" / "readme.txt").read_bytes()
    status, h, body = http(web, "GET", "/files/readme.txt", headers={"Range": "bytes=0-9"})
    assert status == 206 and body == full[:10] and h["content-range"] == f"bytes 0-9/{len(full)}"
    status, h, body = http(web, "GET", "/files/readme.txt", headers={"Range": "bytes=0-4,-5"})
    assert status == 206 and h["content-type"].startswith("multipart/byteranges; boundary=")
    message = email.message_from_bytes(b"Content-Type: " + h["content-type"].encode() + b"\r\n\r\n" + body)
    parts = message.get_payload()
    assert [p["Content-Range"] for p in parts] == [f"bytes 0-4/{len(full)}", f"bytes {len(full) - 5}-{len(full) - 1}/{len(full)}"]
    assert [p.get_payload(decode=True) for p in parts] == [full[:5], full[-5:]]
    status, h, _ = http(web, "GET", "/files/readme.txt", headers={"Range": "bytes=99999-"})
    assert status == 416 and h["content-range"] == f"bytes */{len(full)}"


def test_if_range(web):
    _, first, _ = http(web, "GET", "/files/readme.txt")
    assert http(web, "GET", "/files/readme.txt", headers={"Range": "bytes=0-0", "If-Range": first["etag"]})[0] == 206
    status, _, body = http(web, "GET", "/files/readme.txt", headers={"Range": "bytes=0-0", "If-Range": '"old"'})
    assert status == 200 and len(body) > 1


def test_large_file_streams_whole_with_ranges(web):
    data = os.urandom(20 * 1024 * 1024 + 17)
    (web.www / "big.bin").write_bytes(data)
    settled(web.www / "big.bin")
    status, h, body = http(web, "GET", "/big.bin")
    assert status == 200 and hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
    assert h["etag"].startswith('W/"')  # just written: not settled, so not claimed strong
    strong = wait_for(lambda: (lambda e: e if e.startswith('"') else None)(http(web, "HEAD", "/big.bin")[1]["etag"]),
                      timeout=10, interval=0.5, what="a strong ETag once the file settled")
    status, h, body = http(web, "GET", "/big.bin", headers={"If-None-Match": strong})
    assert status == 304 and body == b""
    status, h, body = http(web, "GET", "/big.bin", headers={"Range": "bytes=10000000-10000099"})
    assert status == 206 and body == data[10000000:10000100]
    rss_kib = int(next(l for l in Path(f"/proc/{web.proc.pid}/status").read_text().splitlines()
                       if l.startswith("VmRSS")).split()[1])
    assert rss_kib < 200 * 1024  # 20 MiB files stream; nothing holds them whole


# ------------------------------------------------------------ directories, errors, methods


def test_directory_redirect_listing_and_escaping(web):
    nasty = web.www / "files" / '<script>alert(1)<script> & "q".txt'
    nasty.write_bytes(b"x")
    status, h, _ = http(web, "GET", "/files?x=1")
    assert status == 301 and h["location"] == "/files/?x=1"
    status, h, body = http(web, "GET", "/files/")
    assert status == 200 and b"readme.txt" in body and b"<script>alert" not in body
    assert b"&lt;script&gt;alert(1)&lt;script&gt; &amp; &quot;q&quot;.txt" in body
    assert b'href="%3Cscript%3Ealert%281%29%3Cscript%3E%20%26%20%22q%22.txt"' in body
    assert http(web, "GET", "/files/readme.txt/")[0] == 404


def test_404_405_501_and_options(web):
    assert http(web, "GET", "/no/such/page.html")[0] == 404
    status, h, _ = http(web, "POST", "/index.html", body=b"x")
    assert status == 405 and h["allow"] == "GET, HEAD, OPTIONS, PUT, DELETE"
    status, h, _ = http(web, "BREW", "/index.html")
    assert status == 501
    status, h, _ = http(web, "OPTIONS", "/index.html")
    assert status == 204 and "PUT" in h["allow"]
    status, h, _ = http(web, "TRACE", "/")
    assert status == 405


@pytest.mark.parametrize("request_bytes, status", [
    (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    (b"GET / HTTP/1.1\r\nHost: a\r\nBad header\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n\r\n", 400),
    (b"GET /" + b"x" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X-Big: " + b"y" * 20000 + b"\r\n\r\n", 431),
    (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
])
def test_malformed_requests_get_one_error_then_close(web, request_bytes, status):
    reply = raw_exchange(web.port("web"), request_bytes)
    got = responses(reply)
    assert [s for s, _, _ in got] == [status]
    assert got[0][1][b"connection"] == b"close"
    assert "Traceback" not in web.log


def test_malformed_request_is_one_log_line(web):
    before = web.log.count("\n")
    raw_exchange(web.port("web"), b"GET / HTTP/1.1\r\nHost: a\r\nX : y\r\n\r\n")
    wait_for(lambda: "malformed header field" in web.log, what="the log line")
    new = web.log.splitlines()[before:]
    assert len([l for l in new if "netapps.web" in l]) == 1 and "Traceback" not in web.log


@pytest.mark.parametrize("target", [
    b"/../../../../etc/passwd", b"/%2e%2e/%2e%2e/%2e%2e/etc/passwd", b"/files/..%2f..%2f..%2fetc/passwd",
    b"/.%2e/.%2e/etc/passwd", b"/%2E%2E%5c%2E%2E%5cetc/passwd", b"/index.html%00.txt", b"/leak", b"/leakdir/passwd",
    b"http://127.0.0.1/../../etc/passwd",
])
def test_traversal_is_refused(web, target):
    if not (web.www / "leak").is_symlink():
        os.symlink("/etc/passwd", web.www / "leak")
        os.symlink("/etc", web.www / "leakdir")
    reply = raw_exchange(web.port("web"), b"GET " + target + b" HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    status = int(reply.split(b" ", 2)[1])
    assert status in (400, 404) and b"root:" not in reply


def test_hidden_files_are_not_served(web):
    (web.www / ".secret").write_bytes(b"hidden")
    assert http(web, "GET", "/.secret")[0] == 404
    assert http(web, "GET", "/%2esecret")[0] == 404
    assert b".secret" not in http(web, "GET", "/")[2]


def test_slowloris_gets_408_after_the_header_deadline(web):
    with socket.create_connection(("127.0.0.1", web.port("web")), timeout=10) as s:
        started = time.monotonic()
        s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n")
        reply = b""
        for _ in range(20):  # a header byte every 0.2 s: an idle timer alone would never fire
            try:
                s.sendall(b"X")
            except OSError:
                break
            s.settimeout(0.2)
            try:
                reply += s.recv(65536)
            except socket.timeout:
                continue
            if reply:
                break
        s.settimeout(10)
        while chunk := s.recv(65536):
            reply += chunk
    elapsed = time.monotonic() - started
    assert reply.startswith(b"HTTP/1.1 408 ") and 1.2 < elapsed < 4


# ------------------------------------------------------------ keep-alive and pipelining


def test_pipelining_on_one_socket(web):
    with socket.create_connection(("127.0.0.1", web.port("web")), timeout=10) as s:
        s.sendall(b"GET /style.css HTTP/1.1\r\nHost: a\r\n\r\nHEAD / HTTP/1.1\r\nHost: a\r\n\r\n"
                  b"GET /images/logo.svg HTTP/1.1\r\nHost: a\r\n\r\nGET /nope HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    got = responses(data, bodyless=(1,))
    assert [s for s, _, _ in got] == [200, 200, 200, 404]
    assert got[0][2] == (web.www / "style.css").read_bytes()
    assert got[2][1][b"content-type"] == b"image/svg+xml"


def test_keep_alive_with_http_client(web):
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", web.port("web"), timeout=10)
    for path in ("/", "/style.css", "/images/kiwi.png", "/form.html"):
        conn.request("GET", path)
        r = conn.getresponse()
        assert r.status == 200 and r.read()
    conn.close()


def test_http_1_0(web):
    reply = raw_exchange(web.port("web"), b"GET /style.css HTTP/1.0\r\n\r\n")
    status, headers, body = responses(reply)[0]
    assert status == 200 and headers[b"connection"] == b"close" and body


# ------------------------------------------------------------ PUT and DELETE


def test_put_and_delete_need_a_login(web):
    status, h, _ = http(web, "PUT", "/files/anon.txt", body=b"x")
    assert status == 401 and h["www-authenticate"] == 'Basic realm="netapps web", charset="UTF-8"'
    status, _, _ = http(web, "PUT", "/files/anon.txt", body=b"x", headers={"Authorization": basic(password="wrong")})
    assert status == 401
    assert http(web, "DELETE", "/index.html")[0] == 401
    assert not (web.www / "files" / "anon.txt").exists()


def test_put_get_conditional_put_delete(web):
    auth = {"Authorization": basic()}
    status, h, _ = http(web, "PUT", "/files/note.txt", body=b"first", headers=auth)
    assert status == 201 and h["location"] == "/files/note.txt"
    etag = h["etag"]
    status, got, body = http(web, "GET", "/files/note.txt")
    assert status == 200 and body == b"first" and got["etag"] == etag
    status, _, _ = http(web, "PUT", "/files/note.txt", body=b"nope", headers={**auth, "If-Match": '"stale"'})
    assert status == 412
    status, _, _ = http(web, "PUT", "/files/note.txt", body=b"nope", headers={**auth, "If-None-Match": "*"})
    assert status == 412
    status, h, _ = http(web, "PUT", "/files/note.txt", body=b"second", headers={**auth, "If-Match": etag})
    assert status == 204 and h["etag"] != etag
    assert http(web, "GET", "/files/note.txt")[2] == b"second"
    assert http(web, "DELETE", "/files/note.txt", headers={**auth, "If-Match": etag})[0] == 412
    assert http(web, "DELETE", "/files/note.txt", headers=auth)[0] == 204
    assert http(web, "GET", "/files/note.txt")[0] == 404
    assert http(web, "DELETE", "/files/note.txt", headers=auth)[0] == 404
    assert http(web, "PUT", "/no-such-dir/x.txt", body=b"x", headers=auth)[0] == 409
    assert http(web, "PUT", "/files/", body=b"x", headers=auth)[0] == 409
    line = wait_for(lambda: next((l for l in access_lines(web) if "PUT /files/note.txt" in l), None), what="log line")
    assert line.split()[2] == "alice"


def test_expect_continue_is_answered_only_after_the_login(web):
    with socket.create_connection(("127.0.0.1", web.port("web")), timeout=10) as s:
        s.sendall(b"PUT /files/x.bin HTTP/1.1\r\nHost: a\r\nAuthorization: " + basic(password="bad").encode()
                  + b"\r\nContent-Length: 5000000\r\nExpect: 100-continue\r\n\r\n")
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 401 ") and b"100 Continue" not in reply  # and the body was never sent
    with socket.create_connection(("127.0.0.1", web.port("web")), timeout=10) as s:
        s.sendall(b"PUT /files/x.bin HTTP/1.1\r\nHost: a\r\nAuthorization: " + basic().encode()
                  + b"\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        assert s.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(b"hello")
        assert s.recv(65536).startswith(b"HTTP/1.1 201 ")
    assert (web.www / "files" / "x.bin").read_bytes() == b"hello"


def test_a_broken_upload_leaves_no_file(web):
    with socket.create_connection(("127.0.0.1", web.port("web")), timeout=10) as s:
        s.sendall(b"PUT /files/broken.bin HTTP/1.1\r\nHost: a\r\nAuthorization: " + basic().encode()
                  + b"\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 100000)
        time.sleep(0.3)  # let some of it reach the temp file
    wait_for(lambda: sorted(p.name for p in (web.www / "files").iterdir() if "broken" in p.name) == [],
             what="temp file removed")
    assert not (web.www / "files" / "broken.bin").exists()


def test_upload_too_large_is_413(web, tmp_path):
    status, _, _ = http(web, "PUT", "/files/huge.bin", headers={"Authorization": basic(), "Content-Length": str(10**12)})
    assert status == 413


# ------------------------------------------------------------ demos


def test_cookie_demo_counts_visits_durably(tmp_path):
    daemon = start_web(tmp_path / "data")
    try:
        status, h, body = http(daemon, "GET", "/cookie")
        assert status == 200 and h["cache-control"] == "no-store"
        cookie = h["set-cookie"].split(";")[0]
        name, visitor = cookie.split("=")
        assert name == "netapps_visitor" and "HttpOnly" in h["set-cookie"]
        for expected in (2, 3):
            status, h, body = http(daemon, "GET", "/cookie", headers={"Cookie": f"other=1; {cookie}"})
            assert "set-cookie" not in h and f'<strong id="visits">{expected}</strong>'.encode() in body
        daemon.stop(signal.SIGKILL)  # the count shown was on disk before the page was sent
        visits = json.loads((tmp_path / "data" / "web" / "visits.json").read_text())["visits"]
        assert visits[visitor]["count"] == 3
    finally:
        daemon.stop()
    daemon = start_web(tmp_path / "data")
    try:
        _, h, body = http(daemon, "GET", "/cookie", headers={"Cookie": cookie})
        assert b'<strong id="visits">4</strong>' in body
        _, h, _ = http(daemon, "GET", "/cookie", headers={"Cookie": "netapps_visitor=forged<>"})
        assert "set-cookie" in h  # an unknown or malformed id gets a new one
    finally:
        daemon.stop()


def test_form_demo_get_and_post(web):
    status, _, body = http(web, "GET", "/form?name=Ada&fruit=kiwi")
    assert status == 200 and b"<th>name</th><td>Ada</td>" in body and b"GET" in body
    status, _, body = http(web, "POST", "/form", body=b"name=%3Cb%3EGrace&comment=a+%26+b",
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200 and b"&lt;b&gt;Grace" in body and b"a &amp; b" in body
    status, h, _ = http(web, "POST", "/form", body=b"{}", headers={"Content-Type": "application/json"})
    assert status == 415 and h["accept-post"] == "application/x-www-form-urlencoded"
    status, h, _ = http(web, "PUT", "/form", body=b"x")
    assert status == 405 and h["allow"] == "GET, HEAD, POST, OPTIONS"


# ------------------------------------------------------------ the access log


def test_access_log_is_combined_log_format(web):
    http(web, "GET", "/images/kiwi.png", headers={"Referer": "http://example.test/", "User-Agent": 'agent "quoted" caf\xe9'})
    line = wait_for(lambda: next((l for l in access_lines(web) if "/images/kiwi.png" in l and "quoted" in l), None),
                    what="access log line")
    import re
    size = (web.www / "images" / "kiwi.png").stat().st_size
    assert re.fullmatch(
        r'127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] "GET /images/kiwi\.png HTTP/1\.1" 200 '
        + str(size) + r' "http://example\.test/" "agent \\"quoted\\" caf\\xe9"', line), line


def test_counters_are_declared_and_written(tmp_path):
    from twisted_netapps.stats import FRAME_COUNTERS, GAUGES, STANDARD_COUNTERS
    from twisted_netapps.web.service import COUNTERS

    daemon = start_web(tmp_path / "data")
    try:
        assert http(daemon, "GET", "/")[0] == 200
        assert http(daemon, "GET", "/missing")[0] == 404
        assert http(daemon, "PUT", "/files/c.txt", body=b"x", headers={"Authorization": basic()})[0] == 201
        raw_exchange(daemon.port("web"), b"GET / HTTP/1.1\r\n\r\n")
    finally:
        daemon.stop()
    stats = json.loads((tmp_path / "data" / "run" / "stats.json").read_text())["web"]
    assert stats["requests"] == 3 and stats["responses_2xx"] == 2 and stats["responses_4xx"] == 2
    assert stats["uploads"] == 1 and stats["bad_requests"] == 1 and stats["connections"] == 4
    frame = set(STANDARD_COUNTERS) | set(FRAME_COUNTERS) | set(GAUGES)
    assert set(stats) - frame <= set(COUNTERS), set(stats) - frame - set(COUNTERS)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to change user")
def test_after_dropping_privileges_uploads_and_logs_still_work(netapps_daemon):
    import pwd
    import shutil
    import tempfile

    from twisted_netapps.accounts import AccountStore

    nobody = pwd.getpwnam("nobody")
    top = Path(tempfile.mkdtemp(prefix="netapps-web-"))
    os.chmod(top, 0o755)  # reachable by nobody (pytest's tmp_path is root-only)
    try:
        data = top / "data"
        data.mkdir(mode=0o700)
        AccountStore(data).add("alice", "alice-secret", log2_n=10)
        os.chown(data / "accounts.json", nobody.pw_uid, nobody.pw_gid)
        d = netapps_daemon(["web"], data_dir=data, listen={"web": ["tcp:0:interface=127.0.0.1"]},
                           twistd_args=["-u", str(nobody.pw_uid), "-g", str(nobody.pw_gid)])
        assert http(d, "PUT", "/files/n.txt", body=b"hi", headers={"Authorization": basic()})[0] == 201
        assert http(d, "GET", "/cookie")[0] == 200
        wait_for(lambda: (data / "web" / "access.log").exists(), what="the access log")
        assert (data / "www" / "files" / "n.txt").stat().st_uid == nobody.pw_uid
        assert (data / "www" / "index.html").stat().st_uid == nobody.pw_uid
        d.stop()
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_status_page_shows_requests_and_the_visitors_view(tmp_path):
    import urllib.request

    from netapps_daemon import start_daemon

    d = start_daemon(["web", "status"], tmp_path / "data", listen={
        "web": ["tcp:0:interface=127.0.0.1"], "status": ["tcp:0:interface=127.0.0.1"]})
    try:
        _, h, _ = http(d, "GET", "/cookie")
        visitor = h["set-cookie"].split(";")[0].split("=")[1]
        base = f"http://127.0.0.1:{d.port('status')}"
        with urllib.request.urlopen(f"{base}/api/view/web/visitors", timeout=10) as r:
            assert visitor in r.read().decode()
        with urllib.request.urlopen(f"{base}/api/service/web", timeout=10) as r:
            service = json.loads(r.read())
        assert any(e.get("target") == "/cookie" and e.get("status") == 200 for e in service["recent"])
        assert service["counters"]["requests"] >= 1
    finally:
        d.stop()
