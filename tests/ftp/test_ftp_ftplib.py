"""ftp in the real daemon, driven by Python's ftplib (always available)."""

from __future__ import annotations

import ftplib
import io
import socket
import threading
import time

import pytest

from ftptestlib import PASSWORD, ftpd, login, random_file, sha256  # noqa: F401 (ftpd: the fixture)
from netapps_daemon import wait_for


def test_login_ok_and_bad(ftpd):
    client = login(ftpd)
    assert client.pwd() == "/"
    client.quit()
    host, port = ftpd.address("ftp")
    bad = ftplib.FTP(timeout=10)
    bad.connect(host, port)
    with pytest.raises(ftplib.error_perm, match="^530"):
        bad.login("alice", "wrong")
    with pytest.raises(ftplib.error_perm, match="^530"):
        bad.login("nobody", "wrong")
    bad.close()


def test_commands_before_login_get_530_and_out_of_order_503(ftpd):
    host, port = ftpd.address("ftp")
    client = ftplib.FTP(timeout=10)
    client.connect(host, port)
    for command in ("PWD", "CWD /", "LIST", "PASV", "RETR x", "TYPE I"):
        with pytest.raises(ftplib.error_perm, match="^530"):
            client.sendcmd(command)
    with pytest.raises(ftplib.error_perm, match="^503"):
        client.sendcmd("PASS x")
    assert client.sendcmd("SYST").startswith("215 UNIX")
    client.login("alice", PASSWORD)
    with pytest.raises(ftplib.error_perm, match="^503"):
        client.sendcmd("RNTO y")
    with pytest.raises(ftplib.error_perm, match="^500"):
        client.sendcmd("BOGUS")
    with pytest.raises(ftplib.error_perm, match="^502"):
        client.sendcmd("ACCT x")
    client.quit()


def test_feat_opts_help_stat(ftpd):
    client = login(ftpd)
    feat = client.sendcmd("FEAT")
    for feature in ("UTF8", "EPSV", "EPRT", "MLST", "REST STREAM", "SIZE", "MDTM", "TVFS", "AUTH TLS", "PBSZ", "PROT"):
        assert f"\n {feature}" in feat
    assert client.sendcmd("OPTS UTF8 ON").startswith("200")
    assert client.sendcmd("HELP").startswith("214")
    assert "Logged in as alice" in client.sendcmd("STAT")
    client.quit()


@pytest.mark.parametrize("mode", ["PASV", "EPSV", "PORT", "EPRT"])
def test_listing_over_every_data_mode(ftpd, mode):
    (ftpd.home / "a.txt").write_bytes(b"alpha\n")
    (ftpd.home / "sub").mkdir()
    client = login(ftpd)
    client.set_pasv(mode in ("PASV", "EPSV"))
    lines = []
    if mode == "EPSV":  # ftplib sends EPSV/EPRT only over IPv6: by hand
        port = int(client.sendcmd("EPSV").split("|||")[1].rstrip("|)"))
        assert client.sendcmd("TYPE A").startswith("200")
        data = socket.create_connection(("127.0.0.1", port), timeout=10)
        client.putcmd("LIST")
        assert client.getresp()[:3] in ("125", "150")  # 125 once the server has accepted it
        lines = data.makefile("rb").read().decode().splitlines()
        data.close()
        assert client.voidresp().startswith("226")
    elif mode == "EPRT":
        server = socket.create_server(("127.0.0.1", 0))
        port = server.getsockname()[1]
        assert client.sendcmd(f"EPRT |1|127.0.0.1|{port}|").startswith("200")
        client.putcmd("LIST")
        assert client.getresp().startswith("150")
        conn, _ = server.accept()
        lines = conn.makefile("rb").read().decode().splitlines()
        conn.close()
        server.close()
        assert client.voidresp().startswith("226")
    else:
        client.retrlines("LIST", lines.append)
    assert any(line.endswith(" a.txt") and line.startswith("-rw") for line in lines), lines
    assert any(line.endswith(" sub") and line.startswith("d") for line in lines), lines
    client.quit()


