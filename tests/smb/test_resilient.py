"""Resilient handles (MS-SMB2 3.3.5.15.9) over real connections, smbprotocol
the client, `hanode smb` with two workers and a real etcd: a plain open (no
oplock, no durable context) made resilient outlives its TCP connection, its
byte-range lock still held meanwhile, and the same client reclaims it on a new
connection with DHnC; the request's bad forms get the spec's statuses; smbd
refuses the FSCTL (INVALID_DEVICE_REQUEST)."""

from __future__ import annotations

import os
import signal
import struct
import time
import uuid

import pytest
from smbprotocol.connection import Connection, Dialects
from smbprotocol.create_contexts import (
    CreateContextName, SMB2CreateDurableHandleReconnect,
)
from smbprotocol.exceptions import SMBException, SMBResponseException
from smbprotocol.ioctl import IOCTLFlags, SMB2IOCTLRequest
from smbprotocol.open import (
    CreateDisposition, CreateOptions, DirectoryAccessMask, FileAttributes, ImpersonationLevel,
    LockFlags, Open, RequestedOplockLevel,
)
from smbprotocol.session import Session
from smbprotocol.tree import TreeConnect

import durable_client as dc
import harness
from hanode.lab import wait_for
from hanode.store import Store

FSCTL_LMR_REQUEST_RESILIENCY = 0x001401D4
INVALID_PARAMETER = 0xC000000D
INVALID_DEVICE_REQUEST = 0xC0000010
FILE_CLOSED = 0xC0000128
LOCK_NOT_GRANTED = 0xC0000055
EXCLUSIVE_NOW = LockFlags.SMB2_LOCKFLAG_EXCLUSIVE_LOCK | LockFlags.SMB2_LOCKFLAG_FAIL_IMMEDIATELY


def request_resiliency(m: dc.Mount, file_id: bytes, payload: bytes) -> int:
    """FSCTL_LMR_REQUEST_RESILIENCY on ``file_id``: its status (0 on success)."""
    req = SMB2IOCTLRequest()
    req["ctl_code"] = FSCTL_LMR_REQUEST_RESILIENCY
    req["file_id"] = file_id
    req["max_input_response"] = 0
    req["max_output_response"] = 0
    req["flags"] = IOCTLFlags.SMB2_0_IOCTL_IS_FSCTL
    req["buffer"] = payload
    sent = m.conn.send(req, sid=m.session.session_id, tid=m.tree.tree_connect_id)
    try:
        m.conn.receive(sent)
    except SMBResponseException as exc:
        return exc.status
    return 0


def timeout(ms: int) -> bytes:
    """NETWORK_RESILIENCY_REQUEST (2.2.31.3)."""
    return struct.pack("<II", ms, 0)


def plain_open(m: dc.Mount, name: str, disposition=CreateDisposition.FILE_OVERWRITE_IF) -> Open:
    """A read/write open sharing everything, no oplock, no lease, no durable context."""
    op = Open(m.tree, name)
    op.create(ImpersonationLevel.Impersonation, dc.ACCESS, FileAttributes.FILE_ATTRIBUTE_NORMAL,
              dc.SHARE_ALL, disposition, CreateOptions.FILE_NON_DIRECTORY_FILE, None,
              RequestedOplockLevel.SMB2_OPLOCK_LEVEL_NONE)
    return op


def dhnc_reclaim(m: dc.Mount, file_id: bytes) -> Open:
    """DHnC as the Linux client sends it for an open without a lease."""
    ctx = SMB2CreateDurableHandleReconnect()
    ctx["data"] = file_id
    op = Open(m.tree, "")
    op.create(ImpersonationLevel.Impersonation, dc.ACCESS, FileAttributes.FILE_ATTRIBUTE_NORMAL,
              dc.SHARE_ALL, CreateDisposition.FILE_OPEN, CreateOptions.FILE_NON_DIRECTORY_FILE,
              [dc._context(CreateContextName.SMB2_CREATE_DURABLE_HANDLE_RECONNECT, ctx)],
              RequestedOplockLevel.SMB2_OPLOCK_LEVEL_NONE)
    return op


def lock_status(op: Open, offset: int, length: int) -> int:
    try:
        op.lock([dc.lock_element(offset, length, EXCLUSIVE_NOW)])
    except SMBResponseException as exc:
        return exc.status
    return 0


