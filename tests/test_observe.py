"""Recent events and views: bounded, cheap when nobody looks."""

from twisted_netapps.observe import MAX_RECENT, NULL_RECENT, Observatory, Recent, Views


def test_recent_is_bounded_and_ordered():
    recent = Recent("dns", maxlen=3, clock=lambda: 1.0)
    for i in range(5):
        recent.record("query", n=i)
    assert [e["n"] for e in recent.snapshot()] == [2, 3, 4]
    assert recent.snapshot()[0] == {"t": 1.0, "service": "dns", "kind": "query", "n": 2}


def test_subscribers_see_new_events_and_can_leave():
    recent = Recent("smtp")
    seen = []
    recent.subscribe(seen.append)
    recent.record("delivery", to="a")
    recent.unsubscribe(seen.append)
    recent.record("delivery", to="b")
    assert [e["to"] for e in seen] == ["a"]


def test_observatory_records_only_when_a_status_service_runs():
    off = Observatory(enabled=False)
    recent, views = off.for_service("dns")
    assert recent is NULL_RECENT
    recent.record("query", name="x")
    assert recent.snapshot() == []
    on = Observatory(enabled=True)
    recent, _ = on.for_service("dns")
    recent.record("query", name="x")
    assert on.recent["dns"].snapshot()[0]["name"] == "x"
    assert len(Recent("x").events.maxlen * "x") == MAX_RECENT


def test_views_render_on_demand():
    views = Views()
    calls = []
    views.add("queue", "Mail queue", lambda: calls.append(1) or [{"id": "a"}])
    assert views.names() == [("queue", "Mail queue", ())] and calls == []
    assert views.render("queue") == [{"id": "a"}] and calls == [1]


def test_views_take_the_parameters_they_declare():
    views = Views()
    views.add("trace", "Trace a name", lambda name: [{"step": name}], params=("name",))
    assert views.names() == [("trace", "Trace a name", ("name",))]
    assert views.render("trace", name="www.example.test") == [{"step": "www.example.test"}]


def test_at_most_per_second_events_are_kept_and_the_rest_counted():
    now = [10.0]
    recent = Recent("dns", maxlen=1000, clock=lambda: now[0], per_second=5)
    for i in range(8):
        recent.record("query", n=i)
    assert len(recent.snapshot()) == 5 and recent.skipped == 3
    now[0] = 11.2
    recent.record("query", n=99)
    assert recent.snapshot()[-1]["n"] == 99
