"""Delivery status notifications (RFC 3464 multipart/report) for failed recipients."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from email.utils import make_msgid

from twisted_netapps.mail.smtp.envelope import rfc5322_date

_STATUS_RE = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")
MAX_RETURNED_HEADERS = 64 * 1024


@dataclass(frozen=True)
class FailedRecipient:
    address: str
    diagnostic: str  # the remote reply ("550 5.1.1 no such user") or our reason
    status: str = ""  # enhanced status code; guessed from *diagnostic* when empty
    remote_mta: str = ""


def _status(failure: FailedRecipient) -> str:
    if failure.status:
        return failure.status
    match = _STATUS_RE.search(failure.diagnostic)
    if match:
        return match.group(1)
    return "5.0.0"


def _headers_of(message: bytes) -> bytes:
    end = message.find(b"\r\n\r\n")
    headers = message[: end + 2] if end >= 0 else message
    return headers[:MAX_RETURNED_HEADERS]


def _one_line(text: str) -> str:
    return " ".join(text.split())[:900]


def build_dsn(
    *,
    reporting_mta: str,
    original_sender: str,
    original_id: str,
    arrival: float,
    failures: list[FailedRecipient],
    original: bytes,
    now: float,
) -> bytes:
    """The bounce message to *original_sender* (sent with the null reverse-path)."""
    boundary = f"=_netapps_{secrets.token_hex(12)}"
    human = [
        f"This is the mail system at host {reporting_mta}.",
        "",
        "Your message could not be delivered to one or more recipients.",
        "It is attached below (headers only).",
        "",
    ]
    for failure in failures:
        human.append(f"<{failure.address}>: {_one_line(failure.diagnostic)}")
    status = [
        f"Reporting-MTA: dns; {reporting_mta}",
        f"X-Netapps-Queue-ID: {original_id}",
        f"Arrival-Date: {rfc5322_date(arrival)}",
    ]
    for failure in failures:
        status += [
            "",
            f"Final-Recipient: rfc822; {failure.address}",
            "Action: failed",
            f"Status: {_status(failure)}",
        ]
        if failure.remote_mta:
            status.append(f"Remote-MTA: dns; {failure.remote_mta}")
        status += [
            f"Diagnostic-Code: smtp; {_one_line(failure.diagnostic)}",
            f"Last-Attempt-Date: {rfc5322_date(now)}",
        ]
    head = [
        f"From: Mail Delivery System <MAILER-DAEMON@{reporting_mta}>",
        f"To: <{original_sender}>",
        "Subject: Undelivered Mail Returned to Sender",
        f"Date: {rfc5322_date(now)}",
        f"Message-ID: {make_msgid(domain=reporting_mta)}",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
        "",
        "This is a MIME-encapsulated message.",
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=us-ascii",
        "",
        *human,
        "",
        f"--{boundary}",
        "Content-Type: message/delivery-status",
        "",
        *status,
        "",
        f"--{boundary}",
        "Content-Type: text/rfc822-headers",
        "",
    ]
    text = "\r\n".join(head).encode("utf-8", "replace") + b"\r\n"
    return text + _headers_of(original) + f"\r\n--{boundary}--\r\n".encode("ascii")
