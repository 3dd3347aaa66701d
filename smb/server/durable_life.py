"""The driver of the durable-open lifecycle: it gathers facts, asks
:mod:`smb.lifecycle` what they mean, and applies the actions it names.

Every way an open of this worker ends or changes hands goes through
:func:`_apply` (the phase change and its actions) or :func:`_end` (the steps
of ending a disconnected open); the entry points below only say which fact
happened.  How a dead worker's record is purged is :func:`purged`'s orphan
branch; the scavenger of records nobody holds is the agent's.
"""

from __future__ import annotations

import logging
import stat as stat_mod
import time
from typing import TYPE_CHECKING, Callable, Sequence

import trio

from hanode.store import StoreUnavailable
from smb import lifecycle, vfs
from smb.durable import DurableRecord, LockRange, Stored, refusal_while_disconnected
from smb.lifecycle import Action, EndFacts, Event, Life, Owner, Phase
from smb.server.workerstate import WorkerState, current
from smb.wire import create as wire

if TYPE_CHECKING:
    from hanode.config import ShareConfig
    from smb.server.handles import Open

log = logging.getLogger("smb.server.durable_opens")


async def _apply(ws: WorkerState, op: "Open | None", pid: int, event: Event, *,
                 life: Life | None = None, record: DurableRecord | None = None) -> None:
    """Decide on ``event`` for the open (``life`` when there is no Open object)
    and apply the actions, in order."""
    decision = lifecycle.decide(op.life if op is not None else life or Life(), event)
    if op is not None:
        op.life = decision.life
    for action in decision.actions:
        await _act(ws, op, pid, action, record)


async def _act(ws: WorkerState, op: "Open | None", pid: int, action: Action,
               record: DurableRecord | None = None) -> None:
    """One action of the lifecycle; those on an open's rows need its Open."""
    if action is Action.FORGET:
        _forget(ws, pid)
    elif action is Action.DISCARD_RECORD:  # CLOSE: nobody reconnects a closed handle
        if op is not None:
            op.durable = None
        ws.writer.discard(pid)
    elif action is Action.DELETE_RECORD:
        try:
            await ws.writer.delete(pid)
        except StoreUnavailable as exc:
            log.warning("durable record %016x not deleted (the scavenger will): %s", pid, exc)
    elif action in (Action.DETACH, Action.DETACH_KEEPING):
        ws.breaks.detach(pid)
        ws.breaks.oplocks.set_disconnected(pid, True, refusal_while_disconnected(record)
                                           if action is Action.DETACH_KEEPING and record
                                           else None)
        ws.breaks.changed()
        log.debug("durable handle %016x disconnected", pid)
    elif action is Action.STORE_RECORD:
        assert record is not None
        with trio.CancelScope(shield=True):
            try:
                await ws.writer.put(record)
            except StoreUnavailable as exc:
                log.warning("durable record %016x not marked disconnected: %s", pid, exc)
            finally:
                ws.releasing.pop(pid).set()
    elif action is Action.ARM_EXPIRY:
        assert op is not None and record is not None
        ws.expiries.start_soon(_expire, ws, op, record)
    elif action is Action.REVIVE:
        ws.breaks.oplocks.set_disconnected(pid, False)
    elif action is Action.FORGET_ROWS:
        # By its key, not its id: a worker here may keep the same handle disconnected again.
        assert op is not None
        await trio.to_thread.run_sync(op.tree.node.forget_disconnected, op.key)
    elif action in (Action.CLOSE_ROWS, Action.CLOSE_ROWS_DELETING):
        assert op is not None
        await trio.to_thread.run_sync(_close_rows, op, action is Action.CLOSE_ROWS_DELETING)
    else:  # pragma: no cover - the steps of an ending are _end's
        raise AssertionError(action)


# -- facts from the request path ------------------------------------------------------

def abandon(open_id: int) -> None:
    """An open decided on did not happen after all (the file could not be opened):
    a plain open closing, whose only action is to be forgotten."""
    ws = current()
    if ws is not None:
        _forget(ws, open_id)


