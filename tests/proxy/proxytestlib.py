"""The proxy under test: the real daemon in front of a :class:`TestOrigin`, in either mode.

``ProxyUnderTest.get(path)`` asks the proxy the way a client in that mode
would: an absolute URI in forward mode (like ``curl -x``), origin-form with
a Host field in reverse mode. Responses come back as :class:`Answer`.
"""

from __future__ import annotations

import http.client
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from netapps_daemon import Daemon, start_daemon
from proxy_origin import TestOrigin


@dataclass
class Answer:
    status: int
    reason: str
    headers: list  # [(name, value)]
    body: bytes

    def header(self, name: str) -> str | None:
        values = [v for n, v in self.headers if n.lower() == name.lower()]
        return ", ".join(values) if values else None

    def all(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n.lower() == name.lower()]

    @property
    def x_cache(self) -> str | None:
        return self.header("X-Cache")


class ProxyUnderTest:
    def __init__(self, daemon: Daemon, origin: TestOrigin, mode: str) -> None:
        self.daemon = daemon
        self.origin = origin
        self.mode = mode
        self.host, self.port = daemon.address("proxy")

    @staticmethod
    def new_path(suffix: str = "") -> str:
        return f"/t/{uuid.uuid4().hex}{suffix}"

    def target(self, path: str) -> str:
        return f"http://{self.origin.authority}{path}" if self.mode == "forward" else path

    def request(self, method: str, path: str, headers=(), body: bytes | None = None, timeout: float = 10.0) -> Answer:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.putrequest(method, self.target(path), skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", self.origin.authority)
            for name, value in headers:
                conn.putheader(name, value)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            response = conn.getresponse()
            data = response.read()
            return Answer(response.status, response.reason, response.getheaders(), data)
        finally:
            conn.close()

    def get(self, path: str, headers=()) -> Answer:
        return self.request("GET", path, headers)

    def raw(self, data: bytes, timeout: float = 5.0) -> bytes:
        """Send *data* as is; return everything the proxy sends until it closes (or *timeout*)."""
        with socket.create_connection((self.host, self.port), timeout=timeout) as sock:
            sock.sendall(data)
            chunks = []
            try:
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
            except socket.timeout:
                pass
            return b"".join(chunks)


def start_proxy(data_dir: Path, origin: TestOrigin, mode: str, sets=(), also=()) -> ProxyUnderTest:
    """The daemon running the proxy (and the services in *also*, each on a free port)."""
    settings = [
        f"proxy.allowed_ports=[{origin.port}]",
        f'proxy.mode="{mode}"',
        f'proxy.origin="http://{origin.authority}"',
        *sets,
    ]
    services = ["proxy", *also]
    listen = {name: ["tcp:0:interface=127.0.0.1"] for name in services}
    daemon = start_daemon(services, data_dir, listen=listen, sets=settings)
    return ProxyUnderTest(daemon, origin, mode)


@pytest.fixture(scope="module")
def origin():
    """The module's scriptable test origin (import this fixture into the test module)."""
    with TestOrigin() as server:
        yield server


@pytest.fixture(scope="module", params=["forward", "reverse"])
def proxy(request, origin, tmp_path_factory):
    """The daemon in forward and in reverse mode, in front of the module's test origin."""
    under_test = start_proxy(tmp_path_factory.mktemp(f"proxy-{request.param}"), origin, request.param)
    yield under_test
    under_test.daemon.stop()


@pytest.fixture(scope="module")
def forward_proxy(origin, tmp_path_factory):
    """The daemon in forward mode only (browsers, CONNECT)."""
    under_test = start_proxy(tmp_path_factory.mktemp("proxy-forward-only"), origin, "forward")
    yield under_test
    under_test.daemon.stop()
