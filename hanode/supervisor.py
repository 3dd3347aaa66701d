"""The node's SMB worker processes, kept running by the agent.

A worker that dies takes its clients' connections with it, but not their
durable handles: those live in etcd, and the clients come back to whichever
worker the kernel hands their new connection to.  So the quickest restart is
what matters, and the backoff only exists so that a worker that crashes at
once (a bad share path, a port taken) does not spin a core.

The supervisor also measures the workers (pid, RSS, connections from the
kernel; open handles from the liveness key each worker keeps in etcd) for the
node record that ``hanode status`` shows.  ``hanode smb`` runs the same
supervisor with no store: nobody reads its measurements there.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from dataclasses import dataclass
from typing import Any

import psutil
import trio

from hanode.config import Config
from hanode.metrics import Metrics
from hanode.store import Store, StoreUnavailable
from hanode.worker_names import worker_name

log = logging.getLogger("hanode.supervisor")

# The first restart after a crash comes within a second; each further crash
# in a row doubles the wait, up to RESTART_MAX.
RESTART_FIRST = 0.2
RESTART_MAX = 10.0
# A worker that ran this long counts as healthy: its next crash restarts fast again.
STABLE_AFTER = 10.0
# On shutdown, how long a worker may take to exit after SIGTERM before SIGKILL;
# small, because the agent's whole stop must stay under two seconds.
STOP_GRACE = 0.3
# How long a dead worker's liveness key may take to delete before its lease is left to.
FORGET_TIMEOUT = 1.0
STATS_INTERVAL = 1.0
# A worker that has not answered its health probe yet is starting, not hung
# (imports and etcd take seconds on a loaded machine), unless it takes this long.
START_LIMIT = 60.0


def restart_delay(crashes: int) -> float:
    """The wait before restarting a worker after its crashes-th quick crash in a row."""
    return min(RESTART_FIRST * 2 ** max(crashes - 1, 0), RESTART_MAX)


@dataclass
class Worker:
    index: int
    pid: int | None = None
    started: float = 0.0
    restarts: int = 0
    crashes: int = 0  # quick crashes in a row
    answered: bool = False  # this incarnation has answered a health probe


class Supervisor:
    """Starts ``[smb] workers`` workers, restarts them, stops them when cancelled."""

    def __init__(self, cfg: Config, store: Store | None = None,
                 metrics: Metrics | None = None, etcd: tuple[str, ...] = ()):
        self.cfg = cfg
        # The etcd the workers use: the config's, or the agent's embedded one.
        self.etcd = cfg.cluster.etcd or etcd
        self.me = cfg.node.name
        self.store = store
        # Workers write their SMB counters where the agent's /metrics page reads them.
        self.metrics = metrics
        self.workers = [Worker(i) for i in range(cfg.smb.workers)]
        self._stats: list[dict[str, Any]] = []

    def argv(self, index: int) -> list[str]:
        embedded = [] if self.cfg.cluster.etcd else [f"--etcd={url}" for url in self.etcd]
        return [sys.executable, "-m", "smb.worker", "--config", self.cfg.source,
                "--worker-index", str(index), *embedded]

    def stats(self) -> list[dict[str, Any]]:
        """Per worker: index, pid (None while restarting), rss, connections, open_handles,
        durable_handles, persistent_handles (of the durable ones), restarts, as of
        the last measurement."""
        return list(self._stats)

    async def run(self) -> None:
        """Until cancelled; then every worker gets SIGTERM, and SIGKILL after STOP_GRACE."""
        if not self.workers:
            return
        if not self.etcd:
            log.error("%s: SMB workers need cluster.etcd endpoints; not starting them", self.me)
            return
        async with trio.open_nursery() as nursery:
            for worker in self.workers:
                nursery.start_soon(self._keep, worker)
            if self.store is not None:
                nursery.start_soon(self._measure_loop, self.store)

    async def _keep(self, worker: Worker) -> None:
        while True:
            env = {**os.environ, **(self.metrics.worker_environment() if self.metrics else {})}
            proc = await trio.lowlevel.open_process(self.argv(worker.index), env=env)
            _default_priority(proc.pid)
            worker.pid, worker.started = proc.pid, trio.current_time()
            worker.answered = False
            self._publish_pids()
            log.info("%s: worker %d started (pid %d)", self.me, worker.index, proc.pid)
            try:
                code = await proc.wait()
            finally:
                if proc.returncode is None:
                    with trio.CancelScope(shield=True):
                        await _stop(proc)
            ran = trio.current_time() - worker.started
            worker.pid = None
            self._publish_pids()
            await self._forget_liveness(worker)
            worker.crashes = 1 if ran >= STABLE_AFTER else worker.crashes + 1
            delay = restart_delay(worker.crashes)
            log.warning("%s: worker %d exited with %s after %.1f s; restarting in %.1f s",
                        self.me, worker.index, _describe(code), ran, delay)
            await trio.sleep(delay)
            worker.restarts += 1

    async def _forget_liveness(self, worker: Worker) -> None:
        """Delete the liveness key of a worker that exited, at once.

        The key is on the worker's own lease, so it would vanish only when that
        lease ends (up to two seconds); until then the node's other workers
        count the dead worker's opens as attached, so a persistent open it kept
        refused nothing and its clients could not reclaim.  Nothing of the
        worker runs any more (its next incarnation starts after this), so the
        key can only be a dead one's.  Best effort: without etcd the lease's end
        does it, as before."""
        if self.store is None:
            return
        key = self.store.worker_key(self.me, worker_name(worker.index))
        with trio.move_on_after(FORGET_TIMEOUT):
            try:
                await trio.to_thread.run_sync(self.store.delete, key, abandon_on_cancel=True)
            except StoreUnavailable as exc:
                log.info("%s: worker %d's liveness key left to its lease (%s)",
                         self.me, worker.index, exc)

    def restart_hung(self, index: int, why: str) -> None:
        """Kill worker ``index`` (SIGKILL: a stopped or wedged process ignores SIGTERM);
        its keeper restarts it with the usual backoff, and its durable handles
        become reclaimable on whichever node serves the clients next."""
        worker = self.workers[index]
        pid = worker.pid
        starting = not worker.answered and trio.current_time() - worker.started < START_LIMIT
        if pid is None or starting:
            return
        log.warning("%s: worker %d (pid %d) %s; killing it", self.me, index, pid, why)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # exited meanwhile; its keeper restarts it

    def answered(self, index: int) -> None:
        """Worker ``index`` answered its health probe: it has started."""
        self.workers[index].answered = True

    def _publish_pids(self) -> None:
        if self.metrics is not None:
            self.metrics.set_workers({worker_name(w.index): w.pid for w in self.workers
                                      if w.pid is not None})

    async def _measure_loop(self, store: Store) -> None:
        while True:
            try:
                live = await trio.to_thread.run_sync(
                    store.get_prefix, store.key("workers", self.me) + "/",
                    abandon_on_cancel=True)
                liveness = {e.key.rsplit("/", 1)[1]: e.value for e in live
                            if isinstance(e.value, dict)}
            except StoreUnavailable:
                liveness = {}
            self._stats = await trio.to_thread.run_sync(self._measure, liveness)
            if self.metrics is not None:
                self.metrics.set_node_handles(
                    sum(w["durable_handles"] or 0 for w in self._stats),
                    sum(w["persistent_handles"] or 0 for w in self._stats))
            await trio.sleep(STATS_INTERVAL)

    def _measure(self, liveness: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        """Blocking (reads /proc); through trio.to_thread."""
        out = []
        for worker in self.workers:
            pid = worker.pid
            rss = conns = None
            if pid is not None:
                try:
                    proc = psutil.Process(pid)
                    rss = proc.memory_info().rss
                    conns = sum(1 for c in proc.net_connections(kind="tcp")
                                if c.status == psutil.CONN_ESTABLISHED and c.laddr
                                and c.laddr.port == self.cfg.smb.port)
                except psutil.Error:
                    pass  # it just died; the next round shows the new one
            live = liveness.get(worker_name(worker.index), {})
            handles, durable = live.get("open_handles"), live.get("durable_handles")
            persistent = live.get("persistent_handles")
            out.append({"index": worker.index, "pid": pid, "rss": rss, "connections": conns,
                        "open_handles": handles if isinstance(handles, int) else None,
                        "durable_handles": durable if isinstance(durable, int) else None,
                        "persistent_handles": persistent if isinstance(persistent, int) else None,
                        "restarts": worker.restarts})
        return out


async def _stop(proc: trio.Process) -> None:
    proc.send_signal(signal.SIGTERM)
    with trio.move_on_after(STOP_GRACE):
        await proc.wait()
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


def _describe(code: int) -> str:
    if code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            pass
    return f"status {code}"


def _default_priority(pid: int) -> None:
    """Put a new worker back to the default CPU priority if the agent runs ahead
    of it (the unit's real-time policy and Nice=-10 are for the agent's lease
    renewals, not for serving clients); a worker never runs ahead of ordinary
    processes.  Done right after the start, before the worker has made threads
    of its own."""
    try:
        if os.sched_getscheduler(0) != os.SCHED_OTHER:
            os.sched_setscheduler(pid, os.SCHED_OTHER, os.sched_param(0))
        if os.getpriority(os.PRIO_PROCESS, 0) < 0:
            os.setpriority(os.PRIO_PROCESS, pid, 0)
    except ProcessLookupError:
        pass  # already gone; its exit is seen by the caller
