"""The resolver's cache: RRsets, negative answers, delegations and final answers.

Two layers, as in Unbound:

- the RRset layer feeds iteration: positive RRsets by (name, type) with a
  trust rank (RFC 2181 5.4.1: an authoritative answer beats referral NS
  data, which beats glue), negative entries per RFC 2308 (NXDOMAIN for the
  name, NODATA for name+type, TTL from the SOA in authority), and the NS
  RRsets that tell iteration the closest known zone cut;
- the answer layer holds finished replies as :class:`PreparedAnswer`, keyed
  by the lowercased question bytes, so a cache hit is a dictionary lookup.

Both are bounded (LRU eviction) and every TTL is clamped to
``[min_ttl, max_ttl]`` (negative ones to ``negative_max_ttl``). Time comes
from an injected clock (``reactor.seconds`` or ``task.Clock().seconds``).
No Twisted imports here.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Generic, TypeVar

import dns.name
import dns.rdatatype
import dns.rrset

from twisted_netapps.resolver.prepared import PreparedAnswer

V = TypeVar("V")

# Trust ranks (higher wins while both are fresh).
RANK_GLUE = 1
RANK_REFERRAL = 2
RANK_ANSWER = 3
RANK_HINTS = 0

NXDOMAIN_KEY = 0  # rdtype slot used for "the whole name does not exist"


def name_key(name: dns.name.Name) -> bytes:
    """*name* as lowercased wire-format bytes: the cache's key for a name.

    dnspython's ``Name.__hash__`` folds case byte by byte in Python on every
    lookup; this is one join and one ``bytes.lower`` (length bytes are below
    64, so lowercasing leaves them alone), and unambiguous.
    """
    return b"".join([bytes((len(label),)) + label for label in name.labels]).lower()


class LRU(Generic[V]):
    """A dict bounded to *max_entries*, evicting the least recently used."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._items: OrderedDict = OrderedDict()
        self.evictions = 0

    def get(self, key) -> V | None:
        items = self._items
        value = items.get(key)
        if value is not None:
            items.move_to_end(key)
        return value

    def peek(self, key) -> V | None:
        return self._items.get(key)

    def put(self, key, value: V) -> None:
        items = self._items
        items[key] = value
        items.move_to_end(key)
        while len(items) > self.max_entries:
            items.popitem(last=False)
            self.evictions += 1

    def pop(self, key) -> None:
        self._items.pop(key, None)

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


@dataclass(frozen=True)
class RRsetEntry:
    rrset: dns.rrset.RRset
    expires_at: float
    rank: int


@dataclass(frozen=True)
class NegativeEntry:
    soa: dns.rrset.RRset  # the SOA RRset from the authority section, TTL = negative TTL
    expires_at: float


