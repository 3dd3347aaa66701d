"""``hanode switchover [--to NODE]``: a planned move of the VIP to another node.

The request is one key in etcd (``store.switchover_key``: to, from, time) on a
short lease of its own, so a request that nobody completes (the command was
killed, the target died) disappears by itself and the election goes back to
normal.  The agents treat it as one more fact (see ``leadership.decide``): the
leader it names resets its clients, releases the VIP and resigns; only the
target campaigns meanwhile, so it claims as soon as the leader key is gone.
This command only checks the request makes sense, writes it, waits for the
new leader, reports, and removes the request.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Mapping, Sequence

from hanode.errors import UserError
from hanode.status import _target, report, take_snapshot
from hanode.store import Store, StoreUnavailable

# Seconds the request lives if this command does not remove it.
REQUEST_TTL = 10
# How long to wait for the target to hold the leader key.
WAIT = 8.0
POLL = 0.02


def _health(node: Mapping[str, Any]) -> tuple[bool, int, int, str]:
    """Sort key: nodes whose health checks pass first, then workers all running, then
    fewest worker restarts, then by name."""
    health = node.get("health")
    unhealthy = not (isinstance(health, Mapping) and health.get("healthy") is True)
    workers = node.get("workers") or []
    down = sum(1 for w in workers if not isinstance(w, dict) or w.get("pid") is None)
    restarts = sum(w.get("restarts") or 0 for w in workers if isinstance(w, dict))
    return unhealthy, down, restarts, node["name"]


def choose_target(nodes: Sequence[Mapping[str, Any]], leader: str, to: str | None) -> str:
    """The node to move to: the one asked for, after checks, or the healthiest standby."""
    if to is not None:
        named = next((n for n in nodes if n["name"] == to), None)
        if named is None:
            known = ", ".join(n["name"] for n in nodes) or "none"
            raise UserError(f"switchover: unknown node {to!r} (nodes: {known})")
        if named["state"] == "down":
            raise UserError(f"switchover: node {to!r} is down")
        if to == leader:
            raise UserError(f"switchover: {to!r} is already the leader")
        return to
    standbys = [n for n in nodes if n["state"] == "standby" and n["name"] != leader]
    if not standbys:
        raise UserError("switchover: no standby node is up to take over")
    return min(standbys, key=_health)["name"]


def _wait_for_leader(store: Store, target: str, deadline: float) -> tuple[str | None, int | None]:
    """The leader (node, term) once it is target, or whatever it is at the deadline."""
    while True:
        entry = store.get(store.leader_key)
        node = entry.value.get("node") if entry and isinstance(entry.value, dict) else None
        term = entry.create_revision if entry else None
        if node == target or time.monotonic() >= deadline:
            return node, term
        time.sleep(POLL)


def run(store: Store, to: str | None) -> int:
    snap = take_snapshot(store, None)
    if snap.error is not None:
        print(f"hanode: switchover: {snap.error}", file=sys.stderr)
        return 1
    rep = report(snap)
    if rep["leader"] is None:
        raise UserError("switchover: there is no leader to move from")
    source = rep["leader"]["node"]
    target = choose_target(rep["nodes"], source, to)
    lease = store.grant_lease(REQUEST_TTL)
    try:
        started = time.monotonic()
        created, _ = store.create(store.switchover_key,
                                  {"to": target, "from": source, "time": time.time()}, lease)
        if not created:
            raise UserError("switchover: another switchover is in progress")
        node, term = _wait_for_leader(store, target, started + WAIT)
        took = time.monotonic() - started
    finally:
        store.revoke_lease(lease)
    if node != target:
        print(f"hanode: switchover {source} -> {target} did not complete within {WAIT:.0f} s; "
              f"leader now: {node or 'none'}", file=sys.stderr)
        return 1
    print(f"switchover {source} -> {target}: {target} leads (term {term}) after {took:.2f} s")
    return 0


def main(args: argparse.Namespace) -> int:
    """0 moved, 1 etcd trouble or timeout, 2 refused (UserError, printed by the cli)."""
    cluster, endpoints, _ = _target(args)
    store = Store.from_config(cluster, endpoints)
    try:
        return run(store, args.to)
    except StoreUnavailable as exc:
        print(f"hanode: switchover: etcd unavailable: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
