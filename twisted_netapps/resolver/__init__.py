"""The recursive, caching resolver (Unbound's role): iterate from the root
hints, cache by TTL, answer the allowed clients."""
