"""A dead node's disconnected durable handle that was created delete-on-close,
or whose client set a pending delete through it: when a conflicting open on
the surviving node purges it, its file is deleted as its CLOSE would have made
it; a reclaim there keeps the pending delete (issue 4).  Two nodes (two
``hanode smb``, one etcd, one shared storage directory); node 1 is SIGKILLed
whole."""

from __future__ import annotations

import os
import struct
import signal
import uuid
from contextlib import contextmanager
from typing import Iterator

from smbprotocol.file_info import FileStandardInformation
from smbprotocol.open import (
    CreateDisposition, CreateOptions, FileAttributes, ImpersonationLevel, Open,
    RequestedOplockLevel, ShareAccess, SMB2QueryInfoRequest, SMB2QueryInfoResponse,
)

import durable_client as dc
import harness
from test_durable_live_worker import _delete_pending
from test_durable_orphans import _wait_orphans_known
from test_durable_reclaim import _cluster, _durable_records_left

DELETE = 0x00010000


@contextmanager
def _two_nodes(etcd_server, tmp_path) -> Iterator[tuple[harness.Target, harness.Target]]:
    """Node 1 and node 2 of one cluster on one share; their logs must stay clean."""
    n1 = harness.start_hanode(etcd_server.url, tmp_path / "n1", workers=1)
    n2 = None
    try:
        n2 = harness.start_hanode(etcd_server.url, tmp_path / "n2", workers=1,
                                  cluster=_cluster(n1), node="n2", share=n1.share)
        yield n1, n2
    finally:
        harness.stop(n1)
        if n2 is not None:
            harness.stop(n2)
    for t in (n1, n2):
        assert "Traceback" not in t.log_text(), t.log_text()[-4000:]


def _kill(etcd_url: str, n1: harness.Target, n2: harness.Target) -> None:
    """SIGKILL node 1 whole; return once node 2 knows its durable handle as orphaned."""
    os.killpg(n1.proc.pid, signal.SIGKILL)
    n1.proc.wait()
    _wait_orphans_known(etcd_url, n2, "n2")


def _durable_open(m: dc.Mount, name: str, create_guid: uuid.UUID,
                  options: int = CreateOptions.FILE_NON_DIRECTORY_FILE) -> Open:
    """A durable v2 batch-oplock open with DELETE access, written to."""
    op = Open(m.tree, name)
    contexts = op.create(ImpersonationLevel.Impersonation, dc.ACCESS | DELETE,
                         FileAttributes.FILE_ATTRIBUTE_NORMAL, ShareAccess.FILE_SHARE_READ,
                         CreateDisposition.FILE_OVERWRITE_IF, options, [dc.dh2q(create_guid)],
                         RequestedOplockLevel.SMB2_OPLOCK_LEVEL_BATCH)
    assert any(isinstance(c, dc.SMB2CreateDurableHandleResponseV2) for c in contexts)
    op.write(b"scratch", 0)
    return op


def _kill_then_purge_deletes(etcd_server, n1, n2, name: str) -> None:
    """Node 1 dies holding ``name``; a conflicting open on node 2 purges its
    handle, which deletes the file, and no record is left."""
    _kill(etcd_server.url, n1, n2)
    assert (n2.share / name).exists()
    other = dc.mount(n2.port, n2.user, n2.password, n2.share_name, uuid.uuid4())
    status = dc.conflicting_open_status(other.tree, name)
    other.conn.disconnect()
    assert status == dc.OBJECT_NAME_NOT_FOUND  # purged, deleted, then looked up
    assert not (n2.share / name).exists()
    assert _durable_records_left(etcd_server.url, n2) == []


def test_purged_orphan_with_delete_on_close_deletes_the_file(etcd_server, tmp_path):
    with _two_nodes(etcd_server, tmp_path) as (n1, n2):
        m = dc.mount(n1.port, n1.user, n1.password, n1.share_name, uuid.uuid4())
        _durable_open(m, "doc.bin", uuid.uuid4(),
                      CreateOptions.FILE_NON_DIRECTORY_FILE | CreateOptions.FILE_DELETE_ON_CLOSE)
        _kill_then_purge_deletes(etcd_server, n1, n2, "doc.bin")


def _reads_delete_pending(m: dc.Mount, op: Open) -> bool:
    """QUERY_INFO FileStandardInformation's DeletePending of an open."""
    req = SMB2QueryInfoRequest()
    req["info_type"] = FileStandardInformation.INFO_TYPE
    req["file_info_class"] = FileStandardInformation.INFO_CLASS
    req["output_buffer_length"] = 1024
    req["file_id"] = op.file_id
    answer = m.conn.receive(m.conn.send(req, sid=m.session.session_id,
                                        tid=m.tree.tree_connect_id))
    resp = SMB2QueryInfoResponse()
    resp.unpack(answer["data"].get_value())
    info = FileStandardInformation()
    info.unpack(resp["buffer"].get_value())
    return bool(info["delete_pending"].get_value())


