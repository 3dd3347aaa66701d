"""Persistent handles on a continuously available share (issue 14), over real
connections: smbprotocol the client, `hanode smb` with two workers and a real
etcd.  The CA share says so in TREE_CONNECT and 3.x NEGOTIATE offers persistent
handles; DH2Q with the PERSISTENT flag is granted with no oplock and no lease;
the record in etcd carries the open's locks before the LOCK is answered; while
the open is disconnected its share mode and locks still refuse another
client; only its own client (same user, client GUID and create GUID, the flag
set) reclaims it, on any worker, its locks with it.  A persistent request on
a plain share or below 3.0 gets what MS-SMB2 prescribes, never an error."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid

import pytest
import smbprotocol.connection
from smbprotocol.connection import Capabilities, Connection, Dialects
from smbprotocol.create_contexts import (
    CreateContextName, DurableHandleFlags, LeaseState, SMB2CreateDurableHandleReconnectV2,
    SMB2CreateDurableHandleRequestV2, SMB2CreateDurableHandleResponseV2,
    SMB2CreateRequestLeaseV2, SMB2CreateResponseLeaseV2,
)
from smbprotocol.exceptions import SMBException, SMBResponseException
from smbprotocol.header import SMB2HeaderRequest
from smbprotocol.open import (
    CreateDisposition, CreateOptions, FileAttributes, FilePipePrinterAccessMask,
    ImpersonationLevel, LockFlags, Open,
    RequestedOplockLevel, ShareAccess,
)
from smbprotocol.session import Session
from smbprotocol.tree import TreeConnect

import durable_client as dc
import harness
from hanode.lab import wait_for
from hanode.store import Store

FILE_NOT_AVAILABLE = 0xC0000467
LOCK_NOT_GRANTED = 0xC0000055
FILE_LOCK_CONFLICT = 0xC0000054
EXCLUSIVE_NOW = LockFlags.SMB2_LOCKFLAG_EXCLUSIVE_LOCK | LockFlags.SMB2_LOCKFLAG_FAIL_IMMEDIATELY
PLAIN = "plain"


@pytest.fixture
def ca_server(etcd_server, tmp_path):
    """Two workers; share ``test`` continuously available, share ``plain`` not."""
    plain = tmp_path / "plain"
    plain.mkdir()
    with harness.running_hanode(
            etcd_server.url, tmp_path / "hanode", workers=2,
            share_extra="continuous_availability = true",
            extra_shares=f'[[share]]\nname = "{PLAIN}"\npath = "{plain}"\n') as target:
        wait_for(lambda: harness.listening_workers(target) == 2, 15, "two listening workers")
        yield target


def dh2q(create_guid: uuid.UUID, persistent: bool = True):
    req = SMB2CreateDurableHandleRequestV2()
    req["timeout"] = 60_000
    req["flags"] = DurableHandleFlags.SMB2_DHANDLE_FLAG_PERSISTENT if persistent else 0
    req["create_guid"] = create_guid
    return dc._context(CreateContextName.SMB2_CREATE_DURABLE_HANDLE_REQUEST_V2, req)


def dh2c(file_id: bytes, create_guid: uuid.UUID, persistent: bool = True):
    req = SMB2CreateDurableHandleReconnectV2()
    req["file_id"] = file_id
    req["create_guid"] = create_guid
    req["flags"] = DurableHandleFlags.SMB2_DHANDLE_FLAG_PERSISTENT if persistent else 0
    return dc._context(CreateContextName.SMB2_CREATE_DURABLE_HANDLE_RECONNECT_V2, req)


def persistent_open(tree: TreeConnect, name: str, create_guid: uuid.UUID, *,
                    oplock=RequestedOplockLevel.SMB2_OPLOCK_LEVEL_NONE,
                    share=ShareAccess.FILE_SHARE_READ) -> tuple[Open, dict]:
    """A read/write open asking for a persistent handle; (open, DH2Q response
    fields or {} when the response carried none)."""
    op = Open(tree, name)
    contexts = op.create(ImpersonationLevel.Impersonation, dc.ACCESS,
                         FileAttributes.FILE_ATTRIBUTE_NORMAL, share,
                         CreateDisposition.FILE_OVERWRITE_IF,
                         CreateOptions.FILE_NON_DIRECTORY_FILE, [dh2q(create_guid)], oplock)
    found = [c for c in contexts or [] if isinstance(c, SMB2CreateDurableHandleResponseV2)]
    if not found:
        return op, {}
    return op, {"timeout": found[0]["timeout"].get_value(),
                "flags": found[0]["flags"].get_value()}


def reclaim(m: dc.Mount, file_id: bytes, create_guid: uuid.UUID, persistent: bool = True) -> Open:
    op = Open(m.tree, "")
    op.create(ImpersonationLevel.Impersonation, dc.ACCESS, FileAttributes.FILE_ATTRIBUTE_NORMAL,
              ShareAccess.FILE_SHARE_READ, CreateDisposition.FILE_OPEN,
              CreateOptions.FILE_NON_DIRECTORY_FILE, [dh2c(file_id, create_guid, persistent)],
              RequestedOplockLevel.SMB2_OPLOCK_LEVEL_NONE)
    return op


def reclaim_status(m: dc.Mount, file_id: bytes, create_guid: uuid.UUID,
                   persistent: bool = True) -> int:
    try:
        reclaim(m, file_id, create_guid, persistent).close()
    except SMBResponseException as exc:
        return exc.status
    return 0


def lock_status(op: Open, offset: int, length: int) -> int:
    try:
        op.lock([dc.lock_element(offset, length, EXCLUSIVE_NOW)])
    except SMBResponseException as exc:
        return exc.status
    return 0


def records(etcd_url: str, target: harness.Target, kind: str = "durable") -> list[dict]:
    cluster = next(line.split('"')[1] for line in target.config.read_text().splitlines()
                   if line.startswith('name = "t'))
    store = Store([etcd_url], cluster)
    try:
        return [e.value for e in store.get_prefix(store.key(kind) + "/")]
    finally:
        store.close()


def handles_counted(etcd_url: str, target: harness.Target) -> tuple[int, int]:
    """(durable, persistent) handles as the workers publish them for status and metrics."""
    workers = records(etcd_url, target, "workers")
    return (sum(w.get("durable_handles", 0) for w in workers),
            sum(w.get("persistent_handles", 0) for w in workers))


def test_ca_share_and_persistent_handles_are_advertised_to_3x_only(ca_server):
    t = ca_server
    m = dc.mount(t.port, t.user, t.password, t.share_name, uuid.uuid4())
    try:
        assert m.conn.server_capabilities.has_flag(Capabilities.SMB2_GLOBAL_CAP_PERSISTENT_HANDLES)
        assert m.tree.is_ca_share
        plain = TreeConnect(m.session, f"\\\\127.0.0.1\\{PLAIN}")
        plain.connect()
        assert not plain.is_ca_share
    finally:
        m.conn.disconnect()
    conn = Connection(uuid.uuid4(), "127.0.0.1", t.port)
    conn.connect(Dialects.SMB_2_1_0, timeout=5)
    try:
        assert not conn.server_capabilities.has_flag(
            Capabilities.SMB2_GLOBAL_CAP_PERSISTENT_HANDLES)
        session = Session(conn, t.user, t.password, require_encryption=False)
        session.connect()
        tree = TreeConnect(session, f"\\\\127.0.0.1\\{t.share_name}")
        tree.connect()
        assert not tree.is_ca_share
    finally:
        conn.disconnect()


def test_persistent_granted_without_caching_only_on_the_ca_share(ca_server, etcd_server):
    t = ca_server
    m = dc.mount(t.port, t.user, t.password, t.share_name, uuid.uuid4())
    try:
        op, granted = persistent_open(m.tree, "p.bin", uuid.uuid4())
        assert granted == {"timeout": 60_000,
                           "flags": DurableHandleFlags.SMB2_DHANDLE_FLAG_PERSISTENT}
        [record] = records(etcd_server.url, t)
        assert (record["persistent"], record["oplock_level"], record["lease"]) == (True, 0, None)
        wait_for(lambda: handles_counted(etcd_server.url, t) == (1, 1), 10,
                 "the persistent handle counted apart")
        op.close()
        plain = TreeConnect(m.session, f"\\\\127.0.0.1\\{PLAIN}")
        plain.connect()
        # Bad input: no caching, no durability (and no error); with a batch
        # oplock, a durable handle, its persistent flag not echoed.
        op, granted = persistent_open(plain, "p.bin", uuid.uuid4())
        assert granted == {}
        op.close()
        op, granted = persistent_open(plain, "q.bin", uuid.uuid4(),
                                      oplock=RequestedOplockLevel.SMB2_OPLOCK_LEVEL_BATCH)
        assert granted == {"timeout": 60_000, "flags": 0}
        [record] = records(etcd_server.url, t)
        assert record["persistent"] is False
        wait_for(lambda: handles_counted(etcd_server.url, t) == (1, 0), 10,
                 "a durable handle, none persistent")
        op.close()
    finally:
        m.conn.disconnect()


def test_disconnected_persistent_open_keeps_share_mode_and_locks_until_reclaimed(
        ca_server, etcd_server):
    t = ca_server
    client, create_guid = uuid.uuid4(), uuid.uuid4()
    first = dc.mount(t.port, t.user, t.password, t.share_name, client)
    op, granted = persistent_open(first.tree, "k.bin", create_guid)
    assert granted["flags"] == DurableHandleFlags.SMB2_DHANDLE_FLAG_PERSISTENT
    op.write(b"kept across the drop", 0)
    assert lock_status(op, 0, 10) == 0
    # The lock is in the record before the LOCK's answer left.
    [record] = records(etcd_server.url, t)
    assert record["locks"] == [[0, 10, True]] and record["lock_sequences"] == []
    first.drop()
    wait_for(lambda: records(etcd_server.url, t)[0]["disconnected_since"] is not None, 5,
             "the persistent open stored as disconnected")

    # Other 3.x clients, on either worker: refused, not allowed to purge it,
    # a writer its share mode (reads only) excludes as well as a reader it
    # would let in (MS-SMB2 3.3.5.9); a 2.1 reader is let in but not through
    # its lock.
    others = [dc.mount(t.port, t.user, t.password, t.share_name, uuid.uuid4())]
    try:
        # Clients on both workers: the open's own (its NodeOplocks refuses)
        # and the other (the node table's row of it refuses).
        while len({dc.serving_pid(t.port, o.local_port()) for o in others}) < 2:
            assert len(others) < 20, "every connection went to one worker"
            others.append(dc.mount(t.port, t.user, t.password, t.share_name, uuid.uuid4()))
        for other in others:
            assert dc.conflicting_open_status(other.tree, "k.bin") == FILE_NOT_AVAILABLE
            assert _sharing_reader(other.tree, "k.bin") == FILE_NOT_AVAILABLE
        old = dc.mount(t.port, t.user, t.password, t.share_name, uuid.uuid4(),
                       dialect=Dialects.SMB_2_1_0)
        others.append(old)
        reader = Open(old.tree, "k.bin")
        reader.create(ImpersonationLevel.Impersonation, FilePipePrinterAccessMask.GENERIC_READ,
                      FileAttributes.FILE_ATTRIBUTE_NORMAL,
                      ShareAccess.FILE_SHARE_READ | ShareAccess.FILE_SHARE_WRITE,
                      CreateDisposition.FILE_OPEN, CreateOptions.FILE_NON_DIRECTORY_FILE,
                      None, RequestedOplockLevel.SMB2_OPLOCK_LEVEL_NONE)
        assert lock_status(reader, 0, 10) == LOCK_NOT_GRANTED
        assert reader.read(16, 4) == b"drop"
        with pytest.raises(SMBResponseException) as conflict:
            reader.read(0, 4)
        assert conflict.value.status == FILE_LOCK_CONFLICT
        [record] = records(etcd_server.url, t)
        assert record["disconnected_since"] is not None  # still there, not purged

        again = dc.mount(t.port, t.user, t.password, t.share_name, client)
        try:
            mine = reclaim(again, op.file_id, create_guid)
            assert mine.read(0, 20) == b"kept across the drop"
            assert lock_status(reader, 0, 10) == LOCK_NOT_GRANTED  # the reclaimed open's lock
            mine.close()
        finally:
            again.conn.disconnect()
        assert lock_status(reader, 0, 10) == 0
        reader.close()
        assert _sharing_reader(others[1].tree, "k.bin") == 0
        assert dc.conflicting_open_status(others[1].tree, "k.bin") == 0
    finally:
        for other in others:
            other.conn.disconnect()
    wait_for(lambda: not records(etcd_server.url, t), 5, "the record deleted on close")


def test_only_its_own_client_reclaims_a_persistent_open(ca_server):
    """The ksmbd hijack class: another user, another client GUID, a wrong create
    GUID, or a DH2C without the persistent flag are refused, and none of them
    spends the handle."""
    t = ca_server
    added = harness.add_user(t.config, "mallory", "Other-pw9")
    assert added.returncode == 0, added.stderr
    client, create_guid = uuid.uuid4(), uuid.uuid4()
    first = dc.mount(t.port, t.user, t.password, t.share_name, client)
    op, _ = persistent_open(first.tree, "s.bin", create_guid)
    op.write(b"owner data", 0)
    first.drop()
    time.sleep(0.5)
    thief = dc.mount(t.port, "mallory", "Other-pw9", t.share_name, client)
    stranger = dc.mount(t.port, t.user, t.password, t.share_name, uuid.uuid4())
    owner = dc.mount(t.port, t.user, t.password, t.share_name, client)
    try:
        assert reclaim_status(thief, op.file_id, create_guid) == dc.ACCESS_DENIED
        assert reclaim_status(stranger, op.file_id, create_guid) == dc.OBJECT_NAME_NOT_FOUND
        assert reclaim_status(owner, op.file_id, uuid.uuid4()) == dc.OBJECT_NAME_NOT_FOUND
        assert reclaim_status(owner, op.file_id, create_guid, persistent=False) \
            == dc.OBJECT_NAME_NOT_FOUND
        mine = reclaim(owner, op.file_id, create_guid)
        assert mine.read(0, 10) == b"owner data"
        mine.close()
    finally:
        for m in (thief, stranger, owner):
            m.conn.disconnect()


def _reclaim_until(t: harness.Target, client: uuid.UUID, file_id: bytes,
                   create_guid: uuid.UUID, seconds: float) -> tuple[Open, dc.Mount]:
    """DH2C from new connections until it succeeds: a killed worker's open reads
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
            return reclaim(m, file_id, create_guid), m
        except SMBResponseException as exc:
            m.conn.disconnect()
            if exc.status != dc.OBJECT_NAME_NOT_FOUND or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_persistent_open_of_a_killed_worker_is_reclaimed_on_another_with_its_locks(
        ca_server):
    """The worker dies with the open and the node table's rows of it: the
    reclaim on the other worker takes the lock back from the etcd record."""
    t = ca_server
    client, create_guid = uuid.uuid4(), uuid.uuid4()
    first = dc.mount(t.port, t.user, t.password, t.share_name, client)
    op, _ = persistent_open(first.tree, "w.bin", create_guid,
                            share=ShareAccess.FILE_SHARE_READ | ShareAccess.FILE_SHARE_WRITE)
    op.write(b"written before the kill", 0)
    assert lock_status(op, 100, 10) == 0
    killed = dc.serving_pid(t.port, first.local_port())
    os.kill(killed, signal.SIGKILL)
    first.drop()
    mine, again = _reclaim_until(t, client, op.file_id, create_guid, 30)
    other = dc.mount(t.port, t.user, t.password, t.share_name, uuid.uuid4())
    try:
        assert dc.serving_pid(t.port, again.local_port()) != killed
        assert mine.read(0, 23) == b"written before the kill"
        theirs = Open(other.tree, "w.bin")
        theirs.create(ImpersonationLevel.Impersonation, dc.ACCESS,
                      FileAttributes.FILE_ATTRIBUTE_NORMAL,
                      ShareAccess.FILE_SHARE_READ | ShareAccess.FILE_SHARE_WRITE,
                      CreateDisposition.FILE_OPEN, CreateOptions.FILE_NON_DIRECTORY_FILE,
                      None, RequestedOplockLevel.SMB2_OPLOCK_LEVEL_NONE)
        assert lock_status(theirs, 100, 10) == LOCK_NOT_GRANTED  # rebuilt from the record
        mine.close()
        assert lock_status(theirs, 100, 10) == 0
        theirs.close()
    finally:
        other.conn.disconnect()
        again.conn.disconnect()


