"""``web.upload_rate``: one token bucket for every connection, honest to within a few percent."""

from __future__ import annotations

import concurrent.futures
import http.client
import time

import pytest

RATE = 2 * 1024 * 1024  # 2 MiB/s


@pytest.fixture
def capped(netapps_daemon, tmp_path):
    data = tmp_path / "data"
    (data / "www").mkdir(parents=True)
    (data / "www" / "big.bin").write_bytes(bytes(range(256)) * 4096 * 3)  # 3 MiB
    return netapps_daemon("web", data_dir=data, listen={"web": ["tcp:0:interface=127.0.0.1"]},
                          sets=[f"web.upload_rate={RATE}", "web.seed_demo_site=false"])


def fetch(address) -> int:
    conn = http.client.HTTPConnection(*address, timeout=30)
    conn.request("GET", "/big.bin")
    body = conn.getresponse().read()
    conn.close()
    return len(body)


def test_one_transfer_measures_the_configured_rate(capped):
    started = time.monotonic()
    size = fetch(capped.address("web"))
    rate = size / (time.monotonic() - started)
    assert size == 3 * 1024 * 1024
    assert RATE * 0.97 <= rate <= RATE * 1.10, rate / RATE


def test_concurrent_transfers_share_one_bucket(capped):
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        sizes = list(pool.map(lambda _: fetch(capped.address("web")), range(3)))
    elapsed = time.monotonic() - started
    total = sum(sizes)
    assert total == 9 * 1024 * 1024
    # 9 MiB at 2 MiB/s take 4.5 s however many connections share the cap
    assert total / RATE * 0.97 <= elapsed <= total / RATE * 1.15, elapsed
