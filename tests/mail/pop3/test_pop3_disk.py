"""POP3 disk work off the reactor thread: the read-ahead reader, and a slow disk
(an injected delay) that holds up only the session waiting on it."""

from __future__ import annotations

import dataclasses
import poplib
import socket
import threading
import time

import pytest
import pytest_twisted
from twisted.cred import credentials, error
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.portal import Portal
from twisted.internet import defer, threads
from zope.interface import implementer

from pool_by_hand import Pool

from twisted_netapps.mail.pop3.apop import ApopSecrets
from twisted_netapps.mail.pop3.core import Pop3Message
from twisted_netapps.mail.pop3.maildrop import Maildrop, Pop3Realm
from twisted_netapps.mail.pop3.protocol import Pop3Factory
from twisted_netapps.mail.pop3 import reader as reader_module
from twisted_netapps.mail.pop3.reader import MessageReader
from twisted_netapps.mail.pop3.service import Settings
from twisted_netapps.mail.store.mailbox import MaildirFolder
from twisted_netapps.mail.store.maildir import MailStore
from twisted_netapps.pools import Pools
from twisted_netapps.stats import ServiceStats


def session_messages(store, user, n, size=100):
    for i in range(n):
        store.deliver(user, b"Subject: %d\r\n\r\n" % i + b"x" * size + b"\r\n")
    folder = MaildirFolder(store.maildir(user))
    return folder, [Pop3Message(i, m.uid, folder.size(m), m) for i, m in enumerate(folder.scan(), 1)]


def _nowait_works(directory) -> bool:
    """preadv2(RWF_NOWAIT) on this filesystem (not on tmpfs, not off Linux)."""
    import os

    if not hasattr(os, "RWF_NOWAIT"):
        return False
    probe = directory / "probe"
    probe.write_bytes(b"x")
    fd = os.open(probe, os.O_RDONLY)
    try:
        os.preadv(fd, [bytearray(2)], 0, os.RWF_NOWAIT)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
        probe.unlink()


def open_fds() -> int:
    import os

    return len(os.listdir("/proc/self/fd"))


def test_a_download_loop_reads_from_the_caches_and_the_pool_only_warms_them(tmp_path):
    folder, messages = session_messages(MailStore(tmp_path), "alice", 100)
    fds = open_fds()
    pool = Pool()
    reader = MessageReader(folder, messages, pool, inline_limit=1000, ahead=16)
    waits = 0
    for message in messages:
        result = reader.take(message)
        if result is NotImplemented:
            waits += 1
            d = reader.read(message)
            pool.run_all()
            result = d.result
        assert result[0].startswith(b"Subject: %d\r\n" % (message.number - 1))
    if reader_module.open_cached is not None and _nowait_works(tmp_path):
        assert waits == 0  # just delivered: every name and page is cached; no pool job at all
    assert open_fds() == fds  # nothing is held open between commands


def test_a_miss_is_read_in_the_pool_which_warms_the_next_messages(tmp_path, monkeypatch):
    store = MailStore(tmp_path)
    session_messages(store, "alice", 5)
    store.deliver("alice", b"Subject: big\r\n\r\n" + b"y" * 5000)
    store.deliver("alice", b"Subject: last\r\n\r\nz\r\n")
    folder, messages = session_messages(store, "alice", 0)  # five small, one big, one small
    messages[1].deleted = True
    monkeypatch.setattr(reader_module, "open_cached", None)  # as on a system without openat2
    pool = Pool()
    reader = MessageReader(folder, messages, pool, inline_limit=1000)
    assert reader.take(messages[0]) is NotImplemented
    first = reader.read(messages[0])
    assert [f.__name__ for f, _args, _d in pool.jobs] == ["read_file", "warm"]
    (_f, (_folder, refs), _d) = pool.jobs[1]
    assert refs == [messages[n - 1].ref for n in (3, 4, 5, 7)]  # not 2 (deleted) nor 6 (big: streamed)
    pool.run_all()
    assert first.result[0].startswith(b"Subject: 0")
    reader.read(messages[2])
    assert [f.__name__ for f, _args, _d in pool.jobs] == ["read_file"]  # already warmed
    folder.remove(messages[3].ref)  # another client removes message 4
    gone = reader.read(messages[3])
    big = reader.read(messages[5])
    pool.run_all()
    assert isinstance(gone.result, FileNotFoundError)
    assert big.result is None  # too big for one piece: the caller streams it