def _records(etcd_url: str, target: harness.Target) -> list[dict]:
    cluster = next(line.split('"')[1] for line in target.config.read_text().splitlines()
                   if line.startswith('name = "t'))
    store = Store([etcd_url], cluster)
    try:
        return [e.value for e in store.get_prefix(store.key("durable") + "/")]
    finally:
        store.close()


def test_plain_open_made_resilient_is_reclaimed_after_its_connection_drops(
        two_workers, etcd_server):
    t = two_workers
    client = uuid.uuid4()
    first = dc.mount(t.port, t.user, t.password, t.share_name, client)
    op = plain_open(first, "r.bin")
    op.write(b"before the drop", 0)
    assert lock_status(op, 0, 10) == 0
    assert request_resiliency(first, op.file_id, timeout(60_000)) == 0
    [record] = _records(etcd_server.url, t)
    assert (record["resilient"], record["timeout_ms"], record["oplock_level"]) == (True, 60_000, 0)
    assert record["lease"] is None
    first.drop()

    # Meanwhile another client's open works (no share mode conflict), but the
    # resilient open's lock is still held.
    other = dc.mount(t.port, t.user, t.password, t.share_name, uuid.uuid4())
    try:
        theirs = plain_open(other, "r.bin", CreateDisposition.FILE_OPEN)
        wait_for(lambda: _records(etcd_server.url, t)[0]["disconnected_since"]
                         is not None, 5, "the resilient open stored as disconnected")
        assert lock_status(theirs, 0, 10) == LOCK_NOT_GRANTED
        assert lock_status(theirs, 100, 10) == 0

        again = dc.mount(t.port, t.user, t.password, t.share_name, client)
        try:
            mine = dhnc_reclaim(again, op.file_id)
            assert mine.read(0, 15) == b"before the drop"
            mine.write(b"AFTER", 0)
            # The lock travelled with the open: still held, still the reclaimed open's.
            assert lock_status(theirs, 0, 10) == LOCK_NOT_GRANTED
            [record] = _records(etcd_server.url, t)
            assert record["disconnected_since"] is None and record["resilient"] is True
            mine.close()
        finally:
            again.conn.disconnect()
        assert lock_status(theirs, 0, 10) == 0  # closed: its lock went with it
        theirs.close()
    finally:
        other.conn.disconnect()
    assert (t.share / "r.bin").read_bytes() == b"AFTERe the drop"
    wait_for(lambda: not _records(etcd_server.url, t), 2, "the record deleted")


