"""``hanode status``: the cluster at a glance, read from etcd alone.

It runs from any machine that reaches etcd, so it never asks a node anything:
what the agents published (leader key, node and member records, connection
and durable-handle keys) is all there is.  Taking a snapshot is the only
I/O; the report (the JSON object) and the table are pure functions of a
snapshot and the clock, so every verdict can be tested without a cluster.

The tool is a short sequence of blocking reads, so it stays synchronous;
``--watch`` repeats it once a second until Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Mapping
from urllib.parse import urlparse

from hanode import config as config_mod
from hanode.errors import UserError
from hanode.store import Store, StoreUnavailable

EXIT_HEALTHY = 0
EXIT_DEGRADED = 1
# Where ``hanode agent`` starts its embedded trial etcd when cluster.etcd is empty.
EMBEDDED_ETCD_URL = "http://127.0.0.1:2379"
WATCH_INTERVAL = 1.0
CLEAR_SCREEN = "\x1b[H\x1b[2J"


@dataclass(frozen=True)
class NodeSeen:
    """What etcd says about one node: its live record (None once its lease died)."""

    name: str
    record: Mapping[str, Any] | None
    lease_ttl_left: int | None
    member: Mapping[str, Any] | None


@dataclass(frozen=True)
class Snapshot:
    cluster: str
    endpoints: tuple[str, ...]
    etcd_health: Mapping[str, bool]
    # Set when etcd could not be read; everything below is then unknown.
    error: str | None = None
    leader: Mapping[str, Any] | None = None
    term: int | None = None
    nodes: tuple[NodeSeen, ...] = ()
    vips: tuple[str, ...] = ()
    connections: Mapping[str, int] = field(default_factory=dict)
    durable_handles: int | None = None


# --------------------------------------------------------------------------
# Reading etcd


def _mapping(value: Any) -> dict[str, Any]:
    """A record's JSON object; anything else (a hand-edited key, say) reads as empty."""
    return value if isinstance(value, dict) else {}


def take_snapshot(store: Store, vips: tuple[str, ...] | None) -> Snapshot:
    """Read everything status shows; vips: the configured VIPs, or None to take the nodes' word."""
    health = store.endpoint_health()
    base = dict(cluster=store.cluster, endpoints=store.endpoints, etcd_health=health,
                vips=vips or ())
    if not any(health.values()):
        return Snapshot(**base, error=f"etcd unreachable at {', '.join(store.endpoints)}")
    try:
        leader = store.get(store.leader_key)
        records = {e.key.rsplit("/", 1)[1]: e for e in store.get_prefix(store.key("nodes") + "/")}
        members = {e.key.rsplit("/", 1)[1]: _mapping(e.value)
                   for e in store.get_prefix(store.key("members") + "/")}
        nodes = []
        for name in sorted(set(records) | set(members)):
            entry = records.get(name)
            ttl = store.lease_ttl_left(entry.lease) if entry is not None and entry.lease else -1
            nodes.append(NodeSeen(name=name,
                                  record=_mapping(entry.value) if entry is not None else None,
                                  lease_ttl_left=ttl if ttl >= 0 else None,
                                  member=members.get(name)))
        if vips is None:
            vips = tuple(sorted({str(ip) for n in nodes if n.record
                                 for ip in n.record.get("vips") or ()}))
        connections = {ip: store.count_prefix(store.conn_prefix(ip)) for ip in vips}
        durable = store.count_prefix(store.key("durable") + "/")
    except StoreUnavailable as exc:
        return Snapshot(**base, error=f"etcd stopped answering: {exc}")
    return Snapshot(**{**base, "vips": vips}, leader=_mapping(leader.value) if leader else None,
                    term=leader.create_revision if leader else None, nodes=tuple(nodes),
                    connections=connections, durable_handles=durable)


# --------------------------------------------------------------------------
# The report: a pure function of a snapshot


def _node_state(record: Mapping[str, Any] | None) -> str:
    if record is None:
        return "down"
    return "leader" if record.get("state") == "leader" else "standby"


def _last_seen(node: NodeSeen) -> float | None:
    times = [t for t in ((node.member or {}).get("last_seen"), (node.record or {}).get("updated"))
             if isinstance(t, (int, float))]
    return max(times) if times else None


def _node_report(node: NodeSeen) -> dict[str, Any]:
    record = node.record
    return {
        "name": node.name,
        "state": _node_state(record),
        "role": record.get("state", "unknown") if record is not None else "down",
        "term": record.get("term") if record is not None else None,
        "since": record.get("since") if record is not None else None,
        "lease_ttl_left": node.lease_ttl_left,
        "last_seen": _last_seen(node),
        "workers": list(record.get("workers") or []) if record is not None else [],
        "connections": record.get("connections") if record is not None else None,
        "durable_handles": record.get("durable_handles") if record is not None else None,
        # Of the durable handles, those on continuously available shares.
        "persistent_handles": record.get("persistent_handles") if record is not None else None,
        "version": record.get("version") if record is not None else None,
        "health": _health(record),
    }


