"""The contract between DNS transports and DNS logic (no Twisted, no codec)."""

from __future__ import annotations

from zope.interface import Interface


class IQueryHandler(Interface):
    def handle(query: bytes, peer: tuple[str, int], over_tcp: bool):
        """Wire-format query in, wire-format response out.

        Returns ``bytes``, ``None`` (drop), a sequence of ``bytes`` (several
        messages, e.g. an AXFR over TCP), or a Deferred firing with one of
        those. The handler does EDNS, size limits and TC.
        """
