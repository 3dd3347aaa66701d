"""Oplocks, leases and durable handles as CREATE, CLOSE and a lost connection
use them; the decisions are smb.oplocks' and smb.durable's, this module
applies them to the worker's opens.

An open's id in the worker's NodeOplocks is its FileId.Persistent, which a
durable reconnect keeps, so a reclaimed open is the same open to NodeOplocks.
Files are named there by share root and case-folded path, which is what a
client names them by.

Durable grant (3.3.5.9.6/3.3.5.9.10): after the open succeeded and got a
batch oplock or a lease with H, the record is stored through the worker's
batched DurableWriter before the CREATE is answered; if etcd cannot take it
(or the worker has no live liveness key) the open is answered without
durability.  An open that ends without CLOSE (connection lost or
LOGOFF, as Samba treats them): the descriptor and its byte-range locks go, its
share-mode and caching rows stay in the node table, the open stays in
NodeOplocks marked disconnected and its record is stamped
``disconnected_since``.  A conflicting open purges it as Windows does, on this
worker or, through a break request, on any other worker of the node; its end
(purge or timeout) deletes the record, then the rows, and its delete-on-close
takes effect as a CLOSE's would.  A reconnect on any worker of any node may
adopt it; on this node it takes the old rows over.  CLOSE queues the record's
delete without waiting for etcd (nobody reconnects a closed handle).

A worker or node that died leaves records nobody holds in memory: the
worker's OrphanIndex lists them by name, and a CREATE of such a name puts
them into NodeOplocks as disconnected opens first, so a conflicting open
purges them here too (a compare-and-swap delete, so a reconnect adopting the
record at the same moment wins) and any other open leaves them reclaimable.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Hashable

import trio

from hanode.store import StoreUnavailable
from smb import nowait, vfs
from smb.durable import (
    DurableRecord, LockRange, ReconnectRequest, Stored, adopt_record, check_reconnect, grant_durability,
    is_disconnected, refusal_while_disconnected, resilient_record,
)
from smb.oplocks import (
    BREAK_TIMEOUT_S, LEASE_HANDLE, LEASE_NONE, LEASE_READ, LEASE_WRITE, OPLOCK_LEASE, OPLOCK_NONE,
    Lease, LeaseGrant, OpenDecision, OpenRequest, Outcome, breaks_no_caching,
)
from smb.server import crossbreaks, workerstate
from smb.server.breaks import Holder
from smb.server.durable_life import granted, is_attached, purged, reclaimed_here, refused_for
# Lifecycle entry points CREATE (smb.server.files) and the agent's scavenger reach here.
from smb.server.durable_life import abandon as abandon, give_up as give_up
from smb.server.durable_life import delete_on_close as delete_on_close
from smb.server.errors import CommandError
from smb.server.handler import CommandContext, Reply, Request
from smb.server.nodelocal import NodeLocal, Range
from smb.server.opens import open_of
from smb.server.replay import LockSequences
from smb.wire import create as wire
from smb.wire import oplock as oplock_wire
from smb.wire.header import Status
from smb.wire.create_contexts import (
    CreateContext, DurabilityIntent, DurableV1Reconnect, DurableV2Reconnect, DurableV2Request,
    durability_request,
)

if TYPE_CHECKING:
    from smb.server.opens import Open, TreeConnect
    from smb.server.workerstate import WorkerState

log = logging.getLogger(__name__)

_V1_CREATE_GUID = bytes(16)


def persistent_of(file_id: bytes) -> int:
    return int.from_bytes(file_id[:8], "little")


def file_key(tree: "TreeConnect", parts: tuple[str, ...]) -> Hashable:
    return (tree.root.root, "/".join(p.casefold() for p in parts))


def intent_of(c: wire.CreateRequest) -> DurabilityIntent:
    found = durability_request([CreateContext(name.encode("latin-1"), data)
                                for name, data in c.contexts.items()])
    if not isinstance(found, DurabilityIntent):
        raise CommandError(found.status)
    return found


def is_reconnect(intent: DurabilityIntent) -> bool:
    return isinstance(intent.durable, (DurableV1Reconnect, DurableV2Reconnect))


def open_request(ctx: CommandContext, c: wire.CreateRequest, intent: DurabilityIntent,
                 granted: int, open_id: int) -> OpenRequest:
    lease = None
    level = c.oplock_level
    if level == OPLOCK_LEASE:
        if intent.lease is None or ctx.connection.dialect < 0x0210:
            level = OPLOCK_NONE
        else:
            lease = Lease.from_context(intent.lease)
    if c.options & wire.CreateOptions.DIRECTORY_FILE:
        level, lease = OPLOCK_NONE, None
    return OpenRequest(open_id, ctx.connection.client_guid, granted, c.share_access,
                       c.disposition, level, lease, smb3=ctx.connection.dialect >= 0x0300)


async def decide(ctx: CommandContext, tree: "TreeConnect", req: OpenRequest,
                 parts: tuple[str, ...]) -> OpenDecision | None:
    """The oplock/lease decision of a new open, after its breaks were answered.

    Refusals raise CommandError; purged disconnected durable opens lose their
    records.  None outside a worker (no caching offered at all).
    """
    ws = workerstate.current()
    if ws is None:
        return None
    file = file_key(tree, parts)
    await ws.owners_known()  # a worker that just died: its opens first
    await _restore_orphans(ws, tree, file, parts)
    if parts and ws.breaks.oplocks.has_opens(file):
        # Refused before any holder is broken (or a share mode is weighed): the
        # break would gain nothing (Windows and smbd send none; smb2.oplock.doc,
        # smb2.replay.replay-regular).
        refusal = await trio.to_thread.run_sync(_refusal_at, tree, parts, req.disposition)
        if refusal is not None:
            raise CommandError(refusal)
    decision = await ws.breaks.decide(file, req, ctx.go_async)
    if decision.refused_by is not None and not await refused_for(ws, decision.refused_by):
        decision = await ws.breaks.decide(file, req, ctx.go_async)
    for pid in decision.purged:
        await purged(ws, pid)
    if decision.outcome == Outcome.REFUSE:
        raise CommandError(decision.status)
    return decision


def _refusal_at(tree: "TreeConnect", parts: tuple[str, ...], disposition: int) -> int | None:
    """DELETE_PENDING, or OBJECT_NAME_COLLISION for a FILE_CREATE of a name that exists."""
    try:
        with tree.root.lookup(parts) as where:
            if where.st is None:
                return None
            if tree.node.delete_pending(where.st.st_dev, where.st.st_ino):
                return Status.DELETE_PENDING
            return Status.OBJECT_NAME_COLLISION if disposition == wire.Disposition.CREATE \
                else None
    except vfs.VfsError:
        return None


def without_caching(tree: "TreeConnect", req: OpenRequest, parts: tuple[str, ...]) -> OpenDecision:
    """Take back what an open was granted (a directory; a file other workers hold)."""
    ws = workerstate.current()
    assert ws is not None
    ws.breaks.oplocks.close(req.open_id)
    plain = OpenRequest(req.open_id, req.client_guid, req.desired_access, req.share_access,
                        req.disposition)
    return ws.breaks.oplocks.open(file_key(tree, parts), plain)


async def owners_known() -> None:
    """Wait (bounded) while this worker loads the opens of a worker that just
    died (smb.server.workerstate.WorkerState.owners_known)."""
    ws = workerstate.current()
    if ws is not None:
        await ws.owners_known()


def contend_write(op: "Open") -> None:
    ws = workerstate.current()
    if ws is not None and op.open_id is not None:
        ws.breaks.contend_write(op.open_id)
    crossbreaks.contend_write(op)


def has_caching(decision: OpenDecision) -> bool:
    if decision.lease is not None:
        return decision.lease.state != LEASE_NONE
    return decision.oplock_level != OPLOCK_NONE


async def attach(ctx: CommandContext, op: "Open", lease_id: tuple[bytes, bytes] | None) -> None:
    """Route the breaks of ``op`` to this connection and track its caching; grant()
    (or restore()) mirrors it for other workers before the CREATE is answered,
    so no other worker's open can miss it."""
    ws = workerstate.current()
    notify = ctx.connection.notify
    if ws is None or notify is None or op.open_id is None or ctx.session is None:
        return
    ws.breaks.attach(op.open_id, Holder(notify, ctx.session.session_id, op.file_id))
    ws.track(op, file_key(op.tree, op.parts), lease_id)
    ws.open_handles += 1


