"""Real clients through the proxy: curl (forward and reverse mode, CONNECT) and headless Chromium."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from conftest import require_tool  # noqa: E402
from proxy_origin import Reply, http_date  # noqa: E402
from proxytestlib import forward_proxy, origin, proxy  # noqa: E402,F401 (fixtures)

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]


def curl(*args: str, timeout: float = 20) -> tuple[dict, bytes]:
    """Run curl; return (last response's header fields, lowercase names) and the body."""
    result = subprocess.run([require_tool("curl"), "-sS", "-D", "-", *args], capture_output=True, timeout=timeout,
                            check=True)
    head, _sep, body = result.stdout.rpartition(b"\r\n\r\n") if b"\r\n\r\n" in result.stdout else (result.stdout, b"",
                                                                                                      b"")
    last = head.split(b"\r\n\r\n")[-1]
    lines = last.split(b"\r\n")
    fields = {"status": int(lines[0].split()[1])}
    for line in lines[1:]:
        name, _colon, value = line.partition(b":")
        fields[name.decode().lower()] = value.strip().decode("latin-1")
    return fields, body


def through(proxy, path: str, *args: str):
    if proxy.mode == "forward":
        return curl("-x", f"{proxy.host}:{proxy.port}", f"http://{proxy.origin.authority}{path}", *args)
    return curl(f"http://{proxy.host}:{proxy.port}{path}", *args)


@pytest.mark.interop
def test_curl_miss_then_hit_with_one_origin_request(proxy):
    path = proxy.new_path("/index.html")
    proxy.origin.script(path, Reply(200, [("Cache-Control", "max-age=60"), ("Content-Type", "text/html")], b"<p>hi</p>"))
    first, body1 = through(proxy, path)
    second, body2 = through(proxy, path)
    assert (first["x-cache"], second["x-cache"]) == ("MISS", "HIT")
    assert body1 == body2 == b"<p>hi</p>"
    assert proxy.origin.count(path) == 1
    head, body = through(proxy, path, "-I")
    assert (head["status"], head["x-cache"], head["content-length"], body) == (200, "HIT", "9", b"")


@pytest.mark.interop
def test_curl_changed_file_costs_one_conditional_get(proxy):
    path = proxy.new_path("/page.html")
    proxy.origin.script(path,
                        Reply(200, [("Cache-Control", "max-age=1"), ("Age", "2"), ("ETag", '"v1"')], b"version 1"),
                        Reply(200, [("Cache-Control", "max-age=60"), ("ETag", '"v2"')], b"version 2", revalidate=True))
    assert through(proxy, path)[1] == b"version 1"
    fields, body = through(proxy, path)
    assert (body, fields["x-cache"], fields["etag"]) == (b"version 2", "MISS", '"v2"')
    requests = proxy.origin.requests(path)
    assert len(requests) == 2 and requests[1].headers["if-none-match"] == '"v1"'
    assert through(proxy, path)[0]["x-cache"] == "HIT"


@pytest.mark.interop
def test_curl_revalidation_304_serves_the_stored_body(proxy):
    path = proxy.new_path()
    proxy.origin.script(path, Reply(200, [("Cache-Control", "max-age=60"), ("Last-Modified", http_date(-3600))],
                                    b"stored", revalidate=True))
    through(proxy, path)
    fields, body = through(proxy, path, "-H", "Cache-Control: no-cache")
    assert (fields["x-cache"], body) == ("REVALIDATED", b"stored")
    assert "if-modified-since" in proxy.origin.requests(path)[1].headers


@pytest.mark.interop
def test_curl_through_a_connect_tunnel(forward_proxy):
    proxy = forward_proxy
    path = proxy.new_path()
    proxy.origin.script(path, Reply(200, [], b"tunnelled"))
    fields, body = curl("-p", "-x", f"{proxy.host}:{proxy.port}", f"http://{proxy.origin.authority}{path}")
    assert (fields["status"], body) == (200, b"tunnelled")
    assert "x-cache" not in fields  # the tunnel is opaque: the proxy never saw this response


@pytest.mark.interop
def test_curl_post_is_written_through_and_invalidates(proxy):
    path = proxy.new_path()
    proxy.origin.script(path, Reply(200, [("Cache-Control", "max-age=60")], b"doc"))
    through(proxy, path)
    fields, _ = through(proxy, path, "--data-binary", "form=1")
    assert proxy.origin.requests(path)[1].method == "POST" and proxy.origin.requests(path)[1].body == b"form=1"
    assert through(proxy, path)[0]["x-cache"] == "MISS"


def chromium(url: str, profile: Path, proxy=None) -> str:
    args = [require_tool("chromium", "chromium-browser"), *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
            "--dump-dom", "--virtual-time-budget=10000"]
    if proxy is not None:
        # Chromium never proxies loopback unless told to (<-loopback>).
        args += [f"--proxy-server=http://{proxy.host}:{proxy.port}", "--proxy-bypass-list=<-loopback>"]
    result = subprocess.run(args + [url], capture_output=True, timeout=90, text=True)
    return result.stdout


PAGE = """<!doctype html><html><head><title>demo</title></head><body><p id="out">loading</p><script>
(async () => {
  const first = await fetch('data.txt');
  const a = (await first.text()).trim();
  const again = await fetch('data.txt', {cache: 'no-cache'});
  const b = (await again.text()).trim();
  document.getElementById('out').textContent = [a, b, again.status, document.cookie].join('|');
})();
</script></body></html>"""


def script_site(origin, base: str) -> None:
    origin.script(f"{base}/index.html", Reply(200, [("Cache-Control", "max-age=60"),
                                                    ("Content-Type", "text/html; charset=utf-8"),
                                                    ("Set-Cookie", "visit=1; Path=/")], PAGE.encode()))
    origin.script(f"{base}/data.txt", Reply(200, [("Cache-Control", "max-age=60"), ("ETag", '"d1"'),
                                                  ("Content-Type", "text/plain")], b"data-one\n", revalidate=True))


@pytest.mark.interop
def test_chromium_loads_a_site_through_the_proxy_and_revalidates(forward_proxy, tmp_path):
    proxy = forward_proxy
    direct_base, proxied_base = proxy.new_path(), proxy.new_path()
    script_site(proxy.origin, direct_base)
    script_site(proxy.origin, proxied_base)
    direct = chromium(f"http://{proxy.origin.authority}{direct_base}/index.html", tmp_path / "direct")
    proxied = chromium(f"http://{proxy.origin.authority}{proxied_base}/index.html", tmp_path / "browser1", proxy)
    expected = "data-one|data-one|200|visit=1"
    assert re.search(r'<p id="out">([^<]*)</p>', direct).group(1) == expected
    assert re.search(r'<p id="out">([^<]*)</p>', proxied).group(1) == expected
    data = proxy.origin.requests(f"{proxied_base}/data.txt")
    # The first fetch filled the proxy; the no-cache one made the proxy validate: one conditional GET, 304.
    assert len(data) == 2
    assert data[1].headers.get("if-none-match") == '"d1"'
    assert all(r.headers.get("cookie") == "visit=1" for r in data)
    assert proxy.origin.count(f"{proxied_base}/index.html") == 1
    # A second browser (empty cache) gets the page from the proxy's store.
    again = chromium(f"http://{proxy.origin.authority}{proxied_base}/index.html", tmp_path / "browser2", proxy)
    assert re.search(r'<p id="out">([^<]*)</p>', again).group(1) == expected
    assert proxy.origin.count(f"{proxied_base}/index.html") == 1
    assert proxy.origin.count(f"{proxied_base}/data.txt") == 3  # only the no-cache revalidation
