"""Durable records, the grant and reconnect rules, the batched writer and the scavenger."""

import secrets
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from hanode.store import StoreUnavailable
from smb import durable
from smb.durable import (
    RECLAIM_ATTEMPTS, DurableRecord, DurableWriter, LockRange, MemoryDurableStore,
    ReconnectRequest, RecordError, Stored, adopt, adopt_record, check_reconnect,
    grant_durability, is_disconnected, new_persistent_id, plan_scavenge, refusal_while_disconnected,
    scavenge,
)
from smb.oplocks import (
    LEASE_HANDLE, LEASE_READ, LEASE_WRITE, OPLOCK_BATCH, OPLOCK_EXCLUSIVE, OPLOCK_II, OPLOCK_LEASE,
    OPLOCK_NONE, Lease, NodeOplocks, OpenRequest,
)
from smb.wire.create_contexts import (
    DHANDLE_FLAG_PERSISTENT, CreateContext, DurableV1Reconnect, DurableV1Request, DurableV2Reconnect, DurableV2Request,
    FileId, LeaseContext,
)
from smb.wire.header import Status
import trio.lowlevel

CREATE_GUID = bytes(range(16))
CLIENT = b"\xc1" * 16
KEY = b"\x4b" * 16
WORKER = "/hanode/t/workers/node1/w1"


def record(pid=0x1234, **kw):
    base = dict(persistent_id=pid, version=2, create_guid=CREATE_GUID, client_guid=CLIENT,
                owner="alice", share="test", path="dir/file.txt", desired_access=0x12019F,
                share_access=7, create_options=0x40, oplock_level=OPLOCK_BATCH, lease=None,
                timeout_ms=60_000, worker=WORKER)
    base.update(kw)
    return DurableRecord(**base)


def leased_record(**kw):
    return record(oplock_level=OPLOCK_LEASE,
                  lease=Lease(KEY, LEASE_READ | LEASE_HANDLE, 3, 2, None), **kw)


# -- ids and records -----------------------------------------------------------

def test_persistent_ids_random_and_never_reserved(monkeypatch):
    ids = {new_persistent_id() for _ in range(1000)}
    assert len(ids) == 1000
    draws = iter([0, (1 << 64) - 1, 77])
    monkeypatch.setattr(secrets, "randbits", lambda bits: next(draws))
    assert new_persistent_id() == 77


def test_record_json_roundtrip():
    for r in (record(), leased_record(disconnected_since=1700000000.5),
              record(locks=(LockRange(0, 10, True), LockRange(1 << 40, 1, False))),
              record(lease=Lease(KEY, 7, 1, 2, b"\x99" * 16)),
              record(position=0x1000, initial_allocation=8192),
              record(delete_pending=True), record(resilient=True, version=1)):
        assert DurableRecord.from_json(r.to_json()) == r
    assert record(pid=0xFFFF_FFFF_FFFF_FFFE).to_json()["persistent_id"] == "fffffffffffffffe"


def test_record_written_before_pending_deletes_were_kept_has_none():
    older = record(delete_pending=True).to_json()
    del older["delete_pending"]
    assert DurableRecord.from_json(older).delete_pending is False


@pytest.mark.parametrize("bad", [None, {}, {"persistent_id": "zz"}, [1, 2]])
def test_record_from_garbage_is_a_record_error(bad):
    with pytest.raises(RecordError):
        DurableRecord.from_json(bad)


# -- grant ---------------------------------------------------------------------

V2 = DurableV2Request(0, 0, CREATE_GUID)


@pytest.mark.parametrize("req, timeout", [
    (DurableV2Request(0, 0, CREATE_GUID), 60_000),
    (DurableV2Request(0xFFFFFFFF, 0, CREATE_GUID), 300_000),
    (DurableV2Request(300_001, 0, CREATE_GUID), 300_000),
    (DurableV2Request(1_000, 2, CREATE_GUID), 1_000),
    (DurableV1Request(), 16 * 60 * 1000),
])
def test_grant_timeouts(req, timeout):
    grant = grant_durability(req, is_directory=False, oplock_level=OPLOCK_BATCH, lease_state=None)
    assert grant.timeout_ms == timeout