def lease_id_of(client_guid: bytes, lease: "LeaseGrant | Lease | None") -> tuple[bytes, bytes] | None:
    return None if lease is None else (client_guid, lease.key)


async def wait_for_other_workers(ctx: CommandContext, op: "Open", c: wire.CreateRequest) -> None:
    """Have other workers break what their clients cache of this file, as far as this
    open needs: write caching always, all caching for an overwrite.  Waits (with
    an interim response) until the holders acknowledged or their break timed out."""
    ws = workerstate.current()
    if ws is None or op.is_dir or breaks_no_caching(op.access):
        return
    node = op.tree.node
    must_go = LEASE_READ | LEASE_HANDLE | LEASE_WRITE if c.disposition in (
        wire.Disposition.SUPERSEDE, wire.Disposition.OVERWRITE, wire.Disposition.OVERWRITE_IF) \
        else LEASE_WRITE
    if not await nowait.run(node.others_caching, op.dev, op.ino) & must_go:
        return
    await trio.to_thread.run_sync(node.request_breaks, op.dev, op.ino, op.access,
                                  c.share_access, c.disposition)
    await ctx.go_async()
    with trio.move_on_after(BREAK_TIMEOUT_S + 2):
        while await trio.to_thread.run_sync(node.others_caching, op.dev, op.ino) & must_go:
            await trio.sleep(workerstate.CROSS_WORKER_POLL)


