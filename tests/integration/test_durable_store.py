"""Durable records in a real etcd: the store, the batched writer, the scavenger."""

import time

import pytest
import trio

from hanode.store import Store, StoreUnavailable
from smb.durable import (
    DurableRecord, DurableWriter, EtcdDurableStore, adopt, is_disconnected, new_persistent_id,
    scavenge,
)
from smb.oplocks import LEASE_HANDLE, LEASE_READ, OPLOCK_LEASE, Lease


def record(store: Store, pid: int, worker: str, **kw) -> DurableRecord:
    base = dict(persistent_id=pid, version=2, create_guid=pid.to_bytes(16, "little"),
                client_guid=b"\xc1" * 16, owner="alice", share="test", path=f"f{pid:x}.bin",
                desired_access=0x12019F, share_access=7, create_options=0x40,
                oplock_level=OPLOCK_LEASE,
                lease=Lease(b"\x4b" * 16, LEASE_READ | LEASE_HANDLE, 1, 2, None),
                timeout_ms=60_000, worker=worker)
    base.update(kw)
    return DurableRecord(**base)


def test_get_many_reads_the_keys_that_exist_in_batches(store):
    keys = [store.key("many", str(i)) for i in range(Store.MAX_TXN_OPS * 2 + 5)]
    store.apply([(k, i) for i, k in enumerate(keys[:Store.MAX_TXN_OPS])])
    store.apply([(k, i) for i, k in enumerate(keys[Store.MAX_TXN_OPS:], Store.MAX_TXN_OPS)
                 if i % 3])
    wanted = {k: i for i, k in enumerate(keys) if i < Store.MAX_TXN_OPS or i % 3}
    found = store.get_many(keys + [store.key("absent")])
    assert {e.key: e.value for e in found} == wanted
    assert store.get_many([]) == []


def test_apply_and_replace_if(store):
    a, b = store.key("a"), store.key("b")
    store.apply([(a, 1), (b, 2)])
    store.apply([(a, 3)], [b])
    assert store.get(a).value == 3 and store.get(b) is None
    entry = store.get(a)
    assert store.replace_if(a, entry.mod_revision, 4)
    assert not store.replace_if(a, entry.mod_revision, 5)  # stale revision loses
    assert store.get(a).value == 4
    assert store.replace_if(a, store.get(a).mod_revision, None)
    assert store.get(a) is None
    with pytest.raises(ValueError):
        store.apply([(store.key(str(i)), i) for i in range(Store.MAX_TXN_OPS + 1)])


async def test_etcd_durable_store_roundtrip(store):
    ds = EtcdDurableStore(store)
    worker = store.worker_key("n1", "w0")
    r = record(store, new_persistent_id(), worker)
    await ds.write([r], [])
    got = await ds.get(r.persistent_id)
    assert got.record == r
    assert store.get(store.durable_key(r.persistent_id)).value["path"] == r.path
    assert [s.record for s in await ds.list()] == [r]
    moved = adopt(r, store.worker_key("n2", "w1"))
    assert await ds.replace(got, moved)
    assert not await ds.replace(got, None)  # got is stale now
    assert (await ds.get(r.persistent_id)).record == moved
    many = await ds.get_many([r.persistent_id, new_persistent_id()])
    assert list(many) == [r.persistent_id] and many[r.persistent_id] == await ds.get(r.persistent_id)
    await ds.write([], [r.persistent_id])
    assert await ds.get(r.persistent_id) is None


async def test_garbage_under_durable_prefix_is_skipped(store):
    ds = EtcdDurableStore(store)
    store.put(store.durable_key(5), {"not": "a record"})
    assert await ds.get(5) is None and await ds.list() == []


async def test_writer_stores_every_record_in_few_transactions(store):
    ds = EtcdDurableStore(store)
    writer = DurableWriter(ds)
    worker = store.worker_key("n1", "w0")
    records = [record(store, new_persistent_id(), worker) for _ in range(400)]
    calls = 0
    real_write = ds.write

    async def counting_write(puts, deletes):
        nonlocal calls
        calls += 1
        await real_write(puts, deletes)

    ds.write = counting_write

    async def one(r):
        await writer.put(r)
        # Acknowledged means readable from etcd, right now.
        key = store.durable_key(r.persistent_id)
        assert await trio.to_thread.run_sync(store.get, key) is not None

    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        async with trio.open_nursery() as clients:
            for r in records:
                clients.start_soon(one, r)
        nursery.cancel_scope.cancel()
    assert len(store.get_prefix(store.key("durable") + "/")) == 400
    assert calls < 40, calls


async def test_writer_fails_grants_when_etcd_is_unreachable():
    ds = EtcdDurableStore(Store(["http://127.0.0.1:9"], "nowhere", timeout=0.3))
    writer = DurableWriter(ds)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        with pytest.raises(StoreUnavailable):
            await writer.put(record(ds.store, 1, "w"))
        nursery.cancel_scope.cancel()
    ds.store.close()


async def test_scavenger_follows_worker_liveness_keys(store):
    ds = EtcdDurableStore(store)
    lease = store.grant_lease(30)
    alive, dead = store.worker_key("n1", "w0"), store.worker_key("n2", "w0")
    store.put(alive, {"pid": 1}, lease=lease)
    kept = record(store, 1, alive, timeout_ms=100)
    orphan = record(store, 2, dead, timeout_ms=100)
    await ds.write([kept, orphan], [])
    live = await ds.live_workers()
    assert live == {alive}
    assert not is_disconnected(kept, live) and is_disconnected(orphan, live)

    now = time.time()
    done = await scavenge(ds, now=now, grace=0.1)
    assert [s.record.persistent_id for s in done.stamp] == [2] and not done.expire
    done = await scavenge(ds, now=now + 0.25, grace=0.1)
    assert [s.record.persistent_id for s in done.expire] == [2]
    assert [s.record.persistent_id for s in await ds.list()] == [1]

    # The owning worker dies: its lease goes, and with it the liveness key.
    store.revoke_lease(lease)
    assert await ds.live_workers() == frozenset()
    done = await scavenge(ds, now=now + 1, grace=0.1)
    assert [s.record.persistent_id for s in done.stamp] == [1]
    await scavenge(ds, now=now + 1.25, grace=0.1)
    assert await ds.list() == []
