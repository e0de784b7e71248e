"""The one error shape of the web service's pure layers: a status and why."""

from __future__ import annotations


class StatusError(Exception):
    """Something the client asked for cannot be done: answer *status* (with *reason*)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
