"""A disconnected durable handle of a worker that is still alive counts on the
other workers of its node as on its own (MS-SMB2 3.3.5.9: a conflicting open
purges it, the old client's DH2C then gets OBJECT_NAME_NOT_FOUND; an open that
conflicts with nothing leaves it reclaimable), and a DH2C landing on another
worker than the one keeping the disconnected open takes it over.  Also: a
purged or timed-out open's delete-on-close deletes the file, and a rename
breaks H leases held through another worker.  smbprotocol clients (raw SMB2
for the lease break) against ``hanode smb`` with two workers; each test picks
the worker of each connection."""

from __future__ import annotations

import struct
import threading
import time
import uuid

from smbprotocol.exceptions import SMBResponseException
from smbprotocol.file_info import FileDispositionInformation
from smbprotocol.open import (
    CreateDisposition, CreateOptions, FileAttributes, ImpersonationLevel, Open,
    RequestedOplockLevel, ShareAccess, SMB2SetInfoRequest,
)

import durable_client as dc
import harness
from rawclient import RawClient
from smb.wire import oplock as oplock_wire
from smb.wire.create_contexts import LeaseContext
from smb.wire.header import Command, parse_header
from test_cross_worker_break import OPLOCK_LEASE, _create, _two_workers
from test_durable_reclaim import _durable_records_left

FILE_READ_DATA = 0x1
DELETE = 0x00010000
SHARING_VIOLATION = 0xC0000043


def _mount_on(t: harness.Target, client_guid: uuid.UUID, *, worker: int | None = None,
              not_worker: int | None = None) -> tuple[dc.Mount, int]:
    """A mount served by the worker ``worker`` (or by any but ``not_worker``):
    the kernel picks the worker per connection, so connect until it fits."""
    deadline = time.monotonic() + 20
    while True:
        m = dc.mount(t.port, t.user, t.password, t.share_name, client_guid)
        pid = dc.serving_pid(t.port, m.local_port())
        if (worker is None or pid == worker) and pid != not_worker:
            return m, pid
        m.conn.disconnect()
        assert time.monotonic() < deadline, "never reached the wanted worker"


def _disconnected(etcd_url: str, t: harness.Target, count: int = 1) -> None:
    """Until ``count`` durable records are stamped disconnected (the worker saw the drop)."""
    deadline = time.monotonic() + 10
    while True:
        records = [e.value for e in _durable_records_left(etcd_url, t, wait=0)]
        if sum(1 for r in records if r.get("disconnected_since")) >= count:
            return
        assert time.monotonic() < deadline, f"no disconnected record: {records}"
        time.sleep(0.05)


def _delete_pending(m: dc.Mount, op: Open, pending: bool = True) -> None:
    """SET_INFO FileDispositionInformation: the file goes when its last open closes
    (or, with ``pending`` False, no longer does)."""
    req = SMB2SetInfoRequest()
    info = FileDispositionInformation()
    info["delete_pending"] = pending
    req["info_type"] = info.INFO_TYPE
    req["file_info_class"] = info.INFO_CLASS
    req["file_id"] = op.file_id
    req["buffer"] = info
    m.conn.receive(m.conn.send(req, sid=m.session.session_id, tid=m.tree.tree_connect_id))


def _held_then_dropped(etcd_url: str, t: harness.Target, name: str, *,
                       options: int = CreateOptions.FILE_NON_DIRECTORY_FILE,
                       access: int = dc.ACCESS, timeout_ms: int = 60_000,
                       delete_pending: bool = False
                       ) -> tuple[uuid.UUID, uuid.UUID, bytes, int]:
    """A durable v2 batch-oplock open of ``name`` (sharing read only) whose
    connection drops; (client guid, create guid, file id, the worker keeping it)."""
    client_guid, create_guid = uuid.uuid4(), uuid.uuid4()
    m, pid = _mount_on(t, client_guid)
    op = Open(m.tree, name)
    contexts = op.create(ImpersonationLevel.Impersonation, access,
                         FileAttributes.FILE_ATTRIBUTE_NORMAL, ShareAccess.FILE_SHARE_READ,
                         CreateDisposition.FILE_OVERWRITE_IF, options,
                         [dc.dh2q(create_guid, timeout_ms)],
                         RequestedOplockLevel.SMB2_OPLOCK_LEVEL_BATCH)
    assert any(isinstance(c, dc.SMB2CreateDurableHandleResponseV2) for c in contexts or [])
    op.write(b"first client", 0)
    if delete_pending:
        _delete_pending(m, op)
    m.drop()
    _disconnected(etcd_url, t)
    return client_guid, create_guid, op.file_id, pid


