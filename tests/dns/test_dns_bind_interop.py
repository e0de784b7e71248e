"""BIND as a secondary of our dns: AXFR, identical answers, NOTIFY-driven refresh."""

from __future__ import annotations

import re
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from conftest import require_tool  # noqa: E402
from dns_peers import Process, named_conf  # noqa: E402
from dnstestlib import dig, free_port_both, write_config  # noqa: E402
from netapps_daemon import wait_for  # noqa: E402

ZONE_ONLY = [("example.test.", "example.test.zone")]

NAMES = [
    ("www.example.test", "A"), ("www.example.test", "AAAA"), ("alias2.example.test", "AAAA"),
    ("example.test", "MX"), ("example.test", "NS"), ("example.test", "TXT"), ("example.test", "CAA"),
    ("pool.example.test", "A"), ("x.y.wild.example.test", "A"), ("_imap._tcp.example.test", "SRV"),
    ("nope.example.test", "A"), ("www.example.test", "MX"), ("deep.example.test", "A"),
    ("host.lab.example.test", "A"),
]


@contextmanager
def bind_secondary(tmp_path: Path, port: int, primary_port: int):
    named = require_tool("named")
    workdir = tmp_path / "named"
    workdir.mkdir()
    conf = named_conf(
        workdir, port, ["127.0.0.1"], "minimal-responses yes;\nnotify no;\nallow-transfer { 127.0.0.1; };",
        f'''zone "example.test" {{
    type secondary;
    primaries {{ 127.0.0.1 port {primary_port}; }};
    file "example.test.secondary";
}};''',
    )
    log_path = workdir / "named.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([named, "-g", "-n", "1", "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=workdir)
    try:
        yield proc, log_path
    finally:
        Process(proc, log_path).stop()


def normalised(output: str) -> tuple[str, list[str]]:
    """(status + AA flag, sorted records of the sections shown) from dig output."""
    status = re.search(r"status: (\w+)", output).group(1)
    flags = re.search(r"flags: ([a-z ]+);", output).group(1).split()
    records = sorted(" ".join(line.split()) for line in output.splitlines() if line and not line.startswith(";"))
    return f"{status} aa={'aa' in flags}", records


@pytest.mark.interop
def test_bind_secondary_serves_identical_data_and_follows_notify(netapps_daemon, tmp_path):
    dig_tool = require_tool("dig")
    bind_port = free_port_both()
    config = write_config(tmp_path, zones=ZONE_ONLY, extra="reload_interval = 0.2",
                          zone_extra={"example.test.": [f'notify = ["127.0.0.1:{bind_port}"]']})
    ours = netapps_daemon(["dns"], config=str(config))
    our_server = ours.address("dns", "udp")
    bind_server = ("127.0.0.1", bind_port)
    with bind_secondary(tmp_path, bind_port, our_server[1]) as (named, named_log):
        def bind_serial():
            if named.poll() is not None:
                raise RuntimeError(f"named exited:\n{named_log.read_text()}")
            return re.search(r"\b(20261121\d\d)\b", dig(dig_tool, bind_server, "example.test", "SOA", "+short"))

        serial = wait_for(bind_serial, timeout=30, what="BIND to transfer the zone").group(1)
        assert serial == "2026112101"
        assert "transfer of 'example.test/IN' from 127.0.0.1#" in named_log.read_text()

        # The transferred zone is ours, record for record.
        ours_axfr = normalised(dig(dig_tool, our_server, "example.test", "AXFR", "+nocmd") + "\n;; status: NOERROR, flags: qr aa;")
        bind_axfr = normalised(dig(dig_tool, bind_server, "example.test", "AXFR", "+nocmd") + "\n;; status: NOERROR, flags: qr aa;")
        assert ours_axfr[1] == bind_axfr[1] and len(ours_axfr[1]) == 33

        # And both answer the same: answers, CNAME chains, wildcards, NXDOMAIN/NODATA
        # with the SOA, ENTs, the referral with glue (BIND: minimal-responses).
        for name, rdtype in NAMES:
            args = (name, rdtype, "+noall", "+comments", "+answer", "+authority")
            if name.startswith("host.lab"):
                args += ("+additional",)
            a, b = normalised(dig(dig_tool, our_server, *args)), normalised(dig(dig_tool, bind_server, *args))
            assert a == b, (name, rdtype, a, b)

        # NOTIFY: a new serial on our side reaches BIND without waiting for its refresh (1h).
        zone_file = tmp_path / "zones" / "example.test.zone"
        zone_file.write_text(zone_file.read_text().replace("2026112101", "2026112102")
                             + "notified IN A 127.0.0.42\n")
        wait_for(lambda: "127.0.0.42" in dig(dig_tool, bind_server, "notified.example.test", "A", "+short"),
                 timeout=30, what="BIND to pick up the new serial after our NOTIFY")
        assert "received notify for zone 'example.test'" in named_log.read_text()
        wait_for(lambda: "NOTIFY for zone example.test. acknowledged" in ours.log, timeout=10, what="ack logged")
