"""Transfer rates from a clock the caller passes in: an exponentially decaying average."""

from __future__ import annotations

import math


class RateMeter:
    """Bytes per second averaged over about *window* seconds."""

    __slots__ = ("window", "_rate", "_stamp", "total")

    def __init__(self, window: float = 5.0, now: float = 0.0) -> None:
        self.window = window
        self._rate = 0.0
        self._stamp = now
        self.total = 0

    def _decay(self, now: float) -> None:
        if now > self._stamp:
            self._rate *= math.exp(-(now - self._stamp) / self.window)
            self._stamp = now

    def add(self, amount: int, now: float) -> None:
        self._decay(now)
        self._rate += amount / self.window
        self.total += amount

    def rate(self, now: float) -> float:
        self._decay(now)
        return self._rate
