"""The leader's scavenger expires a dead worker's delete-on-close durable handle
and deletes its file, as the handle's CLOSE would have (issue 4); a handle
without delete-on-close, or one of a live worker, leaves its file alone."""

import time

from hanode.agent import scavenge_once
from hanode.config import ShareConfig
from smb.durable import EtcdDurableStore, new_persistent_id
from smb.wire.create import CreateOptions
from test_durable_store import record

NON_DIRECTORY = CreateOptions.NON_DIRECTORY_FILE


async def test_expired_delete_on_close_handle_of_a_dead_worker_takes_its_file(store, tmp_path):
    ds = EtcdDurableStore(store)
    (tmp_path / "sub").mkdir()
    for name in ("doc.bin", "keep.bin", "live.bin"):
        (tmp_path / "sub" / name).write_bytes(b"x")
    live = store.worker_key("n1", "w0")
    lease = store.grant_lease(10)
    store.put(live, {"pid": 1}, lease)
    dead = store.worker_key("n2", "w0")
    expired_at = time.time() - 120
    doc = record(store, new_persistent_id(), dead, path="sub\\doc.bin",
                 create_options=NON_DIRECTORY | CreateOptions.DELETE_ON_CLOSE,
                 disconnected_since=expired_at)
    keep = record(store, new_persistent_id(), dead, path="sub\\keep.bin",
                  create_options=NON_DIRECTORY, disconnected_since=expired_at)
    mine = record(store, new_persistent_id(), live, path="sub\\live.bin",
                  create_options=NON_DIRECTORY | CreateOptions.DELETE_ON_CLOSE,
                  disconnected_since=expired_at)
    await ds.write([doc, keep, mine], [])
    shares = (ShareConfig("test", str(tmp_path)),)
    assert await scavenge_once(ds, shares, time.time()) == 3
    assert await ds.list() == []
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["keep.bin", "live.bin"]
