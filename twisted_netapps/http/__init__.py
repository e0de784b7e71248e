"""A sans-I/O HTTP/1.1 codec shared by the services that speak HTTP.

- :mod:`fields` -- header fields, lists, directives, hop-by-hop rules;
- :mod:`dates` -- HTTP-date parsing (all three formats, strictly) and formatting;
- :mod:`head` -- request/status lines and field sections;
- :mod:`body` -- body framing, chunked coding, the smuggling defences;
- :mod:`server` / :mod:`client` -- the two ends of a connection as cores that
  take bytes and return :mod:`events`.

No Twisted imports anywhere in this package.
"""