class ResolverCache:
    def __init__(
        self,
        clock: Callable[[], float],
        *,
        max_entries: int = 100_000,
        max_answers: int = 100_000,
        min_ttl: int = 0,
        max_ttl: int = 86_400,
        negative_max_ttl: int = 3_600,
    ) -> None:
        self.clock = clock
        self.min_ttl = min_ttl
        self.max_ttl = max_ttl
        self.negative_max_ttl = negative_max_ttl
        self._rrsets: LRU[RRsetEntry] = LRU(max_entries)
        self._negative: LRU[NegativeEntry] = LRU(max_entries)
        self._answers: LRU[PreparedAnswer] = LRU(max_answers)
        self._servers: LRU[tuple[int, float]] = LRU(10_000)  # address -> (failures, until)

    # -- TTLs ---------------------------------------------------------------
    def clamp(self, ttl: int) -> int:
        return max(self.min_ttl, min(ttl, self.max_ttl))

    def negative_ttl(self, soa: dns.rrset.RRset) -> int:
        """RFC 2308 section 5: min(SOA TTL, SOA MINIMUM), clamped."""
        ttl = min(soa.ttl, soa[0].minimum) if len(soa) else 0
        return max(self.min_ttl, min(ttl, self.negative_max_ttl, self.max_ttl))

    # -- positive RRsets ---------------------------------------------------
    def put_rrset(self, rrset: dns.rrset.RRset, rank: int) -> None:
        ttl = self.clamp(rrset.ttl)
        if ttl <= 0 or not len(rrset):
            return
        name = name_key(rrset.name)
        key = (name, rrset.rdtype)
        now = self.clock()
        current = self._rrsets.peek(key)
        if current is not None and current.expires_at > now and current.rank > rank:
            return  # keep the more trustworthy data until it expires
        stored = rrset.copy()
        stored.ttl = ttl
        self._rrsets.put(key, RRsetEntry(stored, now + ttl, rank))
        if rank >= RANK_ANSWER:
            # Positive data for the name proves it exists and has this type.
            self._negative.pop((name, NXDOMAIN_KEY))
            self._negative.pop((name, rrset.rdtype))

    def get_rrset(self, name: dns.name.Name, rdtype: int, min_rank: int = RANK_GLUE) -> dns.rrset.RRset | None:
        """A copy of the cached RRset with its TTL counted down, or None."""
        return self._get_rrset((name_key(name), rdtype), min_rank)

    def _get_rrset(self, key: tuple[bytes, int], min_rank: int) -> dns.rrset.RRset | None:
        entry = self._rrsets.get(key)
        if entry is None:
            return None
        remaining = int(entry.expires_at - self.clock())
        if remaining <= 0:
            self._rrsets.pop(key)
            return None
        if entry.rank < min_rank:
            return None
        rrset = entry.rrset.copy()
        rrset.ttl = remaining
        return rrset

    # -- negative answers (RFC 2308) ----------------------------------------
    def put_negative(self, name: dns.name.Name, rdtype: int | None, soa: dns.rrset.RRset) -> None:
        """Cache NODATA for (name, rdtype), or NXDOMAIN for *name* when rdtype is None."""
        ttl = self.negative_ttl(soa)
        if ttl <= 0:
            return
        stored = soa.copy()
        stored.ttl = ttl
        key = (name_key(name), NXDOMAIN_KEY if rdtype is None else rdtype)
        self._negative.put(key, NegativeEntry(stored, self.clock() + ttl))

    def get_negative(self, name: dns.name.Name, rdtype: int) -> tuple[bool, dns.rrset.RRset] | None:
        """(is_nxdomain, SOA with TTL counted down) or None."""
        now = self.clock()
        wire = name_key(name)
        for nxdomain, key in ((True, (wire, NXDOMAIN_KEY)), (False, (wire, rdtype))):
            entry = self._negative.get(key)
            if entry is None:
                continue
            remaining = int(entry.expires_at - now)
            if remaining <= 0:
                self._negative.pop(key)
                continue
            soa = entry.soa.copy()
            soa.ttl = remaining
            return nxdomain, soa
        return None

    # -- delegations ---------------------------------------------------------
    def closest_delegation(self, name: dns.name.Name) -> dns.rrset.RRset | None:
        """The cached NS RRset of the deepest zone cut at or above *name* (not the root hints)."""
        wire = name_key(name)
        pos = 0
        while True:
            # The wire form of each ancestor is a suffix of the name's own.
            ns = self._get_rrset((wire[pos:], dns.rdatatype.NS), RANK_GLUE)
            if ns is not None:
                return ns
            if pos >= len(wire) - 1:
                return None
            pos += 1 + wire[pos]

    def addresses(self, name: dns.name.Name, ipv6: bool) -> list[str]:
        """Cached addresses of name server *name* (any rank; no RRset copies)."""
        types = (dns.rdatatype.A, dns.rdatatype.AAAA) if ipv6 else (dns.rdatatype.A,)
        wire = name_key(name)
        now = self.clock()
        out = []
        for rdtype in types:
            entry = self._rrsets.get((wire, rdtype))
            if entry is not None and entry.expires_at - now >= 1:
                out.extend(rdata.address for rdata in entry.rrset)
        return out

    # -- name server health (Unbound's infrastructure cache, reduced) --------
    def server_failed(self, address: str) -> None:
        """*address* timed out or was lame: try it last for a while (doubling, up to 15 min)."""
        failures, _until = self._servers.peek(address) or (0, 0.0)
        failures += 1
        self._servers.put(address, (failures, self.clock() + min(900, 5 * 2 ** (failures - 1))))

    def server_answered(self, address: str) -> None:
        self._servers.pop(address)

    def server_penalty(self, address: str) -> int:
        """0 for a healthy server, else its recent failure count (sort key)."""
        entry = self._servers.peek(address)
        if entry is None or entry[1] <= self.clock():
            return 0
        return entry[0]

    # -- finished answers ----------------------------------------------------
    def put_answer(self, key: bytes, answer: PreparedAnswer) -> None:
        if answer.ttl > 0:
            self._answers.put(key, answer)

    def get_answer(self, key: bytes, now: float | None = None) -> PreparedAnswer | None:
        answer = self._answers.get(key)
        if answer is None:
            return None
        if (self.clock() if now is None else now) >= answer.stored_at + answer.ttl:
            self._answers.pop(key)
            return None
        return answer

    def flush(self) -> None:
        self._rrsets.clear()
        self._negative.clear()
        self._answers.clear()

    def entries(self, limit: int = 300) -> list[dict]:
        """The most recently used cached RRsets and negative answers with their remaining TTLs
        (for the status page; the newest first)."""
        now = self.clock()
        rows: list[dict] = []
        for (name, rdtype), entry in reversed(self._rrsets._items.items()):
            if len(rows) >= limit:
                break
            rows.append({"name": entry.rrset.name.to_text(), "type": dns.rdatatype.to_text(rdtype),
                         "ttl_left": max(0, int(entry.expires_at - now)), "rank": entry.rank,
                         "data": " ".join(r.to_text() for r in list(entry.rrset)[:4])})
        for (wire_name, rdtype), negative in reversed(self._negative._items.items()):
            if len(rows) >= 2 * limit:
                break
            kind = "NXDOMAIN" if rdtype == NXDOMAIN_KEY else f"NODATA {dns.rdatatype.to_text(rdtype)}"
            rows.append({"name": dns.name.from_wire(wire_name, 0)[0].to_text(), "type": kind,
                         "ttl_left": max(0, int(negative.expires_at - now)), "rank": "negative",
                         "data": f"SOA of {negative.soa.name.to_text()}"})
        return rows

    def sizes(self) -> dict[str, int]:
        return {"rrsets": len(self._rrsets), "negative": len(self._negative), "answers": len(self._answers)}