@pytest.mark.parametrize("kw", [
    dict(oplock_level=OPLOCK_II, lease_state=None),
    dict(oplock_level=OPLOCK_LEASE, lease_state=LEASE_READ | LEASE_WRITE),
    dict(oplock_level=OPLOCK_BATCH, lease_state=None, is_directory=True),
    dict(oplock_level=OPLOCK_BATCH, lease_state=None, store_available=False),
])
def test_no_grant(kw):
    kw.setdefault("is_directory", False)
    assert grant_durability(V2, **kw) is None


def test_grant_with_handle_lease_and_response_contexts():
    grant = grant_durability(V2, is_directory=False, oplock_level=OPLOCK_LEASE,
                             lease_state=LEASE_READ | LEASE_HANDLE)
    assert grant.response_context() == CreateContext(b"DH2Q", bytes.fromhex("60ea0000") + bytes(4))
    v1 = grant_durability(DurableV1Request(), is_directory=False, oplock_level=OPLOCK_BATCH,
                          lease_state=None)
    assert v1.response_context() == CreateContext(b"DHnQ", bytes(8))
    assert grant_durability(None, is_directory=False, oplock_level=OPLOCK_BATCH,
                            lease_state=None) is None


# -- disconnected and reconnect ------------------------------------------------

def test_disconnected_when_connection_closed_or_worker_gone():
    r = record()
    assert not is_disconnected(r, {WORKER})
    assert is_disconnected(r, set())
    assert is_disconnected(r.evolve(disconnected_since=1.0), {WORKER})


def v2req(**kw):
    base = dict(reconnect=DurableV2Reconnect(FileId(0x1234, 5), CREATE_GUID, 0),
                client_guid=CLIENT, user="alice", path="", lease=None)
    base.update(kw)
    return ReconnectRequest(**base)


LEASE_CTX = LeaseContext(KEY, LEASE_READ | LEASE_HANDLE)


@pytest.mark.parametrize("rec, req, disconnected, status", [
    (record(), v2req(), True, Status.SUCCESS),
    (None, v2req(), True, Status.OBJECT_NAME_NOT_FOUND),
    (record(pid=9), v2req(), True, Status.OBJECT_NAME_NOT_FOUND),
    # Leased and another client GUID: not found, even before the user check.
    (leased_record(), v2req(client_guid=b"\x00" * 16, user="bob", lease=LEASE_CTX,
                            path="dir/file.txt"), True, Status.OBJECT_NAME_NOT_FOUND),
    # Oplock: the client GUID does not matter.
    (record(), v2req(client_guid=b"\x00" * 16), True, Status.SUCCESS),
    (record(), v2req(reconnect=DurableV2Reconnect(FileId(0x1234, 5), b"\x00" * 16, 0)), True,
     Status.OBJECT_NAME_NOT_FOUND),
    (record(), v2req(), False, Status.OBJECT_NAME_NOT_FOUND),
    # Create GUID is checked before "still connected" and before the user.
    (record(), v2req(user="bob", reconnect=DurableV2Reconnect(FileId(0x1234, 5), b"\x01" * 16, 0)),
     False, Status.OBJECT_NAME_NOT_FOUND),
    (record(), v2req(lease=LEASE_CTX), True, Status.OBJECT_NAME_NOT_FOUND),
    (leased_record(), v2req(path="dir/file.txt"), True, Status.OBJECT_NAME_NOT_FOUND),
    (leased_record(), v2req(path="dir/file.txt", lease=LeaseContext(b"\x01" * 16, 3)), True,
     Status.OBJECT_NAME_NOT_FOUND),
    (record(), v2req(user="bob"), True, Status.ACCESS_DENIED),
    (leased_record(), v2req(lease=LEASE_CTX, path="DIR\\File.TXT"), True, Status.SUCCESS),
    (leased_record(), v2req(lease=LEASE_CTX, path="other.txt"), True, Status.INVALID_PARAMETER),
    # Another user with a leased open under another name: the user check comes first.
    (leased_record(), v2req(lease=LEASE_CTX, path="other.txt", user="bob"), True,
     Status.ACCESS_DENIED),
])
def test_dh2c_checks_in_order(rec, req, disconnected, status):
    assert check_reconnect(rec, req, disconnected=disconnected) == status


