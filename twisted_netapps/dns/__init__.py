"""DNS: the authoritative ``dns`` service (and the transports ``resolver`` shares).

Layers, imports flowing one way (from :mod:`twisted_netapps.dnswire`, the raw
wire helpers this package shares with ``resolver``):

- :mod:`.interfaces`: ``IQueryHandler``, query bytes in, reply bytes out;
- :mod:`.zones`: BIND master files -> dnspython zones, with file:line errors;
- :mod:`.authority`: answers from zones, pure (RFC 1034/2181/2308/4592);
- :mod:`.responder`: query bytes -> response bytes, with the prepared-reply
  cache that keeps the hot path off the codec;
- :mod:`.transport`: the Twisted UDP/TCP adapters (shared with ``resolver``);
- :mod:`.notify`, :mod:`.zoneset`: NOTIFY sender, zone reloads;
- :mod:`.service`: ``Settings`` and ``build``.
"""
