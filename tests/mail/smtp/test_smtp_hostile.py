"""SMTP under hostile load, on the real daemon: slowloris tricklers from 127.0.0.2 are cut at
their deadlines or capped per address while a normal client on 127.0.0.1 is served; 50
parallel password guessers from one address are throttled, the right password from
another address still works at once."""

from __future__ import annotations

import smtplib
import time
from contextlib import ExitStack

import pytest
from hostile_clients import Guessers, Tricklers, serve_repeatedly
from smtp_doubles import SMTP_LISTEN, smtp_sets

from twisted_netapps.accounts import AccountStore

ATTACKER, CLIENT = "127.0.0.2", "127.0.0.1"


@pytest.fixture
def smtp_daemon(netapps_daemon, tmp_path):
    def start(*sets: str):
        data = tmp_path / "data"
        data.mkdir(exist_ok=True)
        AccountStore(data).add("alice", "alice-pw", log2_n=10)
        return netapps_daemon(["smtp"], data_dir=data, listen=SMTP_LISTEN, sets=smtp_sets(*sets))

    return start


def send_one(d, subject: str) -> None:
    with smtplib.SMTP(*d.address("smtp"), timeout=5, source_address=(CLIENT, 0)) as c:
        c.sendmail("bob@remote.test", ["alice@example.test"], f"Subject: {subject}\r\n\r\nhello\r\n".encode())


def serve_normal_client_for(d, seconds: float) -> int:
    return serve_repeatedly(lambda: send_one(d, "normal"), seconds)


@pytest.mark.slow
def test_a_trickled_command_is_cut_at_the_deadline_while_a_normal_client_is_served(smtp_daemon):
    d = smtp_daemon("smtp.command_deadline=1.0", "smtp.data_deadline=2.0", "smtp.command_timeout=30")
    command = Tricklers(d.address("smtp"), ATTACKER, payload=b"NOOP NOOP NOOP NOOP NOOP\r\n")
    data = Tricklers(
        d.address("smtp"), ATTACKER, payload=b"line\r\n",  # whole lines, steadily: only the DATA deadline helps
        preamble=b"EHLO slow.test\r\nMAIL FROM:<a@slow.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n",
    )
    with command, data:
        sent = serve_normal_client_for(d, 4.0)
    assert sent >= 5
    [cut] = command.connections
    assert cut.closed_at is not None and 0.9 <= cut.closed_at - cut.first_byte <= 2.5
    assert cut.received.endswith(b"421 4.4.2 Command time limit exceeded, closing connection\r\n")
    [cut] = data.connections
    assert cut.closed_at is not None and 1.9 <= cut.closed_at - cut.first_byte <= 3.5
    assert cut.received.endswith(b"421 4.4.2 Data time limit exceeded, closing connection\r\n")
    assert "command deadline (1s) passed" in d.log and "data deadline (2s) passed" in d.log


@pytest.mark.slow
def test_fifty_tricklers_from_one_address_do_not_keep_another_address_out(smtp_daemon):
    # Deadlines long enough that the tricklers keep their slots; the listener's cap (30)
    # is below 50: only the per-address cap (20) leaves room for others.
    d = smtp_daemon(
        "smtp.command_deadline=60", "smtp.max_connections=30", "smtp.max_connections_per_address=20",
    )
    with Tricklers(d.address("smtp"), ATTACKER, count=50, interval=0.5) as tricklers:
        time.sleep(1.0)
        refused = [c for c in tricklers.connections if c.received.startswith(b"421 4.3.2 Too many connections")]
        held = tricklers.open()
        assert len(refused) == 30 and len(held) == 20
        sent = serve_normal_client_for(d, 2.0)
        assert sent >= 5 and len(tricklers.open()) == 20  # they are still there, trickling
    assert "connections open from 127.0.0.2" in d.log


def test_tricklers_filling_the_listener_from_many_addresses_do_not_keep_a_single_client_out(smtp_daemon):
    # A distributed slowloris: 10 addresses x 3 connections fill the listener (30); the
    # deadlines are long, so nothing frees a slot. A client holding none still gets in: the
    # listener closes the oldest connection of an address holding the most.
    d = smtp_daemon("smtp.command_deadline=60", "smtp.max_connections=30", "smtp.max_connections_per_address=5")
    with ExitStack() as stack:
        crowd = [stack.enter_context(Tricklers(d.address("smtp"), f"127.0.3.{i}", count=3, interval=0.5))
                 for i in range(1, 11)]
        time.sleep(1.0)
        assert sum(len(t.open()) for t in crowd) == 30  # every slot taken
        sent = serve_normal_client_for(d, 2.0)
        assert sent >= 5
        held = sorted(len(t.open()) for t in crowd)
        assert sum(held) == 29 and held[0] == 2  # one slot lent to the client each time, one address short
    assert "full: closing the oldest of 3 connections from 127.0.3." in d.log


@pytest.mark.slow
def test_fifty_parallel_auth_guessers_are_throttled_and_the_right_password_works_elsewhere(smtp_daemon):
    d = smtp_daemon("smtp.plaintext_auth=loopback", "smtp.auth_failure_delay=1.0")
    with Guessers("smtp", d.address("smtp"), ATTACKER, "alice", connections=50) as guessers:
        time.sleep(6.0)
        start = time.monotonic()
        with smtplib.SMTP(*d.address("smtp"), timeout=5, source_address=(CLIENT, 0)) as c:
            c.login("alice", "alice-pw")
        assert time.monotonic() - start < 1.0
        rate = guessers.rate()
    print(f"smtp: {guessers.tally.answered} guesses answered in {guessers.elapsed:.1f}s = {rate:.1f}/s "
          f"from 50 connections; {guessers.tally.refused} refused")
    assert rate < 3.0  # pre-frame main: ~21/s