def _stored_pending(etcd_url: str, target: harness.Target) -> list:
    return [e.value.get("delete_pending") for e in _durable_records_left(etcd_url, target, 0)]


def test_purged_orphan_with_a_pending_delete_deletes_the_file(etcd_server, tmp_path):
    """The client's SET_INFO FileDispositionInformation is in the record before it
    is answered (and out of it again when cleared): the dead node's open, purged
    on the other node, deletes its file as its CLOSE would have."""
    with _two_nodes(etcd_server, tmp_path) as (n1, n2):
        m = dc.mount(n1.port, n1.user, n1.password, n1.share_name, uuid.uuid4())
        op = _durable_open(m, "pending.bin", uuid.uuid4())
        assert _stored_pending(etcd_server.url, n1) == [False]
        _delete_pending(m, op)
        assert _stored_pending(etcd_server.url, n1) == [True]
        _delete_pending(m, op, False)
        assert _stored_pending(etcd_server.url, n1) == [False]
        _delete_pending(m, op)
        assert _stored_pending(etcd_server.url, n1) == [True]
        _kill_then_purge_deletes(etcd_server, n1, n2, "pending.bin")


def test_reclaim_on_another_node_keeps_the_pending_delete(etcd_server, tmp_path):
    """DH2C on the surviving node sets the pending delete again: the file stays
    while the reclaimed handle is open, reads as delete-pending, and goes with its CLOSE."""
    with _two_nodes(etcd_server, tmp_path) as (n1, n2):
        client_guid, create_guid = uuid.uuid4(), uuid.uuid4()
        m = dc.mount(n1.port, n1.user, n1.password, n1.share_name, client_guid)
        op = _durable_open(m, "back.bin", create_guid)
        _delete_pending(m, op)
        _kill(etcd_server.url, n1, n2)
        back = dc.mount(n2.port, n2.user, n2.password, n2.share_name, client_guid)
        mine = dc.reclaim(back, op.file_id, create_guid)
        assert mine.read(0, 7) == b"scratch"
        assert (n2.share / "back.bin").exists()
        assert _reads_delete_pending(back, mine)
        mine.close()
        back.conn.disconnect()
        assert not (n2.share / "back.bin").exists()
        assert _durable_records_left(etcd_server.url, n2) == []


def _leased_durable(m: dc.Mount, name: str, lease_key: bytes) -> Open:
    """A durable v2 open of ``name`` with an RH lease (two clients may both hold one)."""
    lease = lease_key + struct.pack("<IIQ", 0x1 | 0x2, 0, 0) + bytes(16) + bytes(4)
    op = Open(m.tree, name)
    contexts = op.create(ImpersonationLevel.Impersonation, dc.ACCESS | DELETE,
                         FileAttributes.FILE_ATTRIBUTE_NORMAL, dc.SHARE_ALL,
                         CreateDisposition.FILE_OPEN_IF, CreateOptions.FILE_NON_DIRECTORY_FILE,
                         [dc.dh2q(uuid.uuid4()), dc._context(b"RqLs", lease)],
                         RequestedOplockLevel.SMB2_OPLOCK_LEVEL_LEASE)
    assert any(isinstance(c, dc.SMB2CreateDurableHandleResponseV2) for c in contexts)
    return op


def test_a_pending_delete_cleared_through_another_handle_leaves_no_record_saying_it(
        etcd_server, tmp_path):
    """The pending delete belongs to the file: cleared through handle B, handle A's
    record (A set it) no longer carries it, so A's end after a crash deletes nothing."""
    with harness.running_hanode(etcd_server.url, tmp_path / "h") as t:
        a = dc.mount(t.port, t.user, t.password, t.share_name, uuid.uuid4())
        b = dc.mount(t.port, t.user, t.password, t.share_name, uuid.uuid4())
        try:
            op_a = _leased_durable(a, "shared.bin", b"\x0a" * 16)
            op_b = _leased_durable(b, "shared.bin", b"\x0b" * 16)
            _delete_pending(a, op_a)
            assert sorted(_stored_pending(etcd_server.url, t)) == [True, True]
            _delete_pending(b, op_b, False)
            assert _stored_pending(etcd_server.url, t) == [False, False]
        finally:
            a.conn.disconnect()
            b.conn.disconnect()