async def grant(ctx: CommandContext, op: "Open", c: wire.CreateRequest,
                intent: DurabilityIntent, decision: OpenDecision) -> list[tuple[str, bytes]]:
    """Response contexts for the caching granted, and durability if it may be."""
    out: list[tuple[str, bytes]] = []
    if decision.lease is not None:
        lease_ctx = decision.lease.response_context()
        out.append((lease_ctx.name.decode(), lease_ctx.data))
    ws = workerstate.current()
    if ws is None:
        return out
    lease = decision.lease
    found = None if is_reconnect(intent) else grant_durability(
        intent.durable, is_directory=op.is_dir, oplock_level=decision.oplock_level,
        lease_state=lease.state if lease is not None else None, store_available=ws.available,
        continuously_available=(op.tree.share.continuous_availability
                                and ctx.connection.dialect >= 0x0300))
    # Other workers see the open's caching before the CREATE is answered (the
    # mirror mostly takes no wait at all: smb.nowait); the record's commit does.
    await ws.mirror_open(op.open_id)
    if found is None:
        return out
    assert op.open_id is not None and ctx.session is not None
    create_guid = (intent.durable.create_guid if isinstance(intent.durable, DurableV2Request)
                   else _V1_CREATE_GUID)
    record = DurableRecord(
        persistent_id=op.open_id, version=found.version, create_guid=create_guid,
        client_guid=ctx.connection.client_guid, owner=ctx.session.user,
        share=op.tree.share.name, path="\\".join(op.parts),
        desired_access=op.access, share_access=c.share_access, create_options=c.options,
        oplock_level=decision.oplock_level,
        lease=None if lease is None else Lease(lease.key, lease.state, lease.epoch,
                                               lease.version, lease.parent_key),
        timeout_ms=found.timeout_ms, worker=ws.identity,
        initial_allocation=op.initial_allocation, inode=op.ino, persistent=found.persistent)
    try:
        await ws.writer.put(record)
    except StoreUnavailable as exc:
        log.warning("durable handle not granted, etcd unavailable: %s", exc)
        return out
    granted(ws, op, record)
    log.debug("%s v%d handle %016x granted on %s",
              "persistent" if found.persistent else "durable", found.version, op.open_id,
              record.path)
    ctx_out = found.response_context()
    out.append((ctx_out.name.decode(), ctx_out.data))
    return out


