"""Real DNS peers for the dns and resolver tests and benchmarks: a BIND hierarchy, Unbound.

:func:`bind_hierarchy` starts one ``named`` in the foreground whose views
serve a root zone, ``test.``, ``example.test.`` and ``other.test.`` each on
its own loopback address (views matched on the destination address), so a
resolver walking it sees a real chain: root -> TLD -> authoritative, with a
glue-less out-of-bailiwick delegation (``other.test.`` is served by
``ns.elsewhere.example.test.``), cross-zone CNAMEs, NXDOMAIN/NODATA, a
wildcard and an answer too big for UDP.

:func:`unbound` starts Unbound iterating from hints on such a hierarchy.
Unbound sends iterative queries to port 53 only, so comparisons with it put
the hierarchy on port 53 of random 127.x addresses (needs root).

BIND listens only on addresses configured on an interface (it scans them;
it cannot bind 127.0.0.2 the way other servers can), so the hierarchy's
addresses are added to ``lo`` as /32 aliases for the duration
(:class:`LoopbackAliases`, needs root) and removed in ``finally``; they are
random 127.x.y.z addresses, so parallel runs do not share them.

Both run in a temp dir, log there, and are stopped by PID.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from netapps_daemon import wait_for

BIG_TXT_RECORDS = 60


def tool(name: str) -> str | None:
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin", "/usr/local/sbin"])
    return shutil.which(name, path=search)


def port_free(address: str, port: int) -> bool:
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((address, port))
            except OSError:
                return False
    return True


def random_loopback_addresses(count: int, port: int) -> list[str]:
    """*count* consecutive 127.x.y.z addresses free on *port* (random x, y)."""
    rng = random.SystemRandom()
    for _ in range(50):
        base = f"127.{rng.randint(60, 250)}.{rng.randint(1, 250)}"
        addresses = [f"{base}.{i}" for i in range(2, 2 + count)]
        if all(port_free(a, port) for a in addresses):
            return addresses
    raise RuntimeError(f"no free loopback addresses on port {port}")


def free_udp_tcp_port(addresses: list[str]) -> int:
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((addresses[0], 0))
            port = s.getsockname()[1]
        if all(port_free(a, port) for a in addresses):
            return port
    raise RuntimeError("no port free on all hierarchy addresses")


class LoopbackAliases:
    """Context manager: add /32 *addresses* to ``lo`` (those not there yet); remove them after."""

    def __init__(self, addresses: list[str]) -> None:
        self.addresses = addresses
        self.added: list[str] = []

    def __enter__(self) -> "LoopbackAliases":
        ip = tool("ip")
        if ip is None:
            raise FileNotFoundError("ip")
        present = subprocess.run([ip, "-4", "-o", "addr", "show", "dev", "lo"], capture_output=True, text=True).stdout
        try:
            for address in self.addresses:
                if f" {address}/" in present:
                    continue
                subprocess.run([ip, "addr", "add", f"{address}/32", "dev", "lo"], check=True, capture_output=True)
                self.added.append(address)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        ip = tool("ip")
        for address in self.added:
            subprocess.run([ip, "addr", "del", f"{address}/32", "dev", "lo"], capture_output=True)
        self.added = []


@dataclass
class Process:
    proc: subprocess.Popen
    log_path: Path

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@dataclass
class Hierarchy:
    root: str  # address of the root server
    tld: str  # test.
    domain: str  # example.test.
    other: str  # other.test. (its NS name lives in example.test.)
    port: int
    workdir: Path
    named: Process

    @property
    def hints_text(self) -> str:
        return f".  3600000 NS a.root-servers.test.\na.root-servers.test. 3600000 A {self.root}\n"

    def write_hints(self, path: Path) -> Path:
        path.write_text(self.hints_text)
        return path

    def stop(self) -> None:
        self.named.stop()


def _zones(root: str, tld: str, domain: str, other: str) -> dict[str, str]:
    big = "\n".join(f'big 300 IN TXT "record {i:03d} of a set too big for a 1232-byte UDP answer"' for i in range(BIG_TXT_RECORDS))
    return {
        ".": f"""$TTL 86400
