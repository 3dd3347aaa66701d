"""Store against a real etcd: the key layout and the leader transaction."""

import time

import pytest

from hanode.store import Store, StoreUnavailable


def test_put_get_prefix_roundtrip(store):
    store.put(store.node_key("n1"), {"state": "standby"})
    store.put(store.node_key("n2"), {"state": "leader"})
    entries = store.get_prefix(store.key("nodes") + "/")
    assert sorted(e.value["state"] for e in entries) == ["leader", "standby"]
    assert store.get(store.node_key("n3")) is None


def test_create_only_once_and_term_is_create_revision(store):
    lease = store.grant_lease(5)
    won, term = store.create(store.leader_key, {"node": "n1"}, lease=lease)
    assert won and term > 0
    won2, term2 = store.create(store.leader_key, {"node": "n2"})
    assert not won2 and term2 == term
    assert store.get(store.leader_key).value == {"node": "n1"}
    assert not store.delete_if_created(store.leader_key, term + 1000)
    assert store.delete_if_created(store.leader_key, term)
    store.revoke_lease(lease)


def test_lease_keepalive_and_revoke_drops_keys(store):
    lease = store.grant_lease(3)
    store.put(store.node_key("n1"), {"x": 1}, lease=lease)
    assert store.keepalive(lease) == 3
    assert 0 < store.lease_ttl_left(lease) <= 3
    store.revoke_lease(lease)
    assert store.get(store.node_key("n1")) is None
    assert store.keepalive(lease) == 0


def test_conn_key_parse_ipv4_and_ipv6(store):
    assert Store.parse_conn_key(store.conn_key("10.0.0.50", "10.0.0.9", 50123)) == ("10.0.0.9", 50123)
    assert Store.parse_conn_key(store.conn_key("fd00::50", "fd00::9", 445)) == ("fd00::9", 445)


def test_unreachable_endpoint_raises_store_unavailable():
    s = Store(["http://127.0.0.1:9"], "x", timeout=0.3)
    with pytest.raises(StoreUnavailable):
        s.get(s.leader_key)
    s.close()


def test_failover_to_second_endpoint(etcd_server):
    s = Store(["http://127.0.0.1:9", etcd_server.url], "failover", timeout=0.3)
    s.put(s.key("k"), 1)
    assert s.get(s.key("k")).value == 1
    s.delete_prefix(s.prefix)
    s.close()


def test_count_prefix(store):
    assert store.count_prefix(store.conn_prefix("10.0.0.50")) == 0
    for port in (1, 2, 3):
        store.put(store.conn_key("10.0.0.50", "10.0.0.9", port), {"node": "n1"})
    store.put(store.conn_key("10.0.0.51", "10.0.0.9", 1), {"node": "n1"})
    assert store.count_prefix(store.conn_prefix("10.0.0.50")) == 3
    assert store.count_prefix(store.key("conns") + "/") == 4


def test_watch_prefix_sees_puts_and_deletes_until_cancelled(store):
    """What a worker follows the liveness keys with: puts (decoded) and deletes,
    a lease running out included, under the prefix only; cancel ends it."""
    import threading

    prefix = store.key("workers") + "/"
    changes, cancel = store.watch_prefix(prefix)
    seen = []
    reader = threading.Thread(target=lambda: seen.extend(changes))
    reader.start()
    try:
        lease = store.grant_lease(2)
        store.put(store.worker_key("n1", "w0"), {"identity": "a"}, lease=lease)
        store.put(store.node_key("n1"), {"x": 1})  # outside the prefix
        store.put(store.worker_key("n2", "w0"), {"identity": "b"})
        store.delete_prefix(store.key("workers", "n2") + "/")
        store.revoke_lease(lease)
        deadline = time.monotonic() + 5
        while len(seen) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        cancel()
        reader.join(5)
    assert not reader.is_alive()
    assert [(c.key, c.value, c.deleted) for c in seen] == [
        (store.worker_key("n1", "w0"), {"identity": "a"}, False),
        (store.worker_key("n2", "w0"), {"identity": "b"}, False),
        (store.worker_key("n2", "w0"), None, True),
        (store.worker_key("n1", "w0"), None, True),
    ]
