"""Fixtures for the proxy tests: one daemon per mode per module, fresh paths per test."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from proxy_origin import TestOrigin  # noqa: E402
from proxytestlib import start_proxy  # noqa: E402


@pytest.fixture(scope="module")
def origin():
    with TestOrigin() as server:
        yield server


@pytest.fixture(scope="module", params=["forward", "reverse"])
def proxy(request, origin, tmp_path_factory):
    """The daemon in forward and in reverse mode, in front of the module's test origin."""
    under_test = start_proxy(tmp_path_factory.mktemp(f"proxy-{request.param}"), origin, request.param)
    yield under_test
    under_test.daemon.stop()
