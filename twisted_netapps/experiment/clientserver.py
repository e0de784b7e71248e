"""The client-server run: N clients fetch the file from our web (or FTP) server at once.

The server's upload is capped at u_s by the daemon (``web.upload_rate`` /
``ftp.upload_rate``: one bucket for all its connections). Each client is its
own "host" (a 127.0.2.x source address) with its download capped at d_i by a
token bucket on what it receives (:class:`~twisted_netapps.ratelimit.ThrottledReceiver`:
bytes are taken no faster than d_i, and the socket is not read while a
backlog waits, so TCP slows the server down). A client holds its copy when
the last byte has been taken and its SHA-256 matches.
"""

from __future__ import annotations

import hashlib
import json

from twisted.internet import defer, endpoints, error, protocol
from twisted.protocols import ftp as ftp_client
from twisted.web.client import Agent, HTTPConnectionPool, ResponseDone, readBody
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from twisted_netapps.experiment.params import peer_address
from twisted_netapps.experiment.results import RunResult
from twisted_netapps.ratelimit import ThrottledReceiver, TokenBucket

CLIENT_TIMEOUT = 600.0


class DownloadFailed(Exception):
    """A client did not get a verified copy."""


class _Body(protocol.Protocol):
    """Hashes what arrives, taking it no faster than the buckets allow."""

    def __init__(self, clock, buckets: list[TokenBucket]) -> None:
        self.clock = clock
        self.buckets = buckets
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.done: defer.Deferred = defer.Deferred()  # fires once the body is all taken
        self.reason = None  # how the connection ended (a Failure)
        self.receiver: ThrottledReceiver | None = None

    def connectionMade(self) -> None:
        if self.buckets:
            self.receiver = ThrottledReceiver(self.transport, self.buckets, self.clock, self._take)

    def _take(self, data: bytes) -> None:
        self.sha256.update(data)
        self.size += len(data)

    def dataReceived(self, data: bytes) -> None:
        if self.receiver is not None:
            self.receiver.received(data)
        else:
            self._take(data)

    def connectionLost(self, reason=protocol.connectionDone) -> None:
        self.reason = reason  # (a Failure: not passed to callback, which would make it an error)
        if self.receiver is None:
            self.done.callback(None)
            return
        self.receiver.transport_closed()
        self.receiver.when_delivered().addCallback(lambda _: self.done.callback(None))


@implementer(IAgentEndpointFactory)
class _FromAddress:
    """Connections from one source address (each client is its own host)."""

    def __init__(self, reactor, source: str) -> None:
        self.reactor = reactor
        self.source = source

    def endpointForURI(self, uri):
        return endpoints.TCP4ClientEndpoint(self.reactor, uri.host.decode(), uri.port, timeout=30,
                                            bindAddress=(self.source, 0))


async def _http_fetch(reactor, url: str, source: str, body: _Body) -> None:
    agent = Agent.usingEndpointFactory(reactor, _FromAddress(reactor, source),
                                       pool=HTTPConnectionPool(reactor, persistent=False))
    response = await agent.request(b"GET", url.encode())
    if response.code != 200:
        raise DownloadFailed(f"{url}: HTTP {response.code}")
    response.deliverBody(body)
    await body.done
    if not body.reason.check(ResponseDone):
        raise DownloadFailed(f"{url}: {body.reason.getErrorMessage()}")


class _FtpFromAddress(ftp_client.FTPClient):
    """Passive data connections from the control connection's own address (the
    server refuses data connections from another host)."""

    def __init__(self, reactor, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.reactor = reactor

    def connectFactory(self, host, port, factory):
        source = self.transport.getHost().host
        return self.reactor.connectTCP(host, port, factory, timeout=30, bindAddress=(source, 0))


async def _ftp_fetch(reactor, url: str, source: str, body: _Body) -> None:
    # url: ftp://host:port/path, anonymous
    hostport, _, path = url.removeprefix("ftp://").partition("/")
    host, _, port = hostport.partition(":")
    endpoint = endpoints.TCP4ClientEndpoint(reactor, host, int(port), timeout=30, bindAddress=(source, 0))
    client = await endpoints.connectProtocol(
        endpoint, _FtpFromAddress(reactor, "anonymous", "experiment@", passive=1))
    try:
        await client.retrieveFile(path, body)
        await body.done
        if not body.reason.check(error.ConnectionDone):
            raise DownloadFailed(f"{url}: {body.reason.getErrorMessage()}")
    except ftp_client.CommandFailed as e:
        raise DownloadFailed(f"{url}: {e}") from None
    finally:
        client.transport.loseConnection()


FETCHERS = {"http": _http_fetch, "ftp": _ftp_fetch}


async def _one_client(reactor, protocol_name: str, url: str, i: int, rate: float, started: float,
                      digest: str, size: int) -> float:
    buckets = [TokenBucket(rate, now=started)] if rate else []
    body = _Body(reactor, buckets)
    await FETCHERS[protocol_name](reactor, url, peer_address(i), body)
    finished = reactor.seconds() - started
    if body.size != size or body.sha256.hexdigest() != digest:
        raise DownloadFailed(f"client {i}: got {body.size} bytes, SHA-256 {body.sha256.hexdigest()[:16]}..., "
                             f"expected {size} bytes, {digest[:16]}...")
    return finished


# What the server uploaded, by its own counters: web counts every byte it
# sends in bytes_out; ftp counts its control replies there and file bytes in bytes_sent.
SENT_COUNTERS = {"web": ("bytes_out",), "ftp": ("bytes_out", "bytes_sent")}


async def server_bytes_out(reactor, status_address: tuple[str, int], service: str) -> int:
    """What *service* has sent so far, live from the status service."""
    agent = Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False))
    response = await agent.request(b"GET", f"http://{status_address[0]}:{status_address[1]}/api/overview".encode())
    document = json.loads(await readBody(response))
    for entry in document["services"]:
        if entry["name"] == service:
            return sum(int(entry["counters"].get(name, 0)) for name in SENT_COUNTERS[service])
    raise LookupError(f"the status service does not show {service}")


async def run_client_server(reactor, *, protocol_name: str, url: str, n: int, downloads: list[float],
                            digest: str, size: int, bound: float, repeat: int,
                            status_address: tuple[str, int], service: str) -> RunResult:
    """N clients started together; the time until the last holds a verified copy."""
    before = await server_bytes_out(reactor, status_address, service)
    started = reactor.seconds()
    runs = [defer.ensureDeferred(_one_client(reactor, protocol_name, url, i, downloads[i], started, digest, size))
            for i in range(n)]
    gathered = defer.gatherResults(runs, consumeErrors=True)
    gathered.addTimeout(CLIENT_TIMEOUT, reactor)
    try:
        finish_times = await gathered
    except defer.FirstError as e:
        raise e.subFailure.value from None
    measured = max(finish_times)
    after = await server_bytes_out(reactor, status_address, service)
    return RunResult("client-server", n, repeat, bound, measured, after - before, size, list(finish_times))