async def make_resilient(ctx: CommandContext, op: "Open", timeout_ms: int) -> None:
    """FSCTL_LMR_REQUEST_RESILIENCY (3.3.5.15.9) on an open: from now on it
    outlives its connection for ``timeout_ms`` whatever it caches, as a durable
    open does (the same record in etcd, the same lifecycle, reclaimed by DHnC or
    DH2C on any worker of any node).  The answer waits for the record's commit;
    if etcd cannot take it, INSUFFICIENT_RESOURCES says so without making the
    client give up resiliency for its other opens (NOT_SUPPORTED would)."""
    ws = workerstate.current()
    if ws is None or op.open_id is None or ctx.session is None or not ws.available:
        raise CommandError(Status.INSUFFICIENT_RESOURCES)
    if op.durable is not None:
        record = resilient_record(op.durable, timeout_ms)
    else:
        oplock_level, lease = ws.breaks.oplocks.caching_of(op.open_id)
        record = DurableRecord(
            persistent_id=op.open_id, version=1, create_guid=_V1_CREATE_GUID,
            client_guid=ctx.connection.client_guid, owner=ctx.session.user,
            share=op.tree.share.name, path="\\".join(op.parts),
            desired_access=op.access, share_access=op.share_access,
            create_options=op.create_options, oplock_level=oplock_level, lease=lease,
            timeout_ms=timeout_ms, worker=ws.identity,
            initial_allocation=op.initial_allocation, inode=op.ino,
            lock_sequences=op.lock_sequences.to_pairs(), resilient=True)
    try:
        await ws.writer.put(record)
    except StoreUnavailable as exc:
        log.warning("resiliency of %016x not granted, etcd unavailable: %s", op.open_id, exc)
        raise CommandError(Status.INSUFFICIENT_RESOURCES) from None
    granted(ws, op, record)
    log.debug("open %016x on %s resilient for %d ms", op.open_id, record.path, timeout_ms)


async def _restore_orphans(ws: "WorkerState", tree: "TreeConnect", file: Hashable,
                           parts: tuple[str, ...]) -> None:
    """Make the disconnected opens a dead worker left on this name count for this open.

    Each listed record is read again first: one a reconnect adopted (its
    worker is alive again) or that is gone no longer stands in the way.
    """
    listed_here = ws.orphans.at(tree.share.name, "\\".join(parts))
    if not listed_here:
        return
    try:
        live = await ws.durable_store.live_workers()
    except StoreUnavailable as exc:
        log.info("orphaned durable records not checked: %s", exc)
        return
    for listed in listed_here:
        pid = listed.record.persistent_id
        try:
            fresh = await ws.durable_store.get(pid)
        except StoreUnavailable as exc:
            log.info("orphaned durable record %016x not read: %s", pid, exc)
            continue
        if fresh is None or fresh.record.worker in live:
            ws.orphans.drop(listed.record)
            await _let_go(ws, pid)
            continue
        if pid not in ws.foreign:
            await _hold(ws, tree.root, file, parts, fresh.record)
        ws.foreign[pid] = fresh


async def hold_orphans(ws: "WorkerState") -> None:
    """The orphan index was just loaded (a worker died, or one started): every
    dead worker's open that keeps its file (persistent, resilient) is held here
    at once, not at the next CREATE of its name, so that a LOCK, READ or WRITE
    through a handle already open on the file meets its byte-range locks; and
    the held opens the index no longer lists (reclaimed on another node, or
    ended) let go of their rows.  The records were read just now: no re-read."""
    listed = {s.record.persistent_id: s for s in ws.orphans.all()}
    for pid in [p for p in ws.foreign if p not in listed]:
        await _let_go(ws, pid)
    kept = [s for pid, s in listed.items()
            if pid not in ws.foreign and refusal_while_disconnected(s.record) is not None]
    for share in ws.cfg.shares:
        mine = [s for s in kept if s.record.share.casefold() == share.name.casefold()]
        if not mine:
            continue
        try:
            root = await trio.to_thread.run_sync(vfs.Share, share.path)
        except vfs.VfsError as exc:
            log.info("orphaned opens of share %s not held: %s", share.name, exc)
            continue
        try:
            for stored in mine:
                parts = vfs.parse_name(stored.record.path)
                if not parts:
                    continue
                file = (root.root, "/".join(p.casefold() for p in parts))  # as file_key
                await _hold(ws, root, file, parts, stored.record)
                ws.foreign[stored.record.persistent_id] = stored
        finally:
            root.close()