PERSISTENT_TORTURE = ["smb2.durable-v2-open.persistent-open-oplock",
                      "smb2.durable-v2-open.persistent-open-lease"]


@pytest.mark.smbtorture
def test_smbtorture_persistent_opens_on_a_ca_share(etcd_server, tmp_path):
    """smbd has no persistent handles, so these are no parity runs: on a share
    that says it is CA, smbtorture expects every oplock and lease level, none
    included, to come back persistent, and hanode must pass."""
    with harness.running_hanode(etcd_server.url, tmp_path / "hanode",
                                share_extra="continuous_availability = true") as t:
        for test in PERSISTENT_TORTURE:
            run = harness.run_smbtorture(t, test, timeout=300)
            name = test.removeprefix("smb2.durable-v2-open.")
            assert run.results == {name: "success"}, run.output[-3000:]


def _lease(key: bytes, state: int):
    req = SMB2CreateRequestLeaseV2()
    req["lease_key"] = key
    req["lease_state"] = state
    req["parent_lease_key"] = bytes(16)
    req["epoch"] = bytes(2)
    return dc._context(CreateContextName.SMB2_CREATE_REQUEST_LEASE, req)


def test_a_disconnected_persistent_lease_is_broken_at_once_and_reclaimed_as_it_stands(
        ca_server, etcd_server):
    """No break can reach a disconnected open: an open that needs only its
    lease's write caching gone takes it at once (not after the 35 s break
    timeout), the persistent open stays, and its reclaim reports what it still
    holds."""
    t = ca_server
    client, create_guid, key = uuid.uuid4(), uuid.uuid4(), os.urandom(16)
    rwh = (LeaseState.SMB2_LEASE_READ_CACHING | LeaseState.SMB2_LEASE_WRITE_CACHING
           | LeaseState.SMB2_LEASE_HANDLE_CACHING)
    share_all = dc.SHARE_ALL
    first = dc.mount(t.port, t.user, t.password, t.share_name, client)
    op = Open(first.tree, "l.bin")
    op.create(ImpersonationLevel.Impersonation, dc.ACCESS, FileAttributes.FILE_ATTRIBUTE_NORMAL,
              share_all, CreateDisposition.FILE_OVERWRITE_IF,
              CreateOptions.FILE_NON_DIRECTORY_FILE, [dh2q(create_guid), _lease(key, rwh)],
              RequestedOplockLevel.SMB2_OPLOCK_LEVEL_LEASE)
    first.drop()
    wait_for(lambda: records(etcd_server.url, t)[0]["disconnected_since"] is not None, 5,
             "the persistent open stored as disconnected")
    # A 2.1 client: a 3.x one would be refused outright (MS-SMB2 3.3.5.9).
    other = dc.mount(t.port, t.user, t.password, t.share_name, uuid.uuid4(),
                     dialect=Dialects.SMB_2_1_0)
    again = dc.mount(t.port, t.user, t.password, t.share_name, client)
    try:
        started = time.monotonic()
        theirs = Open(other.tree, "l.bin")
        theirs.create(ImpersonationLevel.Impersonation, dc.ACCESS,
                      FileAttributes.FILE_ATTRIBUTE_NORMAL, share_all,
                      CreateDisposition.FILE_OPEN, CreateOptions.FILE_NON_DIRECTORY_FILE,
                      None, RequestedOplockLevel.SMB2_OPLOCK_LEVEL_NONE)
        assert time.monotonic() - started < 10  # no break timeout waited out
        theirs.close()
        mine = Open(again.tree, "l.bin")
        contexts = mine.create(
            ImpersonationLevel.Impersonation, dc.ACCESS, FileAttributes.FILE_ATTRIBUTE_NORMAL,
            share_all, CreateDisposition.FILE_OPEN, CreateOptions.FILE_NON_DIRECTORY_FILE,
            [dh2c(op.file_id, create_guid), _lease(key, 0)],
            RequestedOplockLevel.SMB2_OPLOCK_LEVEL_LEASE)
        [lease] = [c for c in contexts if isinstance(c, SMB2CreateResponseLeaseV2)]
        assert lease["lease_state"].get_value() == (LeaseState.SMB2_LEASE_READ_CACHING
                                                     | LeaseState.SMB2_LEASE_HANDLE_CACHING)
        mine.close()
    finally:
        other.conn.disconnect()
        again.conn.disconnect()


