"""Fixtures for the file side's end-to-end tests: a running ``hanode smb``."""

from __future__ import annotations

import pytest

from tests.smbfiles import server


@pytest.fixture
def smb_server(etcd_server, tmp_path):
    srv = server.start(etcd_server.url, tmp_path)
    try:
        yield srv
    finally:
        server.stop(srv.proc)