def _try_reclaim(t: harness.Target, client_guid: uuid.UUID, file_id: bytes,
                 create_guid: uuid.UUID, **where) -> int:
    m, _ = _mount_on(t, client_guid, **where)
    try:
        dc.reclaim(m, file_id, create_guid).close()
    except SMBResponseException as exc:
        return exc.status
    finally:
        m.conn.disconnect()
    return 0


def _no_traceback(t: harness.Target) -> None:
    assert "Traceback" not in t.log_text(), t.log_text()[-4000:]


def test_conflicting_open_on_another_worker_purges_the_handle(two_workers, etcd_server):
    t = two_workers
    client_guid, create_guid, file_id, holder = _held_then_dropped(etcd_server.url, t, "c.bin")
    other, _ = _mount_on(t, uuid.uuid4(), not_worker=holder)
    theirs, _ = dc.open_durable(other, "c.bin", uuid.uuid4())  # read-write, shares read only
    theirs.write(b"second client", 0)
    theirs.close()
    other.conn.disconnect()
    assert _durable_records_left(etcd_server.url, t) == []
    for where in ({"worker": holder}, {"not_worker": holder}):
        assert _try_reclaim(t, client_guid, file_id, create_guid, **where) \
            == dc.OBJECT_NAME_NOT_FOUND
    assert (t.share / "c.bin").read_bytes() == b"second client"
    _no_traceback(t)


def test_open_its_batch_oplock_would_break_on_another_worker_purges_it(two_workers,
                                                                      etcd_server):
    """No share conflict, but the batch oplock would have to break: a disconnected
    open cannot acknowledge, so it is purged, and the open goes on at once."""
    t = two_workers
    client_guid, create_guid, file_id, holder = _held_then_dropped(etcd_server.url, t, "b.bin")
    other, _ = _mount_on(t, uuid.uuid4(), not_worker=holder)
    reader = Open(other.tree, "b.bin")
    started = time.monotonic()
    reader.create(ImpersonationLevel.Impersonation, FILE_READ_DATA,
                  FileAttributes.FILE_ATTRIBUTE_NORMAL, dc.SHARE_ALL, CreateDisposition.FILE_OPEN,
                  CreateOptions.FILE_NON_DIRECTORY_FILE, None,
                  RequestedOplockLevel.SMB2_OPLOCK_LEVEL_NONE)
    assert time.monotonic() - started < 5  # no 35 s break timeout
    assert reader.read(0, 12) == b"first client"
    reader.close()
    other.conn.disconnect()
    assert _durable_records_left(etcd_server.url, t) == []
    assert _try_reclaim(t, client_guid, file_id, create_guid, worker=holder) \
        == dc.OBJECT_NAME_NOT_FOUND
    _no_traceback(t)


def test_open_without_conflict_on_another_worker_leaves_it_reclaimable(two_workers,
                                                                       etcd_server):
    t = two_workers
    client_guid, create_guid, file_id, holder = _held_then_dropped(etcd_server.url, t, "n.bin")
    other, _ = _mount_on(t, uuid.uuid4(), not_worker=holder)
    dc.stat_open(other.tree, "n.bin")
    other.conn.disconnect()
    back, _ = _mount_on(t, client_guid, worker=holder)
    op = dc.reclaim(back, file_id, create_guid)
    assert op.read(0, 12) == b"first client"
    op.close()
    back.conn.disconnect()
    assert _durable_records_left(etcd_server.url, t) == []
    _no_traceback(t)


def test_reclaim_on_another_worker_takes_the_open_over(two_workers, etcd_server):
    """The worker keeping the disconnected open lets go of it: its share mode no
    longer refuses opens there, and it does not delete the reclaimed record."""
    t = two_workers
    client_guid, create_guid, file_id, holder = _held_then_dropped(etcd_server.url, t, "r.bin")
    back, _ = _mount_on(t, client_guid, not_worker=holder)
    op = dc.reclaim(back, file_id, create_guid)
    assert op.read(0, 12) == b"first client"
    # A stat open on the old worker touches the file without conflicting.
    there, _ = _mount_on(t, uuid.uuid4(), worker=holder)
    dc.stat_open(there.tree, "r.bin")
    assert len(_durable_records_left(etcd_server.url, t, wait=0)) == 1
    op.write(b"reclaimed", 0)
    op.close()
    back.conn.disconnect()
    # With the open closed, the old worker lets a conflicting open in at once.
    mine, _ = dc.open_durable(there, "r.bin", uuid.uuid4())
    mine.close()
    there.conn.disconnect()
    assert (t.share / "r.bin").read_bytes() == b""  # OVERWRITE_IF truncated it
    assert _durable_records_left(etcd_server.url, t) == []
    _no_traceback(t)


