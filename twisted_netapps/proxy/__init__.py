"""The caching proxy (RFC 9111): forward proxy or reverse proxy in front of one origin."""