def _forget(ws: WorkerState, pid: int) -> None:
    ws.durable.pop(pid, None)
    ws.breaks.close(pid)
    ws.untrack(pid)


async def give_up(record: DurableRecord) -> None:
    """A reclaimed file is gone from storage: the durable open ends here.

    The reconnect adopted its record, so it is a disconnected open of this
    worker, known here by an Open or (reclaimed from elsewhere) only by its record."""
    ws = current()
    if ws is not None:
        pid = record.persistent_id
        await _apply(ws, ws.durable.get(pid), pid, Event.CLOSED,
                     life=Life(Phase.DISCONNECTED, durable=True))


def granted(ws: WorkerState, op: "Open", record: DurableRecord) -> None:
    """The open's durable record is stored (a grant, or a reconnect adopting it)."""
    assert op.open_id is not None
    op.durable = record
    op.life = lifecycle.decide(op.life, Event.GRANTED_KEEPING if record.kept_while_disconnected
                               else Event.GRANTED).life
    ws.durable[op.open_id] = op


async def reclaimed_here(ws: WorkerState, pid: int) -> bool:
    """A reconnect on this worker adopts the open: its old Open (if this worker
    still had it, disconnected) is done.  False when there was none."""
    old = ws.durable.get(pid)
    if old is None:
        return False
    await _apply(ws, old, pid, Event.RECLAIMED_HERE)
    return True


def is_attached(op: "Open | None") -> bool:
    return op is not None and op.life.phase is Phase.ATTACHED and op.life.durable


async def disconnected_record(op: "Open", *, keep_durable: bool) -> DurableRecord | None:
    """The record an open leaving its tree stays behind as, or None when it ends.

    Read before the open's node-table rows go, since its byte-range locks go
    with them and the record keeps them for the reconnect.
    """
    ws = current()
    if ws is None or op.open_id is None or op.durable is None or not keep_durable:
        return None
    done = ws.releasing[op.open_id] = trio.Event()
    try:
        locks = await trio.to_thread.run_sync(op.tree.node.locks_of, op.key)
    except BaseException:
        del ws.releasing[op.open_id]
        done.set()
        raise
    # A reconnect from here on finds it disconnected and waits for released().
    op.durable = op.durable.evolve(
        disconnected_since=time.time(), position=op.position,
        locks=tuple(LockRange(r.start, r.length, r.exclusive) for r in locks),
        lock_sequences=op.lock_sequences.to_pairs(), channel_sequence=op.channel.sequence)
    return op.durable


async def released(op: "Open", record: DurableRecord | None) -> None:
    """The open left its tree: without a record it ended (CLOSE, or it was not
    durable) and its node-table rows are gone; with one its connection was lost
    and it stays as a disconnected durable open, its share-mode and caching
    rows kept for the other workers to see.

    Only now are waiting opens woken: woken earlier, one could find the
    node-table row still there and fail with a sharing violation.
    """
    ws = current()
    if ws is None or op.open_id is None:
        return
    ws.open_handles = max(0, ws.open_handles - 1)
    await _apply(ws, op, op.open_id, Event.CLOSED if record is None else Event.CONNECTION_LOST,
                 record=record)


async def keep_channel(op: "Open") -> None:
    """A request raised a persistent open's ChannelSequence (its client moved to
    another channel): it is answered only once the record carries the new
    value, as a LOCK's sequences are (smb.server.durable_opens.keep_locks), so
    that a reclaim after the node's death does not take an older value back
    and admit a WRITE the client sent on the channel it left.  If etcd cannot
    take it the answer goes anyway (logged): only the node's death loses it."""
    ws = current()
    record = op.durable
    if ws is None or record is None or not record.persistent \
            or record.channel_sequence == op.channel.sequence:
        return
    # Set before the write: a connection lost meanwhile stores its disconnected
    # record (evolved from this one) after it, with the same value.
    op.durable = record = record.evolve(channel_sequence=op.channel.sequence)
    try:
        await ws.writer.put(record)
    except StoreUnavailable as exc:
        log.warning("persistent record %016x: channel sequence not stored: %s",
                    record.persistent_id, exc)


