"""The uppercase service end to end: the real daemon, real sockets, real tools."""

import concurrent.futures
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import require_tool
from netapps_daemon import TWISTD, free_port, run_twistd, wait_for

from twisted_netapps.accounts import AccountStore

LOCAL = {"uppercase": ["tcp:0:interface=127.0.0.1", "udp:0:interface=127.0.0.1"]}
NETAPPS = str(Path(sys.executable).parent / "netapps")


@pytest.fixture
def upper(netapps_daemon):
    return netapps_daemon(["uppercase"], listen=LOCAL)


def _udp(address, payload, timeout=5.0):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(payload, address)
        return s.recvfrom(70000)[0]


def test_tcp_many_lines_per_connection(upper):
    with socket.create_connection(upper.address("uppercase"), timeout=5) as s:
        replies = s.makefile("rb")
        s.sendall("hello\r\nstraße\n".encode())
        assert replies.readline() == b"HELLO\r\n"
        assert replies.readline() == "STRASSE\n".encode()
        s.sendall(b"bad \xff utf8\n")
        assert replies.readline() == b"BAD \xff UTF8\n"


def test_tcp_many_concurrent_clients(upper):
    address = upper.address("uppercase")

    def session(i):
        # 50 clients from 5 loopback addresses: within the per-address cap (20)
        with socket.create_connection(address, timeout=10, source_address=(f"127.0.0.{10 + i % 5}", 0)) as s:
            f = s.makefile("rb")
            for j in range(20):
                s.sendall(f"client {i} line {j}\n".encode())
                assert f.readline() == f"CLIENT {i} LINE {j}\n".encode()
        return i

    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        assert sorted(pool.map(session, range(50))) == list(range(50))


def test_per_address_cap_refuses_the_extra_connection_only(netapps_daemon):
    d = netapps_daemon(["uppercase"], listen=LOCAL, sets=["uppercase.max_connections_per_address=3"])
    address = d.address("uppercase")
    held = [socket.create_connection(address, timeout=5) for _ in range(3)]
    try:
        for s in held:  # all three served
            s.sendall(b"x\n")
            assert s.recv(10) == b"X\n"
        with socket.create_connection(address, timeout=5) as extra:
            assert extra.makefile("rb").read() == b"ERROR: too many connections\r\n"
        with socket.create_connection(address, timeout=5, source_address=("127.0.0.9", 0)) as other:
            other.sendall(b"y\n")
            assert other.recv(10) == b"Y\n"
    finally:
        for s in held:
            s.close()
    wait_for(lambda: "refusing 127.0.0.1:" in d.log, what="the refusal log line")


def test_tcp_overlong_line_gets_error_line_and_close(netapps_daemon):
    d = netapps_daemon(["uppercase"], listen=LOCAL, sets=["uppercase.max_line=1000"])
    with socket.create_connection(d.address("uppercase"), timeout=5) as s:
        s.sendall(b"x" * 2000)
        f = s.makefile("rb")
        assert f.readline() == b"ERROR: line too long (limit 1000 bytes)\r\n"
        assert f.read() == b""  # closed


def test_tcp_idle_timeout_closes(netapps_daemon):
    d = netapps_daemon(["uppercase"], listen=LOCAL, sets=["uppercase.idle_timeout=0.5"])
    with socket.create_connection(d.address("uppercase"), timeout=10) as s:
        assert s.makefile("rb").read() == b"ERROR: idle timeout\r\n"


def test_default_64k_line_limit(upper):
    with socket.create_connection(upper.address("uppercase"), timeout=5) as s:
        f = s.makefile("rb")
        s.sendall(b"a" * 65536 + b"\n")
        assert f.readline() == b"A" * 65536 + b"\n"
        s.sendall(b"a" * 65537 + b"\n")
        assert f.readline().startswith(b"ERROR: line too long")


