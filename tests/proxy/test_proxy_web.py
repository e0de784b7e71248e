"""The proxy in front of the daemon's own ``web`` service: the issue's "done when", with curl.

``twistd -n netapps --services=web,proxy``: curl -x twice gives MISS then
HIT with the origin seeing one request; after the file changes and the
entry goes stale the proxy sends one conditional GET and serves the new
body; an unchanged file costs a 304; a restart keeps the store. Both modes.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from conftest import require_tool  # noqa: E402
from netapps_daemon import free_port, start_daemon, wait_for  # noqa: E402


def start(data_dir: Path, web_port: int, mode: str):
    sets = ['web.cache_control={ "*.html" = "max-age=1", "*" = "max-age=300" }', "web.access_log_flush=0.1",
            f'proxy.mode="{mode}"', f'proxy.origin="http://127.0.0.1:{web_port}"']
    return start_daemon(["web", "proxy"], data_dir, sets=sets, listen={
        "web": [f"tcp:{web_port}:interface=127.0.0.1"], "proxy": ["tcp:0:interface=127.0.0.1"]})


def fetch(daemon, mode: str, web_port: int, path: str) -> tuple[dict, bytes]:
    proxy = daemon.port("proxy")
    if mode == "forward":
        args = ["-x", f"127.0.0.1:{proxy}", f"http://127.0.0.1:{web_port}{path}"]
    else:
        args = [f"http://127.0.0.1:{proxy}{path}"]
    out = subprocess.run([require_tool("curl"), "-sS", "-D", "-", *args], capture_output=True, timeout=20,
                         check=True).stdout
    head, _sep, body = out.partition(b"\r\n\r\n")
    fields = {}
    for line in head.split(b"\r\n")[1:]:
        name, _colon, value = line.partition(b":")
        fields[name.decode().lower()] = value.strip().decode("latin-1")
    return fields, body


def origin_requests(data_dir: Path, path: str) -> list[str]:
    """Status codes of the web service's access-log lines for GET *path*."""
    log = data_dir / "web" / "access.log"
    if not log.exists():
        return []
    return re.findall(rf'"GET {re.escape(path)} HTTP/1.1" (\d+)', log.read_text())


@pytest.mark.interop
@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_done_when_with_the_web_service(tmp_path, mode):
    data_dir, web_port = tmp_path / "data", free_port()
    daemon = start(data_dir, web_port, mode)
    try:
        # style.css is fresh for 300 s: MISS, then HIT with the origin asked once.
        first, body = fetch(daemon, mode, web_port, "/style.css")
        second, again = fetch(daemon, mode, web_port, "/style.css")
        assert (first["x-cache"], second["x-cache"], body) == ("MISS", "HIT", again)
        wait_for(lambda: origin_requests(data_dir, "/style.css"), what="the access log")
        assert origin_requests(data_dir, "/style.css") == ["200"]

        # index.html is fresh for 1 s. The page changes at the origin; once the
        # stored copy is stale, one conditional GET brings the new body.
        fetched_at = time.time()
        fetch(daemon, mode, web_port, "/index.html")
        page = data_dir / "www" / "index.html"
        page.write_bytes(page.read_bytes().replace(b"</body>", b"<p>changed</p></body>"))
        wait_for(lambda: time.time() > fetched_at + 1.2, what="the stored page to go stale")
        fields, new = fetch(daemon, mode, web_port, "/index.html")
        assert b"<p>changed</p>" in new and fields["x-cache"] == "MISS"
        changed_at = time.time()
        wait_for(lambda: len(origin_requests(data_dir, "/index.html")) == 2, what="the conditional GET")

        # Unchanged and stale: the conditional GET gets a 304 and the stored body is served.
        wait_for(lambda: time.time() > changed_at + 1.2, what="stale again")
        fields, same = fetch(daemon, mode, web_port, "/index.html")
        assert (fields["x-cache"], same) == ("REVALIDATED", new)
        wait_for(lambda: origin_requests(data_dir, "/index.html")[-1:] == ["304"], what="the 304")
    finally:
        daemon.stop()
    wait_for(lambda: origin_requests(data_dir, "/style.css"), what="the access log")
    daemon = start(data_dir, web_port, mode)  # a restart keeps the store
    try:
        fields, _css = fetch(daemon, mode, web_port, "/style.css")
        assert fields["x-cache"] == "HIT"
        assert origin_requests(data_dir, "/style.css") == ["200"]
    finally:
        daemon.stop()
