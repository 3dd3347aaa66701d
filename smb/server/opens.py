"""Tree connects and opens as one session of one worker holds them: finding
the open a request names, new FileIds, and letting opens go.

FileIds are 16 random bytes: a client cannot guess another session's
handle, and a FileId never repeats after a close.
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
from typing import TYPE_CHECKING

import trio

from smb import nowait, vfs
from smb.durable import new_persistent_id, refusal_while_disconnected
from smb.server import create_replay, replay, writetime
from smb.server.durable_life import disconnected_record, keep_channel, released
from smb.server.errors import CommandError as CommandError  # handlers import it from here
from smb.server.handler import CommandContext, Request, SessionInfo
# The open and tree-connect records themselves; handlers import them from here.
from smb.server.handles import DirectoryScan as DirectoryScan, Open as Open
from smb.server.handles import TreeConnect as TreeConnect
from smb.wire.header import Status

if TYPE_CHECKING:
    from smb.durable import DurableRecord

log = logging.getLogger(__name__)

# Bounds a single session cannot exceed, whatever it sends.
MAX_OPENS_PER_SESSION = 16384
RELATED_FILE_ID = b"\xff" * 16


# Blocks a deleted file may hold for its last close to free them on the event loop.
INLINE_FREE_BYTES = 1 << 20

def new_file_id(session: SessionInfo, persistent: int | None = None) -> bytes:
    """A random FileId; its Persistent half is a durable-capable id (smb.durable)."""
    while True:
        pid = new_persistent_id() if persistent is None else persistent
        fid = pid.to_bytes(8, "little") + secrets.token_bytes(8)
        if fid != RELATED_FILE_ID and all(fid not in t.opens for t in session.trees.values()):
            return fid


def open_count(session: SessionInfo) -> int:
    return sum(len(t.opens) for t in session.trees.values())


def tree_of(ctx: CommandContext, req: Request) -> TreeConnect:
    session = ctx.session
    tree = session.trees.get(req.header.tree_id) if session is not None else None
    if tree is None:
        raise CommandError(Status.NETWORK_NAME_DELETED)
    return tree


def open_of(ctx: CommandContext, req: Request, file_id: bytes) -> Open:
    """The open a request names, honouring the related-compound FileId."""
    tree = tree_of(ctx, req)
    if file_id == RELATED_FILE_ID:
        if req.related_file_id is None:
            raise CommandError(Status.FILE_CLOSED)
        file_id = req.related_file_id
    op = tree.opens.get(bytes(file_id))
    if op is None:
        raise CommandError(Status.FILE_CLOSED)
    op.replay_eligible = False
    if req.admission is None:
        try:
            req.admission = replay.admit(op.channel, ctx.connection.dialect, req.header.command,
                                         req.header.flags, req.header.status)
        except replay.StaleChannel:
            raise CommandError(Status.FILE_NOT_AVAILABLE) from None
        if req.admission is not None and req.admission.advanced \
                and op.durable is not None and op.durable.persistent:
            req.admission.keep = functools.partial(keep_channel, op)
    return op


async def release_open(op: Open, *, keep_durable: bool = False) -> int:
    """Close an open: node-table rows, delete-on-close, then the descriptor.
    Returns the status of its delete-on-close (SUCCESS when none failed), which
    a CLOSE answers with, as smbd does (DIRECTORY_NOT_EMPTY for a directory
    filled while it was open).

    keep_durable: the open ends with its tree connect, session or connection
    rather than by CLOSE; a durable open then stays, disconnected, for its
    client's reconnect (its file is reopened from the record), as Samba does.
    """
    tree = op.tree
    # A handle that wrote since its write time last moved moves it now, however
    # it ends (CLOSE, or its connection, session or tree going away): the data
    # changed, and its pending move would not happen any more.
    writetime.closing(op)
    tree.opens.pop(op.file_id, None)
    create_replay.forget(op)
    record = None
    status: int = Status.SUCCESS
    with trio.CancelScope(shield=True):
        try:
            record = await disconnected_record(op, keep_durable=keep_durable)
        except BaseException:
            os.close(op.fd)
            await released(op, record)
            raise
        try:
            status = await _release_rows(op, record)
        finally:
            await released(op, record)
    return status


async def _release_rows(op: Open, record: "DurableRecord | None") -> int:
    """The node-table rows, delete-on-close and the descriptor, in that order,
    each on the event loop unless it would wait (smb.nowait).  An open staying
    disconnected (``record``) keeps its rows for other workers to see; its
    delete-on-close waits for its end."""
    must_delete = False
    try:
        if record is not None:
            await nowait.run(op.tree.node.keep_disconnected, op.key, op.dev, op.ino,
                             record.persistent_id, refusal_while_disconnected(record))
        else:
            must_delete = await nowait.run(op.tree.node.close_file, op.key, op.dev, op.ino)
    finally:
        if not must_delete:
            os.close(op.fd)
    if not must_delete:
        return Status.SUCCESS
    # The last close of an unlinked file frees its blocks, which takes as long
    # as the file is large: a large one is let go in a thread, a small one
    # (most deletes) here, where it costs less than the hop.
    try:
        small = os.fstat(op.fd).st_blocks * 512 <= INLINE_FREE_BYTES
    except OSError:
        small = False
    run = nowait.run if small else trio.to_thread.run_sync
    try:
        await run(op.tree.root.unlink, op.parts, op.ino, op.is_dir)
    except vfs.VfsError as exc:
        # The handle is closed all the same; a file gone meanwhile is no
        # failure (vfs.unlink checks the inode).
        log.warning("delete-on-close of %s in %s failed, the file stays: %s",
                    op.display_name, op.tree.root.root, exc)
        return exc.status
    finally:
        await run(os.close, op.fd)
    return Status.SUCCESS


async def release_tree(tree: TreeConnect, *, keep_durable: bool = False) -> None:
    """keep_durable: the session ended (LOGOFF, connection lost) rather than the
    tree connect (TREE_DISCONNECT closes durable opens too, as Samba does)."""
    for op in list(tree.opens.values()):
        await release_open(op, keep_durable=keep_durable)
    tree.root.close()


async def session_closed(session: SessionInfo) -> None:
    """Release every tree connect and open of a session that ended.

    The connection layer calls this on LOGOFF, on session expiry and when the
    connection drops, so descriptors and node-table rows never outlive it.
    """
    trees = list(session.trees.values())
    session.trees.clear()
    with trio.CancelScope(shield=True):
        for tree in trees:
            if isinstance(tree, TreeConnect):  # an IPC$ tree (smb.server.ipc) holds no descriptors
                await release_tree(tree, keep_durable=True)