def _sharing_reader(tree: TreeConnect, name: str) -> int:
    """A read-only open sharing read and write: its status (0: it got through,
    and is closed again)."""
    op = Open(tree, name)
    try:
        op.create(ImpersonationLevel.Impersonation, FilePipePrinterAccessMask.GENERIC_READ,
                  FileAttributes.FILE_ATTRIBUTE_NORMAL,
                  ShareAccess.FILE_SHARE_READ | ShareAccess.FILE_SHARE_WRITE,
                  CreateDisposition.FILE_OPEN, CreateOptions.FILE_NON_DIRECTORY_FILE, None,
                  RequestedOplockLevel.SMB2_OPLOCK_LEVEL_NONE)
    except SMBResponseException as exc:
        return exc.status
    op.close()
    return 0


def _conflicting_open_then_close(tree: TreeConnect, name: str) -> int:
    """A read/write open sharing only reads: its status (0: it got through, and
    is closed again so that it holds nothing)."""
    op = Open(tree, name)
    try:
        op.create(ImpersonationLevel.Impersonation, dc.ACCESS,
                  FileAttributes.FILE_ATTRIBUTE_NORMAL, ShareAccess.FILE_SHARE_READ,
                  CreateDisposition.FILE_OPEN, CreateOptions.FILE_NON_DIRECTORY_FILE, None,
                  RequestedOplockLevel.SMB2_OPLOCK_LEVEL_NONE)
    except SMBResponseException as exc:
        return exc.status
    op.close()
    return 0


