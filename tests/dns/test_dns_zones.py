"""Zone loading: BIND master files through dnspython, errors as file:line: reason."""

from __future__ import annotations

import os
from pathlib import Path

import dns.name
import dns.rdatatype
import pytest

from twisted_netapps.dns.zones import ZoneError, files_changed, load_zone

DEMO = Path(__file__).resolve().parents[2] / "twisted_netapps" / "data" / "zones"
N = dns.name.from_text

GOOD = """$ORIGIN example.test.
$TTL 1h
@   IN SOA ns1 hostmaster ( 7 1h 15m 1w 5m )
    IN NS  ns1
    IN MX  10 mail
ns1 IN A 127.0.0.4
mail 2d IN A 127.0.0.1
txt IN TXT "hello world" "two strings"
a.b.ent IN A 127.0.0.7
"""


def write(tmp_path: Path, text: str, name: str = "z.zone") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_demo_zones_load():
    for origin, file in [(".", "root.zone"), ("test.", "test.zone"),
                         ("example.test.", "example.test.zone"), ("lab.example.test.", "lab.example.test.zone")]:
        zone = load_zone(origin, DEMO / file)
        assert zone.origin == N(origin) and zone.serial == 2026112101


def test_what_stock_twisted_gets_wrong_is_right_here(tmp_path):
    zone = load_zone("example.test.", write(tmp_path, GOOD))
    apex = zone.node(N("example.test."))
    # owner-less lines belong to the owner above, relative RDATA names are completed
    mx = apex.get_rdataset(1, dns.rdatatype.MX)
    assert mx[0].exchange == N("mail.example.test.")
    # the parenthesised one-line SOA did not swallow the rest of the file
    assert zone.node(N("mail.example.test.")) is not None
    # TTL units
    assert zone.node(N("mail.example.test.")).get_rdataset(1, dns.rdatatype.A).ttl == 2 * 86400
    assert mx.ttl == 3600
    # quoted TXT strings are kept whole
    txt = zone.node(N("txt.example.test.")).get_rdataset(1, dns.rdatatype.TXT)
    assert txt[0].strings == (b"hello world", b"two strings")


def test_indexes_and_negative_ttl(tmp_path):
    zone = load_zone("example.test.", write(tmp_path, GOOD))
    assert N("b.ent.example.test.") in zone.names and N("ent.example.test.") in zone.names
    assert zone.node(N("ent.example.test.")) is None  # empty non-terminal
    assert zone.soa.ttl == 300  # min(SOA TTL 3600, minimum 300)
    assert zone.cuts == set()


def test_negative_ttl_is_soa_ttl_when_smaller(tmp_path):
    text = GOOD.replace("@   IN SOA", "@ 60 IN SOA")
    assert load_zone("example.test.", write(tmp_path, text)).soa.ttl == 60


def test_syntax_error_names_file_and_line(tmp_path):
    path = write(tmp_path, GOOD + "bad IN BOGUS 1.2.3.4\n")
    with pytest.raises(ZoneError, match=rf"^{path}:10: unknown rdatatype 'BOGUS'"):
        load_zone("example.test.", path)


def test_no_soa(tmp_path):
    path = write(tmp_path, "$TTL 1h\nwww.example.test. IN A 127.0.0.1\n")
    with pytest.raises(ZoneError, match="no SOA"):
        load_zone("example.test.", path)


def test_no_ns(tmp_path):
    path = write(tmp_path, "$TTL 1h\nexample.test. IN SOA a b 1 2 3 4 5\n")
    with pytest.raises(ZoneError, match="no NS"):
        load_zone("example.test.", path)


def test_cname_and_other_data(tmp_path):
    path = write(tmp_path, GOOD + "x IN CNAME mail\nx IN A 127.0.0.1\n")
    with pytest.raises(ZoneError, match="CNAME must be alone"):
        load_zone("example.test.", path)


def test_missing_file():
    with pytest.raises(ZoneError, match="cannot read"):
        load_zone("example.test.", "/nonexistent/zone")


def test_include_is_relative_to_the_zone_file(tmp_path, monkeypatch):
    sub = tmp_path / "zones"
    sub.mkdir()
    (sub / "extra.inc").write_text("extra IN A 127.0.0.8\n")
    path = write(sub, GOOD + "$INCLUDE extra.inc\n")
    monkeypatch.chdir(tmp_path)  # not the zone's directory
    zone = load_zone("example.test.", path)
    assert zone.node(N("extra.example.test.")) is not None
    assert str(sub / "extra.inc") in zone.files