def v1req(**kw):
    return v2req(reconnect=DurableV1Reconnect(FileId(0x1234, 5)), **kw)


@pytest.mark.parametrize("rec, req, disconnected, status", [
    (record(version=1, create_guid=bytes(16)), v1req(), True, Status.SUCCESS),
    (None, v1req(), True, Status.OBJECT_NAME_NOT_FOUND),
    (record(), v1req(), False, Status.OBJECT_NAME_NOT_FOUND),
    (record(), v1req(user="bob"), True, Status.ACCESS_DENIED),
    (leased_record(), v1req(lease=LEASE_CTX, path="x"), True, Status.INVALID_PARAMETER),
    (leased_record(), v1req(lease=LEASE_CTX, path="dir/file.txt"), True, Status.SUCCESS),
    # smb2.durable-open.reopen2-lease: no lease on the reconnect is NOT_FOUND, any name.
    (leased_record(), v1req(path=""), True, Status.OBJECT_NAME_NOT_FOUND),
    (leased_record(), v1req(path="__non_existing_fname__"), True, Status.OBJECT_NAME_NOT_FOUND),
    (leased_record(), v1req(path="dir/file.txt"), True, Status.OBJECT_NAME_NOT_FOUND),
    (leased_record(), v1req(path="dir/file.txt", lease=LeaseContext(b"\x01" * 16, 7)), True,
     Status.OBJECT_NAME_NOT_FOUND),
])
def test_dhnc_checks_in_order(rec, req, disconnected, status):
    assert check_reconnect(rec, req, disconnected=disconnected) == status


def test_adopt_moves_the_record_to_the_new_worker():
    r = adopt(record(disconnected_since=5.0), "/hanode/t/workers/node2/w0")
    assert r.worker.endswith("node2/w0") and r.disconnected_since is None


# -- the batched writer --------------------------------------------------------

@asynccontextmanager
async def running(writer: DurableWriter):
    """The writer's task for the length of the block."""
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        yield
        nursery.cancel_scope.cancel()


async def test_writer_batches_concurrent_puts_and_acks_only_after_store():
    store = MemoryDurableStore(latency=0.01)
    writer = DurableWriter(store)
    acked: list[int] = []

    async def one(pid):
        await writer.put(record(pid=pid))
        assert pid in store.records  # never acknowledged before it is stored
        acked.append(pid)

    async with running(writer):
        async with trio.open_nursery() as clients:
            for pid in range(1, 301):
                clients.start_soon(one, pid)
    assert sorted(acked) == list(range(1, 301))
    assert store.writes <= 6  # 300 records, at most 128 per transaction, plus the first alone


async def test_round_gathers_the_puts_of_requests_still_running():
    """Puts a few scheduler steps behind the first one go in its transaction."""
    store = MemoryDurableStore(latency=0.01)
    writer = DurableWriter(store)

    async def request(pid, steps):
        for _ in range(steps):  # the CREATE's work before its put
            await trio.lowlevel.checkpoint()
        await writer.put(record(pid=pid))

    async with running(writer):
        async with trio.open_nursery() as requests:
            for pid in range(1, 6):
                requests.start_soon(request, pid, pid)
        assert store.writes == 1 and set(store.records) == {1, 2, 3, 4, 5}


async def test_lone_put_does_not_wait_for_company(mock_clock):
    """Nothing else runnable: the round goes at once, the clock never moves."""
    store = MemoryDurableStore()
    writer = DurableWriter(store, gather=10)
    async with running(writer):
        start = trio.current_time()
        await writer.put(record(pid=1))
        assert trio.current_time() == start and store.writes == 1


