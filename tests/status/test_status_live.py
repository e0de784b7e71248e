"""The live hub: a slow or stalled browser is bounded and told what it missed; the services never wait."""

from __future__ import annotations

import json

from twisted.internet import defer

from twisted_netapps.status import live


class FakeRequest:
    """What the hub uses of a twisted.web request: write, a producer, notifyFinish."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.producer = None
        self.finished = defer.Deferred()

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def registerProducer(self, producer, streaming) -> None:
        assert streaming
        self.producer = producer

    def notifyFinish(self) -> defer.Deferred:
        return self.finished


def messages(request: FakeRequest) -> list[tuple[str, dict]]:
    out = []
    for block in b"".join(request.written).split(b"\n\n"):
        if block:
            event, data = block.split(b"\n")
            out.append((event.removeprefix(b"event: ").decode(), json.loads(data.removeprefix(b"data: "))))
    return out


def test_a_paused_browser_keeps_at_most_max_queued_and_hears_how_many_it_missed():
    hub = live.Hub()
    slow, quick = FakeRequest(), FakeRequest()
    hub.add(slow)
    hub.add(quick)
    slow.producer.pauseProducing()  # TCP back-pressure: the browser is not reading
    ticks = 30
    for second in range(ticks):
        for n in range(live.MAX_EVENTS_PER_TICK + 10):  # a busy service: 10 a tick over the cap
            hub.event({"service": "dns", "n": n, "second": second})
        hub.tick({"second": second})
    assert slow.written == []
    client = hub.clients[0]
    assert len(client.queue) == live.MAX_QUEUED  # bounded, whatever the rate and the time
    per_tick = live.MAX_EVENTS_PER_TICK + 2  # the events, one "skipped" notice, the overview
    assert client.dropped == ticks * per_tick - live.MAX_QUEUED
    # the quick browser got everything the hub sends, as it happened
    got = messages(quick)
    assert len(got) == ticks * per_tick
    assert got[live.MAX_EVENTS_PER_TICK] == ("skipped", {"service": "dns", "count": 10})
    # the slow one resumes: first how many it missed, then what was kept
    slow.producer.resumeProducing()
    got = messages(slow)
    assert got[0] == ("dropped", {"count": ticks * per_tick - live.MAX_QUEUED})
    assert len(got) == 1 + live.MAX_QUEUED and client.dropped == 0 and not client.queue


def test_a_closed_page_leaves_the_hub_and_events_without_pages_cost_nothing():
    hub = live.Hub()
    request = FakeRequest()
    hub.add(request)
    request.finished.callback(None)
    assert hub.clients == []
    hub.event({"service": "smtp"})
    hub.tick({})
    assert hub._pending == {} and request.written == []
