"""Helpers for the dns integration tests: a config with the demo zones copied to a temp dir."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

DEMO = Path(__file__).resolve().parents[2] / "twisted_netapps" / "data" / "zones"

ZONES = [
    (".", "root.zone"),
    ("test.", "test.zone"),
    ("example.test.", "example.test.zone"),
    ("lab.example.test.", "lab.example.test.zone"),
]


def free_port_both(host: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP on *host*: dig retries a TC answer over TCP on the same port."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((host, 0))
            port = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((host, port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no port free for both UDP and TCP")


def both(host: str = "127.0.0.1", port: int | None = None) -> list[str]:
    port = port or free_port_both(host)
    return [f"tcp:{port}:interface={host}", f"udp:{port}:interface={host}"]


def copy_demo_zones(directory: Path) -> Path:
    zones = directory / "zones"
    shutil.copytree(DEMO, zones)
    return zones


def write_config(directory: Path, *, listen=None, views=(), extra: str = "", zone_extra: dict | None = None,
                 zones=ZONES) -> Path:
    """A netapps.toml serving the demo zones (copied next to it, relative paths)."""
    if not (directory / "zones").exists():
        copy_demo_zones(directory)
    listen = listen or both()
    lines = ["[dns]", f"listen = {listen!r}".replace("'", '"'), extra, ""]
    for origin, file in zones:
        lines += ["[[dns.zones]]", f'name = "{origin}"', f'file = "zones/{file}"',
                  'allow_transfer = ["127.0.0.0/8"]']
        lines += (zone_extra or {}).get(origin, [])
        lines.append("")
    for view_listen, view_zones in views:
        lines += ["[[dns.views]]", f"listen = {view_listen!r}".replace("'", '"'),
                  f"zones = {view_zones!r}".replace("'", '"'), ""]
    path = directory / "netapps.toml"
    path.write_text("\n".join(lines))
    return path


def dig(tool: str, server: tuple[str, int], *args: str, timeout: float = 20) -> str:
    result = subprocess.run([tool, f"@{server[0]}", "-p", str(server[1]), *args],
                            capture_output=True, text=True, timeout=timeout)
    return result.stdout + result.stderr
