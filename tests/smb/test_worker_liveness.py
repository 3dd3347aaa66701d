"""Worker liveness keys and connection registration, read back from etcd
while real clients connect to ``hanode smb`` (two workers)."""

from __future__ import annotations

import os
import signal
import uuid

import durable_client as dc
import harness
from hanode.lab import wait_for
from hanode.store import Store

FIELDS = {"pid", "rss", "connections", "open_handles", "durable_handles", "started"}


def _store(etcd_url: str, target: harness.Target) -> Store:
    for line in target.config.read_text().splitlines():
        if line.startswith('name = "t'):
            return Store([etcd_url], line.split('"')[1])
    raise LookupError("no cluster name in the config")


def _workers(store: Store) -> dict[str, dict]:
    prefix = store.key("workers", "n1") + "/"
    return {e.key[len(prefix):]: e.value for e in store.get_prefix(prefix)}


def test_liveness_keys_and_connection_list(etcd_server, tmp_path):
    t = harness.start_hanode(etcd_server.url, tmp_path / "h", workers=2)
    store = _store(etcd_server.url, t)
    try:
        workers = wait_for(lambda: (w := _workers(store)) and len(w) == 2 and w, 10,
                           "both liveness keys")
        assert set(workers) == {"w0", "w1"}
        for value in workers.values():
            assert FIELDS <= set(value), value
            assert value["rss"] > 0 and value["connections"] == 0

        m = dc.mount(t.port, t.user, t.password, t.share_name, uuid.uuid4())
        port = m.local_port()
        conn_key = store.conn_key("127.0.0.1", "127.0.0.1", port)
        entry = store.get(conn_key)
        assert entry is not None and entry.value["node"] == "n1"
        pid = dc.serving_pid(t.port, port)
        name = f"w{entry.value['worker']}"
        op, _ = dc.open_durable(m, "held.bin", uuid.uuid4())
        # The serving worker reports its connection, open and durable handle (~2 s refresh).
        mine = wait_for(lambda: (v := _workers(store).get(name)) and v["durable_handles"] == 1
                        and v, 10, "the serving worker's durable handle")
        assert mine["pid"] == pid and mine["connections"] == 1 and mine["open_handles"] == 1
        op.close()
        m.conn.disconnect()
        wait_for(lambda: store.get(conn_key) is None, 10, "a clean close to unregister")

        # A crash leaves the connection registered (the next holder tickles it)
        # and lets the worker's liveness key go with its lease.
        m2 = dc.mount(t.port, t.user, t.password, t.share_name, uuid.uuid4())
        port2 = m2.local_port()
        victim = dc.serving_pid(t.port, port2)
        key2 = store.conn_key("127.0.0.1", "127.0.0.1", port2)
        victim_name = f"w{store.get(key2).value['worker']}"
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: (v := _workers(store).get(victim_name)) is None or v["pid"] != victim,
                 10, "the killed worker's liveness key to go")
        assert store.get(key2) is not None
        m2.drop()
        # The restarted worker takes the key back under its new pid.
        wait_for(lambda: (v := _workers(store).get(victim_name)) and v["pid"] != victim, 10,
                 "the restarted worker's liveness key")
    finally:
        store.close()
        harness.stop(t)
    assert "Traceback" not in t.log_text(), t.log_text()[-4000:]