def test_udp_datagrams(upper):
    address = upper.address("uppercase", "udp")
    assert _udp(address, b"hi") == b"HI"
    assert _udp(address, "groß".encode()) == b"GROSS"
    assert _udp(address, b"x" * 60000) == b"X" * 60000


def test_udp_oversize_gets_error_and_empty_is_dropped(netapps_daemon):
    d = netapps_daemon(["uppercase"], listen=LOCAL, sets=["uppercase.max_datagram=100"])
    address = d.address("uppercase", "udp")
    assert _udp(address, b"y" * 101).startswith(b"ERROR: datagram too large (101 > 100 bytes)")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.5)
        s.sendto(b"", address)
        with pytest.raises(socket.timeout):
            s.recvfrom(100)
        s.sendto(b"after", address)  # still alive
        assert s.recvfrom(100)[0] == b"AFTER"


def test_connections_logged_and_stats_written(upper):
    with socket.create_connection(upper.address("uppercase"), timeout=5) as s:
        s.sendall(b"one\n")
        s.makefile("rb").readline()
    wait_for(lambda: "closed after" in upper.log, what="close log line")
    assert "uppercase: connection from 127.0.0.1:" in upper.log
    upper.stop()
    stats = upper.stats()["uppercase"]
    assert stats["connections"] == 1 and stats["requests"] == 1 and stats["bytes_in"] == 4


def test_demo_account_created_once_with_password_in_log(upper, netapps_daemon):
    # uppercase logs nobody in: no account, no password in the log
    assert "created account" not in upper.log and not (upper.data_dir / "accounts.json").exists()
    assert os.stat(upper.data_dir).st_mode & 0o777 == 0o700
    pop3 = netapps_daemon(["pop3"], listen={"pop3": ["tcp:0:interface=127.0.0.1"]})
    password = pop3.log.split("created account 'demo' with password ")[1].split()[0]
    assert AccountStore(pop3.data_dir).check("demo", password)


@pytest.mark.interop
def test_nc_tcp_and_udp(upper):
    nc = require_tool("nc")
    host, port = upper.address("uppercase")
    out = subprocess.run([nc, "-q", "1", host, str(port)], input=b"hello\n", capture_output=True, timeout=10)
    assert out.stdout == b"HELLO\n"
    host, port = upper.address("uppercase", "udp")
    out = subprocess.run([nc, "-u", "-w", "1", host, str(port)], input=b"hi\n", capture_output=True, timeout=10)
    assert out.stdout == b"HI\n"


@pytest.mark.interop
def test_socat_tcp_and_udp(upper):
    socat = require_tool("socat")
    host, port = upper.address("uppercase")
    out = subprocess.run([socat, "-", f"TCP:{host}:{port}"], input=b"one\ntwo\n", capture_output=True, timeout=10)
    assert out.stdout == b"ONE\nTWO\n"
    host, port = upper.address("uppercase", "udp")
    out = subprocess.run([socat, "-T1", "-", f"UDP:{host}:{port}"], input=b"dgram", capture_output=True, timeout=10)
    assert out.stdout == b"DGRAM"


def test_netapps_uppercase_client_tcp_udp_and_stdin(upper):
    port = str(upper.port("uppercase"))
    out = subprocess.run([NETAPPS, "uppercase", "--port", port, "hello", "world"], capture_output=True, timeout=10)
    assert out.stdout == b"HELLO WORLD\n" and out.returncode == 0
    out = subprocess.run([NETAPPS, "uppercase", "--port", port], input=b"a\nb\n", capture_output=True, timeout=10)
    assert out.stdout == b"A\nB\n"
    udp = str(upper.port("uppercase", "udp"))
    out = subprocess.run([NETAPPS, "uppercase", "--udp", "--port", udp, "hi"], capture_output=True, timeout=10)
    assert out.stdout == b"HI\n" and out.returncode == 0


