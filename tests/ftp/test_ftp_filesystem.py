"""The jail (hypothesis over path strings), file operations, listings and the codecs."""

from __future__ import annotations

import os
import stat

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from twisted_netapps.ftp import commands, listing, paths, replies, textmode
from twisted_netapps.ftp.commands import CommandError
from twisted_netapps.ftp.filesystem import (
    DENIED,
    NOT_EMPTY,
    NOT_FILE,
    NOT_FOUND,
    TEMP_PREFIX,
    Access,
    FileError,
    JailedFilesystem,
)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    base = tmp_path_factory.mktemp("jail")
    root = base / "root"
    (root / "pub" / "deep").mkdir(parents=True)
    (root / "pub" / "file.txt").write_text("hello\n")
    (base / "outside.txt").write_text("secret")
    (root / "up").symlink_to(base)  # outside
    (root / "etc").symlink_to("/etc")  # outside
    (root / "pub" / "loop").symlink_to(root / "pub" / "loop")
    (root / "pub" / "inside").symlink_to(root / "pub" / "deep")  # inside: fine
    (root / "pub" / "rel").symlink_to("../up/outside.txt")  # outside through a relative link
    return base


_PART = st.one_of(
    st.sampled_from(["..", ".", "", "pub", "deep", "up", "etc", "loop", "inside", "rel", "file.txt", "%2e%2e",
                     "..%2f..", "\\..\\..", "~", "...", "....//", "passwd", "\u2025", "\uff0e\uff0e"]),
    st.text(min_size=1, max_size=8).filter(lambda s: "\x00" not in s),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cwd=st.lists(_PART, max_size=4), arg=st.lists(_PART, max_size=8), absolute=st.booleans())
def test_every_path_resolves_inside_the_root_or_is_refused(tree, cwd, arg, absolute):
    fs = JailedFilesystem(tree / "root", Access(writable=True))
    root = os.path.realpath(tree / "root")
    vcwd = paths.normalize("/", "/".join(cwd))
    vpath = paths.normalize(vcwd, ("/" if absolute else "") + "/".join(arg))
    assert vpath.startswith("/") and ".." not in vpath.split("/")
    for entry, resolve in ((False, fs.real_path), (True, fs.entry_path)):
        try:
            real = resolve(vpath)
        except FileError:
            continue
        # An entry path names the link itself: its directory must be inside.
        resolved = os.path.realpath(os.path.dirname(real) if entry else real)
        assert resolved == root or resolved.startswith(root + os.sep), (vpath, real)


@pytest.mark.parametrize("vpath", ["/up/outside.txt", "/etc/passwd", "/pub/rel", "/up", "/pub/loop"])
def test_symlinks_out_of_the_jail_are_refused(tree, vpath):
    fs = JailedFilesystem(tree / "root", Access(writable=True))
    with pytest.raises(FileError) as caught:
        handle, _ = fs.open_read(vpath)
        handle.close()
    assert caught.value.kind in (NOT_FOUND, DENIED)


def test_symlinks_inside_are_followed_and_listed(tree):
    fs = JailedFilesystem(tree / "root", Access(writable=False))
    assert fs.change_dir("/pub/inside") == "/pub/inside"
    names = [e.name for e in fs.entries("/pub")]
    assert "inside" in names and "file.txt" in names and "rel" not in names and "loop" not in names
    assert [e.name for e in fs.entries("/")] == ["pub"]  # up/ and etc/ point outside: not shown


def test_read_only_access_and_upload_box(tmp_path):
    (tmp_path / "pub").mkdir()
    (tmp_path / "incoming").mkdir()
    (tmp_path / "pub" / "a").write_text("a")
    fs = JailedFilesystem(tmp_path, Access(writable=False, upload_dir="/incoming"))
    for action in (lambda: fs.make_dir("/x"), lambda: fs.delete("/pub/a"), lambda: fs.open_write("/pub/b", "stor"),
                   lambda: fs.check_exists("/pub/a"), lambda: fs.open_write("/incoming/c", "appe")):
        with pytest.raises(FileError) as caught:
            action()
        assert caught.value.kind == DENIED
    upload = fs.open_write("/incoming/new.txt", "stor")
    upload.write(b"data")
    upload.commit()
    assert (tmp_path / "incoming" / "new.txt").read_bytes() == b"data"
    with pytest.raises(FileError):  # the drop box never overwrites
        fs.open_write("/incoming/new.txt", "stor")


def test_upload_goes_to_a_hidden_temp_then_renamed(tmp_path):
    fs = JailedFilesystem(tmp_path, Access(writable=True))
    (tmp_path / "f").write_bytes(b"old")
    upload = fs.open_write("/f", "stor")
    upload.write(b"new content")
    temps = [p for p in tmp_path.iterdir() if p.name.startswith(TEMP_PREFIX)]
    assert len(temps) == 1 and (tmp_path / "f").read_bytes() == b"old"
    assert [e.name for e in fs.entries("/")] == ["f"]  # the temp file is not listed
    with pytest.raises(FileError):
        fs.open_read("/" + temps[0].name)
    upload.commit()
    assert (tmp_path / "f").read_bytes() == b"new content"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(TEMP_PREFIX)]
    broken = fs.open_write("/g", "stor")
    broken.write(b"half")
    broken.discard()
    assert list(tmp_path.iterdir()) == [tmp_path / "f"]