.                    IN SOA a.root-servers.test. hostmaster.test. 1 1800 900 604800 3600
.                    IN NS  a.root-servers.test.
test.         172800 IN NS  ns1.test.
ns1.test.     172800 IN A   {tld}
a.root-servers.test. 172800 IN A {root}
""",
        "test.": f"""$TTL 86400
$ORIGIN test.
@            IN SOA ns1 hostmaster 1 1800 900 604800 900
@            IN NS  ns1
ns1          IN A   {tld}
a.root-servers IN A {root}
example      IN NS  ns1.example
ns1.example  IN A   {domain}
; glue-less, out of bailiwick: the resolver must look up ns.elsewhere.example.test itself
other        IN NS  ns.elsewhere.example.test.
; lame: delegated to a server that does not serve it (REFUSED): SERVFAIL
broken       IN NS  ns.elsewhere.example.test.
""",
        "example.test.": f"""$TTL 300
$ORIGIN example.test.
@            IN SOA ns1 hostmaster 1 1800 900 604800 60
@            IN NS  ns1
ns1          IN A   {domain}
ns.elsewhere IN A   {other}
www      600 IN A   192.0.2.80
mail         IN A   192.0.2.25
@            IN MX  10 mail
alias        IN CNAME www
ext          IN CNAME www.other.test.
*.wild       IN A   192.0.2.99
{big}
""",
        "other.test.": """$TTL 300
$ORIGIN other.test.
@            IN SOA ns.elsewhere.example.test. hostmaster 1 1800 900 604800 120
@            IN NS  ns.elsewhere.example.test.
www          IN A   192.0.2.81
""",
    }


def _cold_tld_zones(count: int, tld: str, domain: str) -> tuple[str, dict[str, str], dict[str, str]]:
    """Extra TLDs ``c0.`` ... for cold-cache measurements in a warm process.

    Returns (lines for the root zone, zones for the TLD server, zones for the
    domain server): ``www.example.cK.`` needs a root referral, a TLD
    referral and an answer, none of which any earlier lookup cached.
    """
    root_lines = []
    tld_zones, domain_zones = {}, {}
    for k in range(count):
        root_lines.append(f"c{k}. 172800 IN NS ns1.c{k}.\nns1.c{k}. 172800 IN A {tld}\n")
        tld_zones[f"c{k}."] = (
            f"$TTL 86400\n@ IN SOA ns1 hostmaster 1 1800 900 604800 900\n@ IN NS ns1\nns1 IN A {tld}\n"
            f"example IN NS ns1.example\nns1.example IN A {domain}\n"
        )
        domain_zones[f"example.c{k}."] = (
            "$TTL 300\n@ IN SOA ns1 hostmaster 1 1800 900 604800 60\n@ IN NS ns1\n"
            f"ns1 IN A {domain}\nwww IN A 192.0.2.80\n"
        )
    return "".join(root_lines), tld_zones, domain_zones


def bind_hierarchy(workdir: Path, *, port: int | None = None, addresses: list[str] | None = None,
                   cold_tlds: int = 0) -> Hierarchy:
    """Start ``named`` serving the hierarchy; the caller must ``stop()`` it.

    *cold_tlds* adds TLDs ``c0.`` ... ``c<N-1>.`` (each with ``www.example.cK.``)
    for measuring cold resolutions without restarting the resolver.
    """
    named = tool("named")
    if named is None:
        raise FileNotFoundError("named")
    workdir.mkdir(parents=True, exist_ok=True)
    addresses = addresses or ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
    if port is None:
        port = free_udp_tcp_port(addresses)
    root, tld, domain, other = addresses
    zones = _zones(root, tld, domain, other)
    extra_root, tld_zones, domain_zones = _cold_tld_zones(cold_tlds, tld, domain)
    zones["."] += extra_root
    extra = {root: {}, tld: tld_zones, domain: domain_zones, other: {}}
    views = []
    for (zone, text), address in zip(zones.items(), addresses):
        statements = []
        for name, body in {zone: text, **extra[address]}.items():
            filename = "root.zone" if name == "." else f"{name}zone"
            (workdir / filename).write_text(body)
            statements.append(f'    zone "{name}" {{ type primary; file "{workdir / filename}"; }};')
        joined = "\n".join(statements)
        views.append(f"""
