"""What the proxy shows on the status page: each request's cache decision and
why (live events), the stored responses and the fetches in progress (views)."""

from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from netapps_daemon import wait_for  # noqa: E402
from proxy_origin import Reply, http_date  # noqa: E402
from proxytestlib import origin, start_proxy  # noqa: E402,F401 (fixtures)


@pytest.fixture(scope="module", params=["forward", "reverse"])
def watched(request, origin, tmp_path_factory):
    under_test = start_proxy(tmp_path_factory.mktemp(f"proxy-status-{request.param}"), origin, request.param,
                             also=("status",))
    under_test.status = f"http://127.0.0.1:{under_test.daemon.port('status')}"
    yield under_test
    under_test.daemon.stop()


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def events(proxy, path: str) -> list[dict]:
    recent = get_json(proxy.status + "/api/service/proxy")["recent"]
    return [e for e in recent if e["kind"] == "request" and e["url"].endswith(path)]


def test_each_request_is_a_live_event_with_its_decision_and_why(watched):
    path = watched.new_path()
    watched.origin.script(path, Reply(headers=[("Cache-Control", "max-age=600"), ("Date", http_date())], body=b"x"))
    assert [watched.get(path).x_cache for _ in range(3)] == ["MISS", "HIT", "HIT"]
    seen = wait_for(lambda: (found := events(watched, path)) and len(found) == 3 and found, timeout=10)
    assert [e["decision"] for e in seen] == ["MISS", "HIT", "HIT"]
    assert seen[0]["why"] == "not in the cache" and seen[0]["status"] == 200 and seen[0]["method"] == "GET"
    assert all(e["why"] for e in seen[1:]) and all(e["bytes"] == 1 for e in seen)


def test_a_refused_store_says_why(watched):
    path = watched.new_path()
    watched.origin.script(path, Reply(headers=[("Cache-Control", "no-store")], body=b"secret"))
    assert watched.get(path).x_cache == "MISS"
    (event,) = wait_for(lambda: events(watched, path), timeout=10)
    assert event["why"] == "not in the cache; not stored: response says no-store"


def test_the_cache_view_lists_stored_responses_most_recent_first(watched):
    first, second = watched.new_path(), watched.new_path()
    for path in (first, second):
        watched.origin.script(path, Reply(headers=[("Cache-Control", "max-age=600")], body=b"abc"))
        watched.get(path)
    rows = get_json(watched.status + "/api/view/proxy/cache")["data"]
    urls = [row["url"] for row in rows]
    assert urls[0].endswith(second) and urls[1].endswith(first)
    row = rows[0]
    assert row["status"] == 200 and row["bytes"] == 3 and row["in_memory"] and 0 < row["fresh_for"] <= 600
    assert get_json(watched.status + "/api/view/proxy/fetches")["data"] == []
