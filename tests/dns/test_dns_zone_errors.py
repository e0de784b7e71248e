"""A zone file's bad record: its own line and what is wrong with it."""

from __future__ import annotations

import dns.name
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from twisted_netapps.dns.zone_diagnosis import explain
from twisted_netapps.dns.zones import ZoneError, load_zone

HEAD = "$TTL 300\n@ IN SOA ns1 host 1 2 3 4 5\n@ IN NS ns1\n"


@pytest.mark.parametrize("record, message", [
    ("ns1 IN A 999.1.1.1", "A record '999.1.1.1': not an IPv4 address (Octet 999 (> 255) not permitted"),
    ("ns1 IN A 1.2.3", "A record '1.2.3': not an IPv4 address (Expected 4 octets"),
    ("ns1 IN AAAA 1.2.3.4", "AAAA record '1.2.3.4': not an IPv6 address"),
    ("@ IN MX mail", "MX record 'mail': expecting an integer (expected PREFERENCE EXCHANGE"),
    ("@ IN MX 10", "MX record '10': "),
    ("  IN A 300.1.1.1", "A record '300.1.1.1': not an IPv4 address"),
    ("ns1 IN A 1.2.3.4 extra", "A record '1.2.3.4 extra': "),
    ("ns1 IN BOGUS 1", "unknown rdatatype 'BOGUS'"),
])
def test_bad_record_reported_on_its_line(tmp_path, record, message):
    path = tmp_path / "z.zone"
    path.write_text(HEAD + record + "\nwww IN A 1.2.3.4\n")
    with pytest.raises(ZoneError) as e:
        load_zone("x.", path)
    assert str(e.value).startswith(f"{path}:4: {message}"), str(e.value)


def test_unlocated_messages_pass_through():
    assert explain("no line here", dns.name.root) == "no line here"
    assert explain("/nonexistent/file:3: Text input is malformed.", dns.name.root) == (
        "/nonexistent/file:3: Text input is malformed."
    )


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=" \t;$()\"\\.@0123456789abcINAMXSOTR-:", max_size=40))
def test_any_bad_line_is_one_line_error_or_loads(tmp_path, line):
    path = tmp_path / "z.zone"
    path.write_text(HEAD + line + "\n")
    try:
        load_zone("x.", path)
    except ZoneError as e:
        assert "\n" not in str(e) and str(e).startswith(str(path))