async def _expire(ws: WorkerState, op: "Open", record: DurableRecord) -> None:
    """A disconnected open that nobody reclaims ends with its timeout (3.3.2.2)."""
    await trio.sleep(record.timeout_ms / 1000)
    if ws.durable.get(record.persistent_id) is op and op.durable is record:
        decision = lifecycle.decide(op.life, Event.TIMED_OUT)
        if decision.ending is not None:
            await _end(ws, op, decision.ending)


# -- facts from other workers and etcd ------------------------------------------------

async def purged(ws: WorkerState, pid: int) -> None:
    """A conflicting open (of this worker, or another worker's break request)
    closed a disconnected durable open in NodeOplocks: end it for good."""
    log.debug("disconnected durable handle %016x purged by a conflicting open", pid)
    if pid in ws.foreign:
        await _purge_orphan(ws, pid)
        return
    releasing = ws.releasing.get(pid)
    if releasing is not None:  # its disconnected record is still being stored
        await releasing.wait()
    op = ws.durable.get(pid)
    if op is None:  # ended already
        return
    decision = lifecycle.decide(op.life, Event.PURGE)
    if decision.ending is not None:
        await _end(ws, op, decision.ending)


async def refused_for(ws: WorkerState, pid: int) -> bool:
    """A disconnected open that keeps its file (persistent, resilient) refused a
    conflicting open: True when it really stands, False when a reconnect on
    another worker of the node took it over meanwhile (its node-table row is
    gone), which this worker would otherwise learn only at its next owner
    poll; it is then forgotten here at once and the open may be decided again."""
    op = ws.durable.get(pid)
    if op is None or op.life.phase is not Phase.DISCONNECTED or pid in ws.releasing:
        return True
    if await trio.to_thread.run_sync(op.tree.node.still_disconnected, op.key):
        return True
    log.debug("disconnected handle %016x taken over elsewhere, forgotten here", pid)
    await _apply(ws, op, pid, Event.RECORD_ELSEWHERE)
    return False


async def _purge_orphan(ws: WorkerState, pid: int) -> None:
    """A conflicting open closes a dead worker's disconnected open: its record goes,
    unless a reconnect adopted it since it was read (then the reconnect won), and
    its delete-on-close takes effect as its CLOSE's would have."""
    stored = ws.foreign.pop(pid)
    ws.orphans.drop(stored.record)
    try:
        gone: bool | None = await ws.durable_store.replace(stored, None)
    except StoreUnavailable as exc:
        log.warning("orphaned durable record %016x not deleted (the scavenger will): %s",
                    pid, exc)
        gone = None
    else:
        log.debug("durable handle %016x of a dead worker %s by a conflicting open", pid,
                  "purged" if gone else "was reclaimed meanwhile, not purged")
    if Action.DELETE_ON_CLOSE in lifecycle.orphan_purged(gone):
        await trio.to_thread.run_sync(
            delete_on_close, ws.cfg.shares, stored.record,
            lambda dev, ino: ws.node.others_open("", dev, ino))


async def forget_reclaimed(ws: WorkerState) -> None:
    """Let go of this worker's disconnected opens that a reconnect took over on
    another worker or node (their records name another worker now) or whose
    records are gone: without this, each stays in memory, counted and with its
    rows, until its timeout.  Forgotten, never purged: the record and the file
    belong to someone else now.  One etcd read for all of them (Store.get_many).
    """
    waiting = {pid: op for pid, op in ws.durable.items()
               if op.life.phase is Phase.DISCONNECTED and pid not in ws.releasing}
    if not waiting:
        return
    try:
        stored = await ws.durable_store.get_many(list(waiting))
    except StoreUnavailable as exc:
        log.debug("disconnected durable records not read: %s", exc)
        return
    for pid, op in waiting.items():
        found = stored.get(pid)
        if found is not None and found.record.worker == ws.identity:
            continue
        if ws.durable.get(pid) is not op:  # ended or reclaimed here while etcd was read
            continue
        log.debug("disconnected durable handle %016x %s elsewhere, forgotten here", pid,
                  "reclaimed" if found is not None else "ended")
        await _apply(ws, op, pid, Event.RECORD_ELSEWHERE if found is not None
                     else Event.RECORD_GONE)


