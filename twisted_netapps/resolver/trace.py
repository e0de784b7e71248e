"""``netapps dns trace NAME [TYPE]``: the iterative query chain, made visible.

Runs the resolver's own core (:mod:`twisted_netapps.resolver.iterate`) with
an empty cache and a small blocking socket driver (a one-shot command needs
no reactor), then prints every exchange: the zone asked about, the server,
transport, round-trip time and what it said (referral, answer, NXDOMAIN,
timeout...). Sub-resolutions (addresses of glue-less name servers) are
indented under the step that needed them.

By default it starts from the root hints and upstream port of the
``[resolver]`` section of the config (the embedded default: the demo
hierarchy on 127.0.0.2, port 5300); ``--hints FILE`` or ``--server IP``
start elsewhere.
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
import sys
import time

import dns.exception
import dns.name
import dns.rcode
import dns.rdatatype

from twisted_netapps.errors import NetappsError
from twisted_netapps.resolver.cache import ResolverCache
from twisted_netapps.resolver.hints import RootHints, load_hints
from twisted_netapps.resolver.iterate import Done, Limits, Resolution, SendQuery, TraceStep


class TraceError(NetappsError):
    pass


def _udp_exchange(resolution: Resolution, query: SendQuery):
    family = socket.AF_INET6 if ":" in query.server else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.connect((query.server, query.port))
        deadline = time.monotonic() + query.timeout
        try:
            sock.send(query.wire)
        except OSError as e:
            return resolution.unreachable(e.strerror or str(e))
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return resolution.timed_out()
            sock.settimeout(remaining)
            try:
                data = sock.recv(65535)
            except socket.timeout:
                return resolution.timed_out()
            except OSError as e:  # ICMP port unreachable and friends
                return resolution.unreachable(e.strerror or str(e))
            action = resolution.receive(data, (query.server, query.port))
            if action is not None:
                return action


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("connection closed")
        data += chunk
    return data


def _tcp_exchange(resolution: Resolution, query: SendQuery):
    try:
        with socket.create_connection((query.server, query.port), timeout=query.timeout) as sock:
            sock.sendall(len(query.wire).to_bytes(2, "big") + query.wire)
            size = int.from_bytes(_recv_exactly(sock, 2), "big")
            data = _recv_exactly(sock, size)
    except socket.timeout:
        return resolution.timed_out()
    except OSError as e:
        return resolution.unreachable(str(e))
    return resolution.receive(data, (query.server, query.port)) or resolution.unreachable("unmatched TCP reply")


def run_blocking(resolution: Resolution):
    """Drive *resolution* with blocking sockets; returns its Result."""
    action = resolution.start()
    while not isinstance(action, Done):
        action = _tcp_exchange(resolution, action) if action.over_tcp else _udp_exchange(resolution, action)
    return action.result


def format_step(index: int, step: TraceStep) -> str:
    indent = "  " * step.depth
    transport = "tcp" if step.over_tcp else "udp"
    server = f"{step.server}:{step.port}"
    question = f"{step.qname} {dns.rdatatype.to_text(step.qtype)}"
    return (
        f"{index:3d} {indent}{str(step.zone):<18} @{server:<21} {transport} {step.rtt * 1000:7.1f} ms"
        f"  {question}: {step.outcome} {step.detail}".rstrip()
    )


def trace(name: str, rdtype: str, hints: RootHints, port: int, *, timeout: float, out=sys.stdout,
          start: str = "the root hints") -> int:
    try:
        qname = dns.name.from_text(name)
        qtype = dns.rdatatype.from_text(rdtype)
    except dns.exception.DNSException as e:
        raise TraceError(f"bad question {name} {rdtype}: {e}") from None
    cache = ResolverCache(time.monotonic)
    resolution = Resolution(
        qname, qtype, cache=cache, hints=hints, clock=time.monotonic, upstream_port=port,
        limits=Limits(server_timeout=timeout, time_budget=max(10.0, timeout * 6)), details=True,
    )
    started = time.monotonic()
    result = run_blocking(resolution)
    elapsed = time.monotonic() - started
    roots = ", ".join(hints.all_addresses(ipv6=False)[:3])
    print(f";; iterative resolution of {qname} {dns.rdatatype.to_text(qtype)} from {start} ({roots}), port {port}",
          file=out)
    for i, step in enumerate(resolution.steps, 1):
        print(format_step(i, step), file=out)
    queries = resolution.queries_sent
    print(f";; {dns.rcode.to_text(result.rcode)} after {queries} {'query' if queries == 1 else 'queries'}"
          f" in {elapsed * 1000:.1f} ms"
          + (f": {result.reason}" if result.reason else ""), file=out)
    for rrset in result.answer + result.authority:
        print(rrset.to_text(), file=out)
    return 0 if result.rcode in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN) else 2


def _dns_subcommands(subparsers):
    """The ``netapps dns`` group's subparsers, created here or shared with the dns tools."""
    parser = subparsers.choices.get("dns")
    if parser is None:
        parser = subparsers.add_parser("dns", help="DNS tools (trace the iterative query chain, ...)")
        return parser.add_subparsers(dest="dns_command", required=True)
    for action in parser._actions:  # another module made the group first: join it
        if isinstance(action, argparse._SubParsersAction):
            return action
    return parser.add_subparsers(dest="dns_command", required=True)


def register(subparsers) -> None:
    sub = _dns_subcommands(subparsers)
    p = sub.add_parser("trace", help="show the iterative query chain root -> TLD -> authoritative for a name")
    p.add_argument("name", help="domain name to resolve")
    p.add_argument("type", nargs="?", default="A", help="record type (default A)")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--hints", help="root hints file (default: the [resolver] root_hints of the config)")
    start.add_argument("--server", help="start at this server's address instead of the root hints")
    p.add_argument("--port", type=int, help="port to query (default: the [resolver] upstream_port of the config)")
    p.add_argument("--config", help="config file to read [resolver] from (default: the embedded one)")
    p.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for each server")
    p.set_defaults(func=run)


def run(args) -> int:
    from twisted_netapps.config import read_config
    from twisted_netapps.resolver.service import Settings, hints_path
    from twisted_netapps.settings import from_table

    source, raw = read_config(args.config)
    settings = from_table(Settings, raw.get("resolver", {}), f"{source}: resolver")
    port = args.port if args.port is not None else settings.upstream_port
    if args.server:
        try:
            ipaddress.ip_address(args.server)
        except ValueError:
            raise TraceError(f"--server: not an IP address: {args.server!r}") from None
        hints = RootHints((dns.name.from_text("server."),), {dns.name.from_text("server."): (args.server,)})
        start = "the server given"
    else:
        path = hints_path(args.hints, "<command line>") if args.hints else hints_path(settings.root_hints, source)
        hints = load_hints(path)
        start = "the root hints"
    return trace(args.name, args.type, hints, port, timeout=args.timeout, start=start)
