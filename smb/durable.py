"""Durable handles: the record kept in etcd, its stores, and the decisions about it.

A durable open must outlive its TCP connection, its worker process and its
node, so everything needed to take it back lives in one record under
``/hanode/<cluster>/durable/<persistent-id>``.  The decisions (grant or not,
may this reconnect adopt that record, is it disconnected, has it expired) are
pure functions over a record and request facts, so every MS-SMB2 rule is
unit-tested without a server; the thin async parts (stores, batched writer,
scavenger) only move records.

How CREATE uses this (smb.wire.create_contexts parses, smb.oplocks decides):
- DH2Q/DHnQ: open the file, let NodeOplocks.open() grant an oplock or lease,
  then grant_durability(); if it grants, build a DurableRecord with a
  new_persistent_id() as FileId.Persistent and ``await writer.put(record)``
  before answering with Grant.response_context().  StoreUnavailable from
  put() means: answer the open without durability.
- DH2C/DHnC: ``stored = await store.get(pid)``, then check_reconnect() with
  is_disconnected(stored.record, await store.live_workers()); on SUCCESS,
  ``await store.replace(stored, adopt(stored.record, my_worker_key))`` and
  reopen the recorded path; losing that compare-and-swap is NOT_FOUND.
- Records of dead owners: an OrphanIndex, refilled when a worker's liveness
  key vanishes; a CREATE of a listed name re-reads the record and restores
  it into NodeOplocks disconnected, so a conflicting open purges it (a
  compare-and-swap delete: a reconnect adopting it meanwhile wins).
- FSCTL_LMR_REQUEST_RESILIENCY: resiliency_timeout() decides; the open, whatever
  it caches, gets the same record (``resilient``, the resiliency timeout), so
  everything below treats it as a durable open.
- Connection lost: replace() each durable record with disconnected_since set.
  CLOSE: ``writer.discard(pid)`` (nobody waits).  Leader agent: ``await scavenge(...)``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import secrets
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable, Protocol, Sequence

import trio
import trio.testing

from hanode.store import Entry, Store, StoreUnavailable
from smb.oplocks import LEASE_HANDLE, OPLOCK_BATCH, Lease
from smb.wire.create_contexts import (
    DHANDLE_FLAG_PERSISTENT, CreateContext, DurableV1Reconnect, DurableV1Request, DurableV2Reconnect, DurableV2Request,
    LeaseContext, durable_v1_response, durable_v2_response,
)
from smb.wire.header import Status

log = logging.getLogger(__name__)

V1_TIMEOUT_MS = 16 * 60 * 1000      # what Windows and Samba give DHnQ handles
V2_DEFAULT_TIMEOUT_MS = 60_000      # DH2Q with Timeout 0
V2_MAX_TIMEOUT_MS = 300_000         # DH2Q cap (0xFFFFFFFF comes back as this)
# FSCTL_LMR_REQUEST_RESILIENCY (3.3.5.15.9): Timeout 0 gets what Windows gives
# (120 s); more than the durable cap is refused rather than shortened.
RESILIENT_DEFAULT_TIMEOUT_MS = 120_000
MAX_RESILIENCY_TIMEOUT_MS = V2_MAX_TIMEOUT_MS
SCAVENGE_GRACE_S = 2.0              # slack for clock skew between nodes
RECLAIM_ATTEMPTS = 3                # reads and swaps of a record a reconnect tries

_ALL_ONES = (1 << 64) - 1


def new_persistent_id() -> int:
    """A random 64-bit FileId.Persistent: unguessable, never 0 or all-ones.

    All-ones is the related-compound placeholder and 0 reads as "no file" to
    some clients; randomness (not a counter) keeps one client from guessing
    another's handle and makes ids unique across workers without coordination.
    """
    while True:
        pid = secrets.randbits(64)
        if pid not in (0, _ALL_ONES):
            return pid


# -- the record ----------------------------------------------------------------

@dataclass(frozen=True)
class LockRange:
    """One byte-range lock the open holds, to be re-established on reconnect."""

    offset: int
    length: int
    exclusive: bool


class RecordError(ValueError):
    """A stored value that is not a durable record."""


@dataclass(frozen=True)
class DurableRecord:
    """Everything another worker needs to take a durable open back.

    worker is the owning worker's liveness key in etcd: while that key exists
    (it sits on the worker's lease) the open is attached to a live worker.
    locks are the byte-range locks granted through this open: a LOCK on a
    durable open is answered only after the record carrying it is stored.
    disconnected_since is wall-clock seconds, set when the connection closed
    or when the scavenger first saw the worker gone; timeouts run from it.
    create_guid is all zeros for a v1 (DHnQ) handle.
    """

    persistent_id: int
    version: int
    create_guid: bytes
    client_guid: bytes
    owner: str
    share: str
    path: str
    desired_access: int
    share_access: int
    create_options: int
    oplock_level: int
    lease: Lease | None
    timeout_ms: int
    worker: str
    locks: tuple[LockRange, ...] = ()
    disconnected_since: float | None = None
    position: int = 0  # FilePositionInformation, kept across a reconnect
    initial_allocation: int = 0  # AlSi of the create, still reported after a reconnect
    # Open.LockSequenceArray (smb.server.replay) as (bucket, number) pairs, kept
    # with the locks: a LOCK replayed after the reconnect must find both.
    lock_sequences: tuple[tuple[int, int], ...] = ()
    # The file's inode at the grant: an open that ends without its worker
    # deletes (delete-on-close) only that file, never one created since under
    # its name.  0 (records written before it was kept): nothing is deleted.
    inode: int = 0
    # A SET_INFO FileDispositionInformation set through this open: an open that
    # ends without its worker deletes its file as for DELETE_ON_CLOSE, and a
    # reconnect sets it again.  Stored before the SET_INFO is answered.
    delete_pending: bool = False
    # Made resilient by FSCTL_LMR_REQUEST_RESILIENCY (3.3.5.15.9): kept across a
    # lost connection whatever its caching, for ``timeout_ms`` (the resiliency
    # timeout); reclaimed with DHnC/DH2C as a durable open is.
    resilient: bool = False
    # Granted by DH2Q with SMB2_DHANDLE_FLAG_PERSISTENT on a continuously
    # available share (3.3.5.9.10), whatever its caching: while disconnected its
    # share mode and locks stay in force (a conflicting open is refused, never
    # purges it), and its locks and lock sequences are stored before every LOCK
    # that changed them is answered.  Reclaimed only by DH2C with the flag, from
    # the same client GUID, user and create GUID.
    persistent: bool = False
    # Open.ChannelSequence (3.3.5.2.10), kept with the locks and at disconnect, so
    # that a request from before a failover stays stale after the reclaim.
    channel_sequence: int = 0

    @property
    def kept_while_disconnected(self) -> bool:
        """Whether a conflicting open must be refused rather than purge it: a
        persistent open (3.3.5.9) and a resilient one (3.3.5.15.9) keep their
        share mode and locks while their client is away; a durable one does not."""
        return self.persistent or self.resilient

    def evolve(self, **changes: Any) -> "DurableRecord":
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        lease = None
        if self.lease is not None:
            lease = {"key": self.lease.key.hex(), "state": self.lease.state,
                     "epoch": self.lease.epoch, "version": self.lease.version,
                     "parent_key": self.lease.parent_key.hex() if self.lease.parent_key else None}
        return {
            "persistent_id": f"{self.persistent_id:016x}", "version": self.version,
            "create_guid": self.create_guid.hex(), "client_guid": self.client_guid.hex(),
            "owner": self.owner, "share": self.share, "path": self.path,
            "desired_access": self.desired_access, "share_access": self.share_access,
            "create_options": self.create_options, "oplock_level": self.oplock_level,
            "lease": lease, "timeout_ms": self.timeout_ms, "worker": self.worker,
            "locks": [[lk.offset, lk.length, lk.exclusive] for lk in self.locks],
            "disconnected_since": self.disconnected_since, "position": self.position,
            "initial_allocation": self.initial_allocation,
            "lock_sequences": [list(pair) for pair in self.lock_sequences],
            "inode": self.inode, "delete_pending": self.delete_pending,
            "resilient": self.resilient, "persistent": self.persistent,
            "channel_sequence": self.channel_sequence,
        }

    @classmethod
    def from_json(cls, value: Any) -> "DurableRecord":
        try:
            lease = value["lease"]
            if lease is not None:
                parent = lease["parent_key"]
                lease = Lease(bytes.fromhex(lease["key"]), int(lease["state"]),
                                  int(lease["epoch"]), int(lease["version"]),
                                  bytes.fromhex(parent) if parent else None)
            since = value["disconnected_since"]
            return cls(
                persistent_id=int(value["persistent_id"], 16), version=int(value["version"]),
                create_guid=bytes.fromhex(value["create_guid"]),
                client_guid=bytes.fromhex(value["client_guid"]),
                owner=str(value["owner"]), share=str(value["share"]), path=str(value["path"]),
                desired_access=int(value["desired_access"]),
                share_access=int(value["share_access"]),
                create_options=int(value["create_options"]),
                oplock_level=int(value["oplock_level"]), lease=lease,
                timeout_ms=int(value["timeout_ms"]), worker=str(value["worker"]),
                locks=tuple(LockRange(int(o), int(n), bool(x)) for o, n, x in value["locks"]),
                disconnected_since=None if since is None else float(since),
                position=int(value.get("position", 0)),
                initial_allocation=int(value.get("initial_allocation", 0)),
                lock_sequences=tuple((int(i), int(n)) for i, n in value.get("lock_sequences", ())),
                inode=int(value.get("inode", 0)),
                delete_pending=value.get("delete_pending", False) is True,
                resilient=value.get("resilient", False) is True,
                persistent=value.get("persistent", False) is True,
                channel_sequence=int(value.get("channel_sequence", 0)) & 0xFFFF,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise RecordError(f"not a durable record: {exc!r}") from None


# -- pure decisions ------------------------------------------------------------

@dataclass(frozen=True)
class Grant:
    version: int
    timeout_ms: int
    persistent: bool = False

    def response_context(self) -> CreateContext:
        """The context the CREATE response carries (never on a reconnect)."""
        if self.version == 1:
            return durable_v1_response()
        return durable_v2_response(self.timeout_ms,
                                   DHANDLE_FLAG_PERSISTENT if self.persistent else 0)


def grant_durability(request: DurableV1Request | DurableV2Request | None, *,
                     is_directory: bool, oplock_level: int,
                     lease_state: int | None, store_available: bool = True,
                     continuously_available: bool = False) -> Grant | None:
    """Whether an open that succeeded becomes durable, and for how long.

    3.3.5.9.10: DH2Q with the PERSISTENT flag on a continuously available
    share (``continuously_available``: the share is CA and the connection 3.x,
    so the server advertised persistent handles) is granted whatever the open
    caches, and answered with the flag.  Otherwise (3.3.5.9.6 / 3.3.5.9.10)
    only with a batch oplock or a lease holding handle caching (what was
    granted, not what was asked): a persistent request elsewhere gets at most
    a durable handle, its flag not echoed.  Never for a directory.  Without
    etcd the open is answered without durability rather than with a promise
    that could not be kept.
    """
    if request is None or is_directory or not store_available:
        return None
    if isinstance(request, DurableV2Request) and request.persistent and continuously_available:
        timeout = request.timeout_ms or V2_DEFAULT_TIMEOUT_MS
        return Grant(2, min(timeout, V2_MAX_TIMEOUT_MS), persistent=True)
    handle_cached = lease_state is not None and bool(lease_state & LEASE_HANDLE)
    if not (oplock_level == OPLOCK_BATCH or handle_cached):
        return None
    if isinstance(request, DurableV1Request):
        return Grant(1, V1_TIMEOUT_MS)
    timeout = request.timeout_ms or V2_DEFAULT_TIMEOUT_MS
    return Grant(2, min(timeout, V2_MAX_TIMEOUT_MS))


def resiliency_timeout(requested_ms: int | None) -> int | None:
    """The timeout a resiliency request gets (3.3.5.15.9), or None when it must be
    refused with INVALID_PARAMETER: input shorter than NETWORK_RESILIENCY_REQUEST
    (``None``) or a timeout above MAX_RESILIENCY_TIMEOUT_MS (compared in
    seconds, as the spec words it).  0 asks for the server's default."""
    if requested_ms is None or requested_ms // 1000 > MAX_RESILIENCY_TIMEOUT_MS // 1000:
        return None
    return requested_ms or RESILIENT_DEFAULT_TIMEOUT_MS


def resilient_record(record: DurableRecord, timeout_ms: int) -> DurableRecord:
    """A durable open made resilient: Open.IsDurable becomes FALSE and
    Open.IsResilient TRUE (3.3.5.15.9), so the resiliency timeout is the one
    that runs after a disconnect; everything a reconnect checks stays."""
    return record.evolve(resilient=True, timeout_ms=timeout_ms)


def refusal_while_disconnected(record: DurableRecord) -> int | None:
    """The status a conflicting open gets while this open is disconnected, or
    None when the conflicting open purges it instead (a durable open).

    A persistent open answers STATUS_FILE_NOT_AVAILABLE (3.3.5.9: the client
    may retry once the owner reclaimed it or it expired); a resilient open is
    still an open of the file, so the conflict is an ordinary sharing violation.
    """
    if record.persistent:
        return Status.FILE_NOT_AVAILABLE
    if record.resilient:
        return Status.SHARING_VIOLATION
    return None


def is_disconnected(record: DurableRecord, live_workers: frozenset[str] | set[str]) -> bool:
    """An open is disconnected once its connection closed or its worker's liveness key is gone."""
    return record.disconnected_since is not None or record.worker not in live_workers


def _same_name(a: str, b: str) -> bool:
    def norm(p: str) -> str:
        return p.replace("\\", "/").strip("/").casefold()
    return norm(a) == norm(b)


@dataclass(frozen=True)
class ReconnectRequest:
    """The facts of a CREATE carrying DHnC or DH2C that the checks look at."""

    reconnect: DurableV1Reconnect | DurableV2Reconnect
    client_guid: bytes
    user: str
    path: str
    lease: LeaseContext | None


def check_reconnect(record: DurableRecord | None, req: ReconnectRequest, *,
                    disconnected: bool) -> Status:
    """The status a reconnect gets; SUCCESS means the record may be adopted.

    The checks of 3.3.5.9.7 (DHnC) and 3.3.5.9.12 (DH2C), first failure
    decides: the open exists; a leased open is reclaimed by its own client
    GUID; (DH2C) the create GUID matches; the open is disconnected; the
    lease key matches (a leased open without a lease, or the reverse, is
    NOT_FOUND whatever the name, as smb2.durable-open.reopen2-lease expects);
    the user is the owner (ACCESS_DENIED); a leased open has the same name
    (INVALID_PARAMETER).  A persistent open is reclaimed only by a DH2C with
    the PERSISTENT flag, and (beyond the spec's letter, which asks it of
    leased opens only) only from its own client GUID, leased or not: an open
    that outlives its node must not be taken by another client that learned
    its ids.  The "not durable" check never fires: every record is durable.
    """
    if record is None or record.persistent_id != req.reconnect.file_id.persistent:
        return Status.OBJECT_NAME_NOT_FOUND
    if (record.lease is not None or record.persistent) and record.client_guid != req.client_guid:
        return Status.OBJECT_NAME_NOT_FOUND
    if record.persistent and not (isinstance(req.reconnect, DurableV2Reconnect)
                                  and req.reconnect.persistent):
        return Status.OBJECT_NAME_NOT_FOUND
    if (isinstance(req.reconnect, DurableV2Reconnect)
            and record.create_guid != req.reconnect.create_guid):
        return Status.OBJECT_NAME_NOT_FOUND
    if not disconnected:
        return Status.OBJECT_NAME_NOT_FOUND
    if (record.lease is None) != (req.lease is None) or (
            record.lease is not None and req.lease is not None
            and record.lease.key != req.lease.key):
        return Status.OBJECT_NAME_NOT_FOUND
    if record.owner != req.user:
        return Status.ACCESS_DENIED
    if record.lease is not None and not _same_name(record.path, req.path):
        return Status.INVALID_PARAMETER
    return Status.SUCCESS


def adopt(record: DurableRecord, worker: str) -> DurableRecord:
    """The record as it reads once a reconnect on ``worker`` has taken it over."""
    return record.evolve(worker=worker, disconnected_since=None)


# -- stores --------------------------------------------------------------------

@dataclass(frozen=True)
class Stored:
    """A record as read, with the revision a compare-and-swap must match."""

    record: DurableRecord
    revision: int


class DurableStore(Protocol):
    """Where durable records live: etcd in production, memory in unit tests."""

    async def write(self, puts: Sequence[DurableRecord], deletes: Sequence[int]) -> None:
        """Store and delete records in one atomic step (StoreUnavailable on failure)."""

    async def get(self, persistent_id: int) -> Stored | None: ...

    async def get_many(self, persistent_ids: Sequence[int]) -> dict[int, Stored]:
        """Those of the records that exist, by persistent id, in few round trips."""

    async def list(self) -> list[Stored]: ...

    async def replace(self, old: Stored, new: DurableRecord | None) -> bool:
        """Swap old for new (or delete, for None) only if nobody changed it since it was read."""

    async def live_workers(self) -> frozenset[str]:
        """The liveness keys of every worker still alive anywhere in the cluster."""


class MemoryDurableStore:
    """A DurableStore in a dict, with etcd's revision semantics, for unit tests.

    ``available`` False makes every call fail as an unreachable etcd does;
    ``latency`` makes write() take that long, so batching is observable.
    """

    def __init__(self, *, latency: float = 0.0) -> None:
        self.records: dict[int, tuple[DurableRecord, int]] = {}
        self.workers: set[str] = set()
        self.available = True
        self.latency = latency
        self.writes = 0
        self._revision = 0

    def _check(self) -> None:
        if not self.available:
            raise StoreUnavailable("memory store switched off")

    def _bump(self) -> int:
        self._revision += 1
        return self._revision

    async def write(self, puts: Sequence[DurableRecord], deletes: Sequence[int]) -> None:
        self._check()
        if self.latency:
            await trio.sleep(self.latency)
        self._check()
        self.writes += 1
        revision = self._bump()
        for record in puts:
            self.records[record.persistent_id] = (record, revision)
        for pid in deletes:
            self.records.pop(pid, None)

    async def get(self, persistent_id: int) -> Stored | None:
        self._check()
        found = self.records.get(persistent_id)
        return None if found is None else Stored(*found)

    async def get_many(self, persistent_ids: Sequence[int]) -> dict[int, Stored]:
        self._check()
        return {pid: Stored(*self.records[pid]) for pid in persistent_ids
                if pid in self.records}

    async def list(self) -> list[Stored]:
        self._check()
        return [Stored(r, rev) for r, rev in self.records.values()]

    async def replace(self, old: Stored, new: DurableRecord | None) -> bool:
        self._check()
        pid = old.record.persistent_id
        current = self.records.get(pid)
        if current is None or current[1] != old.revision:
            return False
        if new is None:
            del self.records[pid]
        else:
            self.records[pid] = (new, self._bump())
        return True

    async def live_workers(self) -> frozenset[str]:
        self._check()
        return frozenset(self.workers)


class EtcdDurableStore:
    """DurableStore on etcd, through hanode.store (blocking calls moved to threads)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def write(self, puts: Sequence[DurableRecord], deletes: Sequence[int]) -> None:
        key = self.store.durable_key
        await trio.to_thread.run_sync(
            self.store.apply, [(key(r.persistent_id), r.to_json()) for r in puts],
            [key(pid) for pid in deletes])

    def _decode(self, entry: Any) -> Stored | None:
        try:
            return Stored(DurableRecord.from_json(entry.value), entry.mod_revision)
        except RecordError as exc:
            log.warning("ignoring %s: %s", entry.key, exc)
            return None

    async def get(self, persistent_id: int) -> Stored | None:
        entry = await trio.to_thread.run_sync(self.store.get, self.store.durable_key(persistent_id))
        return None if entry is None else self._decode(entry)

    async def get_many(self, persistent_ids: Sequence[int]) -> dict[int, Stored]:
        entries = await trio.to_thread.run_sync(
            self.store.get_many, [self.store.durable_key(pid) for pid in persistent_ids])
        found = (s for s in map(self._decode, entries) if s is not None)
        return {s.record.persistent_id: s for s in found}

    async def list(self) -> list[Stored]:
        entries = await trio.to_thread.run_sync(self.store.get_prefix,
                                                self.store.key("durable") + "/")
        return [s for s in map(self._decode, entries) if s is not None]

    async def replace(self, old: Stored, new: DurableRecord | None) -> bool:
        return await trio.to_thread.run_sync(
            self.store.replace_if, self.store.durable_key(old.record.persistent_id),
            old.revision, None if new is None else new.to_json())

    async def live_workers(self) -> frozenset[str]:
        """Liveness keys, and the incarnations a running worker names in its value.

        A worker restarted under the same key is a new incarnation: records
        name the incarnation, so the old one's opens read as disconnected.
        """
        return live_of(await trio.to_thread.run_sync(self.store.get_prefix,
                                                     self.store.key("workers") + "/"))


def live_of(entries: Iterable[Entry]) -> frozenset[str]:
    """The live workers the liveness keys ``entries`` name: each key, and the
    incarnation its value carries."""
    live = {e.key for e in entries}
    live.update(e.value["identity"] for e in entries if isinstance(e.value, dict)
                and isinstance(e.value.get("identity"), str))
    return frozenset(live)


def owners_digest(live: frozenset[str]) -> str:
    """A short name for one set of live workers: a worker publishes the one its
    index of dead workers' opens was loaded from, and the agent that takes the
    VIP over waits until its workers' match the set it sees (hanode.takeover)."""
    return hashlib.sha256("\n".join(sorted(live)).encode()).hexdigest()[:16]


# -- the batched writer --------------------------------------------------------

class _Op:
    __slots__ = ("pid", "record", "done", "error", "taken", "awaited")

    def __init__(self, pid: int, record: DurableRecord | None, awaited: bool = True) -> None:
        self.pid = pid
        self.record = record
        self.done = trio.Event()
        self.error: str | None = None
        self.taken = False
        self.awaited = awaited


class DurableWriter:
    """Group commit for durable records: many callers, one etcd transaction per round.

    Each caller's put() or delete() returns only once the transaction holding
    its record has been stored, so a grant is never acknowledged early; while
    one transaction is in flight the next callers queue, and all of them go in
    the following one.  Throughput is therefore batch size / etcd latency
    instead of 1 / etcd latency.  Several changes to one record in the same
    round collapse into the last one (etcd refuses a key twice in a txn).

    A discard() (CLOSE) starts no round of its own: it rides in the next
    round somebody waits for, or goes alone ``linger`` seconds later.  Under
    load every open then costs one record in a shared transaction instead of
    a put round plus a delete round, halving the etcd commits and the
    worker's etcd-client CPU per open.
    """

    DISCARD_LINGER = 0.1  # seconds a closed handle's delete may wait for company
    GATHER = 0.001  # seconds a round may wait for puts of requests the worker is running
    RETRY_DISCARD = 1.0  # seconds before a failed delete of a closed handle is tried again

    def __init__(self, store: DurableStore, max_batch: int = Store.MAX_TXN_OPS,
                 linger: float = DISCARD_LINGER, gather: float = GATHER) -> None:
        self.store = store
        self.max_batch = max_batch
        self.linger = linger
        self.gather = gather
        self._pending: list[_Op] = []
        self._ready = trio.Event()
        self._idle = trio.CancelScope()  # the writer's wait for work; discard() shortens it
        self._flush_at = math.inf  # when the oldest pending discard must go
        self.discarding: set[int] = set()  # closed handles whose delete is not stored yet

    async def put(self, record: DurableRecord) -> None:
        """Store a record; StoreUnavailable if it could not be stored.

        If the caller is cancelled after its record was handed to etcd, the
        record may or may not be stored; the caller must then treat the open
        as its own (delete it on close) or delete the record.
        """
        await self._submit(record.persistent_id, record)

    async def delete(self, persistent_id: int) -> None:
        await self._submit(persistent_id, None)

    def discard(self, persistent_id: int) -> None:
        """Delete a record soon, without waiting for it to be stored.

        For CLOSE: its client will never reconnect a handle it closed, so the
        answer need not wait for etcd (``discarding`` lists it meanwhile, so a
        reconnect on this worker is refused).  Should the worker die first,
        the record outlives it as a dead worker's disconnected open (a
        conflicting open purges it, the scavenger removes it after its timeout).
        """
        self._pending.append(_Op(persistent_id, None, awaited=False))
        self.discarding.add(persistent_id)
        self._flush_at = min(self._flush_at, trio.current_time() + self.linger)
        self._idle.deadline = self._flush_at

    async def _submit(self, pid: int, record: DurableRecord | None) -> None:
        op = _Op(pid, record)
        self._pending.append(op)
        self._ready.set()
        try:
            await op.done.wait()
        except trio.Cancelled:
            if not op.taken:
                self._pending.remove(op)
            raise
        if op.error is not None:
            raise StoreUnavailable(op.error)

    def _take_batch(self) -> tuple[dict[int, DurableRecord | None], list[_Op]]:
        final: dict[int, DurableRecord | None] = {}
        taken: list[_Op] = []
        rest: list[_Op] = []
        for op in self._pending:
            if op.pid in final or len(final) < self.max_batch:
                final[op.pid] = op.record
                op.taken = True
                taken.append(op)
            else:
                rest.append(op)
        self._pending = rest
        return final, taken

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The writer task; lives as long as the worker's nursery."""
        task_status.started()
        while True:
            self._idle = trio.CancelScope(deadline=self._flush_at)
            with self._idle:
                await self._ready.wait()
            self._ready = trio.Event()  # a put() during the round sets the new one
            if self._pending:
                await self._gather()
                await self._round()

    async def _gather(self) -> None:
        """Let the requests this worker is busy with add their records first.

        Under load the event loop always has runnable tasks, many of them
        CREATEs a moment away from their put(); each etcd transaction costs
        this worker and etcd about as much CPU as a whole plain open, so
        waiting up to ``gather`` seconds for them is cheaper than a round
        each.  The wait ends as soon as every other task is blocked (waiting
        for a client, a thread or etcd): an idle worker sends at once, and a
        lone client never waits for company that cannot come.  (Trio offers
        that condition in trio.testing; it is the scheduler's own idle test.)
        """
        with trio.move_on_after(self.gather):
            await trio.testing.wait_all_tasks_blocked()

    async def _round(self) -> None:
        final, taken = self._take_batch()
        if all(op.awaited for op in self._pending):
            self._flush_at = math.inf  # every discard is in this round
        if any(op.awaited for op in self._pending):
            self._ready.set()  # more than max_batch were waiting: the rest go next
        puts = [r for r in final.values() if r is not None]
        deletes = [pid for pid, r in final.items() if r is None]
        error: str | None = None
        try:
            await self.store.write(puts, deletes)
        except StoreUnavailable as exc:
            error = str(exc) or "etcd unavailable"
        unstored = []
        for op in taken:
            op.error = error
            op.done.set()
            if not op.awaited:
                if error is None:
                    self.discarding.discard(op.pid)
                else:
                    unstored.append(op.pid)
        if unstored:
            self._retry_discards(unstored, error or "")

    def _retry_discards(self, pids: list[int], error: str) -> None:
        """Queue the deletes of closed handles again after a failed round.

        Nobody waits for them, so nobody else would: the record of a closed
        handle names a live worker, which the scavenger never expires.
        """
        log.warning("durable records of %d closed handles not deleted yet, retrying in "
                    "%.0f s: %s", len(pids), self.RETRY_DISCARD, error)
        self._pending.extend(_Op(pid, None, awaited=False) for pid in pids)
        self._flush_at = min(self._flush_at, trio.current_time() + self.RETRY_DISCARD)


# -- orphans: records of dead owners, by name ---------------------------------

def name_key(share: str, path: str) -> tuple[str, str]:
    """How a file is named across workers and nodes: share name and path, case-folded."""
    return share.casefold(), path.replace("\\", "/").strip("/").casefold()


class OrphanIndex:
    """The durable records whose owning worker is dead, by the file they name.

    A worker that died took its share modes and oplocks with it, so a worker
    serving the file next learns of the disconnected open only from etcd.
    Reading etcd on every CREATE would cost a round trip per open; instead
    the index is refilled from one prefix read whenever a worker's liveness
    key vanishes, and a CREATE looks at etcd only for a name listed here.
    """

    def __init__(self) -> None:
        self._by_name: dict[tuple[str, str], dict[int, Stored]] = {}

    def load(self, stored: Sequence[Stored], live_workers: frozenset[str] | set[str]) -> None:
        """Replace the index with the records of ``stored`` whose worker is not alive."""
        self._by_name = {}
        for s in stored:
            if s.record.worker not in live_workers:
                self._by_name.setdefault(name_key(s.record.share, s.record.path),
                                         {})[s.record.persistent_id] = s

    def at(self, share: str, path: str) -> list[Stored]:
        found = self._by_name.get(name_key(share, path))
        return list(found.values()) if found else []

    def all(self) -> list[Stored]:
        return [s for found in self._by_name.values() for s in found.values()]

    def drop(self, record: DurableRecord) -> None:
        key = name_key(record.share, record.path)
        found = self._by_name.get(key)
        if found is not None:
            found.pop(record.persistent_id, None)
            if not found:
                del self._by_name[key]

    def __len__(self) -> int:
        return sum(map(len, self._by_name.values()))


# -- the scavenger -------------------------------------------------------------

@dataclass(frozen=True)
class ScavengePlan:
    stamp: list[Stored]    # orphaned by a dead worker: start their timeout now
    expire: list[Stored]   # disconnected for longer than timeout + grace


def plan_scavenge(stored: Sequence[Stored], live_workers: frozenset[str] | set[str],
                  now: float, grace: float = SCAVENGE_GRACE_S) -> ScavengePlan:
    """Which records to stamp as disconnected and which to delete.

    A worker that died could not write when its open disconnected, so the
    first scavenger round that sees its liveness key gone stamps the time; the
    handle then lives its full timeout from there.  A record whose worker is
    alive and that is still connected is never touched.  A live worker expires
    its own disconnected opens (it holds their files); the scavenger deletes
    such a record only ``grace`` later, as a backstop, so none outlives its
    timeout by more than a scavenger period plus grace.
    """
    stamp: list[Stored] = []
    expire: list[Stored] = []
    for s in stored:
        r = s.record
        if r.disconnected_since is None:
            if r.worker not in live_workers:
                stamp.append(s)
        elif now >= r.disconnected_since + r.timeout_ms / 1000 + grace:
            expire.append(s)
    return ScavengePlan(stamp, expire)


async def adopt_record(store: DurableStore, persistent_id: int, worker: str,
                       check: Callable[[Stored | None, frozenset[str]], None],
                       attempts: int = RECLAIM_ATTEMPTS) -> Stored | None:
    """Take a record over for a reconnect on ``worker``: read it, let ``check``
    refuse it (by raising), swap it with a compare-and-swap; the adopted record
    as stored, or None when every swap lost.

    The leader's scavenger stamps a dead worker's records right after a
    takeover, just when that worker's clients reconnect: a swap that lost to
    it reads and checks the record again.  One adopted elsewhere meanwhile
    fails the check the second time.
    """
    for _ in range(attempts):
        stored = await store.get(persistent_id)
        check(stored, await store.live_workers())
        assert stored is not None, "check must refuse a missing record"
        if await store.replace(stored, adopt(stored.record, worker)):
            return await store.get(persistent_id)
    return None


async def scavenge(store: DurableStore, now: float,
                   grace: float = SCAVENGE_GRACE_S) -> ScavengePlan:
    """One scavenger cycle (the leader agent calls it periodically); returns what it did.

    Every change is a compare-and-swap, so a reconnect that adopts a record
    in the meantime wins and the scavenger leaves that record alone.
    """
    live = await store.live_workers()
    plan = plan_scavenge(await store.list(), live, now, grace)
    stamped = [s for s in plan.stamp
               if await store.replace(s, s.record.evolve(disconnected_since=now))]
    expired = [s for s in plan.expire if await store.replace(s, None)]
    return ScavengePlan(stamped, expired)
