"""``twisted.cred`` over the shared account store.

Every login in the daemon goes through a :class:`~twisted.cred.portal.Portal`
built by :func:`make_portal`: the service supplies its realm, this module
supplies the one username/password checker. scrypt is deliberately slow, so
the check runs in a thread pool (the daemon's ``cpu`` pool, see
:mod:`twisted_netapps.pools`), never on the reactor thread. Services log users
in through :class:`twisted_netapps.logins.LoginGuard`, which throttles guessing.
"""

from __future__ import annotations

from twisted.cred import credentials, error
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.portal import IRealm, Portal
from twisted.internet import threads
from twisted.logger import Logger
from zope.interface import implementer

from twisted_netapps.accounts import AccountStore

log = Logger(namespace="netapps.auth")


def _text(value: bytes | str) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return value


@implementer(ICredentialsChecker)
class AccountChecker:
    """Checks ``IUsernamePassword`` credentials against an :class:`AccountStore`.

    The avatar ID is the account's stored name as ``str`` (a login as
    ``ALICE`` is account ``alice``: names are case-insensitive).
    """

    credentialInterfaces = (credentials.IUsernamePassword,)

    def __init__(self, store: AccountStore, reactor=None, run=None) -> None:
        self.store = store
        if run is None:
            if reactor is None:
                from twisted.internet import reactor as default_reactor

                reactor = default_reactor
            run = lambda f, *args: threads.deferToThreadPool(reactor, reactor.getThreadPool(), f, *args)  # noqa: E731
        self._run = run

    def requestAvatarId(self, creds):
        name = _text(creds.username)
        password = _text(creds.password)
        d = self._run(self.store.authenticate, name, password)

        def decided(stored: str | None):
            if stored is not None:
                return stored
            log.info("login failed for user {user}", user=name)
            raise error.UnauthorizedLogin(f"bad login for {name!r}")

        return d.addCallback(decided)


def make_portal(realm: IRealm, store: AccountStore, reactor=None, *, run=None) -> Portal:
    """A portal for *realm* over *store*; *run* (``context.pools.cpu``) runs the password checks."""
    return Portal(realm, [AccountChecker(store, reactor, run)])
