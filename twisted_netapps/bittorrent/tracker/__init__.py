"""The tracker: who is in which torrent (BEP 3, 23, 48 over HTTP; BEP 15 over UDP)."""