def _mount_until(t: harness.Target, client: uuid.UUID, seconds: float,
                 dialect: int | None = None) -> dc.Mount:
    """A new connection, tried again while it meets the killed worker's socket."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return dc.mount(t.port, t.user, t.password, t.share_name, client, dialect=dialect)
        except (SMBException, OSError, ValueError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _cluster_of(target: harness.Target) -> str:
    return next(line.split('"')[1] for line in target.config.read_text().splitlines()
                if line.startswith('name = "t'))


def test_a_dead_workers_liveness_key_goes_with_it_not_with_its_lease(etcd_server, tmp_path):
    """The parent deletes a worker's liveness key when the worker exits, so the
    node's other workers hold its persistent opens at once rather than when
    its lease ends or its next incarnation has started (seconds on a loaded
    machine): etcd sees the killed worker's key deleted before the new
    incarnation's key appears (with 10 s leases, nothing else deletes it), and
    its open then refuses a writer."""
    with harness.running_hanode(etcd_server.url, tmp_path / "hanode", workers=2,
                                share_extra="continuous_availability = true",
                                cluster_extra="lease_ttl = 10") as t:
        wait_for(lambda: harness.listening_workers(t) == 2, 15, "two listening workers")
        first = dc.mount(t.port, t.user, t.password, t.share_name, uuid.uuid4())
        op, _ = persistent_open(first.tree, "q.bin", uuid.uuid4())
        op.write(b"kept", 0)
        killed = dc.serving_pid(t.port, first.local_port())
        store = Store([etcd_server.url], _cluster_of(t))
        key = next(e.key for e in store.get_prefix(store.key("workers") + "/")
                   if e.value.get("pid") == killed)
        changes, stop = store.watch_prefix(key)
        watching = threading.Timer(30, stop)  # the iterator ends then, whatever came
        watching.start()
        events = []
        try:
            os.kill(killed, signal.SIGKILL)
            first.drop()
            for change in changes:
                if not change.deleted and change.value.get("pid") == killed:
                    continue  # the dying worker's last refresh
                events.append("deleted" if change.deleted else "put")
                if not change.deleted:
                    break  # the next incarnation's key
        finally:
            watching.cancel()
            stop()
            store.close()
        assert events[:1] == ["deleted"], events
        other = _mount_until(t, uuid.uuid4(), 10)
        try:
            wait_for(lambda: _conflicting_open_then_close(other.tree, "q.bin")
                     == FILE_NOT_AVAILABLE, 10, "the dead worker's open refusing a writer")
        finally:
            other.conn.disconnect()


def test_a_killed_workers_persistent_open_still_refuses_others_until_reclaimed(ca_server):
    """The worker dies with its node-table rows; once its liveness key is gone the
    node's workers hold its open from the etcd record: a writer is refused, its
    lock still refuses another client's, and its own client reclaims it."""
    t = ca_server
    client, create_guid = uuid.uuid4(), uuid.uuid4()
    first = dc.mount(t.port, t.user, t.password, t.share_name, client)
    op, _ = persistent_open(first.tree, "d.bin", create_guid)
    op.write(b"held by a dead worker", 0)
    assert lock_status(op, 0, 10) == 0
    os.kill(dc.serving_pid(t.port, first.local_port()), signal.SIGKILL)
    first.drop()
    other = _mount_until(t, uuid.uuid4(), 10)
    old = _mount_until(t, uuid.uuid4(), 10, dialect=Dialects.SMB_2_1_0)
    try:
        # Once its parent deleted its liveness key, the dead worker's open
        # stands in every worker's way: any 3.x open is refused, a 2.1 reader
        # is let in (its share mode allows it) but not through its lock.
        wait_for(lambda: _conflicting_open_then_close(other.tree, "d.bin")
                 == FILE_NOT_AVAILABLE, 20, "the dead worker's open refusing a writer")
        assert _sharing_reader(other.tree, "d.bin") == FILE_NOT_AVAILABLE
        reader = Open(old.tree, "d.bin")
        reader.create(ImpersonationLevel.Impersonation, FilePipePrinterAccessMask.GENERIC_READ,
                      FileAttributes.FILE_ATTRIBUTE_NORMAL,
                      ShareAccess.FILE_SHARE_READ | ShareAccess.FILE_SHARE_WRITE,
                      CreateDisposition.FILE_OPEN, CreateOptions.FILE_NON_DIRECTORY_FILE,
                      None, RequestedOplockLevel.SMB2_OPLOCK_LEVEL_NONE)
        assert lock_status(reader, 0, 10) == LOCK_NOT_GRANTED
        mine, again = _reclaim_until(t, client, op.file_id, create_guid, 30)
        try:
            assert mine.read(0, 21) == b"held by a dead worker"
            assert lock_status(reader, 0, 10) == LOCK_NOT_GRANTED  # the reclaimed open's
            mine.close()
        finally:
            again.conn.disconnect()
        assert lock_status(reader, 0, 10) == 0
        reader.close()
    finally:
        other.conn.disconnect()
        old.conn.disconnect()


