"""When writes move a file's write time: the deferred rules Windows (up to
Server 2016) and smbd 4.17 follow, per handle.

A POSIX write moves the file's mtime at once, every time.  Windows does not:
the first write through a handle moves the write time about two seconds
later, further writes through it do not move it at all, and the close of a
handle that wrote since the last move sets it to the time of the close.
FLUSH, a size change and FileBasicInformation make a pending move at once.
A write time the client set (or froze with -1) on the handle stays through
all of it (``Open.frozen_write_ns``).  Clients depend on this: a time read
while a file is being written stays the same until the writer lets go.

:class:`smb.writetime.Deferred` decides (no I/O, no clock); the functions
here apply its decisions to an open's descriptor, putting back the mtime a
write moved.
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING

import trio

from smb import vfs
from smb.server import workerstate

if TYPE_CHECKING:
    from smb.server.handles import Open

log = logging.getLogger(__name__)


def _put(op: "Open", mtime_ns: int) -> None:
    """Set the file's write time, if the file system lets this process: a
    file another user owns refuses an explicit time (EPERM), and the write
    time then moves as POSIX moves it, rather than the request failing."""
    try:
        vfs.set_times(op.fd, None, mtime_ns)
    except vfs.VfsError as exc:
        log.debug("write time of %s not kept: %s", op.display_name, exc)


def before_write(op: "Open") -> int | None:
    """The write time as a write through ``op`` finds it, when the rules need
    it to put it back afterwards (its first write; None otherwise)."""
    if op.frozen_write_ns is not None or op.write_time.shown_ns is not None:
        return None
    return os.fstat(op.fd).st_mtime_ns


def after_write(op: "Open", before_ns: int | None) -> None:
    """After a write through ``op`` (on the event loop): put the write time
    back and, on the handle's first write, start the delayed move."""
    if op.frozen_write_ns is not None:
        _put(op, op.frozen_write_ns)
        return
    state = op.write_time
    first = state.shown_ns is None
    if first and before_ns is None:  # unfrozen by a request that ran meanwhile
        before_ns = os.fstat(op.fd).st_mtime_ns
    _put(op, state.wrote(time.monotonic_ns(), before_ns or 0))
    ws = workerstate.current()
    if first and ws is not None and state.due_ns is not None:
        ws.write_times.start_soon(_move_when_due, op, state.due_ns)


async def _move_when_due(op: "Open", due_ns: int) -> None:
    await trio.sleep(max(0, due_ns - time.monotonic_ns()) / 1e9)
    # The handle may have closed (its descriptor number reused) or made the
    # move itself meanwhile; nothing awaits between this check and the move.
    if op.tree.opens.get(op.file_id) is op and op.write_time.due_ns == due_ns:
        move_now(op)


def move_now(op: "Open") -> None:
    """Make a pending move now (the delay ran out, FLUSH, FileBasicInformation)."""
    if op.frozen_write_ns is not None or not op.write_time.pending:
        return
    now = time.time_ns()
    _put(op, now)
    op.write_time.moved(now)


def size_changed(op: "Open") -> None:
    """After a size change through ``op``, which moved the mtime itself: a
    kept write time is put back, a pending move counts as made."""
    if op.frozen_write_ns is not None:
        _put(op, op.frozen_write_ns)
    elif op.write_time.shown_ns is not None:
        op.write_time.moved(os.fstat(op.fd).st_mtime_ns)


def closing(op: "Open") -> None:
    """Before ``op`` lets go: a write since the last move sets the write time
    to the time of the close."""
    move_now(op)
