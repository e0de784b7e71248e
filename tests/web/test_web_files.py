"""Path resolution, the file layer (ETags, cache, symlinks) and uploads."""

from __future__ import annotations

import os
import time

import pytest
from hypothesis import given, settings, strategies as st

from twisted_netapps.web.conditional import Validators
from twisted_netapps.web.files import DirectoryEntry, FileStore, FileVersion, digest_descriptor, etag_of
from twisted_netapps.web.objects import ObjectError, ObjectStore
from twisted_netapps.web.paths import PathRefused, join_under, url_to_names

ROOT = "/srv/www"


def settle(path, age=10):
    t = time.time() - age
    os.utime(path, (t, t))


class Clock:
    """A clock far in the future: every file is settled (older than 2 s)."""

    def __init__(self, now=None):
        self.now = now

    def __call__(self):
        return self.now if self.now is not None else time.time() + 100


def store(tmp_path, **kw):
    kw.setdefault("cache_bytes", 1 << 20)
    kw.setdefault("max_cached_file", 4096)
    kw.setdefault("clock", Clock())
    return FileStore(str(tmp_path), **kw)


# ------------------------------------------------------------ paths


@pytest.mark.parametrize("path, names, slash", [
    (b"/", [], True),
    (b"/a/b.html", ["a", "b.html"], False),
    (b"/a/", ["a"], True),
    (b"//a/./b", ["a", "b"], False),
    (b"/caf%C3%A9.txt", ["café.txt"], False),
    (b"/a%20b", ["a b"], False),
    (b"/%zz", ["%zz"], False),
])
def test_url_to_names(path, names, slash):
    assert url_to_names(path) == (names, slash)


@pytest.mark.parametrize("path, status", [
    (b"/../etc/passwd", 400),
    (b"/a/../../etc", 400),
    (b"/%2e%2e/etc/passwd", 400),
    (b"/.%2E/x", 400),
    (b"/%2E%2e", 400),
    (b"/a%2f..%2f..%2fetc", 400),
    (b"/a%5c..%5cb", 400),
    (b"/a%00.html", 400),
    (b"/.hidden", 404),
    (b"/a/.upload-x", 404),
    (b"relative", 400),
])
def test_traversal_and_hidden_names_are_refused(path, status):
    with pytest.raises(PathRefused) as e:
        url_to_names(path)
    assert e.value.status == status


@settings(max_examples=500)
@given(st.lists(st.one_of(
    st.sampled_from(["..", ".", "%2e%2e", "%2E.", ".%2e", "%2f", "%5c", "%00", "", "a", "b%2F..", "~", "%c0%ae"]),
    st.text(min_size=1, max_size=8),
), max_size=8))
def test_resolved_paths_always_stay_inside_the_root(segments):
    path = ("/" + "/".join(segments)).encode("utf-8", "surrogatepass")
    try:
        names, _ = url_to_names(path)
    except PathRefused:
        return
    resolved = os.path.normpath(join_under(ROOT, names))
    assert resolved == ROOT or resolved.startswith(ROOT + "/")
    assert all(n not in ("..", ".", "") and "/" not in n and "\x00" not in n for n in names)


# ------------------------------------------------------------ the file layer


def test_small_file_etag_is_the_content_digest_and_cached(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"hello")
    settle(tmp_path / "a.txt")
    s = store(tmp_path)
    v = s.lookup(["a.txt"])
    assert isinstance(v, FileVersion) and v.data == b"hello" and v.etag == etag_of(b"hello")
    assert v.content_type == b"text/plain; charset=utf-8"
    assert s.lookup(["a.txt"]) is v and s.hits == 1


