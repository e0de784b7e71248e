"""The store in the real daemon: it survives restarts and kill -9, drops corrupt entries, evicts LRU."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from netapps_daemon import wait_for  # noqa: E402
from proxy_origin import Reply  # noqa: E402
from proxytestlib import origin, start_proxy  # noqa: E402,F401 (fixtures)


def committed(data_dir: Path) -> list[Path]:
    """Files holding durable entries: a large one's metadata, or non-empty segments (small ones)."""
    cache = data_dir / "proxy" / "cache"
    return sorted(cache.glob("objects/*/*.meta")) + [p for p in sorted(cache.glob("segments/*.seg"))
                                                      if p.stat().st_size]


@pytest.fixture
def restartable(tmp_path, origin):
    started = []

    def start(**kwargs):
        proxy = start_proxy(tmp_path / "data", origin, "forward", **kwargs)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.daemon.stop(signal.SIGKILL)


def test_entries_survive_a_restart(restartable, tmp_path):
    proxy = restartable()
    path = proxy.new_path()
    proxy.origin.script(path, Reply(200, [("Cache-Control", "max-age=3600")], b"kept"))
    assert proxy.get(path).x_cache == "MISS"
    wait_for(lambda: committed(tmp_path / "data"), what="entry committed")
    proxy.daemon.stop()
    proxy = restartable()
    answer = proxy.get(path)
    assert (answer.x_cache, answer.body, proxy.origin.count(path)) == ("HIT", b"kept", 1)
    assert "store loaded: 1 responses" in proxy.daemon.log


def test_kill_9_leaves_nothing_half_written(restartable, tmp_path):
    proxy = restartable()
    paths = [proxy.new_path() for _ in range(20)]
    for path in paths:
        proxy.origin.script(path, Reply(200, [("Cache-Control", "max-age=3600")], path.encode() * 100))
        proxy.get(path)
    proxy.daemon.stop(signal.SIGKILL)
    proxy = restartable()
    for path in paths:
        answer = proxy.get(path)
        assert answer.body == path.encode() * 100  # from the store or the origin, never damaged
    tmp = tmp_path / "data" / "proxy" / "cache" / "tmp"
    wait_for(lambda: not list(tmp.iterdir()), what="no half-written bodies left")


@pytest.mark.parametrize("damage", ["flip", "truncate", "meta"])
def test_corrupt_small_entries_are_misses_and_removed(restartable, tmp_path, damage):
    proxy = restartable()
    path = proxy.new_path()
    body = b"0123456789" * 10
    proxy.origin.script(path, Reply(200, [("Cache-Control", "max-age=3600")], body))
    proxy.get(path)
    segment = wait_for(lambda: committed(tmp_path / "data"), what="entry committed")[0]
    proxy.daemon.stop()
    data = bytearray(segment.read_bytes())
    if damage == "flip":
        data[data.find(body) + 5] ^= 0xFF
    elif damage == "truncate":
        del data[data.find(body) + 50:]
    else:
        at = data.find(b"\n200 ")
        data[at:at + 5] = b"\n201 "
    segment.write_bytes(bytes(data))
    proxy = restartable()
    answer = proxy.get(path)
    assert (answer.x_cache, answer.body) == ("MISS", body)
    assert proxy.origin.count(path) == 2
    assert "1 damaged files removed" in proxy.daemon.log
    wait_for(lambda: not segment.exists(), what="the damaged segment removed")
    assert proxy.get(path).x_cache == "HIT"  # stored anew


@pytest.mark.parametrize("damage", ["flip", "truncate", "meta"])
def test_corrupt_large_entries_are_misses_and_removed(restartable, tmp_path, damage):
    proxy = restartable(sets=["proxy.memory_object_size=50"])  # 100 bytes is "large" here: files of its own
    path = proxy.new_path()
    proxy.origin.script(path, Reply(200, [("Cache-Control", "max-age=3600")], b"0123456789" * 10))
    proxy.get(path)
    meta = wait_for(lambda: committed(tmp_path / "data"), what="entry committed")[0]
    body = meta.with_suffix(".body")
    proxy.daemon.stop()
    if damage == "flip":
        data = bytearray(body.read_bytes())
        data[5] ^= 0xFF
        body.write_bytes(bytes(data))
    elif damage == "truncate":
        body.write_bytes(body.read_bytes()[:50])
    else:
        meta.write_bytes(meta.read_bytes().replace(b"\n200 ", b"\n201 "))
    proxy = restartable(sets=["proxy.memory_object_size=50"])
    answer = proxy.get(path)
    assert (answer.x_cache, answer.body) == ("MISS", b"0123456789" * 10)
    assert proxy.origin.count(path) == 2
    wait_for(lambda: not body.exists() and not meta.exists(), what="damaged files removed")
    assert proxy.get(path).x_cache == "HIT"  # stored anew


def test_large_corrupt_entry_is_never_streamed(restartable, tmp_path):
    proxy = restartable()
    path = proxy.new_path()
    big = b"abcdefgh" * 300000  # 2.4 MB: streamed from disk, not held in memory
    proxy.origin.script(path, Reply(200, [("Cache-Control", "max-age=3600")], big))
    proxy.get(path)
    meta = wait_for(lambda: committed(tmp_path / "data"), what="entry committed")[0]
    proxy.daemon.stop()
    body = meta.with_suffix(".body")
    data = bytearray(body.read_bytes())
    data[-1] ^= 0xFF
    body.write_bytes(bytes(data))
    proxy = restartable()
    answer = proxy.get(path)
    assert (answer.x_cache, answer.body == big) == ("MISS", True)


def test_least_recently_used_entries_are_evicted(restartable, tmp_path):
    proxy = restartable(sets=["proxy.cache_size=7000"])
    paths = [proxy.new_path() for _ in range(4)]
    for path in paths:
        proxy.origin.script(path, Reply(200, [("Cache-Control", "max-age=3600")], b"x" * 1500))
    proxy.get(paths[0])
    proxy.get(paths[1])
    proxy.get(paths[2])
    assert proxy.get(paths[0]).x_cache == "HIT"  # now the most recently used
    proxy.get(paths[3])  # over the limit: paths[1] goes
    assert proxy.get(paths[1]).x_cache == "MISS"
    assert proxy.get(paths[3]).x_cache == "HIT"
    proxy.daemon.stop()
    assert 0 < proxy.daemon.stats()["proxy"]["store_bytes"] <= 7000


def test_responses_over_max_object_size_are_relayed_not_stored(restartable):
    proxy = restartable(sets=["proxy.max_object_size=1000"])
    path = proxy.new_path()
    proxy.origin.script(path, Reply(200, [("Cache-Control", "max-age=3600")], b"y" * 5000, chunked=True))
    assert proxy.get(path).body == b"y" * 5000
    assert proxy.get(path).x_cache == "MISS"


def test_stats_count_hits_misses_and_bytes(restartable):
    proxy = restartable()
    path = proxy.new_path()
    proxy.origin.script(path, Reply(200, [("Cache-Control", "max-age=3600")], b"z" * 100))
    proxy.get(path)
    proxy.get(path)
    proxy.get(path)
    proxy.daemon.stop()
    stats = proxy.daemon.stats()["proxy"]
    assert (stats["hits"], stats["misses"]) == (2, 1)
    assert (stats["bytes_from_cache"], stats["bytes_from_origin"]) == (200, 100)
    assert stats["hit_ratio_percent"] == 66
    assert stats["store_objects"] == 1
