"""A synchronous IMAP server for tests: fake transport, task.Clock, disk work done at once."""

import dataclasses

from twisted.cred import credentials, error
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.portal import Portal
from twisted.internet import defer, task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from zope.interface import implementer

from twisted_netapps.mail.imap.account import ImapRealm
from twisted_netapps.mail.imap.mailbox import FolderRegistry
from twisted_netapps.mail.imap.protocol import ImapFactory
from twisted_netapps.mail.imap.service import Settings
from twisted_netapps.mail.store.maildir import MailStore
from twisted_netapps.stats import ServiceStats


@implementer(ICredentialsChecker)
class Passwords:
    credentialInterfaces = (credentials.IUsernamePassword,)

    def requestAvatarId(self, creds):
        if (creds.username, creds.password) == (b"alice", b"pw"):
            return defer.succeed("alice")
        return defer.fail(error.UnauthorizedLogin())


def make(tmp_path, messages: int = 3):
    store = MailStore(tmp_path / "mail")
    for i in range(messages):
        store.deliver("alice", b"From: x@y.test\r\nSubject: m%d\r\n\r\nbody %d\r\n" % (i, i))
    clock = task.Clock()
    registry = FolderRegistry(clock, 1.0, run_blocking=lambda f, *a: defer.maybeDeferred(f, *a))
    factory = ImapFactory(
        portal=Portal(ImapRealm(store, registry), [Passwords()]), stats=ServiceStats("imap"), reactor=clock,
        tls_options=None, settings=dataclasses.replace(Settings(), login_failure_delay=1.0), registry=registry,
    )
    return store, clock, factory


def connect(factory):
    proto = factory.buildProtocol(None)
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 4000))
    proto.makeConnection(transport)
    return proto, transport


def say(proto, transport, line: bytes) -> bytes:
    transport.clear()
    proto.dataReceived(line + b"\r\n")
    proto.factory.reactor.advance(0)  # commands queued behind a LOGIN run on the next turn
    return transport.value()


def logged_in(factory):
    proto, transport = connect(factory)
    assert b"a OK " in say(proto, transport, b"a LOGIN alice pw")
    return proto, transport
