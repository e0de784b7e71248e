"""A real browser: headless Chromium (tests/browser.py, through chromedriver)
loads the demo site, keeps a cookie across visits, posts the form and
reloads with conditional GETs; the access log shows what it asked for."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from browser import Browser  # noqa: E402
from conftest import require_tool  # noqa: E402
from netapps_daemon import wait_for  # noqa: E402
from webtestlib import settled, start_web  # noqa: E402

pytestmark = pytest.mark.interop


def access_log(daemon) -> list[str]:
    path = daemon.data_dir / "web" / "access.log"
    return path.read_text().splitlines() if path.exists() else []


def requests_after(daemon, mark: int) -> list[tuple[str, str]]:
    """(path, status) of the access log lines after line *mark*."""
    out = []
    for line in access_log(daemon)[mark:]:
        request = line.split('"')[1].split()
        out.append((request[1], line.split('"')[2].split()[0]))
    return out


def test_browser_loads_site_keeps_cookie_posts_form_and_revalidates(tmp_path):
    chromium = require_tool("chromium", "chromium-browser")
    chromedriver = require_tool("chromedriver")
    daemon = start_web(tmp_path / "data", ['web.cache_control={ "*" = "no-cache" }'])
    try:
        for path in (daemon.data_dir / "www").rglob("*"):
            settled(path)
        base = f"http://127.0.0.1:{daemon.port('web')}"
        with Browser(chromium, chromedriver) as browser:
            browser.get(base + "/")
            title, kiwi_width, styled = browser.js(
                "return [document.title, document.getElementById('kiwi').naturalWidth,"
                " getComputedStyle(document.querySelector('main')).maxWidth]")
            assert title == "twisted-netapps web demo" and kiwi_width == 64 and styled != "none"
            wanted = {"/", "/style.css", "/images/logo.svg", "/images/kiwi.png", "/images/pattern.png"}
            first = wait_for(lambda: (lambda r: r if wanted <= {p for p, _ in r} else None)(requests_after(daemon, 0)),
                             what="the page's requests in the access log")
            first_status = {}
            for path, status in first:
                first_status.setdefault(path, status)
            assert {first_status[p] for p in wanted} == {"200"}  # (the favicon, kiwi.png again, may come as a 304)
            mark = len(access_log(daemon))

            browser.reload()  # conditional GETs, answered 304
            revalidated = wait_for(
                lambda: (lambda r: r if {"/", "/style.css", "/images/kiwi.png"} <= {p for p, s in r if s == "304"}
                         else None)(requests_after(daemon, mark)), what="304s after the reload")
            assert not [p for p, s in revalidated if s == "200" and p in wanted]

            for visit in (1, 2, 3):
                browser.get(base + "/cookie")
                if visit == 1:
                    assert "new visitor" in browser.js("return document.body.innerText")
                else:
                    assert browser.js("return document.getElementById('visits').textContent") == str(visit)
            jar = browser.cookies()
            assert [c["name"] for c in jar] == ["netapps_visitor"] and jar[0]["httpOnly"]
            visits = json.loads((daemon.data_dir / "web" / "visits.json").read_text())["visits"]
            assert visits[jar[0]["value"]]["count"] == 3

            browser.get(base + "/form.html")
            browser.js("document.querySelector('#post-form input[name=name]').value = 'Ada <Lovelace>';"
                       " document.getElementById('post-form').submit();")
            page = browser.wait_js("const t = location.pathname + ' ' + document.body.innerText;"
                                   " return t.includes('Form demo') && t.includes('POST') ? t : null",
                                   what="the form's answer")
            assert page.startswith("/form ") and "Ada <Lovelace>" in page and "Hello & welcome" in page
        wait_for(lambda: ("/form", "200") in requests_after(daemon, mark), what="the POST in the access log")
        assert ("/cookie", "200") in requests_after(daemon, mark)
    finally:
        daemon.stop()