def _health(record: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The node's health as its agent published it; None (unknown) for a node that is
    down or whose agent predates health checks."""
    health = record.get("health") if record is not None else None
    if not isinstance(health, Mapping) or not isinstance(health.get("checks"), list):
        return None
    checks = [{"name": str(c.get("name")), "ok": c.get("ok") is True,
               "detail": str(c.get("detail", "")), "since": c.get("since")}
              for c in health["checks"] if isinstance(c, Mapping)]
    return {"healthy": health.get("healthy") is True and all(c["ok"] for c in checks),
            "checks": checks}


def health_word(node: Mapping[str, Any]) -> str:
    health = node.get("health")
    if health is None:
        return "unknown"
    return "healthy" if health["healthy"] else "unhealthy"


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _verdict(snap: Snapshot, leader: str | None, nodes: list[dict[str, Any]],
             vips: list[dict[str, Any]]) -> dict[str, Any]:
    if snap.error is not None:
        return {"healthy": False, "reasons": ["etcd unreachable"]}
    reasons = [f"etcd {url} down" for url, ok in snap.etcd_health.items() if not ok]
    if leader is None:
        reasons.append("no leader")
    for node in nodes:
        if node["state"] == "leader" and node["name"] != leader:
            reasons.append(f"{node['name']} claims to lead but "
                           f"{leader or 'nobody'} holds the leader key")
    for vip in vips:
        holders = vip["holders"]
        if not holders:
            reasons.append(f"VIP {vip['address']} not held")
        elif len(holders) > 1:
            reasons.append(f"VIP {vip['address']} held by {_and(holders)}")
        elif leader is not None and holders[0] != leader:
            reasons.append(f"VIP {vip['address']} held by {holders[0]}, not by leader {leader}")
    for node in nodes:
        if node["state"] == "down":
            reasons.append(f"{node['name']} down")
        elif node["role"] == "fenced":
            reasons.append(f"{node['name']} fenced")
        health = node["health"]
        if node["state"] != "down" and health is not None and not health["healthy"]:
            failing = [f"{c['name']}: {c['detail']}" for c in health["checks"] if not c["ok"]]
            serving = " (serving while unhealthy)" if node["state"] == "leader" else ""
            reasons.append(f"{node['name']}: unhealthy{serving}: " + ", ".join(failing))
    if not nodes:
        reasons.append("no nodes")
    return {"healthy": not reasons, "reasons": reasons}


def report(snap: Snapshot) -> dict[str, Any]:
    """The ``--json`` object: what etcd says, and whether that adds up to a healthy cluster."""
    nodes = [_node_report(n) for n in snap.nodes]
    leader = None
    if snap.leader is not None:
        leader = {"node": snap.leader.get("node"), "term": snap.term,
                  "since": snap.leader.get("since")}
    vips = []
    for ip in snap.vips:
        holders = [n.name for n in snap.nodes
                   if n.record is not None and ip in (n.record.get("vips") or ())]
        vips.append({"address": ip, "holder": holders[0] if len(holders) == 1 else None,
                     "holders": holders, "connections": snap.connections.get(ip)})
    return {
        "cluster": snap.cluster,
        "etcd": {"endpoints": list(snap.endpoints),
                 "healthy": snap.error is None and all(snap.etcd_health.values()),
                 "endpoint_health": dict(snap.etcd_health), "error": snap.error},
        "leader": leader,
        "vips": vips,
        "nodes": nodes,
        "durable_handles": snap.durable_handles,
        "verdict": _verdict(snap, leader["node"] if leader else None, nodes, vips),
    }


# --------------------------------------------------------------------------
# The table: a pure function of a report and the clock


def _age(then: Any, now: float) -> str:
    if not isinstance(then, (int, float)):
        return "-"
    seconds = max(0, int(now - then))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def _clock(then: Any) -> str:
    if not isinstance(then, (int, float)):
        return "?"
    return datetime.fromtimestamp(then, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _dash(value: Any, suffix: str = "") -> str:
    return "-" if value is None else f"{value}{suffix}"


def _columns(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


def verdict_line(rep: Mapping[str, Any]) -> str:
    verdict = rep["verdict"]
    return "healthy" if verdict["healthy"] else "degraded: " + "; ".join(verdict["reasons"])


def _worker_rows(nodes: list[Mapping[str, Any]]) -> list[list[str]]:
    """One row per SMB worker the agents publish (an older agent's plain entries show as -)."""
    rows = [["WORKER", "PID", "RSS", "CONNECTIONS", "OPEN", "DURABLE", "RESTARTS"]]
    for node in nodes:
        for i, w in enumerate(node["workers"]):
            w = w if isinstance(w, Mapping) else {}
            rss = w.get("rss")
            rows.append([f"{node['name']}/w{w.get('index', i)}",
                         _dash(w.get("pid")) if w.get("pid") else "restarting",
                         f"{rss / (1 << 20):.0f} MiB" if isinstance(rss, (int, float)) else "-",
                         _dash(w.get("connections")), _dash(w.get("open_handles")),
                         _dash(w.get("durable_handles")), _dash(w.get("restarts"))])
    return rows


def render_table(rep: Mapping[str, Any], now: float) -> str:
    etcd = rep["etcd"]
    health = ", ".join(f"{url} {'ok' if ok else 'DOWN'}"
                       for url, ok in etcd["endpoint_health"].items())
    lines = [f"cluster  {rep['cluster']}", f"etcd     {health}"]
    if etcd["error"] is not None:
        lines += [f"         {etcd['error']}", "", verdict_line(rep)]
        return "\n".join(lines)
    leader = rep["leader"]
    if leader is None:
        lines.append("leader   none")
    else:
        lines.append(f"leader   {leader['node']} (term {leader['term']}) since "
                     f"{_clock(leader['since'])} ({_age(leader['since'], now)})")
    if rep["vips"]:
        rows = [["VIP", "HOLDER", "CONNECTIONS"]]
        for vip in rep["vips"]:
            holder = "+".join(vip["holders"]) or "-"
            rows.append([vip["address"], holder, _dash(vip["connections"])])
        lines += [""] + _columns(rows)
    if rep["nodes"]:
        rows = [["NODE", "STATE", "HEALTH", "LEASE", "WORKERS", "CONNECTIONS", "DURABLE",
                 "PERSISTENT", "LAST SEEN"]]
        for node in rep["nodes"]:
            state = node["state"] if node["role"] in (node["state"], "standby") else \
                f"{node['state']} ({node['role']})"
            rows.append([node["name"], state,
                         "-" if node["state"] == "down" else health_word(node),
                         _dash(node["lease_ttl_left"], "s"),
                         "-" if node["state"] == "down" else str(len(node["workers"])),
                         _dash(node["connections"]), _dash(node["durable_handles"]),
                         _dash(node["persistent_handles"]), _age(node["last_seen"], now)])
        lines += [""] + _columns(rows)
        workers = _worker_rows(rep["nodes"])
        if len(workers) > 1:
            lines += [""] + _columns(workers)
    lines += ["", f"durable handles  {_dash(rep['durable_handles'])}", verdict_line(rep)]
    return "\n".join(lines)


# --------------------------------------------------------------------------
# The command


def _check_url(url: str) -> str:
    parsed = urlparse(url)
    try:
        port_ok = parsed.port is None or parsed.port > 0
    except ValueError:
        port_ok = False
    if parsed.scheme not in ("http", "https") or not parsed.hostname or not port_ok:
        raise UserError(f"--etcd: {url!r} is not an etcd URL like http://10.0.0.11:2379")
    return url


def _target(args: argparse.Namespace) -> tuple[config_mod.ClusterConfig, tuple[str, ...],
                                                tuple[str, ...] | None]:
    """The cluster, its etcd endpoints and the configured VIPs, from --config and the flags."""
    cfg = None
    if args.config:
        cfg = config_mod.load(args.config)
    elif not (args.etcd and args.cluster) and config_mod.DEFAULT_PATH.exists():
        cfg = config_mod.load(config_mod.DEFAULT_PATH)
    cluster = cfg.cluster if cfg else config_mod.ClusterConfig()
    if args.cluster is not None:
        if not config_mod._NAME_RE.match(args.cluster):
            raise UserError(f"--cluster: {args.cluster!r} is not a valid cluster name")
        cluster = replace(cluster, name=args.cluster)
    elif cfg is None:
        raise UserError("status: give --config FILE, or --etcd URL and --cluster NAME")
    if args.etcd:
        endpoints = tuple(_check_url(url) for url in args.etcd)
    elif cfg is not None:
        endpoints = cfg.cluster.etcd or (EMBEDDED_ETCD_URL,)
    else:
        raise UserError("status: give --etcd URL (or --config FILE)")
    vips = tuple(v.ip for v in cfg.vips) if cfg and cfg.vips else None
    return cluster, endpoints, vips


def _show(store: Store, vips: tuple[str, ...] | None, as_json: bool, redraw: bool) -> int:
    rep = report(take_snapshot(store, vips))
    if as_json:
        text = json.dumps(rep, separators=(",", ":") if redraw else None,
                          indent=None if redraw else 2)
    else:
        text = (CLEAR_SCREEN if redraw else "") + render_table(rep, time.time())
    print(text, flush=True)
    return EXIT_HEALTHY if rep["verdict"]["healthy"] else EXIT_DEGRADED


def main(args: argparse.Namespace) -> int:
    """0 healthy, 1 degraded (etcd unreachable included), 2 usage or config error."""
    cluster, endpoints, vips = _target(args)
    store = Store.from_config(cluster, endpoints)
    try:
        if not args.watch:
            return _show(store, vips, args.json, redraw=False)
        try:
            while True:
                started = time.monotonic()
                _show(store, vips, args.json, redraw=True)
                time.sleep(max(0.0, WATCH_INTERVAL - (time.monotonic() - started)))
        except KeyboardInterrupt:
            return EXIT_HEALTHY
    finally:
        store.close()
