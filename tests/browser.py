"""A headless Chromium driven through chromedriver's W3C WebDriver API (urllib only).

For tests of what a browser shows: ``with Browser() as b: b.get(url); b.wait_js(...)``.
Debian's ``chromium`` and ``chromium-driver``; the flags keep Chromium off the
network (this machine has none) and out of the user's profile.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
import urllib.request
from pathlib import Path

from netapps_daemon import free_port, wait_for

CHROMIUM_FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
    "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-extensions", "--window-size=1280,900",
]


class Browser:
    def __init__(self, chromium: str, chromedriver: str, extra_flags=()) -> None:
        self.chromium = chromium
        self.chromedriver = chromedriver
        self.extra_flags = list(extra_flags)
        self.profile = tempfile.mkdtemp(prefix="netapps-chromium-")
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.session: str | None = None

    def __enter__(self) -> "Browser":
        # The free port can be taken by someone else before chromedriver binds it
        # (tests run in parallel): then chromedriver exits, and we try another port.
        for attempt in range(3):
            self.port = free_port()
            self.proc = subprocess.Popen(
                [self.chromedriver, f"--port={self.port}", "--allowed-ips=127.0.0.1"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
            )
            state = wait_for(self._driver_state, timeout=60, what="chromedriver")
            if state == "ready":
                break
            self.proc.wait(10)
        else:
            raise RuntimeError("chromedriver could not start on three free ports")
        capabilities = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": self.chromium,
                "args": [*CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", *self.extra_flags],
            },
        }}}
        self.session = self._call("POST", "/session", capabilities)["sessionId"]
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self.session is not None:
                self._call("DELETE", f"/session/{self.session}")
        except OSError:
            pass
        finally:
            if self.proc is not None:
                self.proc.terminate()
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(10)
            shutil.rmtree(self.profile, ignore_errors=True)

    def _driver_state(self) -> str | None:
        """"ready", "exited", or None while chromedriver is still starting."""
        if self.proc.poll() is not None:
            return "exited"
        try:
            request = urllib.request.Request(f"http://127.0.0.1:{self.port}/status")
            with urllib.request.urlopen(request, timeout=2) as response:
                ready = json.loads(response.read()).get("value", {}).get("ready")
        except (OSError, ValueError, AttributeError):
            return None
        return "ready" if ready else None

    def _call(self, method: str, path: str, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method,
                                         headers={"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read()).get("value")

    def get(self, url: str) -> None:
        self._call("POST", f"/session/{self.session}/url", {"url": url})

    def js(self, script: str, *args):
        """Run *script* (a function body; ``return`` a value) in the page."""
        return self._call("POST", f"/session/{self.session}/execute/sync", {"script": script, "args": list(args)})

    def wait_js(self, script: str, timeout: float = 15.0, what: str = "the page"):
        return wait_for(lambda: self.js(script), timeout=timeout, interval=0.2, what=what)

    def screenshot(self, path: Path) -> Path:
        png = base64.b64decode(self._call("GET", f"/session/{self.session}/screenshot"))
        Path(path).write_bytes(png)
        return Path(path)

    def reload(self) -> None:
        self._call("POST", f"/session/{self.session}/refresh", {})

    def cookies(self) -> list[dict]:
        """The cookies the browser holds for the current page (name, value, httpOnly...)."""
        return self._call("GET", f"/session/{self.session}/cookie")

