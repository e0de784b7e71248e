"""The shared account store and its twisted.cred checker."""

import os
import stat

import pytest
from twisted.cred import credentials, error
from twisted.trial.unittest import SynchronousTestCase

from twisted_netapps.accounts import AccountError, AccountStore, hash_password, verify_password
from twisted_netapps.auth import AccountChecker


def test_hash_is_salted_scrypt_and_verifies():
    a, b = hash_password("secret", log2_n=10), hash_password("secret", log2_n=10)
    assert a.startswith("scrypt$10$") and a != b  # salted
    assert verify_password("secret", a) and not verify_password("Secret", a)
    assert not verify_password("secret", "garbage") and not verify_password("x", "scrypt$1$2$3$!!$!!")


def test_store_file_is_private_and_roundtrips(tmp_path):
    store = AccountStore(tmp_path)
    store.add("alice", "pw1", log2_n=10)
    store.add("bob", "pw2", log2_n=10)
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    assert store.names() == ["alice", "bob"]
    assert "pw1" not in store.path.read_text()
    assert store.check("alice", "pw1") and not store.check("alice", "pw2")
    assert not store.check("nobody", "pw1")
    store.remove("alice")
    assert store.names() == ["bob"]
    with pytest.raises(AccountError, match="no such user"):
        store.remove("alice")


@pytest.mark.parametrize("name", ["", "-x", "a b", "a/b", "x" * 65, "ü"])
def test_bad_names_are_refused(tmp_path, name):
    with pytest.raises(AccountError, match="invalid user name"):
        AccountStore(tmp_path).add(name, "pw", log2_n=10)


def test_duplicates_and_empty_passwords_are_refused(tmp_path):
    store = AccountStore(tmp_path)
    store.add("alice", "pw", log2_n=10)
    with pytest.raises(AccountError, match="already exists"):
        store.add("alice", "pw", log2_n=10)
    with pytest.raises(AccountError, match="empty password"):
        store.add("carol", "", log2_n=10)


def test_corrupt_file_is_a_clear_error(tmp_path):
    (tmp_path / "accounts.json").write_text("{not json")
    with pytest.raises(AccountError, match="corrupt accounts file"):
        AccountStore(tmp_path).names()


def test_demo_account_only_when_there_are_no_accounts(tmp_path):
    store = AccountStore(tmp_path)
    password = store.ensure_demo_account()
    assert password and len(password) >= 12
    assert store.check("demo", password)
    assert store.ensure_demo_account() is None


class _ThreadlessReactor:
    """Runs 'thread pool' work inline so the checker can be tested synchronously."""

    def getThreadPool(self):
        return self

    def callInThreadWithCallback(self, onResult, f, *args, **kwargs):
        onResult(True, f(*args, **kwargs))

    def callFromThread(self, f, *args, **kwargs):
        f(*args, **kwargs)


class CheckerTests(SynchronousTestCase):
    def setUp(self):
        import tempfile

        self.store = AccountStore(tempfile.mkdtemp())
        self.store.add("alice", "s3cret", log2_n=10)
        self.checker = AccountChecker(self.store, _ThreadlessReactor())

    def test_good_password_gives_the_user_name(self):
        d = self.checker.requestAvatarId(credentials.UsernamePassword(b"alice", b"s3cret"))
        self.assertEqual(self.successResultOf(d), "alice")

    def test_bad_password_and_unknown_user_are_unauthorized(self):
        for user, pw in [(b"alice", b"nope"), (b"mallory", b"s3cret")]:
            d = self.checker.requestAvatarId(credentials.UsernamePassword(user, pw))
            self.failureResultOf(d, error.UnauthorizedLogin)

    def test_portal_login(self):
        from twisted.cred.portal import IRealm
        from zope.interface import Interface, implementer

        from twisted_netapps.auth import make_portal

        class IThing(Interface):
            pass

        @implementer(IRealm)
        class Realm:
            def requestAvatar(self, avatarId, mind, *interfaces):
                return IThing, avatarId, lambda: None

        portal = make_portal(Realm(), self.store, _ThreadlessReactor())
        d = portal.login(credentials.UsernamePassword(b"alice", b"s3cret"), None, IThing)
        self.assertEqual(self.successResultOf(d)[1], "alice")


def test_write_file_writes_everything_and_leaves_nothing_torn(tmp_path, monkeypatch):
    from twisted_netapps import fileio

    target = tmp_path / "f"
    fileio.write_file(target, b"x" * 100000, mode=0o600)
    assert target.read_bytes() == b"x" * 100000 and stat.S_IMODE(os.stat(target).st_mode) == 0o600
    with pytest.raises(FileExistsError):
        fileio.write_file(target, b"y", exclusive=True)
    writes = []

    def short_then_fail(fd, data):  # a short write, then a full disk
        if writes:
            raise OSError(28, "No space left on device")
        writes.append(1)
        return os.write(fd, bytes(data[:10]))

    monkeypatch.setattr(fileio.os, "write", short_then_fail)
    with pytest.raises(OSError):
        fileio.write_file(tmp_path / "g", b"z" * 100)
    assert not (tmp_path / "g").exists()