async def test_writer_reports_failure_to_every_waiter_and_recovers():
    store = MemoryDurableStore(latency=0.01)
    writer = DurableWriter(store)
    failures = []

    async def one(pid):
        try:
            await writer.put(record(pid=pid))
        except StoreUnavailable:
            failures.append(pid)

    async with running(writer):
        store.available = False
        async with trio.open_nursery() as clients:
            for pid in range(1, 11):
                clients.start_soon(one, pid)
        assert sorted(failures) == list(range(1, 11)) and not store.records
        store.available = True
        await writer.put(record(pid=99))
        assert 99 in store.records


async def test_discard_returns_at_once_and_deletes_in_the_next_round(caplog):
    store = MemoryDurableStore(latency=0.01)
    writer = DurableWriter(store)
    async with running(writer):
        await writer.put(record(pid=1))
        await writer.put(record(pid=2))
        writer.discard(1)
        assert 1 in store.records  # nobody waited for the delete
        await writer.put(record(pid=3))  # a later round: the delete went before or with it
        assert set(store.records) == {2, 3}
        store.available = False
        writer.discard(2)
        with pytest.raises(StoreUnavailable):
            await writer.put(record(pid=4))
        assert "not deleted" in caplog.text  # a failed discard is logged, never raised
        assert writer.discarding == {2}
        store.available = True
        with trio.fail_after(5):
            while 2 in store.records:  # and tried again until it is stored
                await trio.sleep(0.05)
        assert writer.discarding == set()


async def test_discard_rides_with_the_next_put_in_one_transaction():
    store = MemoryDurableStore(latency=0.01)
    writer = DurableWriter(store, linger=10)
    async with running(writer):
        await writer.put(record(pid=1))
        writer.discard(1)
        assert writer.discarding == {1}
        await trio.sleep(0.05)
        assert store.writes == 1 and 1 in store.records  # no round for a discard alone
        await writer.put(record(pid=2))
        assert store.writes == 2 and set(store.records) == {2}  # put and delete together
        assert writer.discarding == set()


async def test_discard_alone_goes_after_the_linger(autojump_clock):
    store = MemoryDurableStore()
    writer = DurableWriter(store, linger=0.5)
    async with running(writer):
        await writer.put(record(pid=1))
        start = trio.current_time()
        writer.discard(1)
        await trio.sleep(0.1)
        writer.discard(5)  # a later discard does not push the first one's deadline
        while 1 in store.records:
            await trio.sleep(0.01)
        assert 0.5 <= trio.current_time() - start < 0.52
        assert store.writes == 2 and writer.discarding == set()


async def test_writer_collapses_changes_to_one_record_within_a_round():
    store = MemoryDurableStore(latency=0.01)
    writer = DurableWriter(store, max_batch=2)
    async with running(writer):
        async with trio.open_nursery() as clients:
            # Each submission is queued before the next starts (trio shuffles
            # tasks started together).
            for op, arg in [(writer.put, record(pid=1)),   # goes alone, first round
                            (writer.put, record(pid=2)),
                            (writer.delete, 2),             # same round: the delete wins
                            (writer.put, record(pid=3)),
                            (writer.put, record(pid=4))]:   # over max_batch: next round
                clients.start_soon(op, arg)
                await trio.testing.wait_all_tasks_blocked()
    assert set(store.records) == {1, 3, 4} and store.writes == 3


async def test_cancelled_put_that_was_not_yet_taken_is_never_written():
    store = MemoryDurableStore(latency=0.05)
    writer = DurableWriter(store)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        nursery.start_soon(writer.put, record(pid=1))
        await trio.sleep(0.01)  # pid 1 in flight
        with trio.move_on_after(0.01):
            await writer.put(record(pid=2))  # queued behind it, then cancelled
        await trio.sleep(0.1)
        nursery.cancel_scope.cancel()
    assert set(store.records) == {1}


# -- the scavenger -------------------------------------------------------------