async def _end(ws: WorkerState, op: "Open", cause: Phase) -> None:
    """End a disconnected open of this worker (a conflicting open purged it, or
    its timeout ran out), one :func:`smb.lifecycle.ending` step at a time: its
    record goes, then its node-table rows, and its delete-on-close (or the
    file's pending delete) takes effect as its CLOSE's would have.  A reconnect
    that took it over meanwhile (on any worker of the node) owns it now: then
    only this worker's memory of it goes."""
    assert op.open_id is not None
    pid = op.open_id
    facts = EndFacts(cause)
    stored: Stored | None = None
    while True:
        step = lifecycle.ending(facts)
        for action in step.actions:
            await _act(ws, op, pid, action)
        if step.final is not None:
            op.life = Life(step.final, durable=True)
            log.debug("disconnected durable handle %016x %s", pid, step.final.value)
            return
        if step.action is Action.READ_RECORD:
            try:
                stored = await ws.durable_store.get(pid)
            except StoreUnavailable as exc:
                log.warning("durable record %016x not read (the scavenger ends it): %s",
                            pid, exc)
                stored = None
            facts = EndFacts(cause, Owner.UNKNOWN if stored is None else
                             Owner.US if stored.record.worker == ws.identity else Owner.OTHER)
        elif step.action is Action.CLAIM_ROWS:
            claimed = await trio.to_thread.run_sync(op.tree.node.claim_disconnected, op.key)
            facts = EndFacts(cause, facts.owner, claimed)
        elif step.action is Action.DELETE_RECORD_IF_UNCHANGED:
            assert stored is not None
            try:
                # False: a reconnect adopted it since it was read; it keeps the file.
                deleted = await ws.durable_store.replace(stored, None)
            except StoreUnavailable as exc:
                log.warning("durable record %016x not deleted (the scavenger will): %s",
                            pid, exc)
                deleted = True
            facts = EndFacts(cause, facts.owner, facts.rows_claimed, deleted)
        else:  # pragma: no cover
            raise AssertionError(step)


# -- files of opens that ended without their tree ---------------------------------------

def _close_rows(op: "Open", may_delete: bool) -> None:
    """close_file for an open whose descriptor and tree are gone already."""
    if op.tree.node.close_file(op.key, op.dev, op.ino) and may_delete:
        _delete(op.tree.root.root, op.parts, op.ino)


def delete_on_close(shares: "Sequence[ShareConfig]", record: DurableRecord,
                    held: Callable[[int, int], bool] | None = None) -> None:
    """A durable open that ended without its worker (purged after its worker died,
    or expired by the scavenger) was created delete-on-close or had its client's
    pending delete (the dead worker's node-table row of it died with it): its
    file goes, as its CLOSE would have made it go, unless ``held(dev, inode)``
    says another open holds the file (the dead open left no node-table row to
    hand the delete on), or the name now belongs to another file than the record's."""
    if not (record.create_options & wire.CreateOptions.DELETE_ON_CLOSE
            or record.delete_pending):
        return
    share = next((s for s in shares if s.name.casefold() == record.share.casefold()), None)
    parts = vfs.parse_name(record.path)
    if share is not None and parts and record.inode:
        _delete(share.path, parts, record.inode, held)


def _delete(share_path: str, parts: tuple[str, ...], ino: int | None,
            held: Callable[[int, int], bool] | None = None) -> None:
    """Delete a file of an open that no longer has its tree (its share's directory
    is opened anew): only the inode ``ino`` when given, never one ``held``."""
    try:
        root = vfs.Share(share_path)
    except vfs.VfsError as exc:
        log.info("delete-on-close of an ended durable open failed: %s", exc)
        return
    try:
        with root.lookup(parts) as where:
            found = where.st
        if found is not None and ino in (None, found.st_ino) \
                and not (held and held(found.st_dev, found.st_ino)):
            root.unlink(parts, found.st_ino, stat_mod.S_ISDIR(found.st_mode))
    except vfs.VfsError as exc:
        log.info("delete-on-close of an ended durable open failed: %s", exc)
    finally:
        root.close()
