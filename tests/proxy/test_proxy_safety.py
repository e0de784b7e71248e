"""The proxy facing hostile or broken clients and origins (raw sockets, forward mode unless said).

Request smuggling defences, head limits (414/431), the header deadline
against slowloris, allowed ports, CONNECT, client networks, bad origins.
"""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from netapps_daemon import free_port  # noqa: E402
from proxy_origin import Reply, TestOrigin  # noqa: E402
from proxytestlib import origin, proxy, start_proxy  # noqa: E402,F401 (fixtures)


@pytest.fixture(scope="module")
def strict(tmp_path_factory, origin):
    proxy = start_proxy(tmp_path_factory.mktemp("strict"), origin, "forward", sets=[
        "proxy.header_timeout=1.0", "proxy.max_header_size=4096", "proxy.max_request_line=1024",
        "proxy.max_header_fields=20", "proxy.body_timeout=1.0",
    ])
    yield proxy
    proxy.daemon.stop()


def request_to(proxy, path: str, *lines: str, method: str = "GET", body: bytes = b"") -> bytes:
    head = f"{method} {proxy.target(path)} HTTP/1.1\r\nHost: {proxy.origin.authority}\r\n"
    return (head + "".join(line + "\r\n" for line in lines) + "\r\n").encode("latin-1") + body


