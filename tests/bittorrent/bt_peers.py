"""Helpers for BitTorrent tests and benchmarks: content, libtorrent sessions, our CLI peer."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

NETAPPS = str(Path(sys.executable).parent / "netapps")


def make_content(path: Path, size: int, seed: int = 0) -> Path:
    """*size* pseudo-random bytes at *path* (fast: repeated SHA-256 stretched)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    block = b"".join(hashlib.sha256(b"%d-%d" % (seed, i)).digest() for i in range(32768))  # 1 MiB
    with open(path, "wb") as f:
        left = size
        i = 0
        while left > 0:
            chunk = block[: min(left, len(block))]
            f.write(hashlib.sha256(b"%d" % i).digest() + chunk[32:] if len(chunk) > 32 else chunk)
            left -= len(chunk)
            i += 1
    return path


def sha256_tree(path: Path) -> dict[str, str]:
    path = Path(path)
    if path.is_file():
        return {path.name: hashlib.sha256(path.read_bytes()).hexdigest()}
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*")) if p.is_file()
    }


def lt_session(lt, interface: str = "127.0.0.1", upload_rate: int = 0, download_rate: int = 0):
    settings = {
        "listen_interfaces": f"{interface}:0",
        "outgoing_interfaces": interface,
        "enable_dht": False, "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
        "allow_multiple_connections_per_ip": True,
        "alert_mask": 0,
        "upload_rate_limit": upload_rate,
        "download_rate_limit": download_rate,
        "announce_to_all_trackers": True,
        "min_announce_interval": 5,
    }
    session = lt.session(settings)
    if upload_rate or download_rate:
        # libtorrent exempts local-network peers from rate limits (its "local" peer
        # class); put every address in the global class so the limits apply on loopback.
        rules = lt.ip_filter()
        rules.add_rule("0.0.0.0", "255.255.255.255", 1 << lt.session.global_peer_class_id)
        session.set_peer_class_filter(rules)
    return session


def lt_add(lt, session, torrent: Path, save_path: Path, *, seed_mode: bool = False):
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(str(torrent))
    params.save_path = str(save_path)
    if seed_mode:
        params.flags |= lt.torrent_flags.seed_mode
    return session.add_torrent(params)


def lt_wait(handle, predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = handle.status()
        if predicate(status):
            return status
        time.sleep(0.05)
    status = handle.status()
    raise TimeoutError(f"libtorrent: timed out waiting for {what}: state {status.state}, "
                       f"progress {status.progress:.3f}, peers {status.num_peers}, errors {status.errc.message()}")


def netapps_peer(command: str, torrent: Path, directory: Path, *extra: str, log: Path | None = None):
    """Start ``netapps torrent get|seed`` (quiet); its stdout says 'complete ...' when done."""
    cmd = [NETAPPS, "torrent", command, str(torrent), "--dir", str(directory), "-q", *extra]
    out = open(log, "wb") if log else subprocess.DEVNULL
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=out, stdin=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
