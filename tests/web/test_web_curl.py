"""Interop with curl: HEAD, conditional GETs by ETag and date, ranges, uploads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from conftest import require_tool  # noqa: E402
from webtestlib import PASSWORD, USER, settled, start_web  # noqa: E402

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    daemon = start_web(tmp_path_factory.mktemp("curl") / "data")
    for path in (daemon.data_dir / "www").rglob("*"):
        settled(path)
    yield daemon
    daemon.stop()


def curl(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([require_tool("curl"), "-sS", *args], capture_output=True, timeout=30, check=check)


def url(web, path: str) -> str:
    return f"http://127.0.0.1:{web.port('web')}{path}"


def test_head(web):
    out = curl("-I", url(web, "/")).stdout.decode()
    assert out.startswith("HTTP/1.1 200 OK\r\n") and "ETag: \"" in out and "Content-Length:" in out


def test_etag_compare_gives_304(web, tmp_path):
    etag_file = tmp_path / "etag"
    first = curl("--etag-save", str(etag_file), "-o", "/dev/null", "-w", "%{http_code}", url(web, "/style.css"))
    assert first.stdout == b"200" and etag_file.read_text().strip().startswith('"')
    again = curl("--etag-compare", str(etag_file), "-o", "/dev/null", "-w", "%{http_code}", url(web, "/style.css"))
    assert again.stdout == b"304"


def test_time_condition_gives_304(web, tmp_path):
    copy = tmp_path / "style.css"
    curl("-R", "-o", str(copy), url(web, "/style.css"))  # -R: keep the server's Last-Modified
    result = curl("-z", str(copy), "-o", "/dev/null", "-w", "%{http_code}", url(web, "/style.css"))
    assert result.stdout == b"304"


def test_ranges(web):
    full = (web.data_dir / "www" / "files" / "readme.txt").read_bytes()
    assert curl("-r", "10-19", url(web, "/files/readme.txt")).stdout == full[10:20]
    result = curl("-r", "0-1,5-6", "-D", "-", url(web, "/files/readme.txt")).stdout
    assert b"206 Partial Content" in result and b"multipart/byteranges" in result
    assert curl("-r", "99999-", "-o", "/dev/null", "-w", "%{http_code}", url(web, "/files/readme.txt")).stdout == b"416"


def test_upload_and_delete(web, tmp_path):
    source = tmp_path / "upload.bin"
    source.write_bytes(b"curl upload\n" * 50000)  # 600 kB: curl sends Expect: 100-continue
    anon = curl("-T", str(source), "-o", "/dev/null", "-w", "%{http_code}", url(web, "/files/up.bin"))
    assert anon.stdout == b"401"
    put = curl("-u", f"{USER}:{PASSWORD}", "-T", str(source), "-o", "/dev/null", "-w", "%{http_code}", url(web, "/files/up.bin"))
    assert put.stdout == b"201"
    assert curl(url(web, "/files/up.bin")).stdout == source.read_bytes()
    gone = curl("-u", f"{USER}:{PASSWORD}", "-X", "DELETE", "-o", "/dev/null", "-w", "%{http_code}", url(web, "/files/up.bin"))
    assert gone.stdout == b"204"


def test_keep_alive_reuses_one_connection(web):
    result = curl("-v", url(web, "/"), url(web, "/style.css"), url(web, "/images/kiwi.png"), "-o", "/dev/null", "-o", "/dev/null", "-o", "/dev/null")
    assert result.stderr.count(b"Connected to") == 1 and b"Re-using existing connection" in result.stderr


def test_http_1_0_and_a_redirect(web):
    result = curl("--http1.0", "-L", "-D", "-", "-o", "/dev/null", url(web, "/files"))
    assert b"HTTP/1.1 301" in result.stdout and b"Location: /files/" in result.stdout and b"HTTP/1.1 200" in result.stdout
