"""What one worker process keeps beside its connections: its liveness in
etcd, the durable-record writer, and the oplock/lease state of its opens.

The worker's liveness key (``store.worker_key(node, "w<index>")``) sits on
the worker's own etcd lease, so it vanishes within the lease TTL of a crash;
a durable record names the key plus the worker's incarnation, which is how
any worker of any node tells a dead owner's opens (disconnected, take them)
from a live one's (still attached).  The key's value carries the figures the
agent and ``hanode status`` show.

It also keeps the index of dead workers' durable records (refilled when
a liveness key vanishes) and serves other workers' requests to log off a
session named by a PreviousSessionId.

Handlers reach this through :func:`current`, a trio RunVar of the worker's
run (not a process-wide global); it is None outside a worker (unit tests of
the connection layer), and then no open gets an oplock, a lease or
durability, exactly as a server that offers none.

What the state's background tasks do with a purged open, a reclaimed open
and another worker's logoff request belongs to the layers above (the durable
lifecycle driver, the connection layer): they come in as :class:`Hooks`, so
this module imports neither.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Hashable, Iterator

import psutil
import trio
from trio.lowlevel import RunVar

from hanode.store import Change, Store, StoreUnavailable
from hanode.worker_names import worker_name
from smb import nowait
from smb.durable import DurableWriter, EtcdDurableStore, OrphanIndex, Stored, owners_digest
from smb.server.affinity import ClientAffinity
from smb.server.background import Background
from smb.server.breaks import Breaks
from smb.server.nodelocal import node_table
from smb.server.session_table import SessionTable
from smb.server.share_identity import ShareIdentities

if TYPE_CHECKING:
    from hanode.config import Config

log = logging.getLogger(__name__)

STATS_INTERVAL = 2.0
CROSS_WORKER_POLL = 0.05  # how often break requests and caching changes are looked at
LOGOFF_WAIT = 2.0  # how long a SESSION_SETUP waits for other workers to drop a previous session
OWNER_POLL = 1.0  # how often the set of live workers (cluster-wide) is looked at anyway
# How long a CREATE or LOCK waits for the dead workers' opens being loaded
# (after a liveness key went) before it is decided on what is known.
OWNER_LOAD_WAIT = 2.0


@dataclass(frozen=True)
class Hooks:
    """What the worker's background tasks call into the layers above."""

    # A disconnected durable open was purged by another worker's break request.
    purged: Callable[["WorkerState", int], Awaitable[None]]
    # Each owner poll: let go of disconnected opens reclaimed elsewhere.
    forget_reclaimed: Callable[["WorkerState"], Awaitable[None]]
    # The caching of these opens changed (a break, acknowledged or not, or a
    # disconnected persistent open's caching given up at once): their records
    # may have to say so.
    caching_changed: Callable[["WorkerState", list[Any]], Awaitable[None]]
    # The orphan index was just loaded: hold the dead workers' opens it lists
    # (and let go of those it no longer does).
    orphans_loaded: Callable[["WorkerState"], Awaitable[None]]


