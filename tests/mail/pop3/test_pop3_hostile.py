"""POP3 under hostile load, on the real daemon: slowloris tricklers from 127.0.0.2 are cut at
their deadlines or capped per address while a normal client on 127.0.0.1 is served; 50
parallel password guessers from one address are throttled, the right password from
another address still works at once."""

from __future__ import annotations

import poplib
import time

import pytest
from hostile_clients import Guessers, Tricklers, serve_repeatedly

from twisted_netapps.accounts import AccountStore
from twisted_netapps.mail.store.maildir import MailStore

ATTACKER, CLIENT = "127.0.0.2", "127.0.0.1"
LISTEN = {"pop3": ["tcp:0:interface=127.0.0.1"]}


@pytest.fixture
def pop3_daemon(netapps_daemon, tmp_path):
    def start(*sets: str):
        data = tmp_path / "data"
        data.mkdir(exist_ok=True)
        AccountStore(data).add("alice", "alice-pw", log2_n=10)
        MailStore(data / "mail").deliver("alice", b"Subject: hi\r\n\r\nhello\r\n")
        return netapps_daemon(["pop3"], data_dir=data, listen=LISTEN, sets=list(sets))

    return start


class _SourcePOP3(poplib.POP3):
    """poplib from a chosen source address."""

    def __init__(self, host, port, source):
        self.source = source
        super().__init__(host, port, timeout=5)

    def _create_socket(self, timeout):
        import socket

        return socket.create_connection((self.host, self.port), timeout, source_address=(self.source, 0))


def read_mail(d) -> None:
    client = _SourcePOP3(*d.address("pop3"), CLIENT)
    client.user("alice")
    client.pass_("alice-pw")
    assert client.retr(1)[1][0] == b"Subject: hi"
    client.quit()


def serve_normal_client_for(d, seconds: float) -> int:
    return serve_repeatedly(lambda: read_mail(d), seconds)


@pytest.mark.slow
def test_trickled_commands_and_a_dawdling_login_are_cut_while_a_normal_client_is_served(pop3_daemon):
    # Mailbox sessions are one at a time (the lock): the normal client's must not be held up.
    d = pop3_daemon("pop3.command_deadline=1.0", "pop3.login_deadline=2.0")
    command = Tricklers(d.address("pop3"), ATTACKER, payload=b"CAPA CAPA CAPA\r\n")
    dawdler = Tricklers(d.address("pop3"), ATTACKER, payload=b"CAPA\r\n", interval=0.1)  # each line in time
    with command, dawdler:
        done = serve_normal_client_for(d, 4.0)
    assert done >= 5
    [cut] = command.connections
    assert cut.closed_at is not None and 0.9 <= cut.closed_at - cut.first_byte <= 2.5
    assert cut.received.endswith(b"-ERR [SYS/TEMP] command time limit exceeded, closing\r\n")
    [cut] = dawdler.connections
    assert cut.closed_at is not None and 1.8 <= cut.closed_at - cut.first_byte <= 3.5
    assert cut.received.endswith(b"-ERR [SYS/TEMP] login time limit exceeded, closing\r\n")


@pytest.mark.slow
def test_fifty_tricklers_from_one_address_do_not_keep_another_address_out(pop3_daemon):
    d = pop3_daemon("pop3.max_connections=30", "pop3.max_connections_per_address=20")
    with Tricklers(d.address("pop3"), ATTACKER, count=50, interval=0.5) as tricklers:
        time.sleep(1.0)
        refused = [c for c in tricklers.connections if c.received.startswith(b"-ERR [SYS/TEMP] too many connections")]
        assert len(refused) == 30 and len(tricklers.open()) == 20
        assert serve_normal_client_for(d, 2.0) >= 5
        assert len(tricklers.open()) == 20
    assert "connections open from 127.0.0.2" in d.log


@pytest.mark.slow
def test_fifty_parallel_password_guessers_are_throttled_and_the_right_password_works_elsewhere(pop3_daemon):
    d = pop3_daemon()
    with Guessers("pop3", d.address("pop3"), ATTACKER, "alice", connections=50) as guessers:
        time.sleep(6.0)
        start = time.monotonic()
        read_mail(d)
        assert time.monotonic() - start < 1.0
        rate = guessers.rate()
    print(f"pop3: {guessers.tally.answered} guesses answered in {guessers.elapsed:.1f}s = {rate:.1f}/s "
          f"from 50 connections; {guessers.tally.refused} refused")
    assert rate < 3.0  # pre-frame main: ~21/s
