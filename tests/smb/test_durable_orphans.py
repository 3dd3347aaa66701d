"""A disconnected durable handle whose node died still counts on the node that
serves the file next (MS-SMB2 3.3.5.9: a conflicting open purges it, and the
old client's DH2C then finds nothing; an open that conflicts with nothing
leaves it reclaimable).  Two nodes (two ``hanode smb`` instances, one etcd,
one shared storage directory); node 1 is SIGKILLed whole."""

from __future__ import annotations

import os
import signal
import time
import uuid

import pytest

import durable_client as dc
import harness
from hanode.store import Store
from test_durable_reclaim import _cluster, _durable_records_left


def _wait_orphans_known(etcd_url: str, target: harness.Target, node: str,
                        timeout: float = 20.0) -> None:
    """Until the surviving node's worker reports the dead node's handle as known."""
    store = Store([etcd_url], _cluster(target))
    try:
        deadline = time.monotonic() + timeout
        while True:
            entry = store.get(store.worker_key(node, "w0"))
            if entry is not None and entry.value.get("orphaned_durable", 0) >= 1:
                return
            assert time.monotonic() < deadline, f"{node} never learned of the orphaned handle"
            time.sleep(0.2)
    finally:
        store.close()


@pytest.fixture
def orphaned(etcd_server, tmp_path):
    """A durable v2 handle with a batch oplock on node 1, node 1 then killed; yields
    (node 2, client guid, create guid, file id)."""
    n1 = harness.start_hanode(etcd_server.url, tmp_path / "n1", workers=1)
    n2 = None
    try:
        n2 = harness.start_hanode(etcd_server.url, tmp_path / "n2", workers=1,
                                  cluster=_cluster(n1), node="n2", share=n1.share)
        client_guid, create_guid = uuid.uuid4(), uuid.uuid4()
        m = dc.mount(n1.port, n1.user, n1.password, n1.share_name, client_guid)
        op, contexts = dc.open_durable(m, "orphan.bin", create_guid)
        assert any(isinstance(c, dc.SMB2CreateDurableHandleResponseV2) for c in contexts)
        op.write(b"first client", 0)
        os.killpg(n1.proc.pid, signal.SIGKILL)
        n1.proc.wait()
        _wait_orphans_known(etcd_server.url, n2, "n2")
        yield n2, client_guid, create_guid, op.file_id
    finally:
        harness.stop(n1)
        if n2 is not None:
            harness.stop(n2)
    assert "Traceback" not in n2.log_text(), n2.log_text()[-4000:]


def test_conflicting_open_on_another_node_purges_the_handle(orphaned, etcd_server):
    n2, client_guid, create_guid, file_id = orphaned
    status = dc.reclaim_after_a_conflicting_open(
        n2.port, n2.user, n2.password, n2.share_name, "orphan.bin", b"second client",
        client_guid, file_id, create_guid)
    assert status == dc.OBJECT_NAME_NOT_FOUND
    assert _durable_records_left(etcd_server.url, n2) == []
    assert (n2.share / "orphan.bin").read_bytes() == b"second client"


def test_open_without_conflict_leaves_the_handle_reclaimable(orphaned, etcd_server):
    n2, client_guid, create_guid, file_id = orphaned
    other = dc.mount(n2.port, n2.user, n2.password, n2.share_name, uuid.uuid4())
    dc.stat_open(other.tree, "orphan.bin")
    other.conn.disconnect()
    back = dc.mount(n2.port, n2.user, n2.password, n2.share_name, client_guid)
    op = dc.reclaim(back, file_id, create_guid)
    assert op.read(0, 12) == b"first client"
    op.close()
    back.conn.disconnect()
    assert _durable_records_left(etcd_server.url, n2) == []
