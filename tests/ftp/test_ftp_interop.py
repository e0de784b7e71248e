"""ftp in the real daemon, driven by lftp, curl and the Debian ftp client (tnftp)."""

from __future__ import annotations

import subprocess

import pytest

from conftest import require_tool
from ftptestlib import PASSWORD, ftpd, random_file, sha256  # noqa: F401 (ftpd: the fixture)

pytestmark = pytest.mark.interop


def run(cmd, cwd, env=None, timeout=120, input_text=None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                          input=input_text, stdin=None if input_text is not None else subprocess.DEVNULL)


@pytest.fixture
def lftp_env(ftpd, tmp_path):
    """HOME with an .lftprc trusting the daemon's self-signed certificate (lftp verifies by default)."""
    require_tool("lftp")
    home = tmp_path / "home"
    home.mkdir()
    (home / ".lftprc").write_text(
        f"set ssl:ca-file {ftpd.data_dir / 'tls' / 'cert.pem'}\nset net:max-retries 1\nset net:timeout 20\n"
    )
    import os

    return {**os.environ, "HOME": str(home)}


def test_done_when_lftp_put_get_ls(ftpd, lftp_env, tmp_path):
    """The issue's acceptance command, verbatim (lftp negotiates AUTH TLS and PROT P by itself)."""
    work = tmp_path / "work"
    work.mkdir()
    digest = random_file(work / "big.bin", 20 * 1024 * 1024)
    _host, port = ftpd.address("ftp")
    result = run(["lftp", "-u", f"alice,{PASSWORD}", "-p", str(port), "127.0.0.1",
                  "-e", "put big.bin; get big.bin -o back.bin; ls; quit"], work, lftp_env)
    assert result.returncode == 0, result.stderr
    assert sha256(ftpd.home / "big.bin") == digest
    assert sha256(work / "back.bin") == digest
    assert " big.bin" in result.stdout


@pytest.mark.parametrize("setting", ["set ftp:ssl-force yes; set ftp:ssl-protect-data yes",
                                     "set ftp:ssl-allow no; set ftp:passive-mode no",
                                     "set ftp:ssl-allow no; set ftp:prefer-epsv yes"])
def test_lftp_modes_mirror_rename_mkdir_rm(ftpd, lftp_env, tmp_path, setting):
    work = tmp_path / "work"
    (work / "tree" / "sub").mkdir(parents=True)
    (work / "tree" / "a.txt").write_text("alpha\n")
    (work / "tree" / "sub" / "b.bin").write_bytes(bytes(range(256)) * 1000)
    _host, port = ftpd.address("ftp")
    script = (f"{setting}; mirror -R tree tree; mv tree/a.txt tree/c.txt; mkdir made; rmdir made; "
              "mirror tree back; rm tree/c.txt; cls -1 tree; quit")
    result = run(["lftp", "-u", f"alice,{PASSWORD}", "-p", str(port), "127.0.0.1", "-e", script], work, lftp_env)
    assert result.returncode == 0, result.stderr
    assert (work / "back" / "c.txt").read_text() == "alpha\n"
    assert (work / "back" / "sub" / "b.bin").read_bytes() == bytes(range(256)) * 1000
    assert not (ftpd.home / "tree" / "c.txt").exists() and not (ftpd.home / "made").exists()
    assert "sub" in result.stdout


def test_lftp_anonymous_reads_and_cannot_write(ftpd, lftp_env, tmp_path):
    _host, port = ftpd.address("ftp")
    result = run(["lftp", "-p", str(port), "127.0.0.1", "-e", "get pub/welcome.txt -o w.txt; quit"], tmp_path, lftp_env)
    assert result.returncode == 0, result.stderr
    assert "Welcome" in (tmp_path / "w.txt").read_text()
    (tmp_path / "up.txt").write_text("x")
    result = run(["lftp", "-p", str(port), "127.0.0.1", "-e", "put up.txt -o pub/up.txt; quit"], tmp_path, lftp_env)
    assert result.returncode != 0 and ("553" in result.stderr or "550" in result.stderr), result.stderr
    assert not (ftpd.root / "anonymous" / "pub" / "up.txt").exists()


def curl(ftpd, *args, tmp_path, user=f"alice:{PASSWORD}", path="/"):
    require_tool("curl")
    host, port = ftpd.address("ftp")
    cmd = ["curl", "-sS", "--max-time", "60", "-u", user, *args, f"ftp://{host}:{port}{path}"]
    return run(cmd, tmp_path)


@pytest.mark.parametrize("mode", [[], ["--disable-epsv"], ["-P", "-"], ["-P", "-", "--disable-eprt"]],
                         ids=["epsv", "pasv", "eprt", "port"])