async def _let_go(ws: "WorkerState", pid: int) -> None:
    """A dead worker's open held here is not in the way any more."""
    ws.forget_foreign(pid)
    await trio.to_thread.run_sync(ws.node.forget_disconnected, _stand_in_key(pid))


def _stand_in_key(persistent_id: int) -> str:
    """The node-table key of a dead worker's open held for it here (no file id
    of a live open looks like it)."""
    return f"kept-{persistent_id:016x}"


async def _hold(ws: "WorkerState", root: vfs.Share, file: Hashable, parts: tuple[str, ...],
                record: DurableRecord) -> None:
    """Put a dead worker's disconnected open into this worker's NodeOplocks, so
    that a conflicting open meets (or purges) it; one that keeps its file
    (persistent, resilient) also gets node-table rows (:func:`_stand_in`)."""
    refuse = refusal_while_disconnected(record)
    ws.breaks.oplocks.restore(file, record.persistent_id, record.client_guid,
                              record.desired_access, record.share_access,
                              record.oplock_level, record.lease, disconnected=True,
                              refuse=refuse)
    if refuse is not None:
        await trio.to_thread.run_sync(_stand_in, ws.node, root, parts, record, refuse)


def _stand_in(node: NodeLocal, root: vfs.Share, parts: tuple[str, ...], record: DurableRecord,
              refuse: int) -> None:
    """Node-table rows for a dead worker's open that keeps its file: the node's
    other workers' opens meet its share mode and every open's LOCK, READ and
    WRITE meet its byte-range locks, as they did while its worker lived.  Only
    on the file it was granted on: one created since under its name is not its
    file."""
    try:
        with root.lookup(parts) as where:
            st = where.st
    except vfs.VfsError:
        return
    if st is None or (record.inode and st.st_ino != record.inode):
        return
    node.stand_in(_stand_in_key(record.persistent_id), st.st_dev, st.st_ino,
                  record.desired_access, record.share_access, record.persistent_id,
                  [Range(lk.offset, lk.length, lk.exclusive) for lk in record.locks], refuse)


async def keep_locks(op: "Open") -> None:
    """A LOCK or unlock through a persistent open is answered only once its record
    carries the open's byte-range locks and lock sequences as they now stand:
    should its node die, the reclaim elsewhere takes them back from the record,
    and a replayed LOCK finds its sequence.  A durable open's record takes
    them when it disconnects (its node table keeps them until then).  If etcd
    cannot take them the LOCK is answered anyway (logged): the node table holds
    them while this node lives, only its death would lose them."""
    ws = workerstate.current()
    record = op.durable
    if ws is None or record is None or not record.persistent:
        return
    ranges = await trio.to_thread.run_sync(op.tree.node.locks_of, op.key)
    # Set before the write: a connection lost meanwhile stores its disconnected
    # record (evolved from this one) after it, with the same locks.
    op.durable = record = record.evolve(
        locks=tuple(LockRange(r.start, r.length, r.exclusive) for r in ranges),
        lock_sequences=op.lock_sequences.to_pairs(), channel_sequence=op.channel.sequence)
    try:
        await ws.writer.put(record)
    except StoreUnavailable as exc:
        log.warning("persistent record %016x: locks not stored: %s", record.persistent_id, exc)


async def keep_caching(ws: "WorkerState", ops: list["Open"]) -> None:
    """What these opens cache changed (an acknowledged break: before the
    acknowledgement is answered; a break needing no acknowledgement, or a
    disconnected persistent open's caching given up for another open: as the
    worker mirrors it): those persistent ones whose record says otherwise
    store what they now hold, so a reclaim on any worker or node reports the
    lease state the client really has."""
    changed = []
    for o in ops:
        record = o.durable
        if record is None or not record.persistent or o.open_id is None:
            continue
        level, lease = ws.breaks.oplocks.caching_of(o.open_id)
        if (level, lease) != (record.oplock_level, record.lease):
            o.durable = record.evolve(oplock_level=level, lease=lease)
            changed.append(o.durable)
    for record in changed:  # one writer round (acks of one lease come together)
        try:
            await ws.writer.put(record)
        except StoreUnavailable as exc:
            log.warning("persistent record %016x: caching not stored: %s",
                        record.persistent_id, exc)


