import os
import stat
import time

import pytest
from hypothesis import given, strategies as st

from twisted_netapps.mail.store.maildir import (
    MailStore, MailStoreError, folder_dirname, normalise_crlf, parse_name, unique_name,
)


def test_deliver_creates_private_maildir_with_crlf_and_size(tmp_path):
    store = MailStore(tmp_path / "mail")
    name = store.deliver("alice", b"Subject: hi\n\nline1\nline2")
    box = store.maildir("alice")
    path = box.new / name
    data = path.read_bytes()
    assert data == b"Subject: hi\r\n\r\nline1\r\nline2\r\n"
    assert parse_name(name).size == len(data)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for d in (store.root, box.path, box.tmp, box.new, box.cur):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert list(box.tmp.iterdir()) == []


def test_unique_names_differ_and_follow_maildir_format():
    names = {unique_name(10) for _ in range(1000)}
    assert len(names) == 1000
    n = next(iter(names))
    sec, rest = n.split(".", 1)
    assert sec.isdigit() and rest.startswith("M") and "P%d" % os.getpid() in rest and n.endswith(",S=10")


def test_parse_name_with_flags():
    m = parse_name("123.M1P2Q3Rab.host,S=42:2,FS")
    assert (m.uid, m.size, m.flags) == ("123.M1P2Q3Rab.host,S=42", 42, "FS")


def test_subfolders_are_maildirplusplus(tmp_path):
    store = MailStore(tmp_path / "mail")
    store.deliver("bob", b"x\r\n", folder="Work/Project")
    assert (tmp_path / "mail" / "bob" / ".Work.Project" / "new").is_dir()
    assert (tmp_path / "mail" / "bob" / ".Work.Project" / "maildirfolder").exists()
    assert store.folders("bob") == ["INBOX", "Work.Project"]
    assert folder_dirname("inbox") == ""


@pytest.mark.parametrize("user", ["../x", "", ".hidden", "a/b"])
def test_bad_user_names_rejected(tmp_path, user):
    with pytest.raises(MailStoreError):
        MailStore(tmp_path).maildir(user)


@pytest.mark.parametrize("folder", ["..", "a/../b", ".x", "a//b", "a\x00b"])
def test_bad_folder_names_rejected(folder):
    with pytest.raises(MailStoreError):
        folder_dirname(folder)


@given(st.binary(max_size=300))
def test_normalise_crlf_leaves_only_crlf(data):
    out = normalise_crlf(data)
    assert out.replace(b"\r\n", b"").count(b"\r") == 0
    assert out.replace(b"\r\n", b"").count(b"\n") == 0
    assert out.replace(b"\r\n", b"\n").replace(b"\r", b"") == data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\r", b"") + (b"\n" if data and not data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").endswith(b"\n") else b"")
    assert normalise_crlf(out) == out


def test_clean_stale_tmp_removes_only_old_leftovers_in_every_folder(tmp_path):
    store = MailStore(tmp_path / "mail")
    store.deliver("alice", b"Subject: kept\r\n\r\nx\r\n")
    inbox, work = store.maildir("alice"), store.maildir("alice", "Work")
    old = [inbox.path / "tmp" / "crashed.1", work.path / "tmp" / "crashed.2"]
    fresh = inbox.path / "tmp" / "in-flight"
    for path in [*old, fresh]:
        path.write_bytes(b"partial")
    stale = time.time() - 40 * 3600
    for path in old:
        os.utime(path, (stale, stale))
    assert store.clean_stale_tmp() == 2
    assert fresh.exists() and not any(p.exists() for p in old)
    assert len(list((inbox.path / "new").iterdir())) == 1  # delivered mail untouched
    assert MailStore(tmp_path / "nothing").clean_stale_tmp() == 0
