"""Durable handles over real connections: a 64 MiB copy survives its worker
being SIGKILLed and its connection being dropped, the handle is refused to
another user, and a second client's conflicting open wins over a
disconnected handle as MS-SMB2 prescribes.  smbprotocol is the client."""

from __future__ import annotations

import hashlib
import os
import signal
import time
import uuid

import pytest
from smbprotocol.exceptions import SMBResponseException

import durable_client as dc
import harness
from hanode.store import Store

DATA = os.urandom(64 * 1024 * 1024)
DIGEST = hashlib.sha256(DATA).hexdigest()


def _cluster(target: harness.Target) -> str:
    for line in target.config.read_text().splitlines():
        if line.startswith("name = \"t"):
            return line.split('"')[1]
    raise LookupError("no cluster name in the config")


def _durable_records_left(etcd_url: str, target: harness.Target, wait: float = 2.0) -> list:
    """The durable records still in etcd once ``wait`` seconds passed or none is left.

    A CLOSE does not wait for its record's delete: it goes with the worker's
    next etcd round, at most DurableWriter.DISCARD_LINGER later.
    """
    store = Store([etcd_url], _cluster(target))
    deadline = time.monotonic() + wait
    try:
        while True:
            left = store.get_prefix(store.key("durable") + "/")
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.05)
    finally:
        store.close()


def _sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@pytest.fixture
def two_workers(etcd_server, tmp_path):
    with harness.running_hanode(etcd_server.url, tmp_path / "hanode", workers=2) as target:
        yield target


def test_copy_survives_sigkill_of_its_worker(two_workers, etcd_server):
    t = two_workers
    killed: list[int] = []

    def kill_worker(m: dc.Mount) -> None:
        pid = dc.serving_pid(t.port, m.local_port())
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    report = dc.copy_with_failover(t.port, t.user, t.password, t.share_name, "big.bin", DATA,
                                   kill_worker, disrupt_at=20)
    assert report.reconnects == 1
    assert killed and report.serving_pids[0] == killed[0]
    assert report.serving_pids[1] != killed[0]  # reclaimed by another worker process
    assert _sha256(t.share / "big.bin") == DIGEST
    assert _durable_records_left(etcd_server.url, t) == []  # CLOSE deleted the record
    print(f"reclaimed after SIGKILL in {report.reclaim_seconds[0]:.2f} s")


def test_copy_survives_a_dropped_connection(two_workers, etcd_server):
    t = two_workers
    report = dc.copy_with_failover(t.port, t.user, t.password, t.share_name, "drop.bin", DATA,
                                   dc.Mount.drop, disrupt_at=30)
    assert report.reconnects == 1
    assert report.reclaim_seconds[0] < 5  # no lease to wait out: the close was seen
    assert _sha256(t.share / "drop.bin") == DIGEST
    assert _durable_records_left(etcd_server.url, t) == []


def test_another_user_cannot_reclaim(two_workers):
    t = two_workers
    added = harness.add_user(t.config, "mallory", "Other-pw9")
    assert added.returncode == 0, added.stderr
    client_guid, create_guid = uuid.uuid4(), uuid.uuid4()
    m = dc.mount(t.port, t.user, t.password, t.share_name, client_guid)
    op, _ = dc.open_durable(m, "secret.bin", create_guid)
    op.write(b"owner data", 0)
    file_id = op.file_id
    m.drop()
    time.sleep(0.5)
    thief = dc.mount(t.port, "mallory", "Other-pw9", t.share_name, client_guid)
    with pytest.raises(SMBResponseException) as refused:
        dc.reclaim(thief, file_id, create_guid)
    assert refused.value.status == dc.ACCESS_DENIED
    thief.conn.disconnect()
    owner = dc.mount(t.port, t.user, t.password, t.share_name, client_guid)
    again = dc.reclaim(owner, file_id, create_guid)  # the refusal did not spend the handle
    assert again.read(0, 10) == b"owner data"
    again.close()
    owner.conn.disconnect()


def test_a_closed_handle_cannot_be_reclaimed_while_its_delete_is_queued(etcd_server, tmp_path):
    """CLOSE answers before its record's delete is in etcd (the delete rides in the
    worker's next etcd round); a DH2C for the closed handle arriving meanwhile,
    on the same worker that still sees its own record, is OBJECT_NAME_NOT_FOUND."""
    with harness.running_hanode(etcd_server.url, tmp_path / "h1", workers=1) as t:
        client_guid, create_guid = uuid.uuid4(), uuid.uuid4()
        m = dc.mount(t.port, t.user, t.password, t.share_name, client_guid)
        op, _ = dc.open_durable(m, "closed.bin", create_guid)
        file_id = op.file_id
        op.close()
        with pytest.raises(SMBResponseException) as refused:
            dc.reclaim(m, file_id, create_guid)
        assert refused.value.status == dc.OBJECT_NAME_NOT_FOUND
        m.conn.disconnect()
        assert _durable_records_left(etcd_server.url, t) == []


