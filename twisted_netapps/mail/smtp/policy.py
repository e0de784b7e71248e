"""Who may send to whom: local domains, accounts, aliases and the relay rules.

No Twisted, no blocking beyond a ``stat`` of the accounts file: the verdicts
are given at RCPT time on the reactor thread.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass

from twisted_netapps.accounts import AccountStore
from twisted_netapps.errors import ConfigError
from twisted_netapps.mail.smtp.core import Reply, SessionInfo
from twisted_netapps.mail.smtp.syntax import Address, SyntaxProblem, parse_mailbox

MAX_ALIAS_DEPTH = 8
# RFC 5321 4.5.1: mail to postmaster (of any local domain, or with no
# domain) is always accepted. Without an alias that reaches someone it goes
# to the mailbox of this name, which exists whether or not the account does
# (``netapps user add postmaster`` makes it readable over POP3/IMAP).
POSTMASTER = "postmaster"


@dataclass(frozen=True)
class Route:
    """Where one envelope recipient goes: local mailboxes and/or remote addresses."""

    local_users: tuple[str, ...] = ()
    remote: tuple[Address, ...] = ()


class _AccountNames:
    """Account names, re-read only when ``accounts.json`` changes (stat per lookup)."""

    def __init__(self, store: AccountStore) -> None:
        self.store = store
        self._stamp: tuple[int, int] | None = None
        self._names: dict[str, str] = {}

    def lookup(self, local: str) -> str | None:
        """The account for *local* (exact, else case-insensitive), or None."""
        try:
            st = self.store.path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = (0, 0)
        if stamp != self._stamp:
            try:
                names = self.store.names() if stamp != (0, 0) else []
            except (OSError, ValueError, json.JSONDecodeError):
                names = []
            self._names = {n.lower(): n for n in names}
            self._names.update({n: n for n in names})
            self._stamp = stamp
        return self._names.get(local) or self._names.get(local.lower())


class MailPolicy:
    def __init__(
        self,
        accounts: AccountStore,
        *,
        local_domains: list[str],
        aliases: dict[str, list[str]],
        relay_networks: list[str],
        where: str = "smtp",
    ) -> None:
        self.local_domains = [d.lower().rstrip(".") for d in local_domains]
        self.accounts = _AccountNames(accounts)
        self.aliases = {k.lower(): list(v) for k, v in aliases.items()}
        try:
            self.relay_networks = [ipaddress.ip_network(n, strict=False) for n in relay_networks]
        except ValueError as e:
            raise ConfigError(f"{where}.relay_networks: {e}") from None
        for key, targets in self.aliases.items():
            for target in targets:
                if "@" in target:
                    try:
                        parse_mailbox(target)
                    except SyntaxProblem:
                        raise ConfigError(f"{where}.aliases.{key}: bad address {target!r}") from None

    @property
    def primary_domain(self) -> str:
        return self.local_domains[0] if self.local_domains else "localhost"

    def is_local(self, address: Address) -> bool:
        return address.domain == "" or address.domain.lower() in self.local_domains

    def relay_allowed(self, info: SessionInfo) -> bool:
        if info.auth_user is not None:
            return True
        try:
            ip = ipaddress.ip_address(info.client_ip)
        except ValueError:
            return False
        return any(ip in network for network in self.relay_networks)

    def route(self, address: Address, depth: int = 0) -> Route | None:
        """Resolve *address* through aliases to accounts and remote addresses; None if unknown.

        Postmaster is never unknown: when neither an alias nor an account
        reaches anyone, it is the ``postmaster`` mailbox.
        """
        found = self._route(address, depth)
        if found is None and self.is_local(address) and address.local.lower() == POSTMASTER:
            return Route(local_users=(self.accounts.lookup(POSTMASTER) or POSTMASTER,))
        return found

    def _route(self, address: Address, depth: int) -> Route | None:
        if not self.is_local(address):
            return Route(remote=(address,))
        if depth > MAX_ALIAS_DEPTH:
            return None
        local = address.local.lower()
        targets = self.aliases.get(f"{local}@{address.domain.lower()}") or self.aliases.get(local)
        if targets is None:
            user = self.accounts.lookup(address.local)
            return Route(local_users=(user,)) if user else None
        users: list[str] = []
        remote: list[Address] = []
        for target in targets:
            if "@" in target:
                sub = self.route(parse_mailbox(target), depth + 1)
            else:
                sub = self.route(Address(target, self.primary_domain), depth + 1)
            if sub is None:
                continue
            users += [u for u in sub.local_users if u not in users]
            remote += [a for a in sub.remote if a not in remote]
        if not users and not remote:
            return None
        return Route(tuple(users), tuple(remote))

    def unreachable_aliases(self) -> list[tuple[str, str]]:
        """``(alias, target)`` for every local alias target that reaches no account (for start-up checks)."""
        missing = []
        for key, targets in self.aliases.items():
            for target in targets:
                address = parse_mailbox(target) if "@" in target else Address(target, self.primary_domain)
                if self.is_local(address) and self.route(address, 1) is None:
                    missing.append((key, target))
        return missing

    def check_recipient(self, info: SessionInfo, sender: Address, rcpt: Address) -> Reply | None:
        """RCPT verdict: None accepts; local unknown -> 550; foreign without permission -> 554."""
        if self.is_local(rcpt):
            if self.route(rcpt) is None:
                return Reply(550, "5.1.1", f"{rcpt.bracketed()}: Recipient address rejected: no such user")
            return None
        if self.relay_allowed(info):
            return None
        return Reply(554, "5.7.1", f"{rcpt.bracketed()}: Relay access denied")
