"""The lower bounds on the time to distribute a file of F bytes to N peers.

From the lecture notes (and Kurose & Ross 2.5):

- client-server: ``D_cs >= max(N*F/u_s, F/d_min)``: the server uploads N
  copies, and the slowest peer downloads one;
- P2P: ``D_P2P >= max(F/u_s, F/d_min, N*F/(u_s + sum(u_i)))``: the server
  uploads at least one copy, the slowest peer downloads one, and N copies
  cannot be uploaded faster than the whole swarm's upload capacity.

Units are whatever the caller uses consistently (bytes and bytes/second
here); the bounds are scale-free, so only the ratios matter.
"""

from __future__ import annotations

from typing import Sequence


def d_min(downloads: Sequence[float]) -> float:
    """The slowest peer's download rate (``inf`` if no peer is capped)."""
    return min(downloads) if downloads else float("inf")


def client_server_bound(n: int, file_size: float, server_upload: float, downloads: Sequence[float]) -> float:
    """``max(N*F/u_s, F/d_min)``."""
    if n < 1:
        raise ValueError("N must be at least 1")
    return max(n * file_size / server_upload, file_size / d_min(downloads))


def p2p_bound(n: int, file_size: float, server_upload: float, uploads: Sequence[float],
              downloads: Sequence[float]) -> float:
    """``max(F/u_s, F/d_min, N*F/(u_s + sum(u_i)))``."""
    if n < 1:
        raise ValueError("N must be at least 1")
    if len(uploads) != n:
        raise ValueError(f"{n} peers need {n} upload rates, got {len(uploads)}")
    return max(file_size / server_upload, file_size / d_min(downloads),
               n * file_size / (server_upload + sum(uploads)))