def test_conflicting_open_wins_over_a_disconnected_handle(etcd_server, tmp_path):
    """MS-SMB2 3.3.5.9 / Windows: the holder's batch oplock would be broken, but a
    disconnected open cannot acknowledge, so it is closed and the new open
    proceeds; the old client's DH2C then finds nothing (OBJECT_NAME_NOT_FOUND).
    One worker, so the second client meets the handle where it lives."""
    t = harness.start_hanode(etcd_server.url, tmp_path / "h1", workers=1)
    try:
        client_guid, create_guid = uuid.uuid4(), uuid.uuid4()
        m = dc.mount(t.port, t.user, t.password, t.share_name, client_guid)
        op, _ = dc.open_durable(m, "contested.bin", create_guid)
        file_id = op.file_id
        m.drop()
        time.sleep(0.5)
        status = dc.reclaim_after_a_conflicting_open(
            t.port, t.user, t.password, t.share_name, "contested.bin", b"second",
            client_guid, file_id, create_guid)
        assert status == dc.OBJECT_NAME_NOT_FOUND
        assert _durable_records_left(etcd_server.url, t) == []
    finally:
        harness.stop(t)
    assert "Traceback" not in t.log_text(), t.log_text()[-4000:]


def test_reclaim_on_another_node(etcd_server, tmp_path):
    """Two nodes (separate ``hanode smb`` instances, one etcd, one shared storage
    directory); the client's node is SIGKILLed whole and the client reclaims its
    handle on the other node, where the copy finishes."""
    n1 = harness.start_hanode(etcd_server.url, tmp_path / "n1", workers=1)
    n2 = None
    try:
        n2 = harness.start_hanode(etcd_server.url, tmp_path / "n2", workers=1,
                                  cluster=_cluster(n1), node="n2", share=n1.share)

        def kill_node(m: dc.Mount) -> None:
            os.killpg(n1.proc.pid, signal.SIGKILL)
            n1.proc.wait()

        report = dc.copy_with_failover(n1.port, n1.user, n1.password, n1.share_name,
                                       "cross.bin", DATA, kill_node, disrupt_at=25,
                                       reconnect_port=n2.port)
        assert report.reconnects == 1
        assert _sha256(n1.share / "cross.bin") == DIGEST
        assert _durable_records_left(etcd_server.url, n2) == []
        print(f"reclaimed on the other node in {report.reclaim_seconds[0]:.2f} s")
    finally:
        harness.stop(n1)
        if n2 is not None:
            harness.stop(n2)
    if n2 is not None:
        assert "Traceback" not in n2.log_text(), n2.log_text()[-4000:]


def test_without_etcd_opens_are_answered_without_durability(tmp_path):
    """A worker that lost etcd keeps serving but grants no durable handle (the open
    succeeds without the DH2Q response context); once etcd is back it grants again.
    A private etcd, so stopping it disturbs no other test."""
    from hanode import embedded_etcd
    client = f"http://127.0.0.1:{embedded_etcd.free_port()}"
    peer = f"http://127.0.0.1:{embedded_etcd.free_port()}"
    data = tmp_path / "etcd"

    def start():
        return embedded_etcd.start(data, client, peer, log_path=tmp_path / "etcd.log")

    etcd = start()
    t = harness.start_hanode(client, tmp_path / "h", workers=1)
    try:
        m = dc.mount(t.port, t.user, t.password, t.share_name, uuid.uuid4())
        op, contexts = dc.open_durable(m, "a.bin", uuid.uuid4())
        assert any(isinstance(c, dc.SMB2CreateDurableHandleResponseV2) for c in contexts)
        op.close()
        embedded_etcd.stop(etcd)
        time.sleep(3)  # the worker's keepalive fails within a lease period
        op, contexts = dc.open_durable(m, "b.bin", uuid.uuid4())
        assert not any(isinstance(c, dc.SMB2CreateDurableHandleResponseV2)
                       for c in contexts or [])
        op.write(b"still served", 0)
        op.close()
        etcd = start()
        deadline = time.monotonic() + 20
        while True:
            op, contexts = dc.open_durable(m, "c.bin", uuid.uuid4())
            op.close()
            if any(isinstance(c, dc.SMB2CreateDurableHandleResponseV2) for c in contexts or []):
                break
            assert time.monotonic() < deadline, "durability never came back with etcd"
            time.sleep(0.5)
        m.conn.disconnect()
    finally:
        harness.stop(t)
        embedded_etcd.stop(etcd)
    assert (t.share / "b.bin").read_bytes() == b"still served"
    assert "Traceback" not in t.log_text(), t.log_text()[-4000:]