def test_a_renamed_message_is_found_by_the_pool(tmp_path):
    folder, messages = session_messages(MailStore(tmp_path), "alice", 3)
    folder.set_flags(messages[1].ref, "S")  # another client flags it: renamed behind the session's back
    pool = Pool()
    reader = MessageReader(folder, messages, pool, inline_limit=1000)
    assert reader.take(messages[1]) is NotImplemented  # the name it has is gone
    d = reader.read(messages[1])
    pool.run_all()
    data, where = d.result
    assert data.startswith(b"Subject: 1") and where.flags == "S"


@implementer(ICredentialsChecker)
class Passwords:
    credentialInterfaces = (credentials.IUsernamePassword,)

    def requestAvatarId(self, creds):
        if creds.password == b"pw":
            return defer.succeed(creds.username.decode())
        return defer.fail(error.UnauthorizedLogin())


def _slow_for(user: str, delay: float, pools: Pools, slowed: list):
    """The disk pool, but every job about *user*'s mailbox first waits *delay* seconds."""

    def about_user(args) -> bool:
        for arg in args:
            if isinstance(arg, Maildrop) and arg.user == user:
                return True
            if isinstance(arg, MaildirFolder) and arg.path.name == user:
                return True
        return False

    def run(f, *args):
        if not about_user(args):
            return pools.disk(f, *args)

        def slowly():
            slowed.append(f.__name__)
            time.sleep(delay)
            return f(*args)

        return pools.disk(slowly)

    return run


def _pop3_session(port: int, user: str, commands) -> tuple[float, list]:
    start = time.monotonic()
    client = poplib.POP3("127.0.0.1", port, timeout=20)
    client.user(user)
    client.pass_("pw")
    replies = [command(client) for command in commands]
    client.quit()
    return time.monotonic() - start, replies


@pytest_twisted.ensureDeferred
async def test_a_slow_disk_holds_up_only_the_session_waiting_on_it(tmp_path, monkeypatch):
    from twisted.internet import reactor

    # Nothing comes from the kernel's caches: every read is a disk read, in the pool.
    monkeypatch.setattr(reader_module, "open_cached", None)

    store = MailStore(tmp_path / "mail")
    for user in ("alice", "bob"):
        for i in range(3):
            store.deliver(user, b"Subject: %s %d\r\n\r\nbody\r\n" % (user.encode(), i))
    pools = Pools(reactor)
    slowed: list[str] = []
    factory = Pop3Factory(
        portal=Portal(Pop3Realm(store), [Passwords()]), stats=ServiceStats("pop3"), reactor=reactor,
        tls_options=None, apop_secrets=ApopSecrets(tmp_path / "none", reactor),
        settings=dataclasses.replace(Settings(), hostname="test"),
        run_blocking=_slow_for("alice", 1.5, pools, slowed),
    )
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    number = port.getHost().port
    try:
        alice_in = threading.Event()

        def alice():
            with socket.create_connection(("127.0.0.1", number), timeout=20) as sock:
                lines = sock.makefile("rb")
                lines.readline()
                sock.sendall(b"USER alice\r\nPASS pw\r\n")
                lines.readline()
                lines.readline()  # the mailbox scan is slow: this took 1.5 s
                alice_in.set()
                start = time.monotonic()
                # Pipelined: RETR (a slow read) and NOOP; the replies come in order.
                sock.sendall(b"RETR 2\r\nNOOP\r\nQUIT\r\n")
                reply = lines.readline()
                body = []
                while (line := lines.readline()) != b".\r\n":
                    body.append(line)
                noop = lines.readline()
                took = time.monotonic() - start
                lines.readline()
            return took, reply, body, noop

        slow = threads.deferToThread(alice)
        while not slowed:  # alice's login is waiting on the slow disk now
            await defer.succeed(None)
            await threads.deferToThread(time.sleep, 0.01)
        took, (stat, listing) = await threads.deferToThread(
            _pop3_session, number, "bob", [lambda c: c.stat(), lambda c: c.retr(3)[1]]
        )
        assert took < 1.0, f"bob waited {took:.2f}s behind alice's slow disk"
        assert stat[0] == 3 and listing[0] == b"Subject: bob 2"
        await threads.deferToThread(alice_in.wait, 10)
        took, reply, lines, noop = await slow
        assert took >= 1.4  # alice's RETR did wait for her disk...
        assert reply.startswith(b"+OK") and lines[0] == b"Subject: alice 1\r\n" and noop.startswith(b"+OK nothing")
    finally:
        await port.stopListening()
        pools.stop()