def test_nlst_without_argument_and_mlsd_mlst(ftpd):
    (ftpd.home / "one").write_bytes(b"1")
    (ftpd.home / "two").write_bytes(b"22")
    client = login(ftpd)
    assert sorted(client.nlst()) == ["one", "two"]
    facts = dict(client.mlsd())
    assert facts["two"]["size"] == "2" and facts["two"]["type"] == "file"
    mlst = client.sendcmd("MLST two")
    assert "size=2;" in mlst and mlst.startswith("250-")
    client.quit()


def test_20_megabyte_round_trip_sha256(ftpd, tmp_path):
    source = tmp_path / "big.bin"
    digest = random_file(source, 20 * 1024 * 1024)
    client = login(ftpd)
    with open(source, "rb") as f:
        client.storbinary("STOR big.bin", f, blocksize=1 << 16)
    assert sha256(ftpd.home / "big.bin") == digest
    assert client.size("big.bin") == 20 * 1024 * 1024
    back = tmp_path / "back.bin"
    with open(back, "wb") as f:
        client.retrbinary("RETR big.bin", f.write, blocksize=1 << 16)
    assert sha256(back) == digest
    client.quit()
    assert not [p for p in ftpd.home.iterdir() if p.name.startswith(".netapps-ftp-")]
    ftpd.stop()
    stats = ftpd.stats()["ftp"]
    assert stats["splice_transfers"] == 1 and stats["sendfile_transfers"] == 1
    assert stats["bytes_received"] == stats["bytes_sent"] == 20 * 1024 * 1024


def test_ascii_mode_converts_line_ends_and_binary_uses_sendfile(ftpd):
    (ftpd.home / "text.txt").write_bytes(b"one\ntwo\n")
    client = login(ftpd)
    raw = []
    client.voidcmd("TYPE A")
    conn = client.transfercmd("RETR text.txt")
    raw.append(conn.makefile("rb").read())
    conn.close()
    client.voidresp()
    assert raw == [b"one\r\ntwo\r\n"]
    client.storlines("STOR back.txt", io.BytesIO(b"a\nb\n"))  # ftplib sends CRLF lines
    assert (ftpd.home / "back.txt").read_bytes() == b"a\nb\n"
    out = io.BytesIO()
    client.retrbinary("RETR text.txt", out.write)  # small: read whole, one write
    assert out.getvalue() == b"one\ntwo\n"
    (ftpd.home / "big.txt").write_bytes(b"line\n" * 100000)
    out = io.BytesIO()
    client.retrbinary("RETR big.txt", out.write)  # binary, plain TCP: sendfile
    assert out.getvalue() == b"line\n" * 100000
    lines = []
    client.retrlines("RETR big.txt", lines.append)  # ASCII: the producer, CRLF on the wire
    assert lines == ["line"] * 100000
    client.quit()
    ftpd.stop()
    assert ftpd.stats()["ftp"]["sendfile_transfers"] == 1


def test_rest_resume_retr_and_stor(ftpd, tmp_path):
    payload = bytes(range(256)) * 4096  # 1 MiB
    (ftpd.home / "r.bin").write_bytes(payload)
    client = login(ftpd)
    out = io.BytesIO()
    client.retrbinary("RETR r.bin", out.write, rest=1000)
    assert out.getvalue() == payload[1000:]
    (ftpd.home / "s.bin").write_bytes(payload[:5000])
    client.storbinary("STOR s.bin", io.BytesIO(payload[5000:]), rest=5000)
    assert (ftpd.home / "s.bin").read_bytes() == payload
    with pytest.raises(ftplib.error_perm, match="^554"):
        client.retrbinary("RETR r.bin", out.write, rest=len(payload) + 1)
    client.quit()


