"""``ftp.upload_rate``: one token bucket for every data connection, honest to within a few percent."""

from __future__ import annotations

import concurrent.futures
import hashlib
import time

from ftptestlib import login, random_file, start_ftp

RATE = 2 * 1024 * 1024  # 2 MiB/s
SIZE = 3 * 1024 * 1024


def capped(netapps_daemon, tmp_path):
    daemon = start_ftp(netapps_daemon, tmp_path / "data", sets=[f"ftp.upload_rate={RATE}"])
    digest = random_file(daemon.home / "big.bin", SIZE)
    return daemon, digest


def fetch(daemon) -> str:
    client = login(daemon)
    digest = hashlib.sha256()
    client.retrbinary("RETR big.bin", digest.update, blocksize=65536)
    client.quit()
    return digest.hexdigest()


def test_one_transfer_measures_the_configured_rate(netapps_daemon, tmp_path):
    daemon, digest = capped(netapps_daemon, tmp_path)
    client = login(daemon)  # (the login stays out of the timing)
    received = hashlib.sha256()
    started = time.monotonic()
    client.retrbinary("RETR big.bin", received.update, blocksize=65536)
    rate = SIZE / (time.monotonic() - started)
    client.quit()
    assert received.hexdigest() == digest
    assert RATE * 0.97 <= rate <= RATE * 1.01, rate / RATE  # never faster than the cap


def test_concurrent_transfers_share_one_bucket(netapps_daemon, tmp_path):
    daemon, digest = capped(netapps_daemon, tmp_path)
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        digests = list(pool.map(lambda _: fetch(daemon), range(3)))
    elapsed = time.monotonic() - started
    assert digests == [digest] * 3
    # 9 MiB at 2 MiB/s take 4.5 s however many connections share the cap
    assert 3 * SIZE / RATE * 0.99 <= elapsed <= 3 * SIZE / RATE * 1.15, elapsed
