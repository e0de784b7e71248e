"""Peers for the SMTP benchmark (and the Postfix interop test): a private Postfix
instance and an aiosmtpd server writing Maildir with fsync.

Both run as child processes of ours, on 127.0.0.1 and a port chosen here, with
all their files in a temporary directory; both are stopped by their own PIDs.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from benchlib import stop_process  # noqa: E402

POSTFIX = shutil.which("postfix", path="/usr/sbin:/usr/bin:" + os.environ.get("PATH", ""))
AIOSMTPD_PEER = Path(__file__).with_name("smtp_aiosmtpd_peer.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 20.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"peer exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.recv(100)
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing answers on 127.0.0.1:{port}") from None
            time.sleep(0.05)


def count_files(directory: Path) -> int:
    try:
        return len(os.listdir(directory))
    except FileNotFoundError:
        return 0


class PrivatePostfix:
    """``postfix -c <tmp>/conf``: smtpd on 127.0.0.1:<port>; mail for *domain* goes,
    via virtual(8), to ``<tmp>/vmail/<mailbox>/`` (a Maildir) whatever the local part."""

    def __init__(self, domain: str = "example.test", mailbox: str = "bench", port: int | None = None,
                 relay_networks: str = "127.0.0.0/8") -> None:
        if POSTFIX is None:
            raise RuntimeError("postfix is not installed")
        if os.geteuid() != 0:
            raise RuntimeError("a private Postfix instance needs root")
        self.port = port or free_port()
        self.domain = domain
        self.dir = Path(tempfile.mkdtemp(prefix="netapps-postfix-"))
        self.conf = self.dir / "conf"
        self.maildir = self.dir / "vmail" / mailbox
        self.log = self.dir / "maillog"
        self._mailbox = mailbox
        self._relay_networks = relay_networks

    def _write_config(self) -> None:
        import pwd
        import grp

        uid = pwd.getpwnam("postfix").pw_uid
        gid = grp.getgrnam("postfix").gr_gid
        for sub in ("conf", "queue", "data", "vmail"):
            (self.dir / sub).mkdir(mode=0o755, exist_ok=True)
        os.chown(self.dir / "data", uid, gid)
        os.chown(self.dir / "vmail", uid, gid)
        os.chmod(self.dir, 0o755)
        master = Path("/etc/postfix/master.cf").read_text()
        master = re.sub(r"^smtp\s+inet\s.*$", f"127.0.0.1:{self.port} inet n - n - - smtpd", master, count=1,
                        flags=re.M)
        (self.conf / "master.cf").write_text(master)
        (self.conf / "main.cf").write_text(f"""\
compatibility_level = 3.6
queue_directory = {self.dir}/queue
data_directory = {self.dir}/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = postfix.bench.test
mydomain = bench.test
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
virtual_mailbox_domains = {self.domain}
virtual_mailbox_base = {self.dir}/vmail
virtual_mailbox_maps = static:{self._mailbox}/
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
maillog_file = {self.log}
maillog_file_prefixes = {self.dir}
mynetworks = {self._relay_networks}
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtp_dns_support_level = disabled
""")

    def _postfix(self, action: str) -> None:
        # postfix(1) reports errors only on a terminal or syslog: run it under script(1)
        out = self.dir / f"postfix-{action}.out"
        subprocess.run(["script", "-qec", f"{POSTFIX} -c {self.conf} {action}", str(out)],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, timeout=60, check=False)

    def master_pid(self) -> int:
        return int((self.dir / "queue" / "pid" / "master.pid").read_text().split()[0])

    def __enter__(self) -> "PrivatePostfix":
        self._write_config()
        self._postfix("start")
        try:
            wait_port(self.port)
        except (TimeoutError, RuntimeError):
            out = "".join(p.read_text(errors="replace") for p in self.dir.glob("postfix-*.out"))
            self.__exit__()
            raise RuntimeError(f"private postfix did not start: {out}") from None
        return self

    def __exit__(self, *exc) -> None:
        try:
            pid = self.master_pid()
        except (FileNotFoundError, ValueError):
            pid = None
        self._postfix("stop")
        if pid is not None:
            deadline = time.monotonic() + 15
            while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            if Path(f"/proc/{pid}").exists():
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)

    def cpu_seconds(self) -> float:
        """CPU of the master and every live child (each with its reaped children)."""
        master = self.master_pid()
        total = _cpu(master)
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                except (FileNotFoundError, ProcessLookupError):
                    continue
                fields = stat.rsplit(")", 1)[1].split()
                if int(fields[1]) == master:
                    total += _cpu(int(entry))
        return total

    def delivered(self) -> int:
        return count_files(self.maildir / "new")


def _cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


class AiosmtpdMaildir:
    """``bench/smtp_aiosmtpd_peer.py`` as a child process."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="netapps-aiosmtpd-"))
        self.maildir = self.dir / "Maildir"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "AiosmtpdMaildir":
        self.proc = subprocess.Popen([sys.executable, str(AIOSMTPD_PEER), str(self.port), str(self.maildir)],
                                     stdin=subprocess.DEVNULL)
        wait_port(self.port, proc=self.proc)
        return self

    def __exit__(self, *exc) -> None:
        stop_process(self.proc, 10)
        shutil.rmtree(self.dir, ignore_errors=True)

    def delivered(self) -> int:
        return count_files(self.maildir / "new")