def test_appe_rename_mkdir_rmdir_delete_size_mdtm(ftpd):
    client = login(ftpd)
    client.storbinary("STOR f.txt", io.BytesIO(b"abc"))
    client.storbinary("APPE f.txt", io.BytesIO(b"def"))
    assert (ftpd.home / "f.txt").read_bytes() == b"abcdef"
    client.rename("f.txt", "g.txt")
    assert not (ftpd.home / "f.txt").exists() and (ftpd.home / "g.txt").exists()
    with pytest.raises(ftplib.error_perm, match="^550"):
        client.sendcmd("RNFR missing.txt")
    assert client.mkd("dir") == "/dir"
    client.cwd("dir")
    assert client.pwd() == "/dir"
    with pytest.raises(ftplib.error_perm, match="^550"):
        client.size("/dir")
    client.cwd("..")
    client.rmd("dir")
    assert client.size("g.txt") == 6
    assert len(client.voidcmd("MDTM g.txt").split()[1]) == 14
    client.delete("g.txt")
    assert not (ftpd.home / "g.txt").exists()
    with pytest.raises(ftplib.error_perm, match="^550"):
        client.delete("g.txt")
    with pytest.raises(ftplib.error_temp, match="^425"):
        client.sendcmd("STOU")  # no data connection prepared
    client.storbinary("STOR u.txt", io.BytesIO(b"first"))
    conn, _size = client.ntransfercmd("STOU u.txt")
    assert client.lastresp in ("125", "150")
    conn.sendall(b"second")
    conn.close()
    client.voidresp()
    client.quit()
    assert (ftpd.home / "u.txt").read_bytes() == b"first"
    assert (ftpd.home / "u.txt.1").read_bytes() == b"second"


def test_utf8_names_are_stored_as_utf8(ftpd):
    client = login(ftpd)
    client.encoding = "utf-8"
    client.sendcmd("OPTS UTF8 ON")
    client.storbinary("STOR grüße-日本.txt", io.BytesIO(b"x"))
    assert (ftpd.home / "grüße-日本.txt").read_bytes() == b"x"
    assert "grüße-日本.txt" in client.nlst()
    client.quit()


def test_non_utf8_byte_gets_a_reply(ftpd):
    host, port = ftpd.address("ftp")
    with socket.create_connection((host, port), timeout=10) as s:
        f = s.makefile("rb")
        f.readline()
        s.sendall(b"US\xffER x\r\nNOOP\r\n")
        assert f.readline().startswith(b"500")
        assert f.readline().startswith(b"200")


def test_anonymous_reads_pub_and_cannot_write(ftpd):
    client = login(ftpd, "anonymous", "guest@example.test")
    assert "pub" in client.nlst()
    out = io.BytesIO()
    client.retrbinary("RETR pub/welcome.txt", out.write)
    assert b"Welcome" in out.getvalue()
    for action in (
        lambda: client.storbinary("STOR pub/x.txt", io.BytesIO(b"x")),
        lambda: client.mkd("newdir"),
        lambda: client.delete("pub/welcome.txt"),
        lambda: client.sendcmd("RNFR pub/welcome.txt"),
    ):
        with pytest.raises(ftplib.error_perm, match="^55[03]"):
            action()
    client.quit()
    assert not (ftpd.root / "anonymous" / "pub" / "x.txt").exists()