def test_include_with_origin(tmp_path):
    (tmp_path / "sub.inc").write_text("host IN A 127.0.0.9\n")
    zone = load_zone("example.test.", write(tmp_path, GOOD + "$INCLUDE sub.inc sub.example.test.\n"))
    assert zone.node(N("host.sub.example.test.")) is not None


def test_missing_include_names_the_line(tmp_path):
    path = write(tmp_path, GOOD + "$INCLUDE nothere.inc\n")
    with pytest.raises(ZoneError, match=rf"^{path}:10: \$INCLUDE: cannot read .*nothere.inc"):
        load_zone("example.test.", path)


def test_error_inside_include_names_the_included_file(tmp_path):
    (tmp_path / "bad.inc").write_text("ok IN A 127.0.0.1\nbad IN A not-an-address\n")
    with pytest.raises(ZoneError, match=r"bad.inc:\d+:"):
        load_zone("example.test.", write(tmp_path, GOOD + "$INCLUDE bad.inc\n"))


def test_files_changed_tracks_includes(tmp_path):
    inc = tmp_path / "x.inc"
    inc.write_text("x IN A 127.0.0.1\n")
    zone = load_zone("example.test.", write(tmp_path, GOOD + "$INCLUDE x.inc\n"))
    assert not files_changed(zone)
    os.utime(inc, (1, 1))
    assert files_changed(zone)


def test_delegation_cuts(tmp_path):
    text = GOOD + "lab IN NS ns1.lab\nns1.lab IN A 127.0.0.5\n"
    zone = load_zone("example.test.", write(tmp_path, text))
    assert zone.cuts == {N("lab.example.test.")}


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

ZONE_TOKENS = st.sampled_from([
    "IN", "A", "AAAA", "MX", "CNAME", "TXT", "NS", "SOA", "SRV", "CAA", "PTR", "$TTL", "$ORIGIN", "$INCLUDE",
    "$GENERATE", "@", "(", ")", ";", '"', "1h", "10", "x", "x.example.test.", "127.0.0.1", "::1", "*", "\\",
    "\n", " ", "\t", "other.", "999999999999", "-1",
])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(ZONE_TOKENS, max_size=30), st.text(max_size=40))
def test_any_edit_loads_or_is_a_zone_error(tmp_path, tokens, noise):
    path = tmp_path / "fuzz.zone"
    path.write_text(GOOD + " ".join(tokens) + noise + "\n")
    try:
        zone = load_zone("example.test.", path)
    except ZoneError as e:
        assert "\n" not in str(e) and str(e)  # one line, something to say
    else:
        assert zone.origin == N("example.test.")


def test_include_without_a_file_name_is_a_one_line_error(tmp_path):
    # Found by hypothesis: dnspython takes the line break as the file name.
    with pytest.raises(ZoneError) as e:
        load_zone("example.test.", write(tmp_path, GOOD + "$INCLUDE\n"))
    assert "\n" not in str(e.value) and "cannot read" in str(e.value)


def test_the_zone_file_check_survives_a_failure_and_keeps_its_schedule(monkeypatch, tmp_path):
    from twisted.internet import task

    from twisted_netapps.dns import zoneset
    from twisted_netapps.stats import ServiceStats

    zone_file = tmp_path / "lab.test.zone"
    zone_file.write_text("$ORIGIN lab.test.\n$TTL 60\n@ IN SOA ns1 host 1 60 60 60 60\n@ IN NS ns1\nns1 IN A 127.0.0.53\n")
    clock = task.Clock()
    zones = zoneset.ZoneSet([zoneset.ZoneSpec(dns.name.from_text("lab.test."), zone_file)], clock, ServiceStats("dns"),
                            reload_interval=5)
    zones.load_all()
    checks = []

    def files_changed(loaded):
        checks.append(clock.seconds())
        if len(checks) == 1:
            raise RuntimeError("stat went wrong")
        return False

    monkeypatch.setattr(zoneset, "files_changed", files_changed)
    monkeypatch.setattr(zoneset.signal, "signal", lambda *args: None)  # no SIGHUP handler from a test
    zones.startService()
    try:
        clock.advance(5)
        clock.advance(5)
    finally:
        zones.stopService()
    assert checks == [5, 10] and zones._poll.failures == 1
