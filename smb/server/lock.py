"""LOCK: byte-range locks held in the node's shared table.

A lock that must wait goes async (the client gets STATUS_PENDING at once)
and then retries with a short, growing pause until it is granted, the client
cancels it, or the connection goes away (which cancels this task).  Polling
keeps the waiters independent of which worker process holds the lock.
"""

from __future__ import annotations

import trio

from smb.server import durable_opens, replay
from smb.server.handler import CommandContext, Reply, Request
from smb.server.nodelocal import Range
from smb.server.opens import CommandError, Open, open_of
from smb.wire import lock as wire
from smb.wire.header import Status
from smb.wire.lock import LockFlags

_UINT64 = 1 << 64
_LOCK_KINDS = (LockFlags.SHARED, LockFlags.EXCLUSIVE)
_FIRST_PAUSE = 0.01
_MAX_PAUSE = 0.2


def _check(req: wire.LockRequest) -> tuple[bool, bool, bool]:
    """Validate the flags (MS-SMB2 3.3.5.14); returns (unlock, fail_immediately, invalid).

    In an unlock request a bad element is reported only after the good
    unlocks before it were done, as Windows and Samba do; ``invalid`` says so.
    """
    unlock = bool(req.locks[0].flags & LockFlags.UNLOCK)
    fail_now = True
    invalid = False
    for el in req.locks:
        kind = el.flags & ~LockFlags.FAIL_IMMEDIATELY
        if unlock:
            invalid = invalid or el.flags != LockFlags.UNLOCK
        elif kind not in _LOCK_KINDS:
            raise CommandError(Status.INVALID_PARAMETER)
        fail_now = fail_now and bool(el.flags & LockFlags.FAIL_IMMEDIATELY)
        if el.offset + el.length > _UINT64:
            raise CommandError(Status.INVALID_LOCK_RANGE)
    if not unlock and len(req.locks) > 1 and not fail_now:
        raise CommandError(Status.INVALID_PARAMETER)
    return unlock, fail_now, invalid


def _ranges(req: wire.LockRequest) -> list[Range]:
    return [Range(el.offset, el.length, bool(el.flags & LockFlags.EXCLUSIVE))
            for el in req.locks]


async def _try(op: Open, ranges: list[Range]) -> int:
    # Shielded: a lock granted in the table must be reported as granted, not
    # lost to a CANCEL that arrived while the table was being asked.
    with trio.CancelScope(shield=True):
        return await trio.to_thread.run_sync(op.tree.node.lock, op.key, op.dev, op.ino, ranges)


async def lock(ctx: CommandContext, req: Request) -> Reply:
    parsed = wire.parse_lock(req.body)
    op = open_of(ctx, req, parsed.file_id)
    if op.is_dir:
        raise CommandError(Status.INVALID_PARAMETER)
    unlock, fail_now, invalid = _check(parsed)
    sequences = op.lock_sequences if replay.checks_lock_sequence(
        ctx.connection.dialect, op.durable is not None,
        ctx.connection.server_capabilities) else None
    if sequences is not None and sequences.replayed(parsed.sequence):
        return Reply(body=wire.lock_response())  # done already; its response was lost
    ranges = _ranges(parsed)
    if unlock:
        unlocks = [r for r, el in zip(ranges, parsed.locks) if el.flags == LockFlags.UNLOCK]
        status = await trio.to_thread.run_sync(
            op.tree.node.unlock, op.key, op.dev, op.ino, unlocks)
        if status == Status.SUCCESS and invalid:
            status = Status.INVALID_PARAMETER
    else:
        await durable_opens.owners_known()  # a worker that just died: its locks first
        status = await _try(op, ranges)
        if status == Status.LOCK_NOT_GRANTED and not fail_now:
            await ctx.go_async()
            pause = _FIRST_PAUSE
            while status == Status.LOCK_NOT_GRANTED:
                if ctx.is_cancelled():
                    raise CommandError(Status.CANCELLED)
                await trio.sleep(pause)
                pause = min(pause * 2, _MAX_PAUSE)
                status = await _try(op, ranges)
    if status == Status.FILE_CLOSED:
        status = Status.RANGE_NOT_LOCKED  # the handle of a waiting lock was closed
    if status != Status.SUCCESS:
        raise CommandError(status)
    if sequences is not None:
        sequences.succeeded(parsed.sequence)
    await durable_opens.keep_locks(op)
    if not unlock:
        durable_opens.contend_write(op)  # others may no longer cache reads of the file
    return Reply(body=wire.lock_response())
