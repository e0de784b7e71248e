"""A real browser: headless Chromium, driven through chromedriver's WebDriver
HTTP API (plain http.client, no Selenium), loads the demo site, keeps a
cookie across visits, posts the form and reloads with conditional GETs."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from conftest import require_tool  # noqa: E402
from netapps_daemon import free_port, wait_for  # noqa: E402
from webtestlib import settled, start_web  # noqa: E402

pytestmark = pytest.mark.interop

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
]


class WebDriver:
    """The few WebDriver commands the test needs (W3C protocol over HTTP)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.session = None

    def call(self, method: str, path: str, body=None, timeout: float = 60.0):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=json.dumps(body) if body is not None else None,
                         headers={"Content-Type": "application/json"})
            reply = json.loads(conn.getresponse().read() or b"{}")
        finally:
            conn.close()
        value = reply.get("value")
        if isinstance(value, dict) and "error" in value:
            raise RuntimeError(f"webdriver {path}: {value['error']}: {value.get('message', '')[:300]}")
        return value

    def start(self, chromium: str, profile: str) -> None:
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": chromium, "args": CHROMIUM_ARGS + [f"--user-data-dir={profile}"]}}}}
        self.session = self.call("POST", "/session", caps)["sessionId"]

    def go(self, url: str) -> None:
        self.call("POST", f"/session/{self.session}/url", {"url": url})

    def refresh(self) -> None:
        self.call("POST", f"/session/{self.session}/refresh", {})

    def script(self, source: str):
        return self.call("POST", f"/session/{self.session}/execute/sync", {"script": source, "args": []})

    def quit(self) -> None:
        if self.session is not None:
            self.call("DELETE", f"/session/{self.session}")
            self.session = None


@pytest.fixture
def browser(tmp_path):
    chromium = require_tool("chromium", "chromium-browser")
    chromedriver = require_tool("chromedriver")
    port = free_port()
    log = open(tmp_path / "chromedriver.log", "wb")
    proc = subprocess.Popen([chromedriver, f"--port={port}"], stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    driver = WebDriver(port)
    try:
        wait_for(lambda: _ready(driver), timeout=20, what="chromedriver")
        driver.start(chromium, tempfile.mkdtemp(prefix="chromium-profile-", dir=tmp_path))
        yield driver
    finally:
        try:
            driver.quit()
        except (OSError, RuntimeError):
            pass
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # chromedriver and the browser it started
        except ProcessLookupError:
            pass
        proc.wait(15)
        log.close()


def _ready(driver: WebDriver) -> bool:
    try:
        return bool(driver.call("GET", "/status", timeout=2).get("ready"))
    except (OSError, ValueError):
        return False


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


def test_browser_loads_site_keeps_cookie_posts_form_and_revalidates(browser, tmp_path):
    daemon = start_web(tmp_path / "data", ['web.cache_control={ "*" = "no-cache" }'])
    try:
        for path in (daemon.data_dir / "www").rglob("*"):
            settled(path)
        base = f"http://127.0.0.1:{daemon.port('web')}"

        browser.go(base + "/")
        title, kiwi_width, styled = browser.script(
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

        browser.refresh()  # a reload: conditional GETs, answered 304
        revalidated = wait_for(
            lambda: (lambda r: r if {"/", "/style.css", "/images/kiwi.png"} <= {p for p, s in r if s == "304"} else None)(
                requests_after(daemon, mark)), what="304s after the reload")
        assert not [p for p, s in revalidated if s == "200" and p in wanted]

        for visit in (1, 2, 3):
            browser.go(base + "/cookie")
            text = browser.script("return document.body.innerText")
            if visit == 1:
                assert "new visitor" in text
            else:
                assert browser.script("return document.getElementById('visits').textContent") == str(visit)
        cookie_jar = browser.call("GET", f"/session/{browser.session}/cookie")
        assert [c["name"] for c in cookie_jar] == ["netapps_visitor"] and cookie_jar[0]["httpOnly"]
        visits = json.loads((daemon.data_dir / "web" / "visits.json").read_text())["visits"]
        assert visits[cookie_jar[0]["value"]]["count"] == 3

        browser.go(base + "/form.html")
        browser.script("document.querySelector('#post-form input[name=name]').value = 'Ada <Lovelace>';"
                       " document.getElementById('post-form').submit();")
        page = wait_for(lambda: (lambda t: t if "Form demo" in t and "POST" in t else None)(
            browser.script("return location.pathname + ' ' + document.body.innerText")), what="the form's answer")
        assert page.startswith("/form ") and "Ada <Lovelace>" in page and "Hello & welcome" in page
        wait_for(lambda: ("/form", "200") in requests_after(daemon, mark), what="the POST in the access log")
        assert ("/cookie", "200") in requests_after(daemon, mark)
    finally:
        daemon.stop()
