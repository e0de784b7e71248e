"""The disk pool run by hand, for adapter tests: each job waits until the test lets it run."""

from __future__ import annotations

from twisted.internet import defer


class Pool:
    def __init__(self):
        self.jobs = []  # (function, args, Deferred) in submission order

    def __call__(self, f, *args):
        d = defer.Deferred()
        self.jobs.append((f, args, d))
        return d

    def run_one(self):
        f, args, d = self.jobs.pop(0)
        d.callback(f(*args))

    def run_all(self):
        while self.jobs:
            self.run_one()
