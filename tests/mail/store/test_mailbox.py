"""The Maildir reading side: listing, flags by rename, sizes, UID map, folders."""

import os
import stat

import pytest

from twisted_netapps.mail.store.mailbox import (
    MailboxError,
    MaildirFolder,
    UidMap,
    UserMailboxes,
    crlf_size_of,
    flags_to_letters,
    letters_to_flags,
)
from twisted_netapps.mail.store.maildir import MailStore


@pytest.fixture
def store(tmp_path):
    return MailStore(tmp_path / "mail")


def inbox(store, user="alice"):
    return MaildirFolder(store.maildir(user))


def test_scan_in_delivery_order_with_sizes(store):
    names = [store.deliver("alice", b"Subject: %d\n\nbody\n" % i) for i in range(5)]
    folder = inbox(store)
    messages = folder.scan()
    assert [m.uid for m in messages] == names
    for m in messages:
        assert m.subdir == "new" and m.flags == ""
        assert m.size == folder.size(m) == len(folder.read(m)) == os.path.getsize(folder.file_path(m))


def test_flags_persist_by_rename_and_uid_is_stable(store):
    uid = store.deliver("alice", b"Subject: x\r\n\r\nx\r\n")
    folder = inbox(store)
    (m,) = folder.scan()
    m2 = folder.set_flags(m, "SF")
    assert m2.uid == uid and m2.subdir == "cur" and m2.filename == f"{uid}:2,FS"
    assert not (folder.path / "new" / uid).exists()
    (again,) = folder.scan()
    assert again.flags == "FS" and again.uid == uid
    assert stat.S_IMODE(os.stat(folder.file_path(again)).st_mode) == 0o600


def test_operations_follow_a_message_renamed_elsewhere(store):
    store.deliver("alice", b"x\r\n")
    folder = inbox(store)
    (stale,) = folder.scan()
    folder.set_flags(stale, "S")  # "another process" renames it
    handle, found = folder.open(stale)
    handle.close()
    assert found.flags == "S"
    assert folder.set_flags(stale, "RS").flags == "RS"
    assert folder.remove(stale) is True
    assert folder.scan() == []
    assert folder.remove(stale) is False


def test_size_computed_when_name_has_none(store):
    folder = inbox(store)
    (folder.path / "new" / "123.abc.host").write_bytes(b"a\nb\r\nc")
    (m,) = folder.scan()
    assert m.size is None
    assert folder.size(m) == crlf_size_of(b"a\nb\r\nc") == len(b"a\r\nb\r\nc\r\n")


def test_add_and_copy_in(store):
    folder = inbox(store)
    added = folder.add(b"Subject: a\n\nbody\n", "S", mtime=1_000_000_000)
    assert added.subdir == "cur" and added.flags == "S"
    assert folder.read(added) == b"Subject: a\r\n\r\nbody\r\n"
    assert os.stat(folder.file_path(added)).st_mtime == 1_000_000_000
    other = MaildirFolder(store.maildir("alice", "Archive"))
    copied = other.copy_in(folder, added, "SF")
    assert copied.uid != added.uid and other.read(copied) == folder.read(added)
    assert [m.flags for m in other.scan()] == ["FS"]


def test_flag_letter_mapping():
    assert flags_to_letters(["\\Seen", "\\flagged", "\\Recent", "$Forwarded", "custom"]) == "FPS"
    assert letters_to_flags("DFRST") == ["\\Draft", "\\Flagged", "\\Answered", "\\Seen", "\\Deleted"]


def test_uid_map_assigns_once_and_survives_reload(store, tmp_path):
    folder = inbox(store)
    uids = UidMap(folder.path)
    first = uids.sync(["a", "b"])
    assert first == {"a": 1, "b": 2}
    validity = uids.uidvalidity
    assert uids.sync(["a", "b", "c"]) == {"a": 1, "b": 2, "c": 3}
    assert uids.sync(["a", "c"]) == {"a": 1, "c": 3}  # b gone; its UID is never reused
    reloaded = UidMap(folder.path)
    assert reloaded.uidvalidity == validity and reloaded.uidnext == 4
    assert reloaded.sync(["a", "c", "d"]) == {"a": 1, "c": 3, "d": 4}
    assert stat.S_IMODE(os.stat(reloaded.path).st_mode) == 0o600