view "v{address.replace('.', '_')}" {{
    match-clients {{ any; }};
    match-destinations {{ {address}; }};
    recursion no;
{joined}
}};""")
    conf = named_conf(workdir, port, addresses, "notify no;\nminimal-responses no;", "".join(views))
    log_path = workdir / "named.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [named, "-g", "-c", str(conf), "-n", "1"], stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    process = Process(proc, log_path)
    hierarchy = Hierarchy(root, tld, domain, other, port, workdir, process)
    try:
        wait_for(lambda: _ready(process), 20, what="named to load its zones")
    except BaseException:
        process.stop()
        raise
    return hierarchy


def named_conf(workdir: Path, port: int, addresses: list[str], options: str, rest: str) -> Path:
    """Write ``workdir/named.conf`` for a private foreground ``named``: its files in
    *workdir*, IPv4 on *addresses*:*port* only, no recursion, no DNSSEC validation,
    no rndc; *options* go inside ``options {}``, *rest* (zones, views) after it."""
    conf = workdir / "named.conf"
    indented = "".join(f"    {line}\n" for line in options.splitlines() if line.strip())
    conf.write_text(f"""
options {{
    directory "{workdir}";
    pid-file "{workdir}/named.pid";
    session-keyfile "{workdir}/session.key";
    managed-keys-directory "{workdir}";
    listen-on port {port} {{ {'; '.join(addresses)}; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
{indented}}};
controls {{ }};
{rest}
""")
    return conf


def _ready(process: Process):
    if process.proc.poll() is not None:
        raise RuntimeError(f"named exited with {process.proc.returncode}:\n{process.log}")
    return "running" in process.log and "all zones loaded" in process.log


def unbound(workdir: Path, hierarchy: Hierarchy, *, listen: str = "127.0.0.1", port: int | None = None,
            extra: str = "") -> tuple[Process, int]:
    """Start Unbound (one thread) resolving *hierarchy* from hints; (process, port)."""
    binary = tool("unbound")
    if binary is None:
        raise FileNotFoundError("unbound")
    if hierarchy.port != 53:
        raise ValueError("Unbound iterates to port 53 only: start the hierarchy on port 53")
    workdir.mkdir(parents=True, exist_ok=True)
    if port is None:
        port = free_udp_tcp_port([listen])
    hints = hierarchy.write_hints(workdir / "unbound.hints")
    conf = workdir / "unbound.conf"
    conf.write_text(f"""
server:
    interface: {listen}@{port}
    port: {port}
    do-daemonize: no
    use-syslog: no
    logfile: "{workdir}/unbound.log"
    verbosity: 1
    username: ""
    chroot: ""
    directory: "{workdir}"
    pidfile: "{workdir}/unbound.pid"
    num-threads: 1
    do-ip6: no
    access-control: 127.0.0.0/8 allow
    root-hints: "{hints}"
    do-not-query-localhost: no
    module-config: "iterator"
    qname-minimisation: no
    harden-referral-path: no
    minimal-responses: yes
    # Unbound answers the special-use "test." itself (RFC 6761) unless told not to
    local-zone: "test." nodefault
{extra}
remote-control:
    control-enable: no
""")
    log_path = workdir / "unbound.stderr"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([binary, "-d", "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    process = Process(proc, log_path)

    def ready():
        if proc.poll() is not None:
            raise RuntimeError(f"unbound exited with {proc.returncode}:\n{process.log}\n{(workdir / 'unbound.log').read_text(errors='replace') if (workdir / 'unbound.log').exists() else ''}")
        return not port_free(listen, port)

    try:
        wait_for(ready, 20, what="unbound to listen")
    except BaseException:
        process.stop()
        raise
    return process, port


def demo_zones_on(addresses: list[str], directory: Path) -> Path:
    """The packaged demo zones, copied to *directory*/zones with 127.0.0.2-5 moved to *addresses*."""
    demo = Path(__file__).resolve().parent.parent / "twisted_netapps" / "data" / "zones"
    mapping = {str(i): addresses[i - 2] for i in range(2, 6)}
    zones = directory / "zones"
    zones.mkdir(parents=True)
    for path in demo.iterdir():
        text = path.read_text()
        (zones / path.name).write_text(re.sub(r"\b127\.0\.0\.([2-5])\b", lambda m: mapping[m.group(1)], text))
    return zones
