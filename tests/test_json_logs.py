"""``--log-format=json``: one JSON object per line, with the service and the peer as fields."""

import json
import socket

from netapps_daemon import wait_for


def test_json_log_lines_carry_service_and_peer(netapps_daemon):
    daemon = netapps_daemon("uppercase", listen={"uppercase": ["tcp:0:interface=127.0.0.1"]},
                            extra=["--log-format=json"])
    with socket.create_connection(daemon.address("uppercase"), timeout=5) as s:
        s.sendall(b"hi\n")
        assert s.recv(10) == b"HI\n"
    wait_for(lambda: "closed after" in daemon.log, what="the close line")
    events = [json.loads(line) for line in daemon.log.splitlines() if line.strip()]
    opened = [e for e in events if e.get("log_format", "").startswith("{service}: connection from {peer} to")]
    assert opened and opened[0]["service"] == "uppercase" and opened[0]["peer"].startswith("127.0.0.1:")
    assert any(e.get("log_namespace") == "netapps.listen" for e in events)


def test_a_bad_log_format_is_one_line(tmp_path):
    from netapps_daemon import run_twistd

    result = run_twistd("uppercase", tmp_path / "d", extra=["--log-format=xml"])
    assert result.returncode != 0 and "--log-format: expected text or json, got 'xml'" in result.stderr
