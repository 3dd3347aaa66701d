"""Breaks one worker must have another worker's clients make.

A worker decides oplocks and leases only for its own opens (breaks.py); the
node table mirrors what every worker's opens cache.  Two conflicts cannot be
seen by the worker that causes them, so they go out as break requests to the
holder's worker (nodelocal.request_breaks, served in workerstate):

- a CREATE that fails with a sharing violation against an open another worker
  serves, when that open caches handles: Windows and Samba break the handle
  cache first (a client keeps handles open only because it may), wait for the
  acknowledgement or the break timeout, and check the share modes once more;
  a disconnected durable open there cannot acknowledge: its worker purges it
  when the open conflicts with it, as it would for an open of its own (a
  persistent or resilient one keeps the file: the open is refused);
- a WRITE (or lock, or size change) makes every other worker's read caches
  stale; the write does not wait for those breaks (they need no ack);
- a rename: other workers' leases may cache handles only while the name
  stays, so they drop H first and the rename waits for that (as within a
  worker, smb2.lease.v2_rename); oplocks are left alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, TypeVar

import trio

from smb import nowait, vfs
from smb.oplocks import (
    BREAK_TIMEOUT_S, CACHING_OPLOCK, LEASE_HANDLE, LEASE_READ, REMOTE_RENAME, REMOTE_WRITE,
)
from smb.server import workerstate
from smb.server.handler import CommandContext
from smb.server.errors import CommandError
from smb.wire.header import Status

if TYPE_CHECKING:
    from smb.server.handles import Open, TreeConnect
    from smb.wire.create import CreateRequest

# The holder's worker sees a request within CROSS_WORKER_POLL; the client's
# acknowledgement (or the break timeout) comes on top.
_HANDLE_WAIT_S = BREAK_TIMEOUT_S + 2

Opened = TypeVar("Opened")


async def open_breaking_handles(ctx: CommandContext, tree: "TreeConnect", c: "CreateRequest",
                                granted: int, open_blocking: Callable[[], Opened]) -> Opened:
    """Run ``open_blocking`` (in a thread); on a sharing violation against handle
    caching in another worker, break that caching and try exactly once more."""
    try:
        return await trio.to_thread.run_sync(open_blocking)
    except CommandError as exc:
        if exc.status != Status.SHARING_VIOLATION or not await _break_handles(
                ctx, tree, c, granted):
            raise
    return await trio.to_thread.run_sync(open_blocking)


def _file_of(tree: "TreeConnect", name: str) -> tuple[int, int] | None:
    parts = vfs.parse_name(name)
    if not parts:
        return None
    try:
        with tree.root.lookup(parts) as where:
            return None if where.st is None else (where.st.st_dev, where.st.st_ino)
    except vfs.VfsError:
        return None


async def _break_handles(ctx: CommandContext, tree: "TreeConnect", c: "CreateRequest",
                         granted: int) -> bool:
    """Whether another worker's handle caching was broken (acknowledged or timed out)."""
    if workerstate.current() is None:
        return False
    found = await trio.to_thread.run_sync(_file_of, tree, c.name)
    if found is None:
        return False
    dev, ino = found
    node = tree.node
    # A disconnected persistent (or resilient) open keeps its file: refused, not purged.
    refusal = await trio.to_thread.run_sync(node.kept_in_way, dev, ino, granted, c.share_access)
    if refusal is not None:
        raise CommandError(refusal)

    def in_the_way() -> tuple[bool, bool]:
        """(another worker's open caches handles, another worker keeps a
        disconnected durable open this one conflicts with)."""
        return (bool(node.others_caching(dev, ino) & LEASE_HANDLE),
                node.disconnected_in_way(dev, ino, granted, c.share_access))

    caching, disconnected = await trio.to_thread.run_sync(in_the_way)
    if not caching and not disconnected:
        return False
    if caching:
        await trio.to_thread.run_sync(node.request_breaks, dev, ino, granted, c.share_access,
                                      c.disposition)
    if disconnected:
        # Its worker decides as for its own opens: a conflict purges it.
        await trio.to_thread.run_sync(node.request_purges, dev, ino, granted, c.share_access,
                                      c.disposition)
    await ctx.go_async()
    with trio.move_on_after(_HANDLE_WAIT_S):
        while any(await trio.to_thread.run_sync(in_the_way)):
            await trio.sleep(workerstate.CROSS_WORKER_POLL)
    return True


async def before_rename(ctx: CommandContext, op: "Open") -> None:
    """Have other workers' leases of the file drop handle caching; wait (interim
    response) for their acknowledgements or the break timeout."""
    if workerstate.current() is None or op.open_id is None:
        return
    node = op.tree.node

    def leases_cache_handles() -> bool:
        return node.others_leases_caching(op.dev, op.ino, LEASE_HANDLE, CACHING_OPLOCK)

    if not await trio.to_thread.run_sync(leases_cache_handles):
        return
    await trio.to_thread.run_sync(node.request_breaks, op.dev, op.ino, 0, 0, REMOTE_RENAME)
    await ctx.go_async()
    with trio.move_on_after(_HANDLE_WAIT_S):
        while await trio.to_thread.run_sync(leases_cache_handles):
            await trio.sleep(workerstate.CROSS_WORKER_POLL)


def contend_write(op: "Open") -> None:
    """A write through ``op``: have other workers break their read caches of the file.

    Checked once per open: from its CREATE on, no other worker's open of the
    file gets caching (files.create), so once broken, nothing comes back.
    """
    ws = workerstate.current()
    if ws is None or op.open_id is None:
        return
    if op.open_id in ws.breaks.remote_writes_done:
        return
    ws.breaks.remote_writes_done.add(op.open_id)
    ws.read_breaks.start_soon(_break_readers, op)


async def _break_readers(op: "Open") -> None:
    node = op.tree.node
    if await nowait.run(node.others_caching, op.dev, op.ino) & LEASE_READ:
        await trio.to_thread.run_sync(node.request_breaks, op.dev, op.ino, 0, 0, REMOTE_WRITE)