def test_plan_scavenge():
    live = {WORKER}
    connected = Stored(record(pid=1), 1)
    orphan = Stored(record(pid=2, worker="/hanode/t/workers/dead/w0"), 2)
    fresh = Stored(record(pid=3, disconnected_since=100.0, timeout_ms=10_000), 3)
    stale = Stored(record(pid=4, disconnected_since=100.0, timeout_ms=1_000), 4)
    plan = plan_scavenge([connected, orphan, fresh, stale], live, now=103.5, grace=2.0)
    assert plan.stamp == [orphan] and plan.expire == [stale]


async def test_scavenge_stamps_orphans_then_expires_them_and_loses_to_adoption():
    store = MemoryDurableStore()
    store.workers = {WORKER}
    await store.write([record(pid=1, timeout_ms=1_000),
                       record(pid=2, worker="/hanode/t/workers/dead/w0", timeout_ms=1_000),
                       record(pid=3, worker="/hanode/t/workers/dead/w1", timeout_ms=1_000)], [])
    done = await scavenge(store, now=1000.0, grace=0.5)
    assert sorted(s.record.persistent_id for s in done.stamp) == [2, 3] and not done.expire
    assert store.records[2][0].disconnected_since == 1000.0
    # Before expiry a reconnect adopts pid 3 (a compare-and-swap on what it read).
    three = await store.get(3)
    assert await store.replace(three, adopt(three.record, WORKER))
    assert not (await scavenge(store, now=1001.0, grace=0.5)).expire
    done = await scavenge(store, now=1001.6, grace=0.5)
    assert [s.record.persistent_id for s in done.expire] == [2]
    assert set(store.records) == {1, 3}
    # A stale read loses against a newer write.
    assert not await store.replace(three, None)


class _RacedStore(MemoryDurableStore):
    """Runs ``race`` (another writer) just before each of the first ``times``
    compare-and-swaps, as the scavenger or another node's reconnect would."""

    def __init__(self, race, times: int) -> None:
        super().__init__()
        self.race, self.times = race, times

    async def replace(self, old, new):
        if self.times:
            self.times -= 1
            await self.race(self)
        return await super().replace(old, new)


async def _stamp(store):
    await scavenge(store, now=1000.0)


def _refuse_unless_disconnected(stored, live):
    if stored is None or not is_disconnected(stored.record, live):
        raise LookupError("not disconnected")


async def test_reconnect_that_loses_its_swap_to_the_scavenger_reads_again_and_adopts():
    """The scavenger stamps a dead worker's records right after a takeover, just
    when its clients reconnect: the reconnect's swap lost, the record is still
    its to take."""
    store = _RacedStore(_stamp, times=1)
    store.workers = {WORKER}
    await store.write([record(pid=7, worker="/hanode/t/workers/dead/w0")], [])
    adopted = await adopt_record(store, 7, WORKER, _refuse_unless_disconnected)
    assert adopted is not None and adopted.record.worker == WORKER
    assert adopted.record.disconnected_since is None and store.times == 0


async def test_reconnect_that_loses_to_an_adoption_elsewhere_is_refused():
    async def adopted_elsewhere(store):
        stored = await store.get(7)
        await MemoryDurableStore.replace(store, stored, adopt(stored.record, WORKER))

    store = _RacedStore(adopted_elsewhere, times=1)
    store.workers = {WORKER}
    await store.write([record(pid=7, worker="/hanode/t/workers/dead/w0")], [])
    with pytest.raises(LookupError):
        await adopt_record(store, 7, "/hanode/t/workers/node2/w0", _refuse_unless_disconnected)
    assert store.records[7][0].worker == WORKER


async def test_reconnect_gives_up_after_its_attempts():
    async def rewritten(store):
        await store.write([(await store.get(7)).record], [])

    store = _RacedStore(rewritten, times=RECLAIM_ATTEMPTS)
    await store.write([record(pid=7, worker="/hanode/t/workers/dead/w0")], [])
    assert await adopt_record(store, 7, WORKER, _refuse_unless_disconnected) is None


async def test_memory_store_unavailable_raises_store_unavailable():
    store = MemoryDurableStore()
    store.available = False
    with pytest.raises(StoreUnavailable):
        await store.list()
    with pytest.raises(StoreUnavailable):
        await scavenge(store, now=0.0)


