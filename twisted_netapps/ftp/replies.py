"""FTP reply formatting (RFC 959 section 4.2): ``NNN text`` and multi-line replies.

Reply text may carry path names, which can hold any byte but NUL: CR and LF
would end the reply early and let a file name forge a reply, so they are
shown as spaces. Names are UTF-8 (RFC 2640); bytes that are not UTF-8 on disk
go back as they are (``surrogateescape``), so a client can name them again.
"""

from __future__ import annotations


def _clean(text: str) -> bytes:
    return text.replace("\r", " ").replace("\n", " ").encode("utf-8", "surrogateescape")


def reply(code: int, text: str) -> bytes:
    """One reply line: ``b"200 text\\r\\n"``."""
    return b"%d %s\r\n" % (code, _clean(text))


def multiline(code: int, first: str, lines: list[str], last: str) -> bytes:
    """``NNN-first``, the *lines* indented by one space, ``NNN last``.

    Indenting every inner line means none can start with ``NNN `` and be
    taken for the end of the reply (RFC 959 4.2).
    """
    out = [b"%d-%s\r\n" % (code, _clean(first))]
    out.extend(b" %s\r\n" % _clean(line) for line in lines)
    out.append(b"%d %s\r\n" % (code, _clean(last)))
    return b"".join(out)


def quote_path(path: str) -> str:
    """A path for a 257 reply: in double quotes, inner quotes doubled (RFC 959 appendix II)."""
    return '"' + path.replace('"', '""') + '"'


def passive_reply(host: str, port: int) -> bytes:
    """227 for PASV: the IPv4 address and port as six decimal bytes."""
    numbers = host.split(".") + [str(port >> 8), str(port & 0xFF)]
    return reply(227, f"Entering Passive Mode ({','.join(numbers)}).")


def extended_passive_reply(port: int) -> bytes:
    """229 for EPSV (RFC 2428): only the port; the client reuses the control connection's address."""
    return reply(229, f"Entering Extended Passive Mode (|||{port}|)")
