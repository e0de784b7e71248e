"""End to end in one daemon: smtplib sends to a local user, who reads it over POP3 and IMAP."""

import email
import imaplib
import poplib
import smtplib

from netapps_daemon import wait_for
from twisted_netapps.accounts import AccountStore


def test_smtp_to_pop3_and_imap(netapps_daemon, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    AccountStore(data).add("alice", "alice-pw", log2_n=10)
    any_port = ["tcp:0:interface=127.0.0.1"]
    d = netapps_daemon(
        ["smtp", "pop3", "imap"], data_dir=data,
        listen={"smtp": any_port, "pop3": any_port, "imap": any_port},
        sets=['smtp.submission_listen=["tcp:0:interface=127.0.0.1"]', "imap.poll_interval=0.2"],
    )
    imap = imaplib.IMAP4(*d.address("imap"), timeout=10)
    imap.login("alice", "alice-pw")
    assert imap.select("INBOX") == ("OK", [b"0"])

    with smtplib.SMTP(*d.address("smtp"), timeout=10) as smtp:
        smtp.sendmail("bob@remote.test", ["alice@example.test"],
                      b"From: bob@remote.test\nTo: alice@example.test\nSubject: end to end\n\nhello\n.dot\n")

    def exists():
        imap.noop()
        return imap.response("EXISTS")[1][-1:] == [b"1"]

    wait_for(exists, what="the delivered message in the selected IMAP INBOX")
    typ, fetched = imap.fetch("1", "(BODY.PEEK[])")
    imap_bytes = fetched[0][1]
    message = email.message_from_bytes(imap_bytes)
    assert message["Subject"] == "end to end" and message["Received"] is not None
    assert "for <alice@example.test>" in message["Received"]
    imap.logout()

    pop = poplib.POP3(*d.address("pop3"), timeout=10)
    pop.user("alice")
    pop.pass_("alice-pw")
    resp, lines, octets = pop.retr(1)
    pop_bytes = b"\r\n".join(lines) + b"\r\n"
    assert pop_bytes == imap_bytes  # the same octets over both protocols
    assert resp == b"+OK %d octets" % len(imap_bytes)
    assert pop_bytes.startswith(b"Return-Path: <bob@remote.test>\r\nReceived: ")
    pop.dele(1)
    pop.quit()
    pop = poplib.POP3(*d.address("pop3"), timeout=10)
    pop.user("alice")
    pop.pass_("alice-pw")
    assert pop.stat() == (0, 0)
    pop.quit()
