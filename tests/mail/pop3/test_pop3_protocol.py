"""The POP3 Twisted adapter with a fake transport and clock: phases on disk, lock, delays, streaming."""

import dataclasses

import pytest
from twisted.cred import credentials, error
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.portal import Portal
from twisted.internet import defer, task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from zope.interface import implementer

from pool_by_hand import Pool

from twisted_netapps.mail.store.maildir import MailStore
from twisted_netapps.mail.store.mailbox import MaildirFolder
from twisted_netapps.mail.pop3.apop import ApopSecretChecker, ApopSecrets
from twisted_netapps.mail.pop3.maildrop import Pop3Realm
from twisted_netapps.mail.pop3.protocol import INLINE_LIMIT, Pop3Factory
from twisted_netapps.mail.pop3.service import Settings
from twisted_netapps.stats import ServiceStats


@implementer(ICredentialsChecker)
class Passwords:
    credentialInterfaces = (credentials.IUsernamePassword,)

    def requestAvatarId(self, creds):
        if (creds.username, creds.password) == (b"alice", b"pw"):
            return defer.succeed("alice")
        return defer.fail(error.UnauthorizedLogin())


class Transport(StringTransport):
    def __init__(self):
        super().__init__(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        self.writes = []
        self.connected = True
        self.nodelay = False

    def write(self, data):
        self.writes.append(data)
        super().write(data)

    def setTcpNoDelay(self, enabled):
        self.nodelay = enabled

    def loseConnection(self):
        super().loseConnection()


@pytest.fixture
def setup(tmp_path):
    store = MailStore(tmp_path / "mail")
    clock = task.Clock()
    portal = Portal(Pop3Realm(store), [Passwords()])
    portal.registerChecker(ApopSecretChecker(tmp_path / "mail" / "apop-secrets"))
    factory = Pop3Factory(
        portal=portal,
        stats=ServiceStats("pop3"),
        reactor=clock,
        tls_options=None,
        apop_secrets=ApopSecrets(tmp_path / "mail" / "apop-secrets", clock),
        settings=dataclasses.replace(Settings(), login_failure_delay=2.0, hostname="test"),
        run_blocking=lambda f, *args: defer.maybeDeferred(f, *args),
    )
    return store, clock, factory


def connect(factory):
    proto = factory.buildProtocol(None)
    transport = Transport()
    proto.makeConnection(transport)
    transport.writes.clear()
    transport.clear()
    return proto, transport


def login(proto, transport):
    proto.dataReceived(b"USER alice\r\nPASS pw\r\n")
    assert transport.value().splitlines()[-1].startswith(b"+OK Logged in")
    transport.clear()


def test_greeting_and_nodelay(setup):
    store, clock, factory = setup
    proto = factory.buildProtocol(None)
    transport = Transport()
    proto.makeConnection(transport)
    assert transport.nodelay
    assert transport.value() == b"+OK POP3 server ready\r\n"  # no APOP secrets: no timestamp


def test_pipelined_commands_get_one_write(setup):
    store, clock, factory = setup
    for i in range(3):
        store.deliver("alice", b"Subject: %d\r\n\r\nbody\r\n" % i)
    proto, transport = connect(factory)
    login(proto, transport)
    transport.writes.clear()
    proto.dataReceived(b"STAT\r\nRETR 1\r\nRETR 2\r\nLIST\r\nNOOP\r\n")
    assert len(transport.writes) == 1
    replies = transport.value()
    assert replies.startswith(b"+OK 3 ") and replies.endswith(b"+OK nothing happens\r\n")


def test_retr_octets_equal_list(setup):
    store, clock, factory = setup
    store.deliver("alice", b"Subject: x\n\n.leading dot\nline\n")
    proto, transport = connect(factory)
    login(proto, transport)
    proto.dataReceived(b"LIST 1\r\n")
    size = int(transport.value().split()[2])
    transport.clear()
    proto.dataReceived(b"RETR 1\r\n")
    reply = transport.value()
    head, body = reply.split(b"\r\n", 1)
    assert head == b"+OK %d octets" % size
    assert body.endswith(b"\r\n.\r\n")
    lines = body[:-3].split(b"\r\n")
    unstuffed = b"\r\n".join(l[1:] if l.startswith(b".") else l for l in lines)
    assert len(unstuffed) == size and b"\r\n..leading dot\r\n" in body


def test_deletions_only_after_quit(setup):
    store, clock, factory = setup
    store.deliver("alice", b"a\r\n")
    store.deliver("alice", b"b\r\n")
    folder = MaildirFolder(store.maildir("alice"))
    proto, transport = connect(factory)
    login(proto, transport)
    proto.dataReceived(b"DELE 1\r\n")
    assert len(folder.scan()) == 2  # DELE only marks
    proto.dataReceived(b"QUIT\r\n")
    assert transport.value().endswith(b"+OK Bye\r\n")
    assert len(folder.scan()) == 1


def test_dropped_connection_deletes_nothing_and_unlocks(setup):
    store, clock, factory = setup
    store.deliver("alice", b"a\r\n")
    folder = MaildirFolder(store.maildir("alice"))
    proto, transport = connect(factory)
    login(proto, transport)
    proto.dataReceived(b"DELE 1\r\n")
    proto.connectionLost(None)
    assert len(folder.scan()) == 1
    proto2, transport2 = connect(factory)
    login(proto2, transport2)  # the lock was released


def test_second_session_gets_in_use(setup):
    store, clock, factory = setup
    proto, transport = connect(factory)
    login(proto, transport)
    proto2, transport2 = connect(factory)
    proto2.dataReceived(b"USER alice\r\nPASS pw\r\n")
    assert transport2.value().endswith(b"-ERR [IN-USE] mailbox is locked by another POP3 session\r\n")
    proto.dataReceived(b"QUIT\r\n")
    transport2.clear()
    proto2.dataReceived(b"USER alice\r\nPASS pw\r\n")
    assert b"+OK Logged in" in transport2.value()


def test_failed_login_is_delayed_by_a_timer(setup):
    store, clock, factory = setup
    proto, transport = connect(factory)
    proto.dataReceived(b"USER alice\r\nPASS wrong\r\nNOOP\r\n")
    assert transport.value() == b"+OK send PASS\r\n"
    clock.advance(1.9)
    assert b"-ERR" not in transport.value()
    clock.advance(0.2)
    assert transport.value().endswith(b"-ERR [AUTH] invalid user name or password\r\n-ERR NOOP not allowed in the AUTHORIZATION state\r\n")
    assert factory.stats["login_failures"] == 1


def test_plaintext_refused_for_non_loopback_peer(setup):
    store, clock, factory = setup
    proto = factory.buildProtocol(None)
    transport = Transport()
    transport.peerAddr = IPv4Address("TCP", "192.0.2.1", 40000)
    proto.makeConnection(transport)
    transport.clear()
    proto.dataReceived(b"USER alice\r\n")
    assert transport.value().startswith(b"-ERR [AUTH] plaintext authentication disallowed")


def test_idle_timeout(setup):
    store, clock, factory = setup
    proto, transport = connect(factory)
    login(proto, transport)  # (before it, the login deadline would come first)
    clock.advance(599)
    assert not transport.disconnecting
    clock.advance(2)
    assert transport.disconnecting and b"-ERR idle timeout" in transport.value()


def test_big_message_is_streamed_by_a_push_producer_reading_in_the_pool(setup):
    store, clock, factory = setup
    body = b"".join(b".line %06d of a big message\r\n" % i for i in range(INLINE_LIMIT // 5))
    store.deliver("alice", b"Subject: big\r\n\r\n" + body)
    proto, transport = connect(factory)
    login(proto, transport)
    factory.run_blocking = pool = Pool()
    proto.dataReceived(b"RETR 1\r\nNOOP\r\n")
    pool.run_one()  # the read (too big to send whole) ...
    pool.run_one()  # ... and the open for streaming
    assert transport.producer is not None and transport.streaming
    pool.run_one()  # the first chunk
    transport.producer.pauseProducing()  # the transport's buffer is full
    pool.run_all()  # the read under way finishes; no new one starts while paused
    before = len(transport.value())
    assert pool.jobs == [] and before > 0
    chunks = 2
    transport.producer.resumeProducing()
    while pool.jobs:
        pool.run_one()  # one chunk read at a time, each written before the next is read
        chunks += 1
    assert chunks > 3 and transport.producer is None
    out = transport.value()
    assert out.endswith(b"\r\n.\r\n+OK nothing happens\r\n")
    assert out.count(b"\r\n..line ") == len(body.splitlines())


def test_line_too_long_is_an_error_not_a_disconnect(setup):
    store, clock, factory = setup
    proto, transport = connect(factory)
    proto.dataReceived(b"NOOP " + b"x" * 10000 + b"\r\nCAPA\r\n")
    out = transport.value()
    assert out.startswith(b"-ERR line too long\r\n+OK Capability list follows")
    assert not transport.disconnecting


def test_apop_offered_only_with_secrets(setup, tmp_path):
    store, clock, factory = setup
    import hashlib
    import os
    import re

    path = factory.apop_secrets.path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"alice:tanstaaf\n")
    os.close(fd)
    clock.advance(2)  # the greeting looks at the file at most once a second
    proto = factory.buildProtocol(None)
    transport = Transport()
    proto.makeConnection(transport)
    stamp = re.search(rb"<[^>]+@test>", transport.value()).group(0)
    transport.clear()
    digest = hashlib.md5(stamp + b"tanstaaf").hexdigest().encode()
    proto.dataReceived(b"APOP alice " + digest + b"\r\n")
    assert transport.value().startswith(b"+OK Logged in")
    proto.dataReceived(b"QUIT\r\n")
    os.chmod(path, 0o644)  # not private: ignored, APOP no longer offered
    clock.advance(2)
    proto2 = factory.buildProtocol(None)
    transport2 = Transport()
    proto2.makeConnection(transport2)
    assert b"<" not in transport2.value()


def test_lock_held_until_a_running_update_finishes(setup):
    store, clock, factory = setup
    store.deliver("alice", b"a\r\n")
    pending = []
    proto, transport = connect(factory)
    login(proto, transport)
    synchronous, factory.run_blocking = factory.run_blocking, lambda f, *args: pending.append((f, args)) or defer.Deferred()
    proto.dataReceived(b"DELE 1\r\nQUIT\r\n")
    proto.connectionLost(None)  # the client hangs up while the update runs
    factory.run_blocking = synchronous
    proto2, transport2 = connect(factory)
    proto2.dataReceived(b"USER alice\r\nPASS pw\r\n")
    assert b"[IN-USE]" in transport2.value()


def test_half_close_after_quit_still_answers_and_updates(setup):
    store, clock, factory = setup
    store.deliver("alice", b"a\r\n")
    folder = MaildirFolder(store.maildir("alice"))
    proto, transport = connect(factory)
    proto.dataReceived(b"USER alice\r\nPASS pw\r\nDELE 1\r\nQUIT\r\n")
    proto.readConnectionLost()  # e.g. `nc -N`: FIN right after the commands
    assert transport.value().endswith(b"+OK Bye\r\n") and transport.disconnecting
    assert folder.scan() == []


from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

SCRIPT = (b"USER alice\r\nPASS pw\r\nSTAT\r\nRETR 1\r\nLIST\r\nretr 2\r\nTOP 1 1\r\nRETR 9\r\nDELE 1\r\nRETR 1\r\n"
          b"UIDL\r\nRSET\r\nRETR 1\r\nNOOP\r\n")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.integers(min_value=1, max_value=len(SCRIPT)), max_size=12))