def _lock_then_unlock(op: Open, offset: int, length: int) -> int:
    """The status of an exclusive LOCK; one granted is released again."""
    status = lock_status(op, offset, length)
    if status == 0:
        op.lock([dc.lock_element(offset, length, LockFlags.SMB2_LOCKFLAG_UNLOCK)])
    return status


def test_a_killed_workers_locks_hold_for_a_handle_opened_before_it_died(ca_server, etcd_server):
    """Another client's handle opened on the other worker while the persistent
    open's worker lived (no CREATE of the file after the death): once the dead
    worker's liveness key is gone its lock refuses that handle's LOCK and READ
    at once, without waiting for a CREATE of the file to bring the record in;
    after the owner's reclaim too; after its CLOSE no longer."""
    t = ca_server
    client, create_guid = uuid.uuid4(), uuid.uuid4()
    first = dc.mount(t.port, t.user, t.password, t.share_name, client)
    shared = ShareAccess.FILE_SHARE_READ | ShareAccess.FILE_SHARE_WRITE
    op, _ = persistent_open(first.tree, "b.bin", create_guid, share=shared)
    op.write(b"locked by a dead worker", 0)
    assert lock_status(op, 0, 10) == 0
    killed = dc.serving_pid(t.port, first.local_port())
    other = _mount_until(t, uuid.uuid4(), 10)
    while dc.serving_pid(t.port, other.local_port()) == killed:  # the other worker
        other.conn.disconnect()
        other = _mount_until(t, uuid.uuid4(), 10)
    try:
        theirs = Open(other.tree, "b.bin")
        theirs.create(ImpersonationLevel.Impersonation, dc.ACCESS,
                      FileAttributes.FILE_ATTRIBUTE_NORMAL, shared,
                      CreateDisposition.FILE_OPEN, CreateOptions.FILE_NON_DIRECTORY_FILE,
                      None, RequestedOplockLevel.SMB2_OPLOCK_LEVEL_NONE)
        assert _lock_then_unlock(theirs, 0, 10) == LOCK_NOT_GRANTED  # the live owner's
        os.kill(killed, signal.SIGKILL)
        first.drop()
        wait_for(lambda: all(w.get("pid") != killed
                             for w in records(etcd_server.url, t, "workers")),
                 20, "the killed worker's liveness key gone")
        # Its rows died with it; the record's come back without any CREATE of b.bin.
        wait_for(lambda: _lock_then_unlock(theirs, 0, 10) == LOCK_NOT_GRANTED, 3,
                 "the dead worker's lock refusing a handle already open")
        assert _read_status(theirs, 0, 10) == FILE_LOCK_CONFLICT
        mine, again = _reclaim_until(t, client, op.file_id, create_guid, 30)
        try:
            assert _lock_then_unlock(theirs, 0, 10) == LOCK_NOT_GRANTED  # the reclaimed open's
            mine.close()
        finally:
            again.conn.disconnect()
        assert _lock_then_unlock(theirs, 0, 10) == 0
        theirs.close()
    finally:
        other.conn.disconnect()


