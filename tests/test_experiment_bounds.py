"""The distribution-time bounds, checked against the lecture notes' worked numbers."""

import pytest
from hypothesis import given, strategies as st

from twisted_netapps.experiment.bounds import client_server_bound, p2p_bound
from twisted_netapps.units import format_size, parse_rate, parse_size

# The seeds' example: client upload rate u, F/u = 1 hour, u_s = 10u, d_min >= u_s.
U = 1.0
F = 3600.0 * U  # so that F/u = 3600 s = 60 min
US = 10 * U
D = [US] * 40  # d_min = u_s: downloads never the bottleneck beyond F/u_s


def minutes(seconds):
    return seconds / 60


def test_client_server_grows_linearly_with_n():
    # N*F/u_s = N * 6 min once N*F/u_s exceeds F/d_min = 6 min
    assert [minutes(client_server_bound(n, F, US, D[:n])) for n in (1, 5, 10, 30)] == [6, 30, 60, 180]


def test_p2p_flattens_as_peers_bring_capacity():
    values = [minutes(p2p_bound(n, F, US, [U] * n, D[:n])) for n in (1, 5, 10, 30)]
    # N*F/(u_s + N*u) = 60 N / (10 + N) minutes; F/u_s = 6 min is the floor
    assert values == pytest.approx([6, 20, 30, 45])
    assert values[-1] < 60  # bounded by F/u = 60 min however large N gets


def test_slowest_downloader_bounds_both():
    slow = [US] * 3 + [U / 2]
    assert client_server_bound(4, F, US, slow) == pytest.approx(F / (U / 2))
    assert p2p_bound(4, F, US, [U] * 4, slow) == pytest.approx(F / (U / 2))


def test_argument_checks():
    with pytest.raises(ValueError):
        client_server_bound(0, F, US, [])
    with pytest.raises(ValueError, match="3 peers need 3 upload rates"):
        p2p_bound(3, F, US, [U], D[:3])


@given(st.integers(1, 64), st.floats(1, 1e9), st.floats(1, 1e9), st.floats(1, 1e9))
def test_p2p_never_slower_than_client_server(n, f, us, u):
    downloads = [us * 2] * n
    assert p2p_bound(n, f, us, [u] * n, downloads) <= client_server_bound(n, f, us, downloads) * (1 + 1e-12)


def test_sizes_and_rates():
    assert parse_size("16MiB") == 16 * 1024 * 1024
    assert parse_size("256KiB") == 262144
    assert parse_size("1.5MB") == 1_500_000
    assert parse_rate("4MiB/s") == 4 * 1024 * 1024
    assert parse_rate("512KiB/s") == 524288
    for bad in ("", "x", "-1MiB", "4 parsecs", "0"):
        with pytest.raises(ValueError):
            parse_size(bad)
    assert format_size(16 * 1024 * 1024) == "16MiB"