def _reclaim_until(t: harness.Target, client: uuid.UUID, file_id: bytes,
                   seconds: float) -> tuple[Open, dc.Mount]:
    """DHnC from new connections until it succeeds: a killed worker's open reads
    as disconnected once its liveness key is gone."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            m = dc.mount(t.port, t.user, t.password, t.share_name, client)
        except (SMBException, OSError, ValueError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
            continue
        try:
            return dhnc_reclaim(m, file_id), m
        except SMBResponseException as exc:
            m.conn.disconnect()
            if exc.status != dc.OBJECT_NAME_NOT_FOUND or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_resilient_open_of_a_killed_worker_is_reclaimed_on_another(two_workers):
    t = two_workers
    client = uuid.uuid4()
    first = dc.mount(t.port, t.user, t.password, t.share_name, client)
    op = plain_open(first, "k.bin")
    op.write(b"written before the kill", 0)
    assert request_resiliency(first, op.file_id, timeout(60_000)) == 0
    killed = dc.serving_pid(t.port, first.local_port())
    os.kill(killed, signal.SIGKILL)
    first.drop()
    mine, again = _reclaim_until(t, client, op.file_id, 30)
    try:
        assert dc.serving_pid(t.port, again.local_port()) != killed
        assert mine.read(0, 23) == b"written before the kill"
        mine.write(b"WRITTEN", 0)
        mine.close()
    finally:
        again.conn.disconnect()
    assert (t.share / "k.bin").read_bytes() == b"WRITTEN before the kill"


def test_plain_open_without_resiliency_is_not_reclaimable(two_workers):
    """The same steps without the FSCTL: the open ends with its connection."""
    t = two_workers
    client = uuid.uuid4()
    first = dc.mount(t.port, t.user, t.password, t.share_name, client)
    op = plain_open(first, "p.bin")
    first.drop()
    again = dc.mount(t.port, t.user, t.password, t.share_name, client)
    try:
        with pytest.raises(SMBResponseException) as err:
            dhnc_reclaim(again, op.file_id)
        assert err.value.status == dc.OBJECT_NAME_NOT_FOUND
    finally:
        again.conn.disconnect()


FORMS = [
    (timeout(0), 0),                       # the server's default (120 s)
    (timeout(300_000), 0),                 # the maximum
    (b"", INVALID_PARAMETER),
    (struct.pack("<I", 1000), INVALID_PARAMETER),     # shorter than the structure
    (timeout(301_000), INVALID_PARAMETER),            # above the maximum: refused, not capped
    (timeout(0xFFFFFFFF), INVALID_PARAMETER),
]


def test_request_forms(hanode_server, etcd_server):
    t = hanode_server
    m = dc.mount(t.port, t.user, t.password, t.share_name, uuid.uuid4())
    try:
        for payload, status in FORMS:
            op = plain_open(m, "f.bin")
            assert request_resiliency(m, op.file_id, payload) == status, payload
            records = _records(etcd_server.url, t)
            if status == 0:
                assert [r["timeout_ms"] for r in records] == [
                    struct.unpack("<I", payload[:4])[0] or 120_000]
            else:
                assert records == []
            op.close()
            wait_for(lambda: not _records(etcd_server.url, t), 2, "the record deleted")
    finally:
        m.conn.disconnect()


def test_directory_pipe_stale_handle_and_smb202(hanode_server):
    t = hanode_server
    m = dc.mount(t.port, t.user, t.password, t.share_name, uuid.uuid4())
    try:
        d = Open(m.tree, "")
        d.create(ImpersonationLevel.Impersonation, DirectoryAccessMask.FILE_LIST_DIRECTORY,
                 FileAttributes.FILE_ATTRIBUTE_DIRECTORY, dc.SHARE_ALL,
                 CreateDisposition.FILE_OPEN, CreateOptions.FILE_DIRECTORY_FILE)
        assert request_resiliency(m, d.file_id, timeout(1000)) == INVALID_PARAMETER
        op = plain_open(m, "f.bin")
        op.close()
        assert request_resiliency(m, op.file_id, timeout(1000)) == FILE_CLOSED
        ipc = TreeConnect(m.session, "\\\\127.0.0.1\\IPC$")
        ipc.connect()
        pipe = Open(ipc, "srvsvc")
        pipe.create(ImpersonationLevel.Impersonation, dc.ACCESS,
                    FileAttributes.FILE_ATTRIBUTE_NORMAL, dc.SHARE_ALL,
                    CreateDisposition.FILE_OPEN, CreateOptions.FILE_NON_DIRECTORY_FILE)
        on_ipc = dc.Mount(m.conn, m.session, ipc)
        assert request_resiliency(on_ipc, pipe.file_id, timeout(1000)) == INVALID_PARAMETER
        pipe.close()
        assert request_resiliency(on_ipc, pipe.file_id, timeout(1000)) == FILE_CLOSED
    finally:
        m.conn.disconnect()
    conn = Connection(uuid.uuid4(), "127.0.0.1", t.port)
    conn.connect(Dialects.SMB_2_0_2, timeout=5)
    try:
        session = Session(conn, t.user, t.password, require_encryption=False)
        session.connect()
        tree = TreeConnect(session, f"\\\\127.0.0.1\\{t.share_name}")
        tree.connect()
        old = dc.Mount(conn, session, tree)
        op = plain_open(old, "g.bin")
        assert request_resiliency(old, op.file_id, timeout(1000)) == INVALID_DEVICE_REQUEST
    finally:
        conn.disconnect()


def test_smbd_refuses_resiliency(smbd_server):
    """The difference from smbd (4.17): it answers the FSCTL INVALID_DEVICE_REQUEST,
    which the Linux client takes as "not supported" and stops asking."""
    t = smbd_server
    m = dc.mount(t.port, t.user, t.password, t.share_name, uuid.uuid4())
    try:
        op = plain_open(m, "s.bin")
        assert request_resiliency(m, op.file_id, timeout(60_000)) == INVALID_DEVICE_REQUEST
        op.close()
    finally:
        m.conn.disconnect()