def _read_status(op: Open, offset: int, length: int) -> int:
    try:
        op.read(offset, length)
    except SMBResponseException as exc:
        return exc.status
    return 0


class _ChannelOne(SMB2HeaderRequest):
    """A request header with ChannelSequence 1: what a client sends once it moved
    its opens to another channel (smbprotocol always sends 0)."""

    def __init__(self) -> None:
        super().__init__()
        self["channel_sequence"] = 1


def test_a_raised_channel_sequence_is_in_the_record_before_the_answer(
        ca_server, etcd_server, monkeypatch):
    """A WRITE that raises a persistent open's ChannelSequence is answered once the
    record carries it (a node death after the answer would otherwise give the
    reclaim the old value); one that does not raise it writes nothing more."""
    t = ca_server
    m = dc.mount(t.port, t.user, t.password, t.share_name, uuid.uuid4())
    try:
        op, _ = persistent_open(m.tree, "chan.bin", uuid.uuid4())
        pid = f"{int.from_bytes(op.file_id[:8], 'little'):016x}"

        def stored() -> int:
            return next(r["channel_sequence"] for r in records(etcd_server.url, t)
                        if r["persistent_id"] == pid)

        op.write(b"on the first channel", 0)
        assert stored() == 0
        monkeypatch.setattr(smbprotocol.connection, "SMB2HeaderRequest", _ChannelOne)
        op.write(b"on the second channel", 0)
        assert stored() == 1  # read right after the answer: no wait
        monkeypatch.undo()
        op.close()
    finally:
        m.conn.disconnect()