def status_of(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/1.1 ") else 0


@pytest.mark.parametrize("lines,body", [
    (["Content-Length: 5", "Transfer-Encoding: chunked"], b"0\r\n\r\n"),
    (["Transfer-Encoding: chunked", "Content-Length: 5"], b"0\r\n\r\n"),
    (["Content-Length: 5", "Content-Length: 6"], b"hello!"),
    (["Content-Length: 5, 5"], b"hello"),
    (["Content-Length: +5"], b"hello"),
    (["Content-Length: 0x5"], b"hello"),
    (["Transfer-Encoding: chunked"], b"5 \r\nhello\r\n0\r\n\r\n"),
    (["Transfer-Encoding: chunked"], b"0x5\r\nhello\r\n0\r\n\r\n"),
    (["Transfer-Encoding: chunked"], b"5\nhello\n0\n\n"),
    (["Transfer-Encoding: chunked"], b"5\r\nhelloXX0\r\n\r\n"),
    (["Transfer-Encoding: chunked"], b"-5\r\nhello\r\n0\r\n\r\n"),
    (["Transfer-Encoding: chunked"], b"fffffffffffffffff\r\n"),
    (["Transfer-Encoding: chunked, chunked"], b"0\r\n\r\n"),
    (["Transfer-Encoding: xchunked"], b"0\r\n\r\n"),
    (["Transfer-Encoding: gzip"], b""),
    (["Transfer-Encoding : chunked"], b"0\r\n\r\n"),
    ([" Transfer-Encoding: chunked"], b"0\r\n\r\n"),
])
def test_smuggling_attempts_are_rejected_and_never_reach_the_origin(strict, lines, body):
    path = strict.new_path()
    strict.origin.script(path, Reply(200, [], b"x"))
    raw = strict.raw(request_to(strict, path, *lines, method="POST", body=body))
    assert status_of(raw) in (400, 501), raw[:200]
    assert strict.origin.count(path) == 0


def test_transfer_encoding_in_http_1_0_is_rejected(strict):
    path = strict.new_path()
    raw = strict.raw(f"POST {strict.target(path)} HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".encode())
    assert status_of(raw) == 400


@pytest.mark.parametrize("data,status", [
    (b"GET http://x/ HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    (b"GET  http://x/ HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"get http://x/ http/1.1\r\nHost: x\r\n\r\n", 400),
    (b"GET http://x/\x01 HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"GET http://x/ HTTP/1.1\r\n\r\n", 400),
    (b"GET http://x/ HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400),
    (b"GET http://x/ HTTP/1.1\r\nHost: x\r\nBad\x00Name: y\r\n\r\n", 400),
    (b"GET http://x/ HTTP/1.1\r\nHost: x\r\nA: b\rc\r\n\r\n", 400),
    (b"GET /relative HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"GET ftp://x/ HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"GET http://user:pw@x/ HTTP/1.1\r\nHost: x\r\n\r\n", 400),
])
def test_malformed_requests_get_a_clear_error(strict, data, status):
    raw = strict.raw(data)
    assert status_of(raw) == status, raw[:200]
    assert b"Traceback" not in raw


def test_long_request_line_is_414(strict):
    raw = strict.raw(b"GET http://x/" + b"a" * 2000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status_of(raw) == 414


@pytest.mark.parametrize("extra", [["X-Big: " + "b" * 5000], [f"X-{i}: {i}" for i in range(30)]])
def test_oversized_heads_are_431(strict, extra):
    path = strict.new_path()
    assert status_of(strict.raw(request_to(strict, path, *extra))) == 431


def test_slowloris_head_gets_408_at_the_header_deadline(strict):
    with socket.create_connection((strict.host, strict.port), timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(b"GET http://x/ HTTP/1.1\r\n")
        answer = b""
        while True:
            try:
                sock.sendall(b"X-Slow: 1\r\n")  # bytes keep coming: an idle timer would never fire
            except OSError:
                break
            sock.settimeout(0.3)
            try:
                chunk = sock.recv(4096)
            except socket.timeout:
                continue
            answer += chunk
            if not chunk or b"\r\n\r\n" in answer:
                break
        assert status_of(answer) == 408
        assert time.monotonic() - started < 5


def test_stalled_request_body_is_cut(strict):
    path = strict.new_path()
    strict.origin.script(path, Reply(200, [], b"x"))
    with socket.create_connection((strict.host, strict.port), timeout=10) as sock:
        sock.sendall(request_to(strict, path, "Content-Length: 100", method="POST", body=b"only part"))
        sock.settimeout(5)
        data = b""
        try:
            while chunk := sock.recv(4096):
                data += chunk
        except ConnectionResetError:
            pass
    assert status_of(data) in (0, 408, 502)  # cut (the origin got a partial request at most)


def test_ports_outside_the_allow_list_are_refused(strict):
    raw = strict.raw(b"GET http://127.0.0.1:22/ HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n")
    assert status_of(raw) == 403


def test_connect_to_a_disallowed_port_is_403(strict):
    raw = strict.raw(b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n")
    assert status_of(raw) == 403


def test_connect_to_an_allowed_port_tunnels(strict):
    path = strict.new_path()
    strict.origin.script(path, Reply(200, [], b"through the tunnel"))
    authority = strict.origin.authority.encode()
    with socket.create_connection((strict.host, strict.port), timeout=5) as sock:
        sock.sendall(b"CONNECT " + authority + b" HTTP/1.1\r\nHost: " + authority + b"\r\n\r\n")
        established = sock.recv(4096)
        assert established.startswith(b"HTTP/1.1 200")
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    assert data.endswith(b"through the tunnel")


def test_unreachable_origin_is_502(tmp_path_factory):
    port = free_port()
    with TestOrigin() as origin:
        proxy = start_proxy(tmp_path_factory.mktemp("unreachable"), origin, "forward",
                            sets=[f"proxy.allowed_ports=[{port}]"])
        try:
            raw = proxy.raw(f"GET http://127.0.0.1:{port}/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            assert status_of(raw) == 502
        finally:
            proxy.daemon.stop()


def test_clients_outside_allow_get_403(tmp_path_factory, origin):
    proxy = start_proxy(tmp_path_factory.mktemp("closed"), origin, "forward", sets=['proxy.allow=["10.0.0.0/8"]'])
    try:
        raw = proxy.raw(f"GET http://{origin.authority}/ HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert status_of(raw) == 403
    finally:
        proxy.daemon.stop()


@pytest.mark.parametrize("response", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
    b"garbage\r\n\r\n",
    b"HTTP/1.1 2000 OK\r\n\r\n",
])
def test_broken_origin_responses_are_not_stored(tmp_path_factory, response):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = listener.getsockname()[1]
        with TestOrigin() as origin:
            proxy = start_proxy(tmp_path_factory.mktemp("broken"), origin, "forward",
                                sets=[f"proxy.allowed_ports=[{port}]", "proxy.origin_timeout=2.0"])
            try:
                with socket.create_connection((proxy.host, proxy.port), timeout=10) as client:
                    request = f"GET http://127.0.0.1:{port}/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
                    client.sendall(request)
                    upstream, _ = listener.accept()
                    upstream.recv(65536)
                    upstream.sendall(b"HTTP/1.1 200 OK\r\nCache-Control: max-age=3600\r\n" + response.split(b"\r\n", 1)[1]
                                     if response.startswith(b"HTTP/1.1 200 OK") else response)
                    upstream.close()
                    client.settimeout(5)
                    data = b""
                    try:
                        while chunk := client.recv(65536):
                            data += chunk
                    except ConnectionResetError:
                        pass  # cut mid-response: the client must not take it for complete
                    assert b"Traceback" not in data
                    assert status_of(data) in (0, 200, 502)
                    if status_of(data) == 200:
                        assert not data.endswith(b"short")  # cut before the end, never completed
                # Nothing was stored: the next request goes to the origin again.
                listener.settimeout(5)
                with socket.create_connection((proxy.host, proxy.port), timeout=10) as client:
                    client.sendall(request)
                    upstream, _ = listener.accept()
                    assert upstream.recv(65536).startswith(b"GET /x HTTP/1.1")
                    upstream.close()
            finally:
                proxy.daemon.stop()
        assert "Traceback" not in proxy.daemon.log


def test_a_pooled_connection_the_origin_closed_is_retried_once_for_get(tmp_path_factory):
    """The origin closes its keep-alive connection after each answer (as Node does
    after its idle timeout): the next GET finds the pooled connection dead before
    any byte came back, and is sent again on a new one -- once, never twice."""
    import threading

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        seen: list[bytes] = []

        def serve() -> None:
            for _ in range(3):
                try:
                    upstream, _ = listener.accept()
                except OSError:
                    return
                with upstream:
                    request = upstream.recv(65536)
                    if not request:
                        continue
                    seen.append(request.split(b"\r\n", 1)[0])
                    upstream.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nCache-Control: no-store\r\n\r\nok")
                    # close right away: the proxy has just pooled this connection

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        with TestOrigin() as origin:
            proxy = start_proxy(tmp_path_factory.mktemp("closing"), origin, "forward",
                                sets=[f"proxy.allowed_ports=[{port}]"])
            try:
                for path in ("/a", "/b"):
                    raw = proxy.raw(f"GET http://127.0.0.1:{port}{path} HTTP/1.1\r\nHost: x\r\n"
                                    "Connection: close\r\n\r\n".encode())
                    assert status_of(raw) == 200 and raw.endswith(b"ok")
            finally:
                proxy.daemon.stop()
                listener.close()
        assert seen == [b"GET /a HTTP/1.1", b"GET /b HTTP/1.1"]
