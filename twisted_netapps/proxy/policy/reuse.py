"""Deciding how to answer a request for which a response may be stored (RFC 9111 4, 4.2.4, 5.2.1).

:func:`choose` is the whole decision, a pure function of the stored
response's facts, the request's directives and the time.

Stale responses (4.2.4) are served only when someone permitted it: the
client (``max-stale``), the origin (``stale-while-revalidate``, then
revalidating in the background; ``stale-if-error`` when validation fails),
and never when ``no-cache``, ``must-revalidate``, ``proxy-revalidate`` or
``s-maxage`` forbid it (a shared cache treats s-maxage as proxy-revalidate).
When such a response cannot be validated, the answer is 504 (5.2.2.2).

Request directives are honoured in full: ``no-cache`` and ``max-age``
trigger validation, ``min-fresh`` asks for remaining freshness,
``only-if-cached`` turns any need to contact the origin into 504. A request
with ``no-store`` bypasses the cache entirely: nothing of it may be stored
(5.2.1.5), and going to the origin is always allowed.
"""

from __future__ import annotations

from enum import Enum

from twisted_netapps.proxy.policy.directives import RequestDirectives, ResponseDirectives
from twisted_netapps.proxy.policy.freshness import Freshness


class Action(Enum):
    SERVE = "serve the stored response"
    SERVE_STALE = "serve the stored stale response (permitted)"
    SERVE_STALE_AND_REVALIDATE = "serve stale now, revalidate in the background"
    VALIDATE = "validate with the origin first"
    FETCH = "no usable stored response: forward"
    GATEWAY_TIMEOUT = "only-if-cached and nothing usable: 504"


def stale_forbidden(directives: ResponseDirectives, *, shared: bool = True) -> bool:
    return (
        directives.no_cache
        or directives.must_revalidate
        or (shared and (directives.proxy_revalidate or directives.s_maxage is not None))
    )


def choose(
    freshness: Freshness | None,
    directives: ResponseDirectives | None,
    request: RequestDirectives,
    now: float,
    *,
    shared: bool = True,
) -> Action:
    if freshness is None or directives is None:
        return Action.GATEWAY_TIMEOUT if request.only_if_cached else Action.FETCH
    must_contact = Action.GATEWAY_TIMEOUT if request.only_if_cached else Action.VALIDATE
    if directives.no_cache or request.no_cache:
        return must_contact
    age = freshness.age(now)
    if request.max_age is not None and age > request.max_age:
        return must_contact
    remaining = freshness.lifetime - age
    if request.min_fresh is not None and remaining < request.min_fresh:
        return must_contact
    if remaining > 0:
        return Action.SERVE
    if stale_forbidden(directives, shared=shared):
        return must_contact
    staleness = -remaining
    if request.max_stale is not None and staleness <= request.max_stale:
        return Action.SERVE_STALE
    if request.only_if_cached:
        return Action.GATEWAY_TIMEOUT
    if directives.stale_while_revalidate is not None and staleness <= directives.stale_while_revalidate:
        return Action.SERVE_STALE_AND_REVALIDATE
    return Action.VALIDATE


def stale_on_error_allowed(
    freshness: Freshness, directives: ResponseDirectives, request: RequestDirectives, now: float,
    *, shared: bool = True,
) -> bool:
    """May the stale response stand in for an origin failure (RFC 5861 4)?"""
    if stale_forbidden(directives, shared=shared):
        return False
    staleness = freshness.staleness(now)
    allowances = [a for a in (directives.stale_if_error, request.stale_if_error) if a is not None]
    return any(staleness <= allowance for allowance in allowances)


# RFC 5861 4: the errors stale-if-error covers, besides failing to connect.
STALE_IF_ERROR_STATUSES = frozenset({500, 502, 503, 504})
