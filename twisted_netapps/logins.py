"""One guard in front of every login: escalating delays and a failure budget per address.

Every service that logs users in (smtp AUTH, pop3, imap, ftp, web) calls
:meth:`LoginGuard.login` instead of ``portal.login``. The guard is shared by
all of them, so guesses spread over protocols and connections count
together:

- a failed login is answered only after a delay that doubles with each
  recent failure from that address or for that account (the service's
  configured delay, up to ``max_delay``), so one connection guesses slowly;
- an address may have ``failures_per_address`` failed (or still running)
  attempts; past that it is refused at once, without checking the password
  (no scrypt work), for ``block_seconds`` — doubling for each block in a
  row — so fifty parallel connections guess no faster than one;
- the right password from *another* address is never delayed or refused:
  an attacker cannot lock the legitimate user out of their account;
- a success clears the address's record (and the account's), and records
  older than ``quiet_seconds`` are forgotten; memory is bounded (LRU).
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict

from twisted.cred import error as cred_error
from twisted.internet import defer, task
from twisted.logger import Logger

from twisted_netapps.config import DaemonSettings

log = Logger(namespace="netapps.logins")


class LoginRefused(Exception):
    """Too many failed logins from this address: refused without checking; try after ``retry_after`` s."""

    def __init__(self, host: str, retry_after: float) -> None:
        super().__init__(f"too many failed logins from {host}; try again in {retry_after:.0f}s")
        self.host = host
        self.retry_after = retry_after


@dataclasses.dataclass
class _Record:
    failures: int = 0
    in_flight: int = 0
    last_failure: float = 0.0
    blocked_until: float = 0.0
    blocks: int = 0


class LoginGuard:
    MAX_TRACKED = 10_000
    MAX_BLOCK_SECONDS = 3600.0

    def __init__(self, clock, settings: DaemonSettings | None = None) -> None:
        self.clock = clock
        self.settings = settings or DaemonSettings()  # the login_* fields of [netapps]
        self._addresses: OrderedDict[str, _Record] = OrderedDict()
        self._accounts: OrderedDict[str, _Record] = OrderedDict()

    def _record(self, table: OrderedDict, key: str, now: float) -> _Record:
        record = table.get(key)
        if record is None:
            record = table[key] = _Record()
            if len(table) > self.MAX_TRACKED:
                table.popitem(last=False)
        else:
            table.move_to_end(key)
            quiet = self.settings.login_quiet_seconds
            if record.failures and now - record.last_failure > quiet and record.blocked_until <= now:
                record.failures = record.blocks = 0
        return record

    def login(self, portal, credentials, host: str, account: str, *interfaces, failure_delay: float = 1.0):
        """``portal.login(credentials, None, *interfaces)`` behind the guard.

        Fires with the portal's ``(interface, avatar, logout)``; fails with
        ``UnauthorizedLogin`` after the escalating delay, or at once with
        :class:`LoginRefused` when *host* is over its budget.
        """
        now = self.clock.seconds()
        s = self.settings
        address = self._record(self._addresses, host, now)
        if address.blocked_until > now:
            return defer.fail(LoginRefused(host, address.blocked_until - now))
        if address.failures + address.in_flight >= s.login_failures_per_address:
            block = min(s.login_block_seconds * 2 ** address.blocks, self.MAX_BLOCK_SECONDS)
            address.blocks += 1
            address.blocked_until = now + block
            log.warn("{host}: {n} failed logins, refusing logins from it for {block:.0f}s",
                     host=host, n=address.failures, block=block)
            return defer.fail(LoginRefused(host, block))
        key = account.casefold()
        address.in_flight += 1
        d = defer.maybeDeferred(portal.login, credentials, None, *interfaces)

        def succeeded(result):
            address.in_flight -= 1
            address.failures = address.blocks = 0
            self._accounts.pop(key, None)
            return result

        def failed(failure):
            address.in_flight -= 1
            if not failure.check(cred_error.UnauthorizedLogin, cred_error.UnhandledCredentials):
                return failure
            at = self.clock.seconds()
            address.failures += 1
            address.last_failure = at
            record = self._record(self._accounts, key, at)
            record.failures += 1
            record.last_failure = at
            recent = max(address.failures, record.failures)
            delay = min(failure_delay * 2 ** min(recent - 1, 16), max(s.login_max_delay, failure_delay))
            return task.deferLater(self.clock, delay, lambda: failure)

        return d.addCallbacks(succeeded, failed)
