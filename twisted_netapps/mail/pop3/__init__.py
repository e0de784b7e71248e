"""POP3 (RFC 1939): the sans-I/O session core, its Twisted adapter and the service builder."""
