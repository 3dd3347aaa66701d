"""PreviousSessionId (MS-SMB2 3.3.5.5.3) reaches every worker of the node: a client
whose new connection lands on another worker than its old session names that
session, the old session is logged off there, and the client's durable open is
then reclaimable at once.  smbprotocol is the client; it never sets the field
itself, so the test hands its SESSION_SETUP request one."""

from __future__ import annotations

import time
import uuid

import pytest
import smbprotocol.session
from smbprotocol.connection import Connection
from smbprotocol.session import Session
from smbprotocol.tree import TreeConnect

import durable_client as dc
import harness


@pytest.fixture
def two_workers(etcd_server, tmp_path):
    with harness.running_hanode(etcd_server.url, tmp_path / "hanode", workers=2) as target:
        yield target


def _connect_to_another_worker(port: int, client_guid: uuid.UUID, avoid: int) -> Connection:
    """A negotiated connection served by a worker other than ``avoid`` (the kernel
    spreads connections over the workers; retry until one lands elsewhere)."""
    for _ in range(40):
        conn = Connection(client_guid, "127.0.0.1", port)
        conn.connect(timeout=5)
        if dc.serving_pid(port, conn.transport._sock.getsockname()[1]) != avoid:
            return conn
        conn.disconnect()
    raise AssertionError("every connection landed on the same worker")


def test_previous_session_on_another_worker_is_logged_off(two_workers, monkeypatch):
    t = two_workers
    client_guid, create_guid = uuid.uuid4(), uuid.uuid4()
    old = dc.mount(t.port, t.user, t.password, t.share_name, client_guid)
    op, _ = dc.open_durable(old, "prev.bin", create_guid)
    op.write(b"before the reconnect", 0)
    old_worker = dc.serving_pid(t.port, old.local_port())

    conn = _connect_to_another_worker(t.port, client_guid, old_worker)

    class WithPrevious(smbprotocol.session.SMB2SessionSetupRequest):
        def __init__(self) -> None:
            super().__init__()
            self["previous_session_id"] = old.session.session_id

    monkeypatch.setattr(smbprotocol.session, "SMB2SessionSetupRequest", WithPrevious)
    session = Session(conn, t.user, t.password, require_encryption=False)
    started = time.monotonic()
    session.connect()
    logged_on = time.monotonic() - started
    monkeypatch.undo()
    tree = TreeConnect(session, f"\\\\127.0.0.1\\{t.share_name}")
    tree.connect()
    # The old session is gone on the other worker, so its open is disconnected:
    # the reconnect succeeds right away instead of finding it still attached.
    again = dc.reclaim(dc.Mount(conn, session, tree), op.file_id, create_guid)
    assert again.read(0, 20) == b"before the reconnect"
    again.close()
    conn.disconnect()
    assert logged_on < 5, logged_on
