"""What clients that upload need (issue 15): UIDPLUS, \\Recent, keywords, UTF8=ACCEPT, SPECIAL-USE,
HEADER.FIELDS echoed as sent; and a full disk (issue 14) answered without BAD or a traceback."""

import errno
import re

import pytest
from twisted.logger import globalLogPublisher

from imap_harness import logged_in, make, say
from twisted_netapps.mail.imap.keywords import KEYWORDS_FILE
from twisted_netapps.mail.store.mailbox import MaildirFolder, UserMailboxes


@pytest.fixture
def server(tmp_path):
    return make(tmp_path)


@pytest.fixture
def log_events():
    events = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def select(proto, transport, name=b"INBOX") -> bytes:
    out = say(proto, transport, b"s SELECT " + name)
    assert b"s OK" in out, out
    return out


def test_appenduid_copyuid_and_uid_expunge(server):
    store, clock, factory = server
    proto, transport = logged_in(factory)
    say(proto, transport, b"c CREATE Sent")
    out = say(proto, transport, b"a APPEND Sent (\\Seen) {12+}\r\nSubject: x\r\n")
    validity = re.fullmatch(rb"a OK \[APPENDUID (\d+) 1\] APPEND completed\r\n", out).group(1)
    assert b"UIDVALIDITY %s" % validity in say(proto, transport, b"s SELECT Sent")
    select(proto, transport)
    out = say(proto, transport, b"c UID COPY 2:3 Sent")
    assert re.fullmatch(rb"c OK \[COPYUID %s 2:3 2:3\] COPY completed\r\n" % validity, out), out
    say(proto, transport, b"d STORE 1:2 +FLAGS.SILENT (\\Deleted)")
    # UID EXPUNGE removes only the \Deleted messages of its set (RFC 4315 2.1)
    assert say(proto, transport, b"e UID EXPUNGE 2:3") == b"* 2 EXPUNGE\r\ne OK EXPUNGE completed\r\n"
    assert say(proto, transport, b"f UID SEARCH ALL") == b"* SEARCH 1 3\r\nf OK SEARCH completed\r\n"


def test_appended_and_copied_messages_are_recent_once(server):
    store, clock, factory = server
    proto, transport = logged_in(factory)
    say(proto, transport, b"c CREATE Sent")
    say(proto, transport, b"a APPEND Sent {12+}\r\nSubject: x\r\n")
    select(proto, transport)
    say(proto, transport, b"c COPY 1 Sent")
    other, other_transport = logged_in(factory)
    out = select(other, other_transport, b"Sent")
    assert b"* 2 EXISTS\r\n* 2 RECENT\r\n" in out
    assert say(other, other_transport, b"f FETCH 1:* (FLAGS)").count(b"\\Recent") == 2
    assert b"* 0 RECENT" in select(proto, transport, b"Sent")  # the first session claimed them
    # ... durably: a new process (registry) agrees
    _store, _clock, fresh = make(store.root.parent, messages=0)
    third, third_transport = logged_in(fresh)
    assert b"(MESSAGES 2 RECENT 0)" in say(third, third_transport, b"t STATUS Sent (MESSAGES RECENT)")


