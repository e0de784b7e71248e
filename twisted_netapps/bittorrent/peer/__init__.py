"""The BitTorrent peer: wire codec, picker, choker, storage, torrent core, Twisted adapters."""
