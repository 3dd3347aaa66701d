"""This node's records in etcd: ``nodes/<name>`` (on the lease) and ``members/<name>``.

``hanode status`` reads them from any machine.  The node record dies with the
lease, so a crashed node vanishes from ``nodes/`` within the TTL; the member
record has no lease, so status can still name that node and call it down.
"""

from __future__ import annotations

import time
from importlib.metadata import version
from typing import Any

import trio

from hanode.conns import ConnList
from hanode.election import Elector
from hanode.store import Store, StoreUnavailable
from hanode.takeover import VipOwner

REFRESH_INTERVAL = 3.0


def node_record(elector: Elector, owner: VipOwner, conns: ConnList, now: float) -> dict[str, Any]:
    state = elector.state
    return {
        "name": elector.me,
        "state": state.role,
        "term": state.term if state.role in ("leader", "fenced") else None,
        "since": elector.state_since,
        "updated": now,
        "lease_id": elector.lease_id,
        "lease_ttl": int(elector.timing.lease_ttl),
        "vips": [v.ip for v in owner.held_vips()],
        "workers": [],
        "connections": conns.count,
        "durable_handles": 0,
        "version": version("hanode"),
    }


async def publish_loop(store: Store, elector: Elector, owner: VipOwner, conns: ConnList) -> None:
    """Rewrite the records on every change of state and every few seconds."""
    first_seen: float | None = None
    me = elector.me
    while True:
        changed = elector.state_changed
        lease = elector.lease_id
        if lease is not None and elector.state.role != "stopped":
            now = time.time()
            record = node_record(elector, owner, conns, now)
            try:
                if first_seen is None:
                    old = await trio.to_thread.run_sync(store.get, store.member_key(me),
                                                        abandon_on_cancel=True)
                    seen = old.value.get("first_seen") if old and isinstance(old.value, dict) else None
                    first_seen = seen if isinstance(seen, (int, float)) else now
                await trio.to_thread.run_sync(store.put, store.node_key(me), record, lease,
                                              abandon_on_cancel=True)
                await trio.to_thread.run_sync(
                    store.put, store.member_key(me), {"first_seen": first_seen, "last_seen": now},
                    abandon_on_cancel=True)
            except StoreUnavailable:
                pass  # the elector reports etcd's state; try again at the next tick
        with trio.move_on_after(REFRESH_INTERVAL if lease is not None else 0.25):
            await changed.wait()