class WorkerState:
    def __init__(self, cfg: "Config", index: int, store: Store, hooks: Hooks) -> None:
        self.cfg = cfg
        self.hooks = hooks
        self.index = index
        self.store = store
        self.share_ids = ShareIdentities(store)
        self.key = store.worker_key(cfg.node.name, worker_name(index))
        self.started = time.time()
        # Incarnation: a restarted worker reuses its key, not its identity.
        self.identity = f"{self.key}@{os.getpid()}:{self.started:.6f}"
        self.durable_store = EtcdDurableStore(store)
        self.writer = DurableWriter(self.durable_store)
        self.breaks = Breaks()
        # The worker's sessions and multichannel clients, shared by its connections.
        self.sessions = SessionTable()
        self.clients = ClientAffinity()
        self.available = False   # etcd reachable and our liveness key in place
        self.connections = 0
        self.open_handles = 0
        # persistent id -> Open, for this worker's durable opens (attached or not)
        self.durable: dict[int, Any] = {}
        # persistent id -> set once a durable open that lost its connection is
        # fully disconnected (record stored); a reconnect waits for it.
        self.releasing: dict[int, trio.Event] = {}
        # Durable records of dead workers (any node), by name; and those of them
        # restored into self.breaks as disconnected opens, with the revision read.
        self.orphans = OrphanIndex()
        self.foreign: dict[int, Stored] = {}
        self._live_workers: frozenset[str] | None = None
        # Set while the orphan index matches the live workers as last seen;
        # cleared the moment a watch shows a liveness key gone or a new
        # incarnation (each change bumps the generation), set again once loaded.
        self.owners_loaded = trio.Event()
        self._owners_generation = 0
        self._owners_moved = trio.Event()  # wakes the owner loop before its poll
        # Opens whose caching is mirrored to the node table for other workers:
        # open id -> (Open, lease id or None); what was last written; and the
        # NodeOplocks file name of each (dev, inode) a tracked open holds.
        self.tracked: dict[int, tuple[Any, tuple[bytes, bytes] | None]] = {}
        self._mirrored: dict[int, int] = {}
        self.inodes: dict[tuple[int, int], Hashable] = {}
        self._inode_opens: dict[tuple[int, int], set[int]] = {}  # tracked open ids per inode
        self._mirroring = trio.Lock()  # one mirror write at a time: the last state wins
        self.node = node_table(cfg)
        self._lease: int | None = None
        # Long-lived work request handlers start, each kind in its own nursery:
        # the expiry of disconnected durable opens (smb.server.durable_life) and
        # the breaks of other workers' read caches (smb.server.crossbreaks).
        self.expiries = Background("durable open expiries")
        self.read_breaks = Background("cross-worker read-cache breaks")
        self.write_times = Background("deferred write-time updates")  # smb.server.writetime

    def value(self) -> dict:
        try:
            rss = psutil.Process().memory_info().rss
        except psutil.Error:
            rss = 0
        return {"pid": os.getpid(), "rss": rss, "connections": self.connections,
                "open_handles": self.open_handles, "durable_handles": len(self.durable),
                # Of those, the persistent ones (CA shares): kept whatever they cache.
                "persistent_handles": sum(1 for op in self.durable.values()
                                          if op.durable is not None and op.durable.persistent),
                "orphaned_durable": len(self.orphans),
                # The live workers the orphan index was loaded from (hanode.takeover
                # claims the VIP once its workers' match what it sees).
                "owners": None if self._live_workers is None
                else owners_digest(self._live_workers),
                "started": self.started, "identity": self.identity}

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Liveness and the writer, for the worker's lifetime."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.writer.run)
            for background in (self.breaks.tasks, self.expiries, self.read_breaks,
                               self.write_times):
                await nursery.start(background.run)
            with trio.move_on_after(5):
                await self._refresh()
            token = _current.set(self)
            nursery.start_soon(self._cross_worker)
            nursery.start_soon(self._watch_owners)
            nursery.start_soon(self._follow_owners)
            task_status.started()
            try:
                await self._liveness()
            finally:
                _current.reset(token)

    async def _refresh(self) -> None:
        """Keep the lease alive and the key current; a lost lease is granted anew."""
        ttl = max(2, int(self.cfg.cluster.lease_ttl))
        try:
            if self._lease is None or not await trio.to_thread.run_sync(
                    self.store.keepalive, self._lease):
                self._lease = await trio.to_thread.run_sync(self.store.grant_lease, ttl)
            await trio.to_thread.run_sync(self.store.put, self.key, self.value(), self._lease)
            if not self.available:
                log.info("worker %d: liveness key %s in place", self.index, self.key)
            self.available = True
        except StoreUnavailable as exc:
            if self.available:
                log.warning("worker %d: etcd unavailable (%s); no new durable handles",
                            self.index, exc)
            self.available = False
            self._lease = None

    def track(self, op: Any, file: Hashable, lease_id: tuple[bytes, bytes] | None) -> None:
        if op.open_id in self.tracked:  # a reclaim re-attaching it (reopened, maybe anew)
            self._release_inode(self.tracked[op.open_id][0])
            self._mirrored.pop(op.open_id, None)  # the new open has rows of its own
        inode = (op.dev, op.ino)
        self._inode_opens.setdefault(inode, set()).add(op.open_id)
        self.tracked[op.open_id] = (op, lease_id)
        self.inodes[inode] = file
        self.breaks.dirty = True

    def untrack(self, open_id: int) -> None:
        """The open left this worker's memory (its node-table rows went with
        close_file, or with a reconnect that took them over)."""
        found = self.tracked.pop(open_id, None)
        self._mirrored.pop(open_id, None)
        if found is not None:
            self._release_inode(found[0])

    def _release_inode(self, op: Any) -> None:
        inode = (op.dev, op.ino)
        ids = self._inode_opens.get(inode, set())
        ids.discard(op.open_id)
        if not ids:
            self._inode_opens.pop(inode, None)
            self.inodes.pop(inode, None)

    def opens_of(self, dev: int, ino: int) -> list[Any]:
        """The tracked opens of one file."""
        return [self.tracked[i][0] for i in self._inode_opens.get((dev, ino), ())]

    async def _cross_worker(self) -> None:
        """Serve other workers' break requests; mirror our caching for them."""
        while True:
            await trio.sleep(CROSS_WORKER_POLL)
            for rid, dev, ino, access, share, disposition in await nowait.run(
                    self.node.take_break_requests):
                file = self.inodes.get((dev, ino))
                log.debug("break request %d for %s from another worker", rid, file)
                if file is not None:
                    for pid in self.breaks.remote_open(file, rid, access, share, disposition):
                        await self.hooks.purged(self, pid)
            for rid, session_id, user in await nowait.run(self.node.logoff_requests):
                await self.sessions.logoff(session_id, user)
                await trio.to_thread.run_sync(self.node.logoff_done, rid)
            if self.breaks.dirty:
                self.breaks.dirty = False
                await self.mirror()

    async def logoff_elsewhere(self, session_id: int, user: str) -> None:
        """PreviousSessionId (3.3.5.5.3) naming a session another worker of the node may
        hold: ask them all, and wait (briefly) until each has dropped it or has none,
        so the client's durable reconnect that follows finds its opens disconnected."""
        rid = secrets.randbits(62)
        await trio.to_thread.run_sync(self.node.request_logoff, rid, session_id, user)
        with trio.move_on_after(LOGOFF_WAIT):
            while await trio.to_thread.run_sync(self.node.logoff_pending, rid):
                await trio.sleep(CROSS_WORKER_POLL)

    async def _watch_owners(self) -> None:
        """Refill the orphan index at start and whenever the set of live workers changes;
        let go of this worker's disconnected opens reclaimed elsewhere.

        Woken at once by :meth:`_follow_owners` when a liveness key goes or
        a worker starts, and every OWNER_POLL anyway (a broken watch, an
        incarnation that came and went between two looks).  One prefix read
        of the (few) liveness keys per round; the durable records are read
        only when the set changed, so the cost does not grow with the number
        of open handles.  This worker's disconnected opens (few, and only
        after connections dropped) cost one more read.
        """
        while True:
            await self.hooks.forget_reclaimed(self)
            generation = self._owners_generation
            try:
                await self._load_owners()
            except StoreUnavailable as exc:
                log.debug("worker %d: live workers not read: %s", self.index, exc)
            if generation == self._owners_generation:  # no change seen meanwhile
                self.owners_loaded.set()
            with trio.move_on_after(OWNER_POLL):
                await self._owners_moved.wait()
            self._owners_moved = trio.Event()

    async def _load_owners(self) -> None:
        live = await self.durable_store.live_workers()
        # Any change, not only a departure: an incarnation that started
        # and died between two looks (its open granted meanwhile) is
        # only seen as a new incarnation of its key.
        if live == self._live_workers:
            return
        self.orphans.load(await self.durable_store.list(), live)
        self._live_workers = live
        await self.hooks.orphans_loaded(self)
        log.info("worker %d: %d durable handle(s) of dead workers known",
                 self.index, len(self.orphans))
        if self._lease is not None:  # tell the agent at once, not at the next refresh
            await trio.to_thread.run_sync(self.store.put, self.key, self.value(), self._lease)

    async def _follow_owners(self) -> None:
        """Watch the liveness keys: a key gone or a new incarnation closes the
        :attr:`owners_loaded` gate at once and wakes the owner loop, so that no
        CREATE or LOCK is decided on the old set while the new one is loaded."""
        prefix = self.store.key("workers") + "/"
        limiter = trio.CapacityLimiter(1)  # the watch's thread, apart from the request path's
        while True:
            try:
                changes, cancel = await trio.to_thread.run_sync(
                    self.store.watch_prefix, prefix, limiter=limiter, abandon_on_cancel=True)
            except StoreUnavailable as exc:
                log.debug("worker %d: liveness keys not watched: %s", self.index, exc)
                await trio.sleep(OWNER_POLL)
                continue
            self._owners_changed()  # what changed while nobody watched is looked at now
            try:
                await trio.to_thread.run_sync(self._follow, changes, limiter=limiter,
                                              abandon_on_cancel=True)
            except StoreUnavailable as exc:
                log.debug("worker %d: watch of liveness keys broke: %s", self.index, exc)
            finally:
                cancel()

    def _follow(self, changes: Iterator[Change]) -> None:
        """The watch's thread: each change that may change the set of live workers."""
        incarnations: dict[str, object] = {}
        for change in changes:
            identity = None if change.deleted or not isinstance(change.value, dict) \
                else change.value.get("identity")
            if change.deleted or incarnations.get(change.key) != identity:
                incarnations[change.key] = identity
                trio.from_thread.run_sync(self._owners_changed)

    def _owners_changed(self) -> None:
        self._owners_generation += 1
        if self.owners_loaded.is_set():
            self.owners_loaded = trio.Event()
        self._owners_moved.set()

    async def owners_known(self) -> None:
        """Wait while the dead workers' opens are being loaded (a liveness key
        just went): an open or lock decided now would not meet them.  Bounded:
        past OWNER_LOAD_WAIT (etcd slow or away) it is decided on what is known."""
        if not self.owners_loaded.is_set():
            with trio.move_on_after(OWNER_LOAD_WAIT):
                await self.owners_loaded.wait()

    def forget_foreign(self, pid: int) -> None:
        if self.foreign.pop(pid, None) is not None:
            self.breaks.close(pid)

    async def mirror(self) -> None:
        """Write the caching of tracked opens that changed since last time."""
        await self._mirror(self.tracked)

    async def mirror_open(self, open_id: int) -> None:
        """Write the caching of one open's file if it changed: what a CREATE must
        have mirrored before it is answered (its own open, and those sharing its
        lease, whose state it may have raised); other files' changes are the
        periodic mirror's, which scans every open."""
        if open_id in self.tracked:
            op = self.tracked[open_id][0]
            await self._mirror({i: self.tracked[i]
                                for i in self._inode_opens.get((op.dev, op.ino), ())})

    async def _mirror(self, opens: dict[int, tuple[Any, tuple[bytes, bytes] | None]]) -> None:
        changed = []
        # Taken without a checkpoint when free (a trio Lock's acquire always
        # yields): every CREATE that gets caching mirrors it, and the trip
        # through the scheduler cost more than the mirroring.
        if self._mirroring.locked():
            await self._mirroring.acquire()
        else:
            self._mirroring.acquire_nowait()
        try:
            changes = []
            for open_id, (op, lease_id) in opens.items():
                state = self.breaks.caching(open_id, lease_id)
                if self._mirrored.get(open_id, 0) != state:
                    self._mirrored[open_id] = state
                    changes.append((op.key, op.dev, op.ino, state))
                    changed.append(op)
            if changes:
                await nowait.run(self.node.set_caching, changes)
        finally:
            self._mirroring.release()
        if changed:
            await self.hooks.caching_changed(self, changed)

    async def _liveness(self) -> None:
        period = max(0.25, self.cfg.cluster.lease_ttl / 4)
        last_put = 0.0
        while True:
            await trio.sleep(period)
            now = trio.current_time()
            if not self.available or now - last_put >= STATS_INTERVAL:
                await self._refresh()
                last_put = now
            else:
                try:
                    if not await trio.to_thread.run_sync(self.store.keepalive, self._lease):
                        self._lease = None
                        await self._refresh()
                except StoreUnavailable:
                    self.available = False
                    self._lease = None


_current: RunVar[WorkerState | None] = RunVar("hanode_worker_state", default=None)


def current() -> WorkerState | None:
    """The worker state of this trio run, while its :meth:`WorkerState.run` runs."""
    return _current.get()
