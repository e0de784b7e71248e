"""When a mail service takes a password in the clear: one rule for smtp, pop3 and imap.

A password sent without TLS (SMTP ``AUTH PLAIN/LOGIN``, POP3 ``USER/PASS``
and ``AUTH PLAIN``, IMAP ``LOGIN`` and ``AUTHENTICATE PLAIN``) is allowed by
a service's ``plaintext_auth`` setting:

- ``"always"``: on any connection (tests, labs);
- ``"loopback"``: from clients on this host (127.0.0.0/8, ::1, UNIX
  sockets), and from anyone once TLS is up;
- ``"tls"``: only once TLS is up (STARTTLS/STLS or a TLS listener).

Cores call :func:`plaintext_allowed` with what the adapter told them
(``tls``, ``loopback``); no Twisted imports here.
"""

from __future__ import annotations

from twisted_netapps.settings import setting

ALWAYS, LOOPBACK, TLS = "always", "loopback", "tls"
POLICIES = (ALWAYS, LOOPBACK, TLS)


def plaintext_allowed(policy: str, *, tls: bool, loopback: bool) -> bool:
    """Whether a password may be sent on a connection under *policy* (one of :data:`POLICIES`)."""
    return tls or policy == ALWAYS or (policy == LOOPBACK and loopback)


def plaintext_auth_setting(default: str, commands: str):
    """The ``plaintext_auth`` settings field of a service whose password *commands* it governs."""
    return setting(
        default,
        f'{commands}: "always", "loopback" (clients on this host, or anyone after STARTTLS), '
        '"tls" (only after STARTTLS)',
        choices=POLICIES,
    )