def test_curl_list_nlst_download_upload_each_data_mode(ftpd, tmp_path, mode):
    (ftpd.home / "f.bin").write_bytes(b"\x00\xff" * 50000)
    result = curl(ftpd, *mode, tmp_path=tmp_path)
    assert result.returncode == 0 and " f.bin" in result.stdout, result.stderr
    result = curl(ftpd, *mode, "-l", tmp_path=tmp_path)  # NLST without an argument
    assert result.returncode == 0 and result.stdout.split() == ["f.bin"], result.stderr
    result = curl(ftpd, *mode, "-o", str(tmp_path / "f.bin"), tmp_path=tmp_path, path="/f.bin")
    assert result.returncode == 0 and (tmp_path / "f.bin").read_bytes() == b"\x00\xff" * 50000, result.stderr
    (tmp_path / "u.bin").write_bytes(b"up" * 70000)
    result = curl(ftpd, *mode, "-T", str(tmp_path / "u.bin"), tmp_path=tmp_path, path="/u.bin")
    assert result.returncode == 0 and (ftpd.home / "u.bin").read_bytes() == b"up" * 70000, result.stderr


def test_curl_resume_append_and_quote_commands(ftpd, tmp_path):
    payload = bytes(range(256)) * 4000
    (ftpd.home / "r.bin").write_bytes(payload)
    (tmp_path / "r.bin").write_bytes(payload[:12345])
    result = curl(ftpd, "-C", "-", "-o", str(tmp_path / "r.bin"), tmp_path=tmp_path, path="/r.bin")
    assert result.returncode == 0 and (tmp_path / "r.bin").read_bytes() == payload, result.stderr
    (tmp_path / "tail.bin").write_bytes(b"tail")
    result = curl(ftpd, "--append", "-T", str(tmp_path / "tail.bin"), tmp_path=tmp_path, path="/r.bin")
    assert result.returncode == 0 and (ftpd.home / "r.bin").read_bytes() == payload + b"tail", result.stderr
    result = curl(ftpd, "-Q", "MKD qdir", "-Q", "RNFR r.bin", "-Q", "RNTO qdir/moved.bin", "-l",
                  tmp_path=tmp_path, path="/qdir/")
    assert result.returncode == 0 and result.stdout.split() == ["moved.bin"], result.stderr
    result = curl(ftpd, "-I", tmp_path=tmp_path, path="/qdir/moved.bin")  # SIZE and MDTM
    assert f"Content-Length: {len(payload) + 4}" in result.stdout and "Last-Modified:" in result.stdout


def test_curl_ftps_ssl_reqd(ftpd, tmp_path):
    cert = str(ftpd.data_dir / "tls" / "cert.pem")
    digest = random_file(tmp_path / "s.bin", 3 * 1024 * 1024)
    result = curl(ftpd, "--ssl-reqd", "--cacert", cert, "-T", str(tmp_path / "s.bin"), tmp_path=tmp_path, path="/s.bin")
    assert result.returncode == 0, result.stderr
    assert sha256(ftpd.home / "s.bin") == digest
    result = curl(ftpd, "--ssl-reqd", "--cacert", cert, "-o", str(tmp_path / "back.bin"), tmp_path=tmp_path,
                  path="/s.bin")
    assert result.returncode == 0 and sha256(tmp_path / "back.bin") == digest, result.stderr
    result = curl(ftpd, "--ssl-reqd", "--cacert", cert, tmp_path=tmp_path)
    assert result.returncode == 0 and " s.bin" in result.stdout, result.stderr


def test_curl_anonymous_and_bad_login(ftpd, tmp_path):
    result = curl(ftpd, tmp_path=tmp_path, user="anonymous:me@example.test", path="/pub/welcome.txt")
    assert result.returncode == 0 and "Welcome" in result.stdout, result.stderr
    result = curl(ftpd, tmp_path=tmp_path, user="alice:wrong")
    assert result.returncode == 67  # CURLE_LOGIN_DENIED


def test_debian_ftp_client(ftpd, tmp_path):
    ftp = require_tool("ftp", "tnftp")
    host, port = ftpd.address("ftp")
    digest = random_file(tmp_path / "t.bin", 2 * 1024 * 1024)
    script = (f"open {host} {port}\nuser alice \"{PASSWORD}\"\nbinary\nput t.bin\nls\n"
              "get t.bin back.bin\nmkdir d\nrmdir d\nbye\n")
    result = run([ftp, "-n", "-v"], tmp_path, input_text=script)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "226" in result.stdout and " t.bin" in result.stdout
    assert sha256(ftpd.home / "t.bin") == digest
    assert sha256(tmp_path / "back.bin") == digest