def test_keywords_are_stored_dovecot_style(server):
    store, clock, factory = server
    proto, transport = logged_in(factory)
    out = select(proto, transport)
    assert b"[PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Forwarded \\*)]" in out
    out = say(proto, transport, b"k STORE 1 +FLAGS ($Junk NonJunk \\Seen)")
    assert out.startswith(b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Forwarded $Junk NonJunk)\r\n"
                          b"* OK [PERMANENTFLAGS (")
    assert b"* 1 FETCH (FLAGS (\\Seen $Junk NonJunk \\Recent))" in out
    inbox = MaildirFolder(store.maildir("alice"))
    assert sorted(m.flags for m in inbox.scan()) == ["", "", "Sab"]
    assert (inbox.path / KEYWORDS_FILE).read_text() == "0 $Junk\n1 NonJunk\n"
    assert b"$junk" not in say(proto, transport, b"k STORE 1 -FLAGS ($junk)").lower().split(b"flags (")[1]
    assert say(proto, transport, b"s SEARCH KEYWORD NonJunk") == b"* SEARCH 1\r\ns OK SEARCH completed\r\n"
    assert say(proto, transport, b"s SEARCH UNKEYWORD nonjunk") == b"* SEARCH 2 3\r\ns OK SEARCH completed\r\n"
    # copied to another folder: the keyword goes along, with that folder's letter
    say(proto, transport, b"c CREATE Archive")
    say(proto, transport, b"c STORE 2 +FLAGS (Other)")
    say(proto, transport, b"c COPY 1:2 Archive")
    archive = UserMailboxes(store, "alice").folder("Archive")
    assert (archive.path / KEYWORDS_FILE).read_text() == "0 NonJunk\n1 Other\n"
    assert sorted(m.flags for m in archive.scan()) == ["Sa", "b"]
    assert say(proto, transport, b"b STORE 1 FLAGS (\\Bogus)").startswith(b"b BAD")


def test_twenty_six_keywords_at_most(server):
    store, clock, factory = server
    proto, transport = logged_in(factory)
    select(proto, transport)
    names = b" ".join(b"k%d" % i for i in range(26))
    assert say(proto, transport, b"k STORE 1 +FLAGS (" + names + b")").endswith(b"k OK STORE completed\r\n")
    assert say(proto, transport, b"k STORE 1 +FLAGS (one-more)") == b"k NO [LIMIT] no more keywords in this mailbox (26 at most)\r\n"
    assert b"\\*" not in select(proto, transport).split(b"PERMANENTFLAGS")[1].split(b"\r\n")[0]


def test_header_fields_echoed_as_sent(server):
    store, clock, factory = server
    store.deliver("alice", b"X-TUID: abc\r\nSubject: pushed\r\n\r\nx\r\n")
    proto, transport = logged_in(factory)
    select(proto, transport)
    out = say(proto, transport, b"f UID FETCH 4 (BODY.PEEK[HEADER.FIELDS (X-TUID)])")
    assert out == b"* 4 FETCH (BODY[HEADER.FIELDS (X-TUID)] {15}\r\nX-TUID: abc\r\n\r\n UID 4)\r\nf OK FETCH completed\r\n"
    out = say(proto, transport, b"f FETCH 4 (BODY.PEEK[HEADER.FIELDS (x-tuid Subject)])")
    assert b"BODY[HEADER.FIELDS (x-tuid Subject)] {" in out


def test_utf8_accept_and_special_use(server):
    store, clock, factory = server
    proto, transport = logged_in(factory)
    for name in (b"Sent", b"Trash", b"Drafts", b"Junk", b"Projects", b"Projects.Sent", b"Entw&APw-rfe"):
        say(proto, transport, b"c CREATE " + name)
    out = say(proto, transport, b'l LIST "" "*"')
    assert b'* LIST (\\HasNoChildren \\Sent) "." "Sent"' in out and b'(\\HasNoChildren \\Junk) "." "Junk"' in out
    assert b'(\\HasNoChildren) "." "Projects.Sent"' in out and b'"Entw&APw-rfe"' in out
    out = say(proto, transport, b'l LIST (SPECIAL-USE) "" "*"')
    assert out.count(b"* LIST") == 4 and b"Projects" not in out
    out = say(proto, transport, b'l LIST "" "*" RETURN (SPECIAL-USE)')
    assert out.count(b"* LIST") == 8
    assert say(proto, transport, b"e ENABLE UTF8=ACCEPT") == b"* ENABLED UTF8=ACCEPT\r\ne OK ENABLE completed\r\n"
    out = say(proto, transport, b'l LIST "" "Entw*"')
    assert out == '* LIST (\\HasNoChildren) "." "Entwürfe"\r\nl OK LIST completed\r\n'.encode()
    say(proto, transport, 'c CREATE "Grüße"'.encode())
    assert UserMailboxes(store, "alice").exists("Gr&APwA3w-e")
    out = say(proto, transport, 'a APPEND "Grüße" UTF8 (~{12+}\r\nSubject: x\r\n)'.encode())
    assert out.startswith(b"a OK [APPENDUID ")


