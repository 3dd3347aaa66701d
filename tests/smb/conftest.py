"""Fixtures for tests against real SMB servers; the machinery is in harness.py.

Test modules here import it as ``import harness`` (pytest puts this directory on
sys.path for them).  Every ``hanode smb`` fixture fails its test if the
server logged a traceback.
"""

from __future__ import annotations

import pytest

import harness
from hanode.lab import wait_for


@pytest.fixture
def hanode_server(etcd_server, tmp_path):
    """``hanode smb`` with one worker, user root, share ``test``."""
    with harness.running_hanode(etcd_server.url, tmp_path / "hanode") as target:
        yield target


@pytest.fixture
def two_workers(etcd_server, tmp_path):
    """``hanode smb`` with two workers, both listening: node-local state
    (share modes, locks, oplocks) then has to hold across processes."""
    with harness.running_hanode(etcd_server.url, tmp_path / "hanode", workers=2) as target:
        wait_for(lambda: harness.listening_workers(target) == 2, 15, "two listening workers")
        yield target


@pytest.fixture(scope="module")
def smbd_server(tmp_path_factory):
    """A private smbd for the module, configured as Samba's selftest shares are."""
    target = harness.start_smbd(tmp_path_factory.mktemp("smbd"))
    try:
        yield target
    finally:
        harness.stop(target)


@pytest.fixture(scope="session")
def smbd_baseline(tmp_path_factory):
    """smbd's smbtorture outcomes, each suite run once per session against a
    private smbd configured as Samba's selftest shares are."""
    baseline = harness.SmbdBaseline(tmp_path_factory.mktemp("smbd"))
    try:
        yield baseline
    finally:
        baseline.close()


@pytest.fixture(scope="module")
def parity_runs(etcd_server, smbd_baseline, tmp_path_factory, request):
    """The module's smbtorture parity runs, every selected suite started before
    its first test.  The module's ``PARITY`` maps each test function to the
    workers and timeout of its suites; a test's ``suite`` parameter names one."""
    plan = request.module.PARITY
    runs = harness.ParityRuns(etcd_server.url, tmp_path_factory.mktemp("hanode"),
                              smbd_baseline)
    try:
        for item in request.session.items:
            if item.module is request.module:
                runs.start(item.callspec.params["suite"], **plan[item.originalname])
        yield runs
    finally:
        runs.close()