def test_rest_and_append_write_in_place(tmp_path):
    fs = JailedFilesystem(tmp_path, Access(writable=True))
    (tmp_path / "f").write_bytes(b"0123456789")
    upload = fs.open_write("/f", "rest", 4)
    upload.write(b"ab")
    upload.commit()
    assert (tmp_path / "f").read_bytes() == b"0123ab"
    upload = fs.open_write("/f", "appe")
    upload.write(b"Z")
    upload.commit()
    assert (tmp_path / "f").read_bytes() == b"0123abZ"


def test_operations_and_their_errors(tmp_path):
    fs = JailedFilesystem(tmp_path, Access(writable=True))
    fs.make_dir("/d")
    (tmp_path / "d" / "x").write_text("x")
    with pytest.raises(FileError) as caught:
        fs.remove_dir("/d")
    assert caught.value.kind == NOT_EMPTY
    with pytest.raises(FileError) as caught:
        fs.file_size("/d")
    assert caught.value.kind == NOT_FILE
    with pytest.raises(FileError) as caught:
        fs.check_exists("/missing")
    assert caught.value.kind == NOT_FOUND
    with pytest.raises(FileError) as caught:
        fs.remove_dir("/")
    assert caught.value.kind == DENIED
    fs.rename("/d/x", "/y")
    assert fs.file_size("/y") == 1 and len(fs.modify_time("/y")) == 14
    assert fs.unique_name("/", "y") == "/y.1"
    fs.delete("/y")
    fs.remove_dir("/d")
    assert fs.entries("/") == []


def test_listing_formats(tmp_path):
    (tmp_path / "a b.txt").write_bytes(b"12345")
    (tmp_path / "dir").mkdir()
    (tmp_path / "bad\nname").write_text("x")
    fs = JailedFilesystem(tmp_path, Access(writable=False), clock=lambda: os.stat(tmp_path / "dir").st_mtime)
    lines = fs.listing("/", "list").decode().split("\r\n")
    assert lines[0].startswith("-rw") and lines[0].endswith(" a b.txt") and "ftp      ftp" in lines[0]
    assert lines[1].startswith("drwx") and lines[1].endswith(" dir")
    assert fs.listing("/", "nlst") == b"a b.txt\r\ndir\r\n"
    mlsd = fs.listing("/", "mlsd").decode().split("\r\n")
    assert mlsd[0].startswith("type=file;size=5;modify=") and ";perm=r;" in mlsd[0] and mlsd[0].endswith("; a b.txt")
    assert mlsd[1].startswith("type=dir;") and ";perm=el;" in mlsd[1]
    assert fs.facts("/dir", ("type",)) == "type=dir; /dir"


def test_list_line_old_file_shows_the_year():
    st_ = os.stat_result((stat.S_IFREG | 0o644, 1, 1, 1, 0, 0, 10, 0, 0, 0))
    line = listing.list_line(listing.Entry("old", st_), now=400 * 24 * 3600)
    assert "Jan  1  1970 old" in line


# ------------------------------------------------------------------ codecs


def test_paths_normalize():
    assert paths.normalize("/a/b", "../../../../etc") == "/etc"
    assert paths.normalize("/a", "./c//d/.") == "/a/c/d"
    assert paths.normalize("/a", "/x/../y") == "/y"
    assert paths.parent("/a/b") == "/a" and paths.parent("/a") == "/"


def test_reply_formatting():
    assert replies.reply(200, "ok") == b"200 ok\r\n"
    assert replies.reply(550, "bad\r\n226 forged") == b"550 bad  226 forged\r\n"
    assert replies.multiline(211, "Features:", ["UTF8", "226 not an end"], "End") == (
        b"211-Features:\r\n UTF8\r\n 226 not an end\r\n211 End\r\n")
    assert replies.quote_path('/a"b') == '"/a""b"'
    assert replies.passive_reply("127.0.0.1", 50000) == b"227 Entering Passive Mode (127,0,0,1,195,80).\r\n"
    assert replies.reply(257, "\udcff") == b"257 \xff\r\n"  # a non-UTF-8 name goes back as its bytes


@given(st.binary(max_size=200))
def test_parse_command_never_raises_anything_but_command_error(line):
    try:
        command = commands.parse_command(line)
    except CommandError as e:
        assert e.code in (500, 501)
    else:
        assert command.verb.isalpha() and command.verb.isupper()
        assert command.arg.encode("utf-8", "surrogateescape") or command.arg == ""


def test_parse_command_details():
    assert commands.parse_command(b"retr a  b ") == commands.Command("RETR", "a  b ")
    assert commands.parse_command(b"\xff\xf4\xff\xf2ABOR") == commands.Command("ABOR", "")
    assert commands.parse_command(b"STOR \xff\xffx") == commands.Command("STOR", "\udcffx")
    assert commands.parse_command("STOR grüße".encode()) == commands.Command("STOR", "grüße")
    with pytest.raises(CommandError):
        commands.parse_command(b"STOR a\x00b")
    assert commands.parse_eprt("|2|::1|5000|") == (2, "::1", 5000)
    assert commands.parse_port("127,0,0,1,1,2") == ("127.0.0.1", 258)
    assert commands.split_list_arg("-la /pub") == ("-la", "/pub")
    assert commands.split_list_arg("name") == ("", "name")


@given(st.lists(st.binary(max_size=50), max_size=10))
def test_ascii_mode_from_network_matches_a_whole_stream_conversion(chunks):
    decoder = textmode.FromNetwork()
    out = b"".join(decoder.feed(c) for c in chunks) + decoder.finish()
    assert out == b"".join(chunks).replace(b"\r\n", b"\n")


def test_ascii_mode_to_network():
    assert textmode.to_network(b"a\nb\r\nc") == b"a\r\nb\r\nc"