def test_traversal_attempts_are_refused(ftpd, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    (ftpd.home / "escape").symlink_to(tmp_path)
    (ftpd.home / "passwd").symlink_to("/etc/passwd")
    (ftpd.home / "inside").symlink_to(ftpd.home)
    client = login(ftpd)
    for path in ("../../secret.txt", "/../../../etc/passwd", "escape/secret.txt", "passwd",
                 "..%2f..%2fsecret.txt", "inside/../../secret.txt"):
        with pytest.raises(ftplib.error_perm, match="^550"):
            client.retrbinary(f"RETR {path}", lambda data: None)
    with pytest.raises(ftplib.error_perm, match="^550"):
        client.cwd("escape")
    with pytest.raises(ftplib.error_perm, match="^550"):
        client.storbinary("STOR escape/planted.txt", io.BytesIO(b"x"))
    assert not (tmp_path / "planted.txt").exists()
    client.cwd("../../..")
    assert client.pwd() == "/"
    names = client.nlst()
    assert "escape" not in names and "passwd" not in names and "inside" in names
    client.quit()


def test_bounce_attempt_is_refused(ftpd):
    client = login(ftpd)
    for command in ("PORT 10,0,0,1,0,80", "EPRT |1|10.0.0.1|8080|", "PORT 127,0,0,2,200,10",
                    "PORT 127,0,0,1,0,25"):
        with pytest.raises(ftplib.error_perm, match="^50[14]"):
            client.sendcmd(command)
    client.quit()


def test_passive_connection_from_another_address_is_refused(ftpd):
    client = login(ftpd)
    port = int(client.sendcmd("EPSV").split("|||")[1].rstrip("|)"))
    thief = socket.socket()
    thief.bind(("127.0.0.2", 0))
    thief.settimeout(5)
    thief.connect(("127.0.0.1", port))
    assert thief.recv(10) == b""  # closed at once
    thief.close()
    own = socket.create_connection(("127.0.0.1", port), timeout=10)
    client.putcmd("NLST")
    assert client.getresp()[:3] in ("125", "150")
    own.makefile("rb").read()
    own.close()
    assert client.voidresp().startswith("226")
    client.quit()


def test_commands_answered_while_a_passive_connection_is_pending(ftpd):
    client = login(ftpd)
    client.sendcmd("PASV")
    assert client.sendcmd("NOOP").startswith("200")
    assert client.sendcmd("PWD").startswith("257")
    # A transfer whose data connection never comes ends in 425; replies stay in step.
    client.putcmd("LIST")
    assert client.getresp().startswith("150")
    with pytest.raises(ftplib.error_temp, match="^425"):
        client.voidresp()
    assert client.sendcmd("NOOP").startswith("200")
    client.quit()


def test_abor_during_a_transfer(ftpd):
    (ftpd.home / "huge.bin").write_bytes(b"\0" * (64 * 1024 * 1024))
    client = login(ftpd)
    client.voidcmd("TYPE I")
    conn = client.transfercmd("RETR huge.bin")
    conn.recv(65536)
    client.putcmd("ABOR")  # plain ABOR (ftplib's abort() uses TCP urgent data; covered below)
    replies = [client.getline(), client.getline()]
    conn.close()
    assert replies[0].startswith("426") and replies[1].startswith("226"), replies
    assert client.sendcmd("NOOP").startswith("200")
    conn = client.transfercmd("RETR huge.bin")
    conn.recv(65536)
    client.abort()  # Telnet IP/Synch + ABOR as urgent data
    conn.close()
    client.sendcmd("NOOP")
    client.quit()


def test_stor_broken_mid_way_leaves_no_file(ftpd):
    client = login(ftpd)
    client.voidcmd("TYPE I")
    conn = client.transfercmd("STOR partial.bin")
    conn.sendall(b"x" * 100000)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    conn.close()  # RST: a broken upload
    with pytest.raises(ftplib.error_temp, match="^426"):
        client.voidresp()
    client.quit()
    assert not (ftpd.home / "partial.bin").exists()
    wait_for(lambda: not [p for p in ftpd.home.iterdir() if p.name.startswith(".netapps-ftp-")], what="temp removed")


def test_line_too_long_and_idle(netapps_daemon, tmp_path):
    from ftptestlib import start_ftp

    daemon = start_ftp(netapps_daemon, tmp_path / "d", sets=["ftp.idle_timeout=1.0", "ftp.max_line=512"])
    host, port = daemon.address("ftp")
    with socket.create_connection((host, port), timeout=10) as s:
        f = s.makefile("rb")
        f.readline()
        s.sendall(b"NOOP " + b"x" * 2000 + b"\r\nNOOP\r\n")
        assert f.readline().startswith(b"500")
        assert f.readline().startswith(b"200")
        assert f.readline().startswith(b"421")  # idle timeout
        assert f.readline() == b""


def test_shutdown_sends_421(ftpd):
    client = login(ftpd)
    ftpd.stop()
    assert client.getline().startswith("421")


def test_concurrent_sessions(ftpd):
    (ftpd.home / "small.txt").write_bytes(b"hello\n" * 100)
    errors = []

    def session():
        try:
            c = login(ftpd)
            for _ in range(5):
                out = io.BytesIO()
                c.retrbinary("RETR small.txt", out.write)
                assert out.getvalue() == b"hello\n" * 100
                c.nlst()
            c.quit()
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=session) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors


def test_trickled_command_line_and_slow_login_hit_their_deadlines(netapps_daemon, tmp_path):
    from ftptestlib import start_ftp

    daemon = start_ftp(netapps_daemon, tmp_path / "d", sets=["ftp.command_timeout=1.0", "ftp.login_timeout=2.0"])
    host, port = daemon.address("ftp")
    with socket.create_connection((host, port), timeout=10) as s:
        f = s.makefile("rb")
        f.readline()
        for byte in b"NOOP":  # one byte at a time: the idle timer alone would never fire
            s.sendall(bytes([byte]))
            time.sleep(0.3)
        assert f.readline().startswith(b"421")
    with socket.create_connection((host, port), timeout=10) as s:
        f = s.makefile("rb")
        f.readline()
        s.sendall(b"NOOP\r\n")
        assert f.readline().startswith(b"200")
        assert f.readline().startswith(b"421")  # never logged in


