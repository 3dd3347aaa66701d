"""Fixtures for tests against real SMB servers; the machinery is in harness.py.

Test modules here import it as ``import harness`` (pytest puts this directory on
sys.path for them).
"""

from __future__ import annotations

import pytest

import harness


def assert_clean_log(target: harness.Target) -> None:
    """Whatever a test did, the server must not have logged a traceback."""
    text = target.log_text()
    assert "Traceback" not in text, text[-4000:]


@pytest.fixture
def hanode_server(etcd_server, tmp_path):
    """``hanode smb`` with one worker, user root, share ``test``."""
    target = harness.start_hanode(etcd_server.url, tmp_path / "hanode")
    try:
        yield target
    finally:
        harness.stop(target)
    assert_clean_log(target)


@pytest.fixture(scope="module")
def smbd_server(tmp_path_factory):
    """A private smbd for the module, configured as Samba's selftest shares are."""
    target = harness.start_smbd(tmp_path_factory.mktemp("smbd"))
    try:
        yield target
    finally:
        harness.stop(target)