def test_uid_map_corrupt_starts_new_validity(store):
    folder = inbox(store)
    uids = UidMap(folder.path)
    uids.sync(["a"])
    uids.path.write_text("garbage")
    fresh = UidMap(folder.path)
    assert fresh.uidnext == 1 and fresh.uidvalidity >= 1


def test_user_folders(store):
    boxes = UserMailboxes(store, "alice")
    boxes.create("Archive")
    boxes.create("Archive.2026")
    assert boxes.names() == ["INBOX", "Archive", "Archive.2026"]
    with pytest.raises(MailboxError):
        boxes.create("Archive")
    with pytest.raises(MailboxError):
        boxes.delete("Archive")  # has a subfolder
    with pytest.raises(MailboxError):
        boxes.delete("INBOX")
    boxes.subscribe("Archive")
    boxes.rename("Archive", "Old")
    assert boxes.names() == ["INBOX", "Old", "Old.2026"]
    assert boxes.subscriptions() == ["Old"]
    assert (boxes.root / ".Old" / "maildirfolder").exists()
    boxes.delete("Old.2026")
    boxes.delete("Old")
    assert boxes.names() == ["INBOX"] and boxes.subscriptions() == []


def test_rename_inbox_moves_messages(store):
    store.deliver("alice", b"x\r\n")
    boxes = UserMailboxes(store, "alice")
    boxes.rename("INBOX", "Saved")
    assert inbox(store).scan() == []
    assert len(boxes.folder("Saved").scan()) == 1


def test_read_small(store):
    folder = inbox(store)
    store.deliver("alice", b"x" * 100 + b"\r\n")
    (m,) = folder.scan()
    data, found = folder.read_small(m, 1000)
    assert data == b"x" * 100 + b"\r\n" and found == m
    assert folder.read_small(m, 50) is None  # over the limit: stream it
    (folder.path / "new" / "1.lying.host,S=3").write_bytes(b"y" * 5000)  # S= smaller than the file
    lying = [x for x in folder.scan() if x.uid.endswith("S=3")][0]
    assert folder.read_small(lying, 10000)[0] == b"y" * 5000
    assert folder.read_small(lying, 4000) is None


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_uid_map_survives_any_file_content(tmp_path_factory, content):
    folder = tmp_path_factory.mktemp("uidmap")
    (folder / "netapps-uidlist").write_bytes(content)
    uids = UidMap(folder)  # a damaged map starts over (new UIDVALIDITY), never crashes
    assigned = uids.sync(["a", "b"])
    assert sorted(assigned.values()) == sorted(set(assigned.values())) and all(v >= 1 for v in assigned.values())


@settings(max_examples=200, deadline=None)
@given(st.integers(-3, 9), st.lists(st.tuples(st.integers(-2, 12), st.sampled_from(["a", "b", "c", "d"])), max_size=5))
def test_uid_map_never_reuses_a_uid_from_a_damaged_file(tmp_path_factory, nextuid, entries):
    folder = tmp_path_factory.mktemp("uidmap")
    lines = [f"netapps-uidlist 1 7 {nextuid}"] + [f"{uid} {name}" for uid, name in entries]
    (folder / "netapps-uidlist").write_text("\n".join(lines) + "\n")
    uids = UidMap(folder)
    names = ["a", "b", "c", "d", "e", "f"]
    assigned = uids.sync(names)
    assert len(set(assigned.values())) == len(names) and min(assigned.values()) >= 1


def test_recreated_folder_gets_a_new_uidvalidity(store):
    boxes = UserMailboxes(store, "alice")
    boxes.create("X")
    first = UidMap(boxes.folder("X").path).uidvalidity
    boxes.delete("X")
    boxes.create("X")
    assert UidMap(boxes.folder("X").path).uidvalidity != first