def test_connections_per_address_are_capped(netapps_daemon, tmp_path):
    from ftptestlib import start_ftp

    daemon = start_ftp(netapps_daemon, tmp_path / "d", sets=["ftp.max_connections_per_address=2"])
    host, port = daemon.address("ftp")
    kept = [socket.create_connection((host, port), timeout=10) for _ in range(2)]
    for s in kept:
        assert s.makefile("rb").readline().startswith(b"220")
    with socket.create_connection((host, port), timeout=10) as extra:
        assert extra.makefile("rb").readline().startswith(b"421")
    for s in kept:
        s.close()


def test_passive_port_range_and_announced_address(netapps_daemon, tmp_path):
    from ftptestlib import start_ftp
    from netapps_daemon import free_port

    low = free_port()
    low = min(max(low, 20000), 60000)
    daemon = start_ftp(netapps_daemon, tmp_path / "d",
                       sets=[f"ftp.passive_ports=[{low}, {low + 40}]", 'ftp.passive_address="127.0.0.9"'])
    client = login(daemon)
    for _ in range(5):
        reply = client.sendcmd("PASV")
        numbers = [int(n) for n in reply.split("(")[1].split(")")[0].split(",")]
        assert numbers[:4] == [127, 0, 0, 9]  # the announced (NAT) address
        assert low <= numbers[4] * 256 + numbers[5] <= low + 40
    port = int(client.sendcmd("EPSV").split("|||")[1].rstrip("|)"))
    assert low <= port <= low + 40
    data = socket.create_connection(("127.0.0.1", port), timeout=10)  # EPSV: the control address
    client.putcmd("NLST")
    assert client.getresp()[:3] in ("125", "150")
    data.makefile("rb").read()
    data.close()
    assert client.voidresp().startswith("226")
    client.quit()


def test_stalled_data_connection_times_out_and_anonymous_drop_box(netapps_daemon, tmp_path):
    from ftptestlib import start_ftp

    daemon = start_ftp(netapps_daemon, tmp_path / "d", sets=["ftp.data_timeout=1.0", 'ftp.anonymous_upload="incoming"'])
    (daemon.home / "huge.bin").write_bytes(b"\0" * (32 * 1024 * 1024))
    client = login(daemon)
    client.voidcmd("TYPE I")
    conn = client.transfercmd("RETR huge.bin")  # and never read: the sender stalls
    with pytest.raises(ftplib.error_temp, match="^426"):
        client.voidresp()
    conn.close()
    assert client.sendcmd("NOOP").startswith("200")
    client.quit()
    anonymous = login(daemon, "anonymous", "guest@example.test")
    anonymous.storbinary("STOR incoming/drop.txt", io.BytesIO(b"dropped"))
    assert (daemon.root / "anonymous" / "incoming" / "drop.txt").read_bytes() == b"dropped"
    with pytest.raises(ftplib.error_perm, match="^55[03]"):  # no overwrite, no delete
        anonymous.storbinary("STOR incoming/drop.txt", io.BytesIO(b"again"))
    with pytest.raises(ftplib.error_perm, match="^550"):
        anonymous.delete("incoming/drop.txt")
    anonymous.quit()


@pytest.mark.parametrize("setting, message", [
    ("ftp.passive_ports=[80, 90]", "passive_ports"),
    ("ftp.passive_ports=[3000]", "passive_ports"),
    ('ftp.anonymous_upload="../up"', "anonymous_upload"),
    ('ftp.root="/proc/nope"', "cannot prepare"),
])
def test_bad_settings_are_one_line_errors(tmp_path, setting, message):
    from netapps_daemon import run_twistd

    result = run_twistd(["ftp"], tmp_path / "data", sets=[setting], listen={"ftp": ["tcp:0:interface=127.0.0.1"]})
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr + result.stdout
