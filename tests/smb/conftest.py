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


@pytest.fixture(scope="session")
def smbd_baseline(tmp_path_factory):
    """A private smbd, configured as Samba's selftest shares are, and its
    smbtorture outcomes: each suite runs against it once per session."""
    target = harness.start_smbd(tmp_path_factory.mktemp("smbd"))
    baseline = harness.SmbdBaseline(target)
    try:
        yield baseline
    finally:
        baseline.close()
        harness.stop(target)
