"""A live worker keeping a disconnected durable open lets go of it within a few
seconds once a reconnect took it over on another worker of its node or on
another node (issue 4): its ``durable_handles`` figure drops and its node-table
rows go, while the record, now the reclaimer's, stays until the reclaimed
handle closes.  smbprotocol clients against ``hanode smb`` (two workers; or
two nodes, one etcd, one shared storage directory)."""

from __future__ import annotations

import sqlite3
import time
import tomllib
import uuid
from pathlib import Path

import durable_client as dc
import harness
from hanode.store import Store
from test_durable_live_worker import _disconnected, _held_then_dropped, _mount_on
from test_durable_orphan_delete import _two_nodes
from test_durable_reclaim import _cluster, _durable_records_left

FORGET_WITHIN = 8.0  # seconds: the worker's owner poll (1 s) plus its figures' period (2 s)


def _durable_handles(etcd_url: str, t: harness.Target, pid: int) -> int:
    """The durable_handles figure the worker process ``pid`` last published."""
    store = Store([etcd_url], _cluster(t))
    try:
        for entry in store.get_prefix(store.key("workers") + "/"):
            if isinstance(entry.value, dict) and entry.value.get("pid") == pid:
                return int(entry.value["durable_handles"])
    finally:
        store.close()
    raise LookupError(f"no worker with pid {pid} published its figures")


def _until_durable_handles(etcd_url: str, t: harness.Target, pid: int, count: int,
                           timeout: float = FORGET_WITHIN) -> None:
    deadline = time.monotonic() + timeout
    while (seen := _durable_handles(etcd_url, t, pid)) != count:
        assert time.monotonic() < deadline, f"worker {pid} reports {seen} durable handles"
        time.sleep(0.2)


def _disconnected_rows(t: harness.Target) -> int:
    """Rows of disconnected opens in the node's table (what other workers purge)."""
    config = tomllib.loads(t.config.read_text())
    path = Path(config["node"]["state_dir"]) / f"smb-{config['cluster']['name']}.sqlite"
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT COUNT(*) FROM disconnected").fetchone()[0]
    finally:
        db.close()


def test_old_worker_forgets_an_open_reclaimed_on_another_worker(two_workers, etcd_server):
    t = two_workers
    client_guid, create_guid, file_id, holder = _held_then_dropped(etcd_server.url, t, "w.bin")
    _until_durable_handles(etcd_server.url, t, holder, 1)
    back, _ = _mount_on(t, client_guid, not_worker=holder)
    op = dc.reclaim(back, file_id, create_guid)
    _until_durable_handles(etcd_server.url, t, holder, 0)  # not 60 s later, at its timeout
    assert len(_durable_records_left(etcd_server.url, t, wait=0)) == 1  # forgotten, not purged
    op.write(b"client again", 0)
    op.close()
    back.conn.disconnect()
    assert (t.share / "w.bin").read_bytes() == b"client again"
    assert _durable_records_left(etcd_server.url, t) == []
    assert "Traceback" not in t.log_text(), t.log_text()[-4000:]


def test_old_node_forgets_an_open_reclaimed_on_another_node(etcd_server, tmp_path):
    with _two_nodes(etcd_server, tmp_path) as (n1, n2):
        client_guid, create_guid = uuid.uuid4(), uuid.uuid4()
        m = dc.mount(n1.port, n1.user, n1.password, n1.share_name, client_guid)
        holder = dc.serving_pid(n1.port, m.local_port())
        first, contexts = dc.open_durable(m, "n.bin", create_guid)
        assert any(isinstance(c, dc.SMB2CreateDurableHandleResponseV2) for c in contexts)
        first.write(b"first client", 0)
        m.drop()
        _disconnected(etcd_server.url, n1)
        _until_durable_handles(etcd_server.url, n1, holder, 1)
        assert _disconnected_rows(n1) == 1
        back = dc.mount(n2.port, n2.user, n2.password, n2.share_name, client_guid)
        op = dc.reclaim(back, first.file_id, create_guid)
        _until_durable_handles(etcd_server.url, n1, holder, 0)
        assert _disconnected_rows(n1) == 0
        assert len(_durable_records_left(etcd_server.url, n2, wait=0)) == 1
        assert op.read(0, 12) == b"first client"
        op.close()
        back.conn.disconnect()
        assert _durable_records_left(etcd_server.url, n2) == []
