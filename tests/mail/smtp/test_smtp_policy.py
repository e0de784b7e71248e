"""Local domains, accounts, aliases and relay rules; MX host selection; group commit."""

from __future__ import annotations

import pytest
import pytest_twisted
from hypothesis import given, strategies as st

from twisted_netapps.accounts import AccountStore
from twisted_netapps.errors import ConfigError
from twisted_netapps.mail.store.commit import GroupCommitter
from twisted_netapps.mail.store.maildir import MailStore
from twisted_netapps.mail.smtp.service import Settings as SMTPSettings
from twisted_netapps.mail.smtp.policy import MailPolicy, Route
from twisted_netapps.mail.smtp.core import SessionInfo
from twisted_netapps.mail.smtp.syntax import Address, SyntaxProblem, parse_path


@pytest.fixture
def policy(tmp_path):
    store = AccountStore(tmp_path)
    store.add("alice", "pw", log2_n=4)
    store.add("Bob", "pw", log2_n=4)
    return MailPolicy(
        store, local_domains=["example.test", "Other.TEST"],
        aliases={"postmaster": ["alice"], "team": ["alice", "bob", "carol@far.test"],
                 "sales@other.test": ["bob"], "loop": ["loop"], "ghost": ["nobody"]},
        relay_networks=["10.0.0.0/8"],
    )


def test_accounts_and_aliases(policy):
    assert policy.route(Address("alice", "example.test")) == Route(("alice",))
    assert policy.route(Address("BOB", "other.test")) == Route(("Bob",))  # case-insensitive local part
    assert policy.route(Address("postmaster", "")) == Route(("alice",))
    assert policy.route(Address("team", "example.test")) == Route(("alice", "Bob"), (Address("carol", "far.test"),))
    assert policy.route(Address("sales", "other.test")) == Route(("Bob",))
    assert policy.route(Address("sales", "example.test")) is None  # that alias is for other.test only
    assert policy.route(Address("loop", "example.test")) is None  # alias loops end, not hang
    assert policy.route(Address("ghost", "example.test")) is None


def test_recipient_verdicts(policy):
    anonymous = SessionInfo("127.0.0.1")
    assert policy.check_recipient(anonymous, Address("", ""), Address("alice", "example.test")) is None
    assert policy.check_recipient(anonymous, Address("", ""), Address("zed", "example.test")).code == 550
    assert policy.check_recipient(anonymous, Address("", ""), Address("u", "far.test")).code == 554
    assert policy.check_recipient(SessionInfo("10.1.2.3"), Address("", ""), Address("u", "far.test")) is None
    authed = SessionInfo("127.0.0.1", auth_user="alice")
    assert policy.check_recipient(authed, Address("", ""), Address("u", "far.test")) is None


def test_new_account_seen_without_restart(policy, tmp_path):
    assert policy.route(Address("dave", "example.test")) is None
    AccountStore(tmp_path).add("dave", "pw", log2_n=4)
    assert policy.route(Address("dave", "example.test")) == Route(("dave",))


def test_bad_config_rejected(tmp_path):
    with pytest.raises(ConfigError):
        MailPolicy(AccountStore(tmp_path), local_domains=[], aliases={}, relay_networks=["not-a-net"])
    with pytest.raises(ConfigError):
        MailPolicy(AccountStore(tmp_path), local_domains=[], aliases={"x": ["bad@@address"]}, relay_networks=[])


@pytest.mark.parametrize("arg,expected", [
    ("FROM:<a@b.test>", Address("a", "b.test")),
    ("from: <a@B.Test> SIZE=10", Address("a", "b.test")),
    ("FROM:<@relay.test,@r2.test:a@b.test>", Address("a", "b.test")),
    ('FROM:<"odd name"@b.test>', Address('"odd name"', "b.test")),
    ("FROM:<>", Address("", "")),
    ("FROM:<a@[127.0.0.1]>", Address("a", "[127.0.0.1]")),
])
def test_paths(arg, expected):
    assert parse_path(arg, "FROM", allow_null=True)[0] == expected


@pytest.mark.parametrize("arg", ["FROM:a", "FROM:<a@>", "FROM:<a b@c.test>", "TO:<a@b.test>", "FROM:<a@b.test",
                                 "FROM:<a@-bad.test>", "FROM:<" + "x" * 65 + "@b.test>"])
def test_bad_paths(arg):
    with pytest.raises(SyntaxProblem):
        parse_path(arg, "FROM", allow_null=True)


@given(st.text(max_size=300))
def test_path_parser_total(text):
    try:
        address, params = parse_path(text, "TO", allow_null=False)
    except SyntaxProblem as e:
        assert 500 <= e.code < 600
    else:
        assert not address.is_null


def test_resolver_setting_is_an_address_or_empty():
    for value in ("", "127.0.0.1:5301", "[::1]:53", "127.0.0.1", "::1"):
        SMTPSettings(resolver=value).validate("smtp")
    for value in ("dns.example:53", "127.0.0.1:0", "[::1]x"):
        with pytest.raises(ConfigError, match="smtp.resolver"):
            SMTPSettings(resolver=value).validate("smtp")


@pytest_twisted.inlineCallbacks
def test_group_commit_batches_and_reports_each_job(tmp_path):
    from twisted.internet import reactor

    store = MailStore(tmp_path / "mail")
    committer = GroupCommitter(reactor, parallel=1)

    def job(n):
        def run(dirs):
            box = store.maildir("alice")
            path, name = box.write_tmp(f"Subject: {n}\n\nx".encode())
            box.publish(path, name, fsync_dir=False)
            dirs.add(box.new)
            return name
        return run

    def failing(dirs):
        raise OSError(28, "No space left on device")

    waits = [committer.submit(job(n)) for n in range(10)] + [committer.submit(failing)]
    names = yield defer_list(waits[:-1])
    assert len(set(names)) == 10 and len(list(store.maildir("alice").new.iterdir())) == 10
    with pytest.raises(OSError):
        yield waits[-1]
    assert committer.batches < committer.jobs  # jobs that queued up went together


def defer_list(ds):
    from twisted.internet import defer

    return defer.gatherResults(ds)
