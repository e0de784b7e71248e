"""The proxy's storage: entries and their files, hot bodies in memory, the index."""
