"""SMTP syntax (RFC 5321): command lines, paths, ESMTP parameters, replies.

Pure functions, no state and no I/O: the state machine in
:mod:`twisted_netapps.mail.smtp.core` and the relay client both use them.
Every parser is bounded by the caller's line limit and raises
:class:`SyntaxProblem` carrying the reply the server should send.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_LOCAL_PART = 64
MAX_DOMAIN = 255
MAX_PATH = 256
MAX_PARAMS = 16

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_DOT_STRING_RE = re.compile(rf"^{_ATEXT}+(?:\.{_ATEXT}+)*$")
_QUOTED_RE = re.compile(r'^"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])*"$')
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN_RE = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*\.?$")
_ADDRESS_LITERAL_RE = re.compile(r"^\[(?:\d{1,3}(?:\.\d{1,3}){3}|IPv6:[0-9A-Fa-f:.]+)\]$")
_PARAM_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")
_PARAM_VALUE_RE = re.compile(r"^[\x21-\x3c\x3e-\x7e]+$")
_SOURCE_ROUTE_RE = re.compile(r"^@[^:,]+(?:,@[^:,]+)*:")


class SyntaxProblem(ValueError):
    """Unparseable input; ``code``/``status``/``text`` make the reply."""

    def __init__(self, code: int, status: str, text: str) -> None:
        super().__init__(f"{code} {status} {text}")
        self.code = code
        self.status = status
        self.text = text


@dataclass(frozen=True)
class Address:
    """A mailbox ``local@domain``; the null reverse-path is ``Address("", "")``."""

    local: str
    domain: str

    @property
    def is_null(self) -> bool:
        return not self.local and not self.domain

    def __str__(self) -> str:
        return f"{self.local}@{self.domain}" if not self.is_null else ""

    def bracketed(self) -> str:
        return f"<{self}>"


NULL_ADDRESS = Address("", "")


def valid_domain(domain: str) -> bool:
    return len(domain) <= MAX_DOMAIN and bool(_DOMAIN_RE.match(domain) or _ADDRESS_LITERAL_RE.match(domain))


def parse_mailbox(text: str) -> Address:
    """``local@domain`` (dot-string or quoted local part; domain or address literal)."""
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain:
        raise SyntaxProblem(501, "5.1.3", "Bad address syntax: expected local@domain")
    if len(local) > MAX_LOCAL_PART:
        raise SyntaxProblem(501, "5.1.3", "Local part longer than 64 octets")
    if not (_DOT_STRING_RE.match(local) or _QUOTED_RE.match(local)):
        raise SyntaxProblem(501, "5.1.3", "Bad local part syntax")
    if not valid_domain(domain):
        raise SyntaxProblem(501, "5.1.2", "Bad domain syntax")
    return Address(local, domain.rstrip(".").lower() if not domain.startswith("[") else domain)


def parse_path(argument: str, keyword: str, *, allow_null: bool) -> tuple[Address, str]:
    """Split ``FROM:<path> params`` (or ``TO:``) into the address and the parameter text."""
    head, colon, rest = argument.partition(":")
    if not colon or head.strip().upper() != keyword:
        raise SyntaxProblem(501, "5.5.4", f"Syntax: {keyword}:<address>")
    rest = rest.lstrip(" ")
    if rest.startswith("<"):
        end = rest.find(">")
        if end < 0:
            raise SyntaxProblem(501, "5.5.4", "Unterminated <address>")
        path, params = rest[1:end], rest[end + 1:]
        if params and not params.startswith(" "):
            raise SyntaxProblem(501, "5.5.4", "Expected a space after <address>")
    else:  # lenient: a bare address, as many hand-typed sessions send
        path, _, params = rest.partition(" ")
        params = " " + params if params else ""
    if len(path) > MAX_PATH:
        raise SyntaxProblem(501, "5.1.3", "Path longer than 256 octets")
    path = _SOURCE_ROUTE_RE.sub("", path)  # RFC 5321 4.1.1.3: accept and ignore source routes
    if not path:
        if not allow_null:
            raise SyntaxProblem(501, "5.1.3", "Null address not allowed here")
        return NULL_ADDRESS, params.strip()
    if keyword == "TO" and path.lower() == "postmaster":
        return Address("postmaster", ""), params.strip()
    return parse_mailbox(path), params.strip()


def parse_params(text: str) -> dict[str, str | None]:
    """ESMTP parameters ``KEY[=VALUE] ...`` (keys upper-cased)."""
    params: dict[str, str | None] = {}
    if not text:
        return params
    items = text.split()
    if len(items) > MAX_PARAMS:
        raise SyntaxProblem(501, "5.5.4", "Too many parameters")
    for item in items:
        key, eq, value = item.partition("=")
        if not _PARAM_KEY_RE.match(key) or (eq and not _PARAM_VALUE_RE.match(value)):
            raise SyntaxProblem(501, "5.5.4", f"Bad parameter syntax: {item[:40]}")
        params[key.upper()] = value if eq else None
    return params


def split_command(line: str) -> tuple[str, str]:
    """``VERB argument`` -> (upper-cased verb, argument with the first space removed)."""
    verb, _, argument = line.partition(" ")
    return verb.upper(), argument.strip()


def format_reply(code: int, status: str | None, lines: str | list[str]) -> bytes:
    """A (multi-line) reply; *status* is the enhanced status code or None (greeting, EHLO)."""
    if isinstance(lines, str):
        lines = [lines]
    out = []
    for i, text in enumerate(lines):
        sep = "-" if i < len(lines) - 1 else " "
        body = f"{status} {text}" if status else text
        out.append(f"{code}{sep}{body}\r\n")
    return "".join(out).encode("utf-8", "replace")


def dot_stuff(message: bytes) -> bytes:
    """CRLF-normalised *message* -> DATA wire form, ending with the ``.`` line."""
    if not message.endswith(b"\r\n") and message:
        message += b"\r\n"
    if message.startswith(b"."):
        message = b"." + message
    return message.replace(b"\r\n.", b"\r\n..") + b".\r\n"