def test_id(server):
    store, clock, factory = server
    proto, transport = logged_in(factory)
    assert say(proto, transport, b'i ID ("name" "Thunderbird")').startswith(b'* ID ("name" "twisted-netapps" ')


def test_non_ascii_command_is_bad_without_a_log_line(server, log_events):
    store, clock, factory = server
    proto, transport = logged_in(factory)
    log_events.clear()
    assert say(proto, transport, b"a \xe9\xe9") == b"a BAD unknown command\r\n"
    assert say(proto, transport, b"\xe9 NOOP") == b"* BAD invalid tag or command\r\n"
    assert say(proto, transport, b'b SELECT "\xe9"') == b"b BAD SELECT: invalid mailbox name\r\n"
    assert log_events == []
    assert not transport.disconnecting


def test_select_on_a_full_disk_serves_the_folder_read_only(server, monkeypatch, log_events):
    """Issue 14.5: no BAD and no traceback; the UIDs already durable are served, the rest waits for space."""
    store, clock, factory = server
    proto, transport = logged_in(factory)
    select(proto, transport)  # UIDs 1-3 are on disk
    for i in range(2):
        store.deliver("alice", b"Subject: while the disk is full %d\r\n\r\nx\r\n" % i)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("twisted_netapps.mail.store.mailbox.write_atomically", full)
    monkeypatch.setattr("twisted_netapps.mail.store.maildir.write_file", full)
    log_events.clear()
    other, other_transport = logged_in(factory)
    out = say(other, other_transport, b"s SELECT INBOX")
    assert b"* 3 EXISTS\r\n" in out and b"* OK [PERMANENTFLAGS ()]" in out
    assert b"* OK [ALERT] cannot write the UID map (No space left on device)" in out
    assert out.endswith(b"s OK [READ-ONLY] SELECT completed\r\n") and b"BAD" not in out
    assert say(other, other_transport, b"f FETCH 1:* (UID)").count(b"FETCH (UID") == 3
    out = say(proto, transport, b"a APPEND INBOX {12+}\r\nSubject: x\r\n")
    assert out == b"a NO [OVERQUOTA] not enough disk space\r\n"
    clock.advance(1)  # a poll, still full: nothing new, no new log line
    warnings = [e for e in log_events if e.get("log_level") is not None and e["log_level"].name in ("warn", "error", "critical")]
    assert len(warnings) == 2, warnings  # one for the folder, one for the APPEND
    assert not any("log_failure" in e for e in log_events)

    monkeypatch.undo()  # space is back
    clock.advance(1)
    assert say(other, other_transport, b"n NOOP").startswith(b"* 5 EXISTS\r\n")
    out = say(proto, transport, b"s SELECT INBOX")
    assert b"* 5 EXISTS" in out and out.endswith(b"s OK [READ-WRITE] SELECT completed\r\n")
    assert b"UIDNEXT 6" in out


def test_folder_deleted_under_a_session(server, log_events):
    store, clock, factory = server
    proto, transport = logged_in(factory)
    say(proto, transport, b"c CREATE Gone")
    say(proto, transport, b"a APPEND Gone {12+}\r\nSubject: x\r\n")
    select(proto, transport, b"Gone")
    other, other_transport = logged_in(factory)
    assert say(other, other_transport, b"d DELETE Gone").startswith(b"d OK")
    log_events.clear()
    clock.advance(1)
    assert say(proto, transport, b"n NOOP") == b"* 1 EXPUNGE\r\nn OK NOOP completed\r\n"
    assert [e for e in log_events if e.get("log_level") is not None and e["log_level"].name != "debug"] == []
