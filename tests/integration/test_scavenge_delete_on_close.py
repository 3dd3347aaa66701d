"""The leader's scavenger expires a dead worker's delete-on-close durable handle,
or one whose client set a pending delete through it, and deletes its file, as
the handle's CLOSE would have (issue 4); a handle without either, or one of a
live worker, leaves its file alone."""

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
    for name in ("doc.bin", "keep.bin", "live.bin", "renamed.bin", "pending.bin"):
        (tmp_path / "sub" / name).write_bytes(b"x")
    inode = {p.name: p.stat().st_ino for p in (tmp_path / "sub").iterdir()}
    # The handle's file was renamed away and another file took its name since.
    (tmp_path / "sub" / "renamed.bin").rename(tmp_path / "sub" / "moved.bin")
    (tmp_path / "sub" / "renamed.bin").write_bytes(b"new")
    live = store.worker_key("n1", "w0")
    lease = store.grant_lease(10)
    store.put(live, {"pid": 1}, lease)
    dead = store.worker_key("n2", "w0")
    expired_at = time.time() - 120
    doc = record(store, new_persistent_id(), dead, path="sub\\doc.bin",
                 create_options=NON_DIRECTORY | CreateOptions.DELETE_ON_CLOSE,
                 disconnected_since=expired_at, inode=inode["doc.bin"])
    keep = record(store, new_persistent_id(), dead, path="sub\\keep.bin",
                  create_options=NON_DIRECTORY, disconnected_since=expired_at,
                  inode=inode["keep.bin"])
    mine = record(store, new_persistent_id(), live, path="sub\\live.bin",
                  create_options=NON_DIRECTORY | CreateOptions.DELETE_ON_CLOSE,
                  disconnected_since=expired_at, inode=inode["live.bin"])
    gone = record(store, new_persistent_id(), dead, path="sub\\renamed.bin",
                  create_options=NON_DIRECTORY | CreateOptions.DELETE_ON_CLOSE,
                  disconnected_since=expired_at, inode=inode["renamed.bin"])
    pending = record(store, new_persistent_id(), dead, path="sub\\pending.bin",
                     create_options=NON_DIRECTORY, delete_pending=True,
                     disconnected_since=expired_at, inode=inode["pending.bin"])
    await ds.write([doc, keep, mine, gone, pending], [])
    shares = (ShareConfig("test", str(tmp_path)),)
    assert await scavenge_once(ds, shares, time.time()) == 5
    assert await ds.list() == []
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == [
        "keep.bin", "live.bin", "moved.bin", "renamed.bin"]
    assert (tmp_path / "sub" / "renamed.bin").read_bytes() == b"new"
