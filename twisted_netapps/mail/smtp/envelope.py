"""A received message's envelope and the trace headers added for it (RFC 5321 4.4)."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from email.utils import formatdate as _formatdate

from twisted_netapps.mail.smtp.syntax import Address


def rfc5322_date(timestamp: float) -> str:
    """RFC 5322 date in UTC written as +0000 (-0000 would mean "offset unknown")."""
    return _formatdate(timestamp, localtime=False, usegmt=False).replace("-0000", "+0000")


def new_message_id() -> str:
    """A short queue/transaction id: time-ordered, unique, safe as a file name."""
    return f"{int(time.time() * 1000):x}{secrets.token_hex(5)}".upper()


@dataclass
class Envelope:
    """What SMTP carried besides the message: who from, who to, and how it arrived."""

    mail_from: Address
    recipients: list[Address] = field(default_factory=list)
    helo: str = ""
    client_ip: str = ""
    protocol: str = "ESMTP"  # SMTP, ESMTP, ESMTPS, ESMTPA, ESMTPSA (RFC 3848)
    auth_user: str | None = None
    body: str = "7BIT"  # BODY= parameter: 7BIT or 8BITMIME
    declared_size: int | None = None
    message_id: str = field(default_factory=new_message_id)
    received_at: float = field(default_factory=time.time)


def protocol_name(esmtp: bool, tls: bool, authenticated: bool) -> str:
    """The ``with`` clause of ``Received:`` as RFC 3848 registers it."""
    if not esmtp:
        return "SMTP"
    return "ESMTP" + ("S" if tls else "") + ("A" if authenticated else "")


def _clean(text: str) -> str:
    # The HELO argument is client-chosen: keep it printable and comment-safe.
    return "".join(c for c in text if 0x21 <= ord(c) <= 0x7E and c not in "()\\")[:255] or "unknown"


def received_header(envelope: Envelope, hostname: str, for_recipient: Address | None = None) -> bytes:
    """``Received:`` for *envelope* as RFC 5321 4.4 spells it, folded, CRLF-terminated.

    ``from <helo> ([ip])`` names the client as it introduced itself plus the
    address we saw; ``for`` is given only for a single recipient (more would
    disclose Bcc recipients).
    """
    literal = f"IPv6:{envelope.client_ip}" if ":" in envelope.client_ip else envelope.client_ip
    lines = [
        f"Received: from {_clean(envelope.helo)} ([{literal}])",
        f"\tby {hostname} (twisted-netapps) with {envelope.protocol} id {envelope.message_id}",
    ]
    date = rfc5322_date(envelope.received_at)
    if for_recipient is not None:
        lines.append(f"\tfor {for_recipient.bracketed()}; {date}")
    else:
        lines[-1] += ";"
        lines.append(f"\t{date}")
    return ("\r\n".join(lines) + "\r\n").encode("ascii", "replace")


def return_path_header(envelope: Envelope) -> bytes:
    """``Return-Path:`` added at final delivery (RFC 5321 4.4): the MAIL FROM path."""
    return f"Return-Path: {envelope.mail_from.bracketed()}\r\n".encode("ascii", "replace")