def test_a_change_gives_a_new_etag_even_with_the_same_size_and_mtime(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes(b"one")
    settle(path)
    s = store(tmp_path)
    first = s.lookup(["a.txt"]).etag
    st = os.stat(path)
    path.write_bytes(b"two")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size, same mtime: only ctime moved
    assert s.lookup(["a.txt"]).etag == etag_of(b"two") != first


def test_unsettled_small_files_are_reread_every_time(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes(b"one")
    s = store(tmp_path, clock=Clock(time.time()))  # ctime is "now": not settled
    assert s.lookup(["a.txt"]).data == b"one"
    path.write_bytes(b"two")
    assert s.lookup(["a.txt"]).data == b"two"
    assert s.hits == 0


def test_large_files_are_opened_not_read_and_get_a_digest(tmp_path):
    data = os.urandom(10000)
    (tmp_path / "big.bin").write_bytes(data)
    s = store(tmp_path)
    v = s.lookup(["big.bin"])
    try:
        assert v.data is None and v.fd is not None and v.etag is None and v.size == 10000
        etag = digest_descriptor(v.fd)
        assert etag == etag_of(data)
        s.remember_digest(v, etag)
    finally:
        v.close()
    again = s.lookup(["big.bin"])
    assert again.etag == etag  # remembered for this version
    again.close()


def test_unsettled_large_files_get_a_weak_etag(tmp_path):
    (tmp_path / "big.bin").write_bytes(os.urandom(10000))
    v = store(tmp_path, clock=Clock(time.time())).lookup(["big.bin"])
    assert v.etag.startswith(b'W/"')
    v.close()


def test_cache_is_bounded(tmp_path):
    for i in range(10):
        (tmp_path / f"{i}.txt").write_bytes(b"x" * 1000)
    s = store(tmp_path, cache_bytes=3000)
    for i in range(10):
        s.lookup([f"{i}.txt"])
    assert s._cached_bytes <= 3000


def test_directories_fifos_and_missing_files(tmp_path):
    (tmp_path / "d").mkdir()
    os.mkfifo(tmp_path / "fifo")
    s = store(tmp_path)
    assert isinstance(s.lookup(["d"]), DirectoryEntry)
    assert s.lookup(["fifo"]) is None  # never opened: it would block
    assert s.lookup(["missing"]) is None
    assert s.lookup(["d", "missing", "x"]) is None


def test_symlinks_out_of_the_root_are_refused_inside_are_fine(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "secret.txt").write_bytes(b"secret")
    (tmp_path / "outside").mkdir()
    (root / "inside.txt").write_bytes(b"fine")
    os.symlink(tmp_path / "secret.txt", root / "leak.txt")
    os.symlink(tmp_path / "outside", root / "leakdir")
    os.symlink("inside.txt", root / "alias.txt")
    s = store(root)
    with pytest.raises(PathRefused):
        s.lookup(["leak.txt"])
    with pytest.raises(PathRefused):
        s.lookup(["leakdir"])
    assert s.lookup(["alias.txt"]).data == b"fine"


# ------------------------------------------------------------ uploads and deletes


def allow(_current: Validators):
    return None


def test_upload_commit_creates_then_replaces(tmp_path):
    objects = ObjectStore(str(tmp_path))
    up = objects.begin_upload(["new.txt"])
    up.write(b"hello ")
    up.write(b"world")
    created, etag = up.commit(allow, need_etag=False)
    assert created and etag == etag_of(b"hello world")
    assert (tmp_path / "new.txt").read_bytes() == b"hello world"
    up = objects.begin_upload(["new.txt"])
    up.write(b"v2")
    created, _ = up.commit(allow, need_etag=False)
    assert not created and (tmp_path / "new.txt").read_bytes() == b"v2"
    assert sorted(os.listdir(tmp_path)) == ["new.txt"]  # no temp file left


def test_a_broken_upload_leaves_nothing(tmp_path):
    (tmp_path / "f.txt").write_bytes(b"old")
    up = ObjectStore(str(tmp_path)).begin_upload(["f.txt"])
    up.write(b"half of the new")
    assert len(os.listdir(tmp_path)) == 2  # the hidden temp file exists meanwhile
    up.discard()
    assert os.listdir(tmp_path) == ["f.txt"] and (tmp_path / "f.txt").read_bytes() == b"old"


def test_conditional_commit_checks_the_current_file(tmp_path):
    (tmp_path / "f.txt").write_bytes(b"old")
    up = ObjectStore(str(tmp_path)).begin_upload(["f.txt"])
    up.write(b"new")
    seen = []

    def refuse(current):
        seen.append(current)
        return 412

    with pytest.raises(ObjectError) as e:
        up.commit(refuse, need_etag=True)
    assert e.value.status == 412 and seen[0].etag == etag_of(b"old")
    assert os.listdir(tmp_path) == ["f.txt"] and (tmp_path / "f.txt").read_bytes() == b"old"


def test_upload_needs_an_existing_parent_inside_the_root(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "outside").mkdir()
    os.symlink(tmp_path / "outside", root / "out")
    objects = ObjectStore(str(root))
    with pytest.raises(ObjectError) as e:
        objects.begin_upload(["no-such-dir", "f.txt"])
    assert e.value.status == 409
    with pytest.raises(PathRefused):
        objects.begin_upload(["out", "f.txt"])
    assert os.listdir(tmp_path / "outside") == []


def test_upload_over_a_symlink_replaces_the_link_not_its_target(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    target = tmp_path / "target.txt"
    target.write_bytes(b"keep")
    os.symlink(target, root / "link.txt")
    up = ObjectStore(str(root)).begin_upload(["link.txt"])
    up.write(b"x")
    with pytest.raises(ObjectError) as e:  # a symlink is not an object we manage
        up.commit(allow, need_etag=False)
    assert e.value.status == 409
    assert target.read_bytes() == b"keep"


def test_delete(tmp_path):
    (tmp_path / "f.txt").write_bytes(b"x")
    objects = ObjectStore(str(tmp_path))
    with pytest.raises(ObjectError) as e:
        objects.delete(["f.txt"], lambda current: 412, need_etag=False)
    assert e.value.status == 412 and (tmp_path / "f.txt").exists()
    objects.delete(["f.txt"], allow, need_etag=False)
    assert not (tmp_path / "f.txt").exists()
    with pytest.raises(ObjectError) as e:
        objects.delete(["f.txt"], allow, need_etag=False)
    assert e.value.status == 404
