"""The operator's view of the real daemon: configs that compose, start-up that
leaves nothing behind, status/stats/version, the log's shape."""

from __future__ import annotations

import json
import signal
import smtplib
import socket
import subprocess
import sys
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest
from netapps_daemon import TWISTD, run_twistd

from twisted_netapps import __version__, registry
from twisted_netapps.accounts import AccountStore
from twisted_netapps.stats_cli import counter_meaning

NETAPPS = str(Path(sys.executable).parent / "netapps")
LAB_ZONE = """\
$ORIGIN lab.test.
$TTL 300
@    IN SOA ns1 hostmaster 1 3600 600 86400 60
@    IN NS  ns1
ns1  IN A   127.0.0.53
www  IN A   10.1.2.3
"""


def netapps(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([NETAPPS, *args], capture_output=True, text=True, timeout=60, **kwargs)


def one_line(result) -> str:
    assert result.returncode != 0, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr + result.stdout, result.stderr
    return lines[0]


def services_of(daemon) -> set[str]:
    return {listener["service"] for listener in daemon.listeners}


# --- configurations that compose -------------------------------------------

def test_a_file_with_only_dns_runs_dns_alone_on_its_own_address(netapps_daemon, tmp_path):
    (tmp_path / "lab.test.zone").write_text(LAB_ZONE)
    config = tmp_path / "lab.toml"
    config.write_text(
        '[dns]\nlisten = ["udp:0:interface=127.0.0.53", "tcp:0:interface=127.0.0.53"]\n\n'
        '[[dns.zones]]\nname = "lab.test."\nfile = "lab.test.zone"\n'
    )
    d = netapps_daemon(None, config=str(config))
    assert services_of(d) == {"dns"}
    assert {listener["host"] for listener in d.listeners} == {"127.0.0.53"}
    reply = dns.query.udp(dns.message.make_query("www.lab.test", "A"), "127.0.0.53", port=d.port("dns", "udp"),
                          timeout=5)
    assert reply.rcode() == dns.rcode.NOERROR and "10.1.2.3" in reply.to_text()
    demo = dns.query.udp(dns.message.make_query("www.example.test", "A"), "127.0.0.53",
                         port=d.port("dns", "udp"), timeout=5)
    assert demo.rcode() == dns.rcode.REFUSED  # none of the demo hierarchy
    assert "created account" not in d.log and not (d.data_dir / "accounts.json").exists()


def test_a_file_with_smtp_and_pop3_runs_those_two(netapps_daemon, tmp_path):
    config = tmp_path / "mail.toml"
    config.write_text(
        '[smtp]\nlisten = ["tcp:0:interface=127.0.0.1"]\nsubmission_listen = ["tcp:0:interface=127.0.0.1"]\n'
        '[pop3]\nlisten = ["tcp:0:interface=127.0.0.1"]\n'
    )
    d = netapps_daemon(None, config=str(config))
    assert services_of(d) == {"smtp", "pop3"}
    password = d.log.split("created account 'demo' with password ")[1].split()[0]
    with smtplib.SMTP(*d.address("smtp"), timeout=10) as c:
        c.sendmail("x@remote.test", ["demo@localhost"], b"Subject: hi\r\n\r\nhello\r\n")
    import poplib

    pop = poplib.POP3(*d.address("pop3"), timeout=10)
    pop.user("demo")
    pop.pass_(password)
    assert pop.stat()[0] == 1
    pop.quit()


def test_set_zones_replaces_the_demo_views_on_the_real_daemon(netapps_daemon, tmp_path):
    (tmp_path / "lab.test.zone").write_text(LAB_ZONE)
    d = netapps_daemon(["dns"], listen={"dns": ["udp:0:interface=127.0.0.1"]},
                       sets=[f'dns.zones=[{{name="lab.test.", file="{tmp_path / "lab.test.zone"}"}}]'])
    assert [listener["name"] for listener in d.listeners] == ["dns"]  # no demo view on 127.0.0.2-5
    reply = dns.query.udp(dns.message.make_query("www.lab.test", "A"), "127.0.0.1", port=d.port("dns", "udp"),
                          timeout=5)
    assert "10.1.2.3" in reply.to_text()


def test_listen_moves_a_named_listener(netapps_daemon):
    d = netapps_daemon(["smtp"], listen={"smtp": ["tcp:0:interface=127.0.0.1"],
                                         "smtp.submission": ["tcp:0:interface=127.0.0.1"]})
    names = sorted(listener["name"] for listener in d.listeners)
    assert names == ["smtp", "smtp.submission"]
    assert all(listener["port"] not in (2525, 2587) for listener in d.listeners)


# --- mistakes: one line naming what the user wrote --------------------------

def test_config_mistakes_are_one_line_naming_what_was_written(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('[uppercase]\nlisten = ["tcp:0:interface=127.0.0.1"]\nmax_line = "long"\n')
    assert one_line(run_twistd(None, tmp_path / "d", config=str(config))) == (
        f"{config}:3: uppercase.max_line: expected an integer, got a string"
    )
    config.write_text('[uppercase]\nlisten = ["tcp:0:interface=127.0.0.1"]\n\nmax_lines = 5\n')
    assert one_line(run_twistd(None, tmp_path / "d", config=str(config))).startswith(
        f"{config}:4: uppercase.max_lines: unknown key"
    )
    line = one_line(run_twistd(["dns"], tmp_path / "d", listen={"dns": ["udp:0:interface=127.0.0.1"]},
                               sets=['dns.views=[{listen=["udp:0:interface=127.0.0.2"], zones=["lab.test."]}]']))
    assert line.startswith('--set dns.views=[{listen=["udp:0:interface=127.0.0.2"], zones=["lab.test."]}]: ')
    assert "'lab.test.' is not in dns.zones" in line
    assert not (tmp_path / "d").exists()


def test_alias_to_a_missing_account_is_one_line(tmp_path):
    line = one_line(run_twistd(["smtp"], tmp_path / "d",
                               listen={"smtp": ["tcp:0:interface=127.0.0.1"],
                                       "smtp.submission": ["tcp:0:interface=127.0.0.1"]},
                               sets=['smtp.aliases={abuse=["nobody"]}']))
    assert line.startswith('--set smtp.aliases={abuse=["nobody"]}: smtp.aliases.abuse: \'nobody\' is not an account')


def test_zone_error_names_the_right_line_and_what_is_wrong(tmp_path):
    zone = tmp_path / "lab.test.zone"
    zone.write_text(LAB_ZONE.replace("ns1  IN A   127.0.0.53", "ns1  IN A   999.1.1.1"))
    assert zone.read_text().splitlines()[4].startswith("ns1")  # line 5 of the file
    line = one_line(run_twistd(["dns"], tmp_path / "d", listen={"dns": ["udp:0:interface=127.0.0.1"]},
                               sets=[f'dns.zones=[{{name="lab.test.", file="{zone}"}}]']))
    assert line.startswith(f"dns: zone lab.test.: {zone}:5: A record '999.1.1.1': not an IPv4 address")


def test_taken_port_is_one_line_and_leaves_nothing_behind(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # smtp+pop3 would make a data dir, a TLS certificate and the demo account
        result = run_twistd(["smtp", "pop3"], tmp_path / "d",
                            listen={"smtp": ["tcp:0:interface=127.0.0.1"],
                                    "smtp.submission": ["tcp:0:interface=127.0.0.1"],
                                    "pop3": [f"tcp:{port}:interface=127.0.0.1"]})
    assert one_line(result) == f"pop3: cannot listen on tcp:{port}:interface=127.0.0.1: address already in use"
    assert result.stdout == ""
    assert not (tmp_path / "d").exists()


# --- version, status, stats -------------------------------------------------

def test_version_everywhere(netapps_daemon):
    assert netapps("--version").stdout == f"netapps {__version__}\n"
    out = subprocess.run([TWISTD, "netapps", "--version"], capture_output=True, text=True, timeout=60)
    assert out.stdout == f"netapps {__version__}\n"
    d = netapps_daemon(["uppercase"], listen={"uppercase": ["tcp:0:interface=127.0.0.1"]})
    assert f"netapps {__version__} started (pid {d.proc.pid}): uppercase" in d.log


def test_status_and_stats_running_stopped_and_killed(netapps_daemon):
    d = netapps_daemon(["uppercase", "smtp"], listen={
        "uppercase": ["tcp:0:interface=127.0.0.1", "udp:0:interface=127.0.0.1"],
        "smtp": ["tcp:0:interface=127.0.0.1"], "smtp.submission": ["tcp:0:interface=127.0.0.1"]})
    data = ["--data-dir", str(d.data_dir)]
    status = netapps("status", *data)
    assert status.returncode == 0 and f"netapps {__version__}: running (pid {d.proc.pid}" in status.stdout
    host, port = d.address("smtp", "tcp", 1)
    assert f"smtp.submission    tcp   {host}:{port}" in status.stdout
    stamp = json.loads((d.data_dir / "run" / "stats.json").read_text())["netapps"]
    assert stamp["pid"] == d.proc.pid and stamp["running"] is True and stamp["version"] == __version__
    assert stamp["started"] <= stamp["written"] and stamp["uptime"] >= 0
    stats = netapps("stats", *data)
    assert stats.returncode == 0 and "running (pid" in stats.stdout.splitlines()[0]
    assert "they start from 0 at every start" in stats.stdout
    d.stop()
    assert netapps("status", *data).returncode == 3
    assert "NOT RUNNING: stopped after" in netapps("stats", *data).stdout
    killed = netapps_daemon(["uppercase"], data_dir=d.data_dir, listen={"uppercase": ["tcp:0:interface=127.0.0.1"]})
    killed.stop(signal.SIGKILL)
    status = netapps("status", *data)
    assert status.returncode == 3 and f"pid {killed.proc.pid} in" in status.stdout and "is gone" in status.stdout
    assert f"NOT RUNNING: pid {killed.proc.pid} is gone" in netapps("stats", *data).stdout


def test_smtp_counts_a_550_at_rcpt_as_an_error(netapps_daemon):
    d = netapps_daemon(["smtp"], listen={"smtp": ["tcp:0:interface=127.0.0.1"],
                                         "smtp.submission": ["tcp:0:interface=127.0.0.1"]})
    with smtplib.SMTP(*d.address("smtp"), timeout=10) as c:
        c.ehlo("client.test")
        c.mail("x@remote.test")
        assert c.rcpt("nobody@example.test")[0] == 550
    d.stop()
    assert d.stats()["smtp"]["errors"] == 1


def test_every_service_documents_its_counters():
    for name in registry.SERVICES:
        counters = getattr(registry.service_module(name), "COUNTERS", None)
        assert isinstance(counters, dict) and counters, f"{name}: no COUNTERS table in its service.py"
        assert all(isinstance(k, str) and isinstance(v, str) and v for k, v in counters.items()), name


def test_every_counter_a_busy_daemon_writes_is_documented(netapps_daemon):
    d = netapps_daemon(["uppercase", "dns", "smtp", "pop3", "imap"], listen={
        "uppercase": ["tcp:0:interface=127.0.0.1", "udp:0:interface=127.0.0.1"],
        "dns": ["udp:0:interface=127.0.0.1", "tcp:0:interface=127.0.0.1"],
        "dns.root": ["udp:0:interface=127.0.0.2"], "dns.test": ["udp:0:interface=127.0.0.3"],
        "dns.example": ["udp:0:interface=127.0.0.4"], "dns.lab": ["udp:0:interface=127.0.0.5"],
        "smtp": ["tcp:0:interface=127.0.0.1"], "smtp.submission": ["tcp:0:interface=127.0.0.1"],
        "pop3": ["tcp:0:interface=127.0.0.1"], "imap": ["tcp:0:interface=127.0.0.1"],
    })
    for name in ("www.example.test", "nope.example.test", "elsewhere.org"):
        dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=d.port("dns", "udp"), timeout=5)
    for service in ("pop3", "imap", "uppercase"):
        with socket.create_connection(d.address(service), timeout=5) as s:
            s.sendall(b"a BOGUS\r\nUSER x\r\nPASS y\r\nQUIT\r\na LOGOUT\r\n")
            s.settimeout(5)
            try:
                while s.recv(4096):
                    pass
            except socket.timeout:
                pass
    with smtplib.SMTP(*d.address("smtp"), timeout=10) as c:
        c.sendmail("x@remote.test", ["demo@example.test"], b"Subject: x\r\n\r\nx\r\n")
    d.stop()
    undocumented = [
        f"{service}.{name}" for service, counters in d.stats().items() if service != "netapps"
        for name in counters if counter_meaning(service, name) == "(not documented)"
    ]
    assert undocumented == []


# --- the log's shape ----------------------------------------------------------

def test_log_has_no_request_flood_no_port_lines_and_one_stop_line(netapps_daemon):
    d = netapps_daemon(["uppercase"], listen={"uppercase": ["tcp:0:interface=127.0.0.1", "udp:0:interface=127.0.0.1"]})
    garbage = (b"x" * 200 + b"\n") * 500  # 100 KB of lines
    with socket.create_connection(d.address("uppercase"), timeout=10) as s:
        s.sendall(garbage)
        s.shutdown(socket.SHUT_WR)
        received = 0
        while chunk := s.recv(65536):
            received += len(chunk)
    assert received == len(garbage)
    d.stop()
    lines = d.log.splitlines()
    assert len(lines) < 15, d.log
    assert not [line for line in lines if "starting on" in line or "Port" in line and "Closed" in line], d.log
    assert sum("netapps" in line and " stopped (pid" in line for line in lines) == 1


# --- accounts and the data directory ----------------------------------------

def test_accounts_are_case_insensitive_end_to_end(netapps_daemon, tmp_path):
    data = tmp_path / "d"
    assert netapps("user", "add", "Alice", "--data-dir", str(data), input="pw-alice\n").returncode == 0
    again = netapps("user", "--data-dir", str(data), "add", "alice", input="x\n")
    assert again.returncode == 1 and again.stderr == "netapps user: user 'Alice' already exists\n"
    d = netapps_daemon(["smtp", "pop3"], data_dir=data, listen={
        "smtp": ["tcp:0:interface=127.0.0.1"], "smtp.submission": ["tcp:0:interface=127.0.0.1"],
        "pop3": ["tcp:0:interface=127.0.0.1"]})
    with smtplib.SMTP(*d.address("smtp"), timeout=10) as c:
        c.sendmail("x@remote.test", ["ALICE@example.test"], b"Subject: caps\r\n\r\nhi\r\n")
    import poplib

    pop = poplib.POP3(*d.address("pop3"), timeout=10)
    pop.user("ALICE")
    pop.pass_("pw-alice")
    assert pop.stat()[0] == 1
    pop.quit()
    assert len(list((data / "mail" / "Alice" / "new").iterdir())) == 1


def test_user_passwd_and_data_dir_after_the_action(tmp_path):
    data = str(tmp_path / "d")
    assert netapps("user", "add", "bob", "--data-dir", data, input="one\n").returncode == 0
    out = netapps("user", "passwd", "BOB", "--data-dir", data, input="two\n")
    assert out.returncode == 0 and out.stdout == "changed the password of bob\n"
    store = AccountStore(Path(data))
    assert store.check("bob", "two") and not store.check("bob", "one")
    assert netapps("user", "list", "--data-dir", data).stdout == "bob\n"
    assert netapps("user", "passwd", "nobody", "--data-dir", data, input="x\n").returncode == 1


@pytest.mark.parametrize("command", [
    ["user", "list"], ["user", "del", "x"], ["user", "passwd", "x"], ["mail", "queue"], ["mail", "flush"],
    ["stats"], ["status"],
])
def test_read_only_commands_never_create_the_data_dir(tmp_path, command):
    missing = tmp_path / "nowhere"
    out = netapps(*command, "--data-dir", str(missing), input="x\n")
    assert out.returncode == 1
    assert out.stderr.count("\n") == 1 and f"no data directory at {missing} (from --data-dir)" in out.stderr
    assert not missing.exists()


def test_one_data_dir_rule_for_every_command(tmp_path):
    env_home = {"XDG_DATA_HOME": str(tmp_path / "xdg"), "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert netapps("user", "add", "carol", input="pw\n", env=env_home, cwd=tmp_path).returncode == 0
    assert (tmp_path / "xdg" / "netapps" / "accounts.json").exists()
    assert netapps("user", "list", env=env_home, cwd=elsewhere).stdout == "carol\n"  # not cwd-dependent
    assert list(elsewhere.iterdir()) == []
    env_var = {**env_home, "NETAPPS_DATA_DIR": str(tmp_path / "explicit")}
    out = netapps("user", "list", env=env_var, cwd=elsewhere)
    assert out.returncode == 1 and f"{tmp_path / 'explicit'} (from NETAPPS_DATA_DIR)" in out.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    out = netapps("user", "list", "--data-dir", str(empty), env=env_home)
    assert out.returncode == 1 and f"no accounts in {empty}" in out.stderr


def test_dns_trace_from_a_server_says_so_and_counts_in_english(netapps_daemon):
    d = netapps_daemon(["dns"], listen={"dns": ["udp:0:interface=127.0.0.1"]}, sets=["dns.views=[]"])
    out = netapps("dns", "trace", "--server", "127.0.0.1", "--port", str(d.port("dns", "udp")), "www.example.test")
    assert out.returncode == 0, out.stderr
    assert "from the server given (127.0.0.1)" in out.stdout and "from the root hints" not in out.stdout
    assert "NOERROR after 1 query in" in out.stdout


def test_twistd_help_advertises_no_service_by_hand():
    out = subprocess.run([TWISTD, "--help"], capture_output=True, text=True, timeout=60)
    text = " ".join(out.stdout.split())
    description = text[text.index(" netapps "):][:200]
    assert "BitTorrent" not in description and "web" not in description
    assert "('twistd netapps --help' lists this version's services)" in description