async def keep_delete_pending(op: "Open", pending: bool) -> None:
    """A SET_INFO FileDispositionInformation on a durable open is answered only
    once its record carries the pending delete (or no longer does): should the
    worker die, the open then ends elsewhere as its CLOSE would have, deleting
    the file, and a reconnect sets the pending delete again.  If etcd cannot
    take it, the answer goes anyway: the node table holds the flag while this
    worker lives, only a crash would then lose it."""
    ws = workerstate.current()
    if ws is None:
        return
    # The pending delete belongs to the file: every durable open of it on this
    # worker says the same, whichever handle set or cleared it.  (Another
    # worker's durable opens of the file keep what they last stored.)
    changed = [o for o in ws.opens_of(op.dev, op.ino)
               if o.durable is not None and o.durable.delete_pending != pending]
    if not changed:  # most deletes: no durable open of the file, no nursery
        return
    for o in changed:
        # Set before the write: a connection lost meanwhile stores its
        # disconnected record (evolved from this one) after it, and keeps the flag.
        o.durable = o.durable.evolve(delete_pending=pending)

    async def store(record: DurableRecord) -> None:
        try:
            await ws.writer.put(record)
        except StoreUnavailable as exc:
            log.warning("durable record %016x: pending delete not stored: %s",
                        record.persistent_id, exc)

    async with trio.open_nursery() as nursery:  # one writer round for them all
        for o in changed:
            nursery.start_soon(store, o.durable)


# -- reconnect ---------------------------------------------------------------------

async def reclaim(ctx: CommandContext, tree: "TreeConnect", c: wire.CreateRequest,
                  intent: DurabilityIntent) -> Stored:
    """Check a DHnC/DH2C against its record and adopt it (compare-and-swap), or raise."""
    ws = workerstate.current()
    assert isinstance(intent.durable, (DurableV1Reconnect, DurableV2Reconnect))
    if ws is None or ctx.session is None or not ws.available:
        raise CommandError(Status.OBJECT_NAME_NOT_FOUND)
    pid = intent.durable.file_id.persistent
    if pid in ws.writer.discarding:  # closed here; the delete of its record is on its way
        raise CommandError(Status.OBJECT_NAME_NOT_FOUND)
    releasing = ws.releasing.get(pid)
    if releasing is not None:  # its old connection is still being let go
        await releasing.wait()
    local = ws.durable.get(pid)
    attached = is_attached(local)

    def check(stored: Stored | None, live: frozenset[str]) -> None:
        record = stored.record if stored is not None else None
        disconnected = record is not None and not attached and (
            is_disconnected(record, live) or record.worker == ws.identity)
        status = check_reconnect(record, ReconnectRequest(
            intent.durable, ctx.connection.client_guid, ctx.session.user, c.name, intent.lease),
            disconnected=disconnected)
        log.debug("reconnect of %016x: %s (disconnected %s)", pid, Status(status).name,
                  disconnected)
        if status != Status.SUCCESS:
            raise CommandError(status)
        assert record is not None
        if record.share.casefold() != tree.share.name.casefold():
            raise CommandError(Status.OBJECT_NAME_NOT_FOUND)

    try:
        fresh = await adopt_record(ws.durable_store, pid, ws.identity, check)
    except StoreUnavailable:
        raise CommandError(Status.OBJECT_NAME_NOT_FOUND) from None
    if fresh is None:
        raise CommandError(Status.OBJECT_NAME_NOT_FOUND)
    # Its old open (this worker's or another's of the node) lets go of its rows,
    # so that the reopen's share mode does not meet its own.
    await trio.to_thread.run_sync(tree.node.take_over_disconnected, pid)
    if local is not None:
        ws.untrack(pid)  # restore() mirrors it anew, under the reopen's key
    return fresh