def test_module_constants_match_the_issue():
    assert durable.V1_TIMEOUT_MS == 960_000 and durable.V2_MAX_TIMEOUT_MS == 300_000


# -- what smb2.durable-v2-open.open-oplock / open-lease expect -----------------

SHARE_MODES = range(8)  # every combination of read, write, delete sharing


@pytest.mark.parametrize("level, durable_expected", [
    (OPLOCK_NONE, False), (OPLOCK_II, False), (OPLOCK_EXCLUSIVE, False), (OPLOCK_BATCH, True)])
@pytest.mark.parametrize("share", SHARE_MODES)
def test_first_open_is_durable_only_with_batch(level, durable_expected, share):
    node = NodeOplocks()
    d = node.open("f", OpenRequest(1, CLIENT, 0x12019F, share, 1, oplock_level=level))
    grant = grant_durability(V2, is_directory=False, oplock_level=d.oplock_level,
                             lease_state=None)
    assert (grant is not None) is durable_expected


@pytest.mark.parametrize("state, durable_expected", [
    (LEASE_READ, False), (LEASE_READ | LEASE_HANDLE, True), (LEASE_READ | LEASE_WRITE, False),
    (LEASE_READ | LEASE_WRITE | LEASE_HANDLE, True)])
@pytest.mark.parametrize("share", SHARE_MODES)
def test_first_open_is_durable_only_with_a_handle_lease(state, durable_expected, share):
    node = NodeOplocks()
    d = node.open("f", OpenRequest(1, CLIENT, 0x12019F, share, 1, oplock_level=OPLOCK_LEASE,
                                   lease=Lease(KEY, state)))
    grant = grant_durability(V2, is_directory=False, oplock_level=d.oplock_level,
                             lease_state=d.lease.state)
    assert (grant is not None) is durable_expected


# -- the writer under random interleavings and outages ---------------------------

from hypothesis import given, settings, strategies as st  # noqa: E402

ops_per_client = st.lists(st.sampled_from(["put", "delete"]), min_size=1, max_size=6)


@settings(max_examples=60, deadline=None)
@given(st.lists(ops_per_client, min_size=1, max_size=12),
       st.lists(st.floats(0.001, 0.05), min_size=1, max_size=8),
       st.integers(1, 5))
def test_writer_state_is_each_callers_last_acknowledged_change(clients, outages, max_batch):
    store = MemoryDurableStore(latency=0.01)
    writer = DurableWriter(store, max_batch=max_batch)
    expected: dict[int, DurableRecord | None] = {}

    async def client(pid, ops):
        for n, op in enumerate(ops):
            rec = record(pid=pid, path=f"v{n}")
            try:
                if op == "put":
                    await writer.put(rec)
                else:
                    await writer.delete(pid)
            except StoreUnavailable:
                continue
            expected[pid] = rec if op == "put" else None

    async def flaky_etcd():
        for pause in outages:
            await trio.sleep(pause)
            store.available = not store.available
        store.available = True

    async def main():
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            nursery.start_soon(flaky_etcd)
            async with trio.open_nursery() as callers:
                for pid, ops in enumerate(clients, start=1):
                    callers.start_soon(client, pid, ops)
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    for pid in range(1, len(clients) + 1):
        stored = store.records.get(pid)
        want = expected.get(pid)
        assert (stored[0] if stored else None) == want, pid


# -- the orphan index ----------------------------------------------------------

def test_orphan_index_lists_only_records_of_dead_workers_by_folded_name():
    dead = Stored(record(0x1, worker="/hanode/t/workers/n1/w0@9:1.0", path="Dir\\File.TXT"), 5)
    alive = Stored(record(0x2, worker=WORKER, path="dir\\file.txt"), 6)
    elsewhere = Stored(record(0x3, worker="/gone", path="other.txt"), 7)
    index = durable.OrphanIndex()
    index.load([dead, alive, elsewhere], {WORKER})
    assert len(index) == 2
    assert index.at("TEST", "dir/file.txt") == [dead]
    assert index.at("test", "DIR\\FILE.txt") == [dead]
    assert index.at("other", "dir/file.txt") == []
    index.drop(dead.record)
    assert index.at("test", "dir/file.txt") == [] and len(index) == 1
    index.load([alive], {WORKER})  # a refill replaces, never adds
    assert len(index) == 0


