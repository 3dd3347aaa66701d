"""``hanode agent``: one node's long-running program.

Sets up logging, starts the embedded trial etcd when no endpoints are
configured, and runs the elector, the SMB workers' supervisor, the connection
list, the durable-handle scavenger and the node record in one nursery until
SIGTERM/SIGINT; then the elector lets go of everything in order, the workers
are stopped, and the process exits 0 within two seconds.
"""

from __future__ import annotations

import gc
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

import trio

from hanode import checks, embedded_etcd, health, looplag, metrics, record
from hanode.config import Config, ShareConfig
from hanode.conns import ConnList
from hanode.election import Elector
from hanode.leadership import Timing
from hanode.sdnotify import Notifier
from hanode.store import Store, StoreUnavailable
from hanode.supervisor import Supervisor
from hanode.takeover import VipOwner
# Imported here, with the agent, not on the scavenger's first round as leader:
# importing the SMB server modules takes 0.2 s of CPU, seconds on a busy
# machine, and an import inside a coroutine blocks the whole trio loop; the
# new leader stalled that long, past its 1 s lease (bench/soak.py).
from smb.durable import EtcdDurableStore, scavenge
from smb.server.durable_opens import delete_on_close

log = logging.getLogger("hanode.agent")

EMBEDDED_CLIENT_URL = "http://127.0.0.1:2379"
EMBEDDED_PEER_URL = "http://127.0.0.1:2380"
# Of the two seconds a stop may take, what the release/resign/revoke steps may use.
STOP_BUDGET = 1.5
SCAVENGE_INTERVAL = 1.0


def _setup_logging(level: str) -> None:
    logging.basicConfig(stream=sys.stderr, level=level.upper(),
                        format="%(asctime)s %(levelname)s %(message)s")


def _start_embedded(cfg: Config) -> subprocess.Popen:
    data = Path(cfg.node.state_dir) / "etcd"
    log.info("%s: no etcd endpoints configured; starting an embedded etcd in %s (trial use)",
             cfg.node.name, data)
    return embedded_etcd.start(data, EMBEDDED_CLIENT_URL, EMBEDDED_PEER_URL,
                               name=cfg.node.name, log_path=data.parent / "etcd.log")


async def _stop_on_signal(elector: Elector, notifier: Notifier,
                          task_status=trio.TASK_STATUS_IGNORED) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        task_status.started()
        async for signum in signals:
            log.info("%s: %s received; stopping", elector.me, signal.Signals(signum).name)
            notifier.stopping(f"{elector.me}: stopping")
            elector.stop()


async def _scavenge_loop(store: Store, elector: Elector, shares: Sequence[ShareConfig]) -> None:
    """Expire durable handles nobody reclaimed in time; only the leader does it,
    so that one node, not every node, pays for the listing."""
    durable = EtcdDurableStore(store)
    while True:
        await trio.sleep(SCAVENGE_INTERVAL)
        if elector.state.role != "leader":
            continue
        try:
            expired = await scavenge_once(durable, shares, time.time())
        except StoreUnavailable:
            continue  # the elector reports etcd's state
        if expired:
            log.info("%s: %d durable handle(s) expired", elector.me, expired)


async def scavenge_once(durable: EtcdDurableStore, shares: Sequence[ShareConfig],
                        now: float) -> int:
    """One scavenger round; returns how many handles it expired.

    An expired handle of a dead worker that was created delete-on-close, or
    whose client had set a pending delete through it, takes its file with it,
    as its CLOSE would have (a live worker ends its own handles and their
    files itself).  Nothing tells the leader whether
    another node's client holds that file open meanwhile; on Linux such an
    open keeps its data, only the name goes.
    """
    done = await scavenge(durable, now)
    if done.expire:
        live = await durable.live_workers()
        for stored in done.expire:
            if stored.record.worker not in live:
                await trio.to_thread.run_sync(delete_on_close, shares, stored.record)
    return len(done.expire)


def unready(elector: Elector, monitor: checks.Monitor) -> str | None:
    """Why this node is not ready (``/readyz`` 503), or None: lease alive and checks pass."""
    if not elector.lease_valid():
        return "no live etcd lease"
    return monitor.verdict().problem


async def run(cfg: Config, endpoints: tuple[str, ...]) -> None:
    me = cfg.node.name
    store = Store.from_config(cfg.cluster, endpoints)
    stats = metrics.Metrics.for_agent()
    store.on_request = stats.observe_etcd
    notifier = Notifier.from_environ()
    try:
        conns = ConnList(me, store, cfg.smb.port)
        async with trio.open_nursery() as nursery:
            owner = VipOwner(me, cfg, conns, nursery)
            supervisor = Supervisor(cfg, store, stats, etcd=endpoints)
            monitor = checks.Monitor(me, checks.build(cfg, store, supervisor), stats)
            elector = Elector(me, store, owner,
                              Timing(cfg.cluster.lease_ttl, cfg.cluster.fence_margin,
                                     cfg.health.hold_down),
                              health=monitor, on_handover=stats.handover,
                              on_keepalive=stats.observe_keepalive)
            await nursery.start(_stop_on_signal, elector, notifier)
            if cfg.metrics.enabled:
                await nursery.start(metrics.serve, stats, cfg.metrics.address, cfg.metrics.port,
                                    lambda: unready(elector, monitor))
            nursery.start_soon(looplag.watch, stats.observe_loop_lag, me)
            nursery.start_soon(monitor.run)
            reporter = health.Reporter(me, stats, notifier, [vip.ip for vip in cfg.vips])
            nursery.start_soon(health.report_loop, reporter, elector, owner)
            nursery.start_soon(health.durable_loop, stats, store)
            nursery.start_soon(supervisor.run)
            nursery.start_soon(conns.run, owner.held_vips)
            nursery.start_soon(_scavenge_loop, store, elector, cfg.shares)
            nursery.start_soon(record.publish_loop, store, elector, owner, conns, supervisor,
                               monitor)
            log.info("%s: starting (cluster %s, etcd %s, %d VIP(s))",
                     me, cfg.cluster.name, ", ".join(endpoints), len(cfg.vips))
            await elector.run(STOP_BUDGET)
            nursery.cancel_scope.cancel()
    finally:
        notifier.close()
        stats.close()
        store.close()


def main(cfg: Config) -> int:
    """Run the agent in the foreground; 0 after a clean stop, 1 if it cannot start."""
    _setup_logging(cfg.log.level)
    etcd_proc = None
    endpoints = cfg.cluster.etcd
    if not endpoints:
        try:
            etcd_proc = _start_embedded(cfg)
        except (embedded_etcd.EtcdStartError, OSError) as exc:
            log.error("%s: cannot start the embedded etcd: %s", cfg.node.name, exc)
            return 1
        endpoints = (EMBEDDED_CLIENT_URL,)
    # Everything imported so far lives as long as the process: out of the
    # collector's sight, a full collection no longer walks the modules of gRPC,
    # protobuf and the SMB server, which blocked the trio loop for a while on a
    # busy machine.
    gc.freeze()
    try:
        trio.run(run, cfg, endpoints)
    finally:
        if etcd_proc is not None:
            embedded_etcd.stop(etcd_proc)
    return 0