def test_any_chunking_gives_the_same_replies(setup, cuts):
    store, clock, factory = setup
    if not MaildirFolder(store.maildir("alice")).scan():
        for i in range(2):
            store.deliver("alice", b"Subject: %d\r\n\r\n.dot\r\nline\r\n" % i)
    whole, transport = connect(factory)
    whole.dataReceived(SCRIPT)
    expected = transport.value()
    whole.dataReceived(b"QUIT\r\n")  # DELE was RSET: nothing is removed
    chunked, transport = connect(factory)
    points = sorted(set(cuts)) + [len(SCRIPT)]
    start = 0
    for point in points:
        if point > start:
            chunked.dataReceived(SCRIPT[start:point])
            start = point
    assert transport.value() == expected
    chunked.dataReceived(b"QUIT\r\n")


def test_idle_timeout_mid_stream_aborts(setup):
    """A client that stops reading mid-RETR: the buffer never drains, so a
    graceful close would never finish; the timeout aborts instead."""
    store, clock, factory = setup
    store.deliver("alice", b"Subject: big\r\n\r\n" + (b"x" * 70 + b"\r\n") * (INLINE_LIMIT // 10))
    proto, transport = connect(factory)
    login(proto, transport)
    factory.run_blocking = pool = Pool()
    proto.dataReceived(b"RETR 1\r\n")
    pool.run_one()
    pool.run_one()
    pool.run_one()  # the first chunk is out...
    transport.producer.pauseProducing()  # ... and the client reads no more
    pool.run_all()
    clock.advance(601)
    assert transport.disconnected and b"-ERR idle timeout" not in transport.value()


def test_top_is_the_same_from_the_caches_and_from_the_pool(setup, monkeypatch):
    from twisted_netapps.mail.pop3 import reader

    store, clock, factory = setup
    store.deliver("alice", b"Subject: t\r\nX: y\r\n\r\n.one\r\ntwo\r\nthree\r\n")
    replies = []
    for opener in (reader.open_cached, None):  # the kernel's caches, then (as without openat2) the pool
        monkeypatch.setattr(reader, "open_cached", opener)
        proto, transport = connect(factory)
        login(proto, transport)
        proto.dataReceived(b"TOP 1 1\r\nTOP 1 0\r\nQUIT\r\n")
        replies.append(transport.value())
    assert replies[0] == replies[1]
    assert replies[0].startswith(b"+OK top of message follows\r\nSubject: t\r\nX: y\r\n\r\n..one\r\n.\r\n")
