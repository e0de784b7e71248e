"""Server-Sent Events: every open page gets the overview each second and new events as they happen.

A slow browser never holds the services up and never grows our memory: each
client has a bounded queue; while its connection is paused (TCP back-pressure
through ``IPushProducer``) or its queue is full, new events are dropped and
counted, and the client is told how many it missed.
"""

from __future__ import annotations

import json
from collections import deque

from twisted.internet import interfaces
from zope.interface import implementer

MAX_QUEUED = 500
MAX_CLIENTS = 32


@implementer(interfaces.IPushProducer)
class Client:
    """One open ``/events`` request."""

    def __init__(self, request) -> None:
        self.request = request
        self.queue: deque[bytes] = deque()
        self.paused = False
        self.dropped = 0
        self.closed = False

    # IPushProducer: the transport tells us when the browser is not keeping up
    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self.flush()

    def stopProducing(self) -> None:
        self.closed = True

    def offer(self, message: bytes) -> None:
        if len(self.queue) >= MAX_QUEUED:
            self.dropped += 1
            return
        self.queue.append(message)

    def flush(self) -> None:
        if self.closed or self.paused:
            return
        if self.dropped:
            self.queue.appendleft(sse("dropped", {"count": self.dropped}))
            self.dropped = 0
        if self.queue:
            data = b"".join(self.queue)
            self.queue.clear()
            self.request.write(data)


def to_json(value):
    """``json.dumps`` default: events may carry lazy fields (``to_json()``), decoded only when shown."""
    convert = getattr(value, "to_json", None)
    return convert() if convert is not None else str(value)


def sse(event: str, data) -> bytes:
    body = json.dumps(data, separators=(",", ":"), default=to_json).encode()
    return b"event: " + event.encode() + b"\ndata: " + body + b"\n\n"


#: Events pushed per service per update; a busier service's extra events are
#: counted, not sent (a page cannot show 20,000 DNS queries a second anyway).
MAX_EVENTS_PER_TICK = 50


class Hub:
    """Fans events and overviews out to the open pages."""

    def __init__(self) -> None:
        self.clients: list[Client] = []
        self._pending: dict[str, list[dict]] = {}
        self._skipped: dict[str, int] = {}

    def full(self) -> bool:
        return len(self.clients) >= MAX_CLIENTS

    def add(self, request) -> Client:
        client = Client(request)
        self.clients.append(client)
        request.registerProducer(client, True)
        request.notifyFinish().addBoth(lambda _: self.remove(client))
        return client

    def remove(self, client: Client) -> None:
        client.closed = True
        if client in self.clients:
            self.clients.remove(client)

    def event(self, event: dict) -> None:
        """A service recorded *event*: keep it for the next update (cheap: no encoding here)."""
        if not self.clients:
            return
        pending = self._pending.setdefault(event["service"], [])
        if len(pending) < MAX_EVENTS_PER_TICK:
            pending.append(event)
        else:
            self._skipped[event["service"]] = self._skipped.get(event["service"], 0) + 1

    def tick(self, overview: dict) -> None:
        """Once a second: the events since the last update, then the overview, to every client."""
        pending, self._pending = self._pending, {}
        skipped, self._skipped = self._skipped, {}
        if not self.clients:
            return
        messages = [sse("event", e) for events in pending.values() for e in events]
        for service, count in skipped.items():
            messages.append(sse("skipped", {"service": service, "count": count}))
        messages.append(sse("overview", overview))
        for client in list(self.clients):
            for message in messages:
                client.offer(message)
            client.flush()