def test_purged_open_with_delete_on_close_deletes_the_file(two_workers, etcd_server):
    t = two_workers
    _, _, _, holder = _held_then_dropped(
        etcd_server.url, t, "doc.bin", access=dc.ACCESS | DELETE,
        options=CreateOptions.FILE_NON_DIRECTORY_FILE | CreateOptions.FILE_DELETE_ON_CLOSE)
    assert (t.share / "doc.bin").exists()  # disconnected, not closed: it stays
    other, _ = _mount_on(t, uuid.uuid4(), not_worker=holder)
    status = dc.conflicting_open_status(other.tree, "doc.bin")
    other.conn.disconnect()
    assert status == dc.OBJECT_NAME_NOT_FOUND  # purged, closed, deleted, then looked up
    assert not (t.share / "doc.bin").exists()
    assert _durable_records_left(etcd_server.url, t) == []
    _no_traceback(t)


def test_timed_out_open_with_a_pending_delete_deletes_the_file(two_workers, etcd_server):
    """Its worker ends it when its timeout runs out, and the delete its client
    set takes effect as the CLOSE would have made it."""
    t = two_workers
    _held_then_dropped(etcd_server.url, t, "pending.bin", access=dc.ACCESS | DELETE,
                       timeout_ms=1000, delete_pending=True)
    assert (t.share / "pending.bin").exists()  # disconnected, not closed: it stays
    deadline = time.monotonic() + 10
    while (t.share / "pending.bin").exists():
        assert time.monotonic() < deadline, "the timed-out open did not delete its file"
        time.sleep(0.1)
    assert _durable_records_left(etcd_server.url, t) == []
    _no_traceback(t)


_SET_INFO = struct.Struct("<HBBIHHI16s")
_RENAME_INFO = struct.Struct("<B7xQI")
_OPEN = struct.Struct("<HBBIQQIIIIIHHII")
_LEASE_BREAK = struct.Struct("<HHI16sII")  # size, epoch, flags, key, current, new state
LEASE_RH = 0x1 | 0x2
LEASE_R = 0x1
FILE_RENAME_INFORMATION = 10


def _open_to_rename(client: RawClient, name: str) -> bytes:
    """An open with DELETE access, sharing everything, no caching asked; its FileId."""
    path = name.encode("utf-16-le")
    body = _OPEN.pack(57, 0, 0, 2, 0, 0, DELETE | dc.FILE_READ_ATTRIBUTES, 0x80, 0x7, 1, 0x40,
                      64 + _OPEN.size, len(path), 0, 0) + path
    header, frame = client.request(Command.CREATE, body)
    assert header.status == 0, hex(header.status)
    return frame[64 + 64:64 + 80]


def _rename(client: RawClient, file_id: bytes, target: str) -> int:
    name = target.encode("utf-16-le")
    info = _RENAME_INFO.pack(0, 0, len(name)) + name
    body = _SET_INFO.pack(33, 1, FILE_RENAME_INFORMATION, len(info), 64 + _SET_INFO.size, 0, 0,
                          file_id) + info
    header, _ = client.request(Command.SET_INFO, body)
    return header.status


def test_rename_breaks_handle_leases_held_through_another_worker(etcd_server, tmp_path):
    """The holder's RH lease (worker A) is broken to R before a rename through
    worker B completes, and the rename waits for the acknowledgement."""
    key = bytes(range(16, 32))
    with _two_workers(etcd_server.url, tmp_path / "h") as (holder, renamer):
        status, level, _ = _create(holder, "old.txt", OPLOCK_LEASE,
                                   lease=LeaseContext(key, LEASE_RH, version=1))
        assert (status, level) == (0, OPLOCK_LEASE)
        file_id = _open_to_rename(renamer, "old.txt")
        result: dict = {}
        thread = threading.Thread(target=lambda: result.update(
            status=_rename(renamer, file_id, "new.txt")))
        thread.start()
        frame = holder.recv_frame()
        assert frame is not None and parse_header(frame).command == Command.OPLOCK_BREAK
        size, _, flags, broken, current, new = _LEASE_BREAK.unpack_from(frame, 64)
        assert (size, broken, current, new, flags) == (44, key, LEASE_RH, LEASE_R, 1)
        time.sleep(0.3)
        assert "status" not in result  # the rename waits for the acknowledgement
        header, _ = holder.request(Command.OPLOCK_BREAK,
                                   oplock_wire.lease_ack_response(key, LEASE_R))
        assert header.status == 0
        thread.join(10)
        assert result.get("status") == 0
        assert sorted(p.name for p in (tmp_path / "h" / "share").iterdir()) == ["new.txt"]
