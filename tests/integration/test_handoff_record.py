"""The hand-off record against a real etcd: the successor tickles what the old leader recorded."""

from __future__ import annotations

from hanode.config import VipConfig
from hanode.conns import ConnList

VIP = VipConfig(address="10.0.0.50/24", interface="eth0")


async def test_successor_reads_recorded_clients_with_the_list_and_forgets_them(store):
    old, new = ConnList("node1", store, 445), ConnList("node2", store, 445)
    # One client the list still shows, one only the record knows (its worker had
    # already deleted its entry), one in both: each is tickled once.
    store.put(store.conn_key(VIP.ip, "10.0.0.9", 50000), {"node": "node1"})
    store.put(store.conn_key(VIP.ip, "10.0.0.9", 50001), {"node": "node1"})
    await old.hand_off(VIP, [("10.0.0.9", 50001), ("10.0.0.7", 40000)])
    seen = await new.others(VIP)
    assert sorted(client for _, client, _ in seen) == [
        ("10.0.0.7", 40000), ("10.0.0.9", 50000), ("10.0.0.9", 50001)]
    assert {node for _, _, node in seen} == {"node1"}
    # The old leader never tickles its own record, should it lead again.
    assert [c for _, c, _ in await old.others(VIP)] == []
    await new.forget(key for key, _, _ in seen)
    assert await new.others(VIP) == []
    assert store.get(store.handoff_key(VIP.ip)) is None