async def restore(ctx: CommandContext, tree: "TreeConnect", op: "Open",
                  record: DurableRecord) -> None:
    """Put a reclaimed open back into NodeOplocks, attached to this connection."""
    ws = workerstate.current()
    assert ws is not None
    oplocks = ws.breaks.oplocks
    ws.forget_foreign(record.persistent_id)  # known here as a dead worker's: now ours
    ws.orphans.drop(record)
    if not await reclaimed_here(ws, record.persistent_id):
        oplocks.restore(file_key(tree, op.parts), record.persistent_id, record.client_guid,
                        record.desired_access, record.share_access, record.oplock_level,
                        record.lease, disconnected=False)
    op.lock_sequences = LockSequences.from_pairs(record.lock_sequences)
    if record.persistent:  # a durable open starts its channel anew, as before
        op.channel.sequence = record.channel_sequence
    granted(ws, op, record)
    if record.delete_pending:  # the client set it before the open disconnected
        await nowait.run(tree.node.set_delete_pending, op.dev, op.ino, True)
    await attach(ctx, op, lease_id_of(record.client_guid, record.lease))
    await ws.mirror_open(record.persistent_id)


async def relock(op: "Open", record: DurableRecord) -> None:
    """Take the reclaimed open's byte-range locks again; a conflict meanwhile loses them."""
    if not record.locks:
        return
    ranges = [Range(lk.offset, lk.length, lk.exclusive) for lk in record.locks]
    status = await trio.to_thread.run_sync(op.tree.node.lock, op.key, op.dev, op.ino, ranges)
    if status != Status.SUCCESS:
        log.warning("durable open %016x: its byte-range locks were taken meanwhile (%#x)",
                    record.persistent_id, status)


def reopen_request(record: DurableRecord) -> wire.CreateRequest:
    """The CREATE that reopens a reclaimed file from its recorded path."""
    return wire.CreateRequest(
        oplock_level=0, impersonation_level=2, desired_access=record.desired_access,
        file_attributes=0, share_access=record.share_access, disposition=wire.Disposition.OPEN,
        options=record.create_options,
        name=record.path)


def lease_context(record: DurableRecord) -> list[tuple[str, bytes]]:
    """A reconnect's response echoes the lease as the server now holds it."""
    ws = workerstate.current()
    if record.lease is None or ws is None:
        return []
    held = ws.breaks.oplocks.lease_state(record.client_guid, record.lease.key)
    state, epoch = (held[0], held[1]) if held else (record.lease.state, record.lease.epoch)
    grant = LeaseGrant(record.lease.key, state, epoch, record.lease.version,
                       record.lease.parent_key, 0)
    ctx = grant.response_context()
    return [(ctx.name.decode(), ctx.data)]



# -- OPLOCK_BREAK acknowledgements (3.3.5.22) ----------------------------------------

async def oplock_break(ctx: CommandContext, req: Request) -> Reply:
    ack = oplock_wire.parse_ack(req.body)
    ws = workerstate.current()
    if isinstance(ack, oplock_wire.OplockAck):
        op = open_of(ctx, req, ack.file_id)
        if ws is None or op.open_id is None:
            raise CommandError(Status.INVALID_OPLOCK_PROTOCOL)
        result = ws.breaks.ack_oplock(op.open_id, ack.level)
        if result.status != Status.SUCCESS:
            raise CommandError(result.status)
        await keep_caching(ws, [op])
        return Reply(body=oplock_wire.oplock_break(result.level, op.file_id))
    if ws is None:
        raise CommandError(Status.OBJECT_NAME_NOT_FOUND)
    result = ws.breaks.ack_lease(ctx.connection.client_guid, ack.key, ack.state)
    if result.status != Status.SUCCESS:
        raise CommandError(result.status)
    await keep_caching(ws, [o for o in ws.durable.values() if o.durable is not None
                             and o.durable.lease is not None and o.durable.lease.key == ack.key
                             and o.durable.client_guid == ctx.connection.client_guid])
    return Reply(body=oplock_wire.lease_ack_response(ack.key, result.level))
