"""BitTorrent: bencode and metainfo, a tracker (``tracker/``) and a peer (``peer/``).

Layering (imports flow one way): ``bencode`` -> ``metainfo`` -> sans-I/O cores
(``tracker.swarm``, ``peer.wire``/``picker``/``choker``/``session``) and storage
(``peer.storage``) -> Twisted adapters -> service builders and the CLI.
"""
