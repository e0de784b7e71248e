"""Shared fixtures: the real daemon, and the interop rules.

Interop tests (``@pytest.mark.interop``) need external programs. Locally they
skip with a clear reason when a program is missing; under ``CI=true`` CI has
installed every tool, so a missing one fails the test instead.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from netapps_daemon import Daemon, start_daemon  # noqa: E402

IN_CI = os.environ.get("CI", "").lower() == "true"


def require_tool(*names: str) -> str:
    """Path of the first of *names* on PATH (also sbin); skip (fail under CI) if none."""
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin", "/usr/local/sbin"])
    for name in names:
        path = shutil.which(name, path=search)
        if path:
            return path
    message = f"needs {' or '.join(names)} on PATH (apt-get install it; .ci/run does)"
    if IN_CI:
        pytest.fail(f"CI=true: {message}")
    pytest.skip(message)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and item.get_closest_marker("interop") is not None:
        report.outcome = "failed"
        report.longrepr = f"CI=true: interop test skipped: {report.longrepr}"


@pytest.fixture
def netapps_daemon(tmp_path):
    """Factory: ``netapps_daemon(services, listen=..., sets=...) -> Daemon``; all stopped at teardown."""
    started: list[Daemon] = []

    def start(services, *, data_dir: Path | None = None, **kwargs) -> Daemon:
        daemon = start_daemon(services, data_dir or tmp_path / f"data{len(started)}", **kwargs)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.stop()