# -- persistent handles (continuously available shares) --------------------------

PERSISTENT_V2 = DurableV2Request(0, DHANDLE_FLAG_PERSISTENT, CREATE_GUID)


def test_persistent_granted_whatever_the_caching_only_on_a_ca_share():
    for level, lease_state in ((OPLOCK_NONE, None), (OPLOCK_II, None), (OPLOCK_LEASE, LEASE_READ),
                               (OPLOCK_BATCH, None)):
        grant = grant_durability(PERSISTENT_V2, is_directory=False, oplock_level=level,
                                 lease_state=lease_state, continuously_available=True)
        assert grant == durable.Grant(2, 60_000, persistent=True)
        assert grant.response_context().data[4:8] == DHANDLE_FLAG_PERSISTENT.to_bytes(4, "little")
        # Elsewhere (not CA, or below 3.0): at most durable, the flag not echoed.
        plain = grant_durability(PERSISTENT_V2, is_directory=False, oplock_level=level,
                                 lease_state=lease_state)
        assert plain == (durable.Grant(2, 60_000) if level == OPLOCK_BATCH else None)
    assert grant_durability(PERSISTENT_V2, is_directory=True, oplock_level=OPLOCK_NONE,
                            lease_state=None, continuously_available=True) is None
    assert grant_durability(PERSISTENT_V2, is_directory=False, oplock_level=OPLOCK_NONE,
                            lease_state=None, continuously_available=True,
                            store_available=False) is None


def test_persistent_reconnect_needs_its_flag_client_guid_create_guid_and_user():
    r = record(oplock_level=OPLOCK_NONE, persistent=True)
    flagged = DurableV2Reconnect(FileId(0x1234, 5), CREATE_GUID, DHANDLE_FLAG_PERSISTENT)
    ok = v2req(reconnect=flagged)
    assert check_reconnect(r, ok, disconnected=True) == Status.SUCCESS
    refused = {
        "no flag": v2req(),
        "another client": v2req(reconnect=flagged, client_guid=b"\xee" * 16),
        "wrong create guid": v2req(reconnect=DurableV2Reconnect(
            FileId(0x1234, 5), bytes(16), DHANDLE_FLAG_PERSISTENT)),
        "v1": v2req(reconnect=DurableV1Reconnect(FileId(0x1234, 5))),
    }
    for why, req in refused.items():
        assert check_reconnect(r, req, disconnected=True) == Status.OBJECT_NAME_NOT_FOUND, why
    assert check_reconnect(r, v2req(reconnect=flagged, user="mallory"),
                           disconnected=True) == Status.ACCESS_DENIED
    assert check_reconnect(r, ok, disconnected=False) == Status.OBJECT_NAME_NOT_FOUND
    # A durable (not persistent) oplock open keeps the spec's rules: any client GUID.
    assert check_reconnect(record(), v2req(client_guid=b"\xee" * 16),
                           disconnected=True) == Status.SUCCESS


def test_what_a_disconnected_open_answers_a_conflicting_open():
    assert refusal_while_disconnected(record()) is None  # durable: purged
    assert refusal_while_disconnected(record(persistent=True)) == Status.FILE_NOT_AVAILABLE
    assert refusal_while_disconnected(record(resilient=True)) == Status.SHARING_VIOLATION


def test_persistent_record_json_roundtrip_and_older_records():
    r = record(persistent=True, channel_sequence=7, locks=(LockRange(0, 10, True),),
               lock_sequences=((1, 3),))
    assert DurableRecord.from_json(r.to_json()) == r
    old = record().to_json()
    del old["persistent"], old["channel_sequence"]
    assert DurableRecord.from_json(old) == record()