def test_netapps_uppercase_udp_retries_then_fails_clearly():
    # A UDP socket that receives but never answers: every try times out.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = str(silent.getsockname()[1])
        out = subprocess.run(
            [NETAPPS, "uppercase", "--udp", "--port", port, "--timeout", "0.2", "--tries", "3", "hi"],
            capture_output=True, timeout=10,
        )
    assert out.returncode == 1
    assert out.stderr.count(b"no answer") >= 3
    assert b"after 3 tries" in out.stderr


def test_netapps_uppercase_tcp_connection_refused_is_clear():
    out = subprocess.run([NETAPPS, "uppercase", "--port", str(free_port()), "x"], capture_output=True, timeout=10)
    assert out.returncode == 1 and b"cannot connect" in out.stderr and b"Traceback" not in out.stderr


def test_user_cli_add_list_del_and_cred_check(tmp_path):
    data = str(tmp_path / "d")
    out = subprocess.run([NETAPPS, "user", "--data-dir", data, "add", "alice"], input=b"pw-alice\n",
                         capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert AccountStore(Path(data)).check("alice", "pw-alice")
    assert not AccountStore(Path(data)).check("alice", "wrong")
    out = subprocess.run([NETAPPS, "user", "--data-dir", data, "list"], capture_output=True, timeout=30)
    assert out.stdout == b"alice\n"
    out = subprocess.run([NETAPPS, "user", "--data-dir", data, "add", "alice"], input=b"x\n",
                         capture_output=True, timeout=30)
    assert out.returncode == 1 and out.stderr == b"netapps user: user 'alice' already exists\n"
    out = subprocess.run([NETAPPS, "user", "--data-dir", data, "del", "alice"], capture_output=True, timeout=30)
    assert out.returncode == 0 and AccountStore(Path(data)).names() == []


# --- configuration errors: one line, non-zero exit, nothing half-started ---

def _one_line_error(result, *fragments):
    assert result.returncode != 0
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for fragment in fragments:
        assert fragment in lines[0]


def test_unknown_service_exits_with_one_line(tmp_path):
    _one_line_error(run_twistd(["nosuch"], tmp_path / "d"), "unknown service 'nosuch'")


def test_bad_key_type_and_endpoint_exit_with_one_line(tmp_path):
    _one_line_error(run_twistd(["uppercase"], tmp_path / "d", sets=["uppercase.max_line=\"x\""]),
                    "uppercase.max_line", "expected an integer")
    result = run_twistd(["uppercase"], tmp_path / "d", listen={"uppercase": ["tcp:notaport"]})
    _one_line_error(result, "--listen uppercase=tcp:notaport: bad endpoint 'tcp:notaport': the port must be a number")
    assert "invalid literal" not in result.stderr
    result = run_twistd(["uppercase"], tmp_path / "d", listen={"uppercase": ["udp:1:bogus=2"]})
    _one_line_error(result, "--listen uppercase=udp:1:bogus=2: bad endpoint 'udp:1:bogus=2'")
    conf = tmp_path / "bad.toml"
    conf.write_text("[uppercase]\nmax_lines = 5\n")
    _one_line_error(run_twistd(["uppercase"], tmp_path / "d", config=str(conf)),
                    str(conf), "uppercase.max_lines", "unknown key")


def test_taken_port_fails_start_up(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_twistd(["uppercase"], tmp_path / "d",
                            listen={"uppercase": [f"tcp:{port}:interface=127.0.0.1"]})
    _one_line_error(result, f"uppercase: cannot listen on tcp:{port}:interface=127.0.0.1: address already in use")


def _free_privileged_port():
    for port in range(1000, 700, -7):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.skip("no free port below 1024")


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to bind below 1024 / change user")


@pytest.fixture
def open_tmp():
    """A temp dir the unprivileged user can reach (pytest's tmp_path is root-only)."""
    path = Path(tempfile.mkdtemp(prefix="netapps-test-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@needs_root
def test_privileged_port_without_root_is_one_line(open_tmp):
    data = open_tmp / "d"
    data.mkdir()
    os.chmod(data, 0o777)
    port = _free_privileged_port()
    cmd = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", TWISTD, "-n", "--pidfile=",
           "netapps", f"--data-dir={data}", "--services=uppercase",
           f"--listen=uppercase=tcp:{port}:interface=127.0.0.1"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    _one_line_error(result, f"uppercase: cannot listen on tcp:{port}", "permission denied",
                    "CAP_NET_BIND_SERVICE")


@needs_root
def test_privileged_port_binds_before_dropping_to_user(netapps_daemon, open_tmp):
    port = _free_privileged_port()
    nobody = pwd.getpwnam("nobody")
    d = netapps_daemon(
        ["uppercase"], data_dir=open_tmp / "d", listen={"uppercase": [f"tcp:{port}:interface=127.0.0.1"]},
        twistd_args=["-u", str(nobody.pw_uid), "-g", str(nobody.pw_gid)],
    )
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"root\n")
        assert s.makefile("rb").readline() == b"ROOT\n"
    status = Path(f"/proc/{d.proc.pid}/status").read_text()
    uid_line = next(l for l in status.splitlines() if l.startswith("Uid:"))
    assert uid_line.split()[1:] == [str(nobody.pw_uid)] * 4
    assert os.stat(d.data_dir).st_uid == nobody.pw_uid


def test_plugin_is_lazy_and_discoverable_from_any_directory(tmp_path):
    code = (
        "import sys\n"
        "from twisted.plugin import getPlugins\n"
        "from twisted.application.service import IServiceMaker\n"
        "names = [p.tapname for p in getPlugins(IServiceMaker)]\n"
        "assert 'netapps' in names, names\n"
        "loaded = [m for m in sys.modules if m.startswith('twisted_netapps')]\n"
        "assert loaded == [], loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True, timeout=60)
    out = subprocess.run([TWISTD, "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert "netapps" in out.stdout


def test_taken_port_fails_a_daemonized_start_too(tmp_path):
    # Without -n twistd forks and its parent waits on a status pipe. The port
    # is bound before that (in makeService), so the failure is the one line
    # on the terminal, before any fork, log file, pid file or data directory.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        log = tmp_path / "daemon.log"
        result = subprocess.run(
            [TWISTD, f"--pidfile={tmp_path / 'p.pid'}", "-l", str(log), "netapps", f"--data-dir={tmp_path / 'd'}",
             "--services=uppercase", f"--listen=uppercase=tcp:{port}:interface=127.0.0.1"],
            capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
        )
    _one_line_error(result, f"uppercase: cannot listen on tcp:{port}:interface=127.0.0.1: address already in use")
    assert result.returncode == 1
    assert not (tmp_path / "p.pid").exists() and not (tmp_path / "d").exists()


def test_netapps_stats_command_reads_the_daemon_counters(upper):
    with socket.create_connection(upper.address("uppercase"), timeout=5) as s:
        s.sendall(b"x\n")
        s.makefile("rb").readline()
    upper.stop()
    out = subprocess.run([NETAPPS, "stats", "--data-dir", str(upper.data_dir)], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0
    assert "uppercase: " in out.stdout and "requests=1" in out.stdout and "connections=1" in out.stdout
    out = subprocess.run([NETAPPS, "stats", "--data-dir", str(upper.data_dir / "nope")], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 1 and f"no data directory at {upper.data_dir / 'nope'} (from --data-dir)" in out.stderr
    assert not (upper.data_dir / "nope").exists()  # a read-only command creates nothing


@pytest.mark.interop
def test_listen_backlog_is_the_configured_one(netapps_daemon):
    ss = require_tool("ss")
    d = netapps_daemon(["uppercase"], listen=LOCAL, sets=["uppercase.listen_backlog=777"])
    host, port = d.address("uppercase")
    out = subprocess.run([ss, "-Hltn", f"sport = :{port}"], capture_output=True, text=True, timeout=10).stdout
    # for a listening socket, ss shows the backlog in the Send-Q column
    assert out.split()[2] == "777", out
