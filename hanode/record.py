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

from hanode.checks import Monitor
from hanode.conns import ConnList
from hanode.election import Elector
from hanode.store import Store, StoreUnavailable
from hanode.supervisor import Supervisor
from hanode.takeover import VipOwner

REFRESH_INTERVAL = 3.0
CHECK_INTERVAL = 0.1
VERSION = version("hanode")


def node_record(elector: Elector, owner: VipOwner, conns: ConnList,
                supervisor: Supervisor, monitor: Monitor) -> dict[str, Any]:
    """The record without its "updated" stamp, so that two of them compare equal when
    nothing worth telling changed."""
    state = elector.state
    workers = supervisor.stats()
    return {
        "name": elector.me,
        "state": state.role,
        "term": state.term if state.role in ("leader", "fenced") else None,
        "since": elector.state_since,
        "lease_id": elector.lease_id,
        "lease_ttl": elector.granted_ttl or int(elector.timing.lease_ttl),
        "vips": [v.ip for v in owner.held_vips()],
        "workers": workers,
        "connections": conns.count,
        "durable_handles": sum(w["durable_handles"] or 0 for w in workers),
        "persistent_handles": sum(w.get("persistent_handles") or 0 for w in workers),
        "version": VERSION,
        "health": monitor.report(),
    }


async def publish_loop(store: Store, elector: Elector, owner: VipOwner, conns: ConnList,
                       supervisor: Supervisor, monitor: Monitor) -> None:
    """Rewrite the records as soon as they change, and every few seconds anyway.

    Comparing the local record every CHECK_INTERVAL costs nothing and spares
    the elector and the connection list any notification plumbing.
    """
    me = elector.me
    first_seen: float | None = None
    written: tuple[int, dict[str, Any]] | None = None  # (lease, record) last written
    written_at = float("-inf")
    while True:
        lease = elector.lease_id
        record = node_record(elector, owner, conns, supervisor, monitor)
        due = trio.current_time() - written_at >= REFRESH_INTERVAL
        if lease is not None and elector.state.role != "stopped" and (
                due or written != (lease, record)):
            now = time.time()
            try:
                if first_seen is None:
                    first_seen = await _first_seen(store, me, now)
                await trio.to_thread.run_sync(store.put, store.node_key(me),
                                              {**record, "updated": now}, lease,
                                              abandon_on_cancel=True)
                await trio.to_thread.run_sync(
                    store.put, store.member_key(me), {"first_seen": first_seen, "last_seen": now},
                    abandon_on_cancel=True)
                written, written_at = (lease, record), trio.current_time()
            except StoreUnavailable:
                pass  # the elector reports etcd's state; try again at the next check
        await trio.sleep(CHECK_INTERVAL)


async def _first_seen(store: Store, me: str, now: float) -> float:
    """Keep the member's first_seen across restarts."""
    old = await trio.to_thread.run_sync(store.get, store.member_key(me), abandon_on_cancel=True)
    seen = old.value.get("first_seen") if old and isinstance(old.value, dict) else None
    return seen if isinstance(seen, (int, float)) else now
