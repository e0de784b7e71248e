"""The cache policy of RFC 9111 as pure functions over headers and times.

- :mod:`directives` -- Cache-Control/Pragma parsed into records;
- :mod:`freshness` -- freshness lifetime, heuristic freshness, age;
- :mod:`storability` -- what may be stored, which fields are kept;
- :mod:`vary` -- secondary keys;
- :mod:`reuse` -- serve, serve stale, validate, fetch or 504;
- :mod:`validation` -- conditional requests both ways, 304 and HEAD updates;
- :mod:`invalidation` -- what unsafe methods invalidate.

Nothing here does I/O or reads the clock: times are parameters.
"""
