"""Fixtures for the file side's end-to-end tests, on the smbcore harness
(``tests/smb/harness.py``): ``hanode smb`` with two workers, so that node-local
state is exercised across processes, and a private smbd for parity runs."""

from __future__ import annotations

import pytest

from tests.smb import harness


@pytest.fixture
def smb_server(etcd_server, tmp_path):
    with harness.running_hanode(etcd_server.url, tmp_path / "hanode", workers=2) as target:
        yield target


@pytest.fixture(scope="module")
def smbd_server(tmp_path_factory):
    target = harness.start_smbd(tmp_path_factory.mktemp("smbd"))
    try:
        yield target
    finally:
        harness.stop(target)
