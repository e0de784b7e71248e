"""HTTP Basic authentication (RFC 7617) through ``twisted.cred``.

The credentials go to the shared account store via the daemon's login
throttle (failed logins are answered late, an address over its budget is
refused at once with 429). A missing or unusable ``Authorization`` is 401
with a ``WWW-Authenticate`` challenge naming the realm and UTF-8 (RFC 7617
2.1); a user who is not allowed to write is 403.
"""

from __future__ import annotations

import base64
import binascii

from twisted.cred import credentials, error as cred_error
from twisted.cred.portal import IRealm
from zope.interface import Interface, implementer

from twisted_netapps.web.messages import Response, error_response


class IWebUser(Interface):
    """Avatar: an account allowed to log in to the web service."""


@implementer(IWebUser)
class WebUser:
    def __init__(self, name: str) -> None:
        self.name = name


@implementer(IRealm)
class WebRealm:
    def requestAvatar(self, avatarId, mind, *interfaces):
        if IWebUser not in interfaces:
            raise NotImplementedError("the web realm serves IWebUser only")
        name = avatarId.decode("utf-8") if isinstance(avatarId, bytes) else avatarId
        return IWebUser, WebUser(name), lambda: None


def basic_credentials(value: bytes | None) -> credentials.UsernamePassword | None:
    """Credentials from an ``Authorization: Basic ...`` value, or None."""
    if value is None:
        return None
    scheme, _, token = value.strip().partition(b" ")
    if scheme.lower() != b"basic" or len(token) > 4096:
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(b":")
    if not sep or not user:
        return None
    return credentials.UsernamePassword(user, password)


class Authenticator:
    """``authenticate(request) -> Deferred[str | Response]``: the user name, or
    the response refusing the request (401, 403, 429)."""

    def __init__(self, portal, login, realm_name: str, write_users: list[str], *, refused_error=None) -> None:
        self.portal = portal
        self.login = login  # the frame's LoginGuard.login(portal, creds, peer_host, account, *ifaces)
        self.challenge = b'Basic realm="' + realm_name.encode("ascii", "replace").replace(b'"', b"'") + b'", charset="UTF-8"'
        self.write_users = set(write_users)
        self.refused_error = refused_error  # the guard's "too many failures" error: 429

    def unauthorized(self, message: str = "Log in to change files here.") -> Response:
        return error_response(401, message, [(b"WWW-Authenticate", self.challenge)])

    def authenticate(self, request, peer_host: str):
        creds = basic_credentials(request.headers.get(b"authorization"))
        if creds is None:
            return None
        account = creds.username.decode("utf-8", "replace")
        d = self.login(self.portal, creds, peer_host, account, IWebUser)

        def logged_in(result):
            _iface, avatar, _logout = result
            if self.write_users and avatar.name not in self.write_users:
                return error_response(403, f"{avatar.name} may not change files here.")
            return avatar.name

        def failed(failure):
            if self.refused_error is not None and failure.check(self.refused_error):
                retry = max(1, int(getattr(failure.value, "retry_after", 60)))
                return error_response(429, "Too many failed logins; try again later.", [(b"Retry-After", b"%d" % retry)])
            failure.trap(cred_error.UnauthorizedLogin, cred_error.UnhandledCredentials)
            return self.unauthorized("Wrong user name or password.")

        return d.addCallbacks(logged_in, failed)
