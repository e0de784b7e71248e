"""The stock Twisted caching-less proxy the benchmark compares against.

    python bench/twisted_reverse_proxy.py LISTEN_PORT ORIGIN_PORT

A ``twisted.web.proxy.ReverseProxyResource`` in front of 127.0.0.1:ORIGIN_PORT:
what Twisted offers out of the box (HTTP/1.0 upstream, a new connection per
request, no cache).
"""

from __future__ import annotations

import sys

from twisted.internet import reactor
from twisted.web.proxy import ReverseProxyResource
from twisted.web.server import Site


def main() -> None:
    listen_port, origin_port = int(sys.argv[1]), int(sys.argv[2])
    site = Site(ReverseProxyResource("127.0.0.1", origin_port, b""))
    site.log = lambda request: None  # no access log (twistd web --path logs to its own file)
    reactor.listenTCP(listen_port, site, interface="127.0.0.1", backlog=511)
    reactor.run()


if __name__ == "__main__":
    main()
