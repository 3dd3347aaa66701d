"""Tree connects and opens as one session of one worker holds them.

A tree connect owns the share's directory fd (the jail's root) and the opens
made through it; an open owns its file descriptor and its rows in the node's
shared table.  FileIds are 16 random bytes: a client cannot guess another
session's handle, and a FileId never repeats after a close.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from smb import nowait, vfs
from smb.durable import new_persistent_id
from smb.server.handler import CommandContext, Request, SessionInfo
from smb.server.nodelocal import NodeLocal
from smb.server import replay
from smb.wire.header import Status

if TYPE_CHECKING:
    from hanode.config import Config, ShareConfig
    from smb.durable import DurableRecord

# Bounds a single session cannot exceed, whatever it sends.
MAX_OPENS_PER_SESSION = 16384
RELATED_FILE_ID = b"\xff" * 16


# Blocks a deleted file may hold for its last close to free them on the event loop.
INLINE_FREE_BYTES = 1 << 20

@dataclass
class DirectoryScan:
    """Where a QUERY_DIRECTORY enumeration stands on one open."""

    entries: list[tuple[str, os.stat_result]]
    next_index: int = 0


@dataclass
class Open:
    file_id: bytes
    tree: "TreeConnect"
    fd: int
    parts: tuple[str, ...]
    is_dir: bool
    access: int
    dev: int
    ino: int
    position: int = 0
    mode: int = 0
    scan: DirectoryScan | None = None
    # Oplock/lease bookkeeping (smb.server.durable_opens): the open's id in
    # the worker's NodeOplocks, and its durable record once granted.
    open_id: int | None = None
    durable: "DurableRecord | None" = None
    create_options: int = 0
    share_access: int = 0
    initial_allocation: int = 0  # AlSi at create; reported while larger than the file
    create_action: int = 1  # what CREATE answered (OPENED unless it made the file)
    # (ClientGuid, CreateGuid) of a DH2Q CREATE, for its replays (smb.server.create_replay).
    replay_key: tuple[bytes, bytes] | None = None
    # Open.IsReplayEligible: a replayed CREATE may be answered with this open
    # only until the open served any other request.
    replay_eligible: bool = True
    # The write time this handle keeps (ns): set by the client explicitly or
    # frozen with -1 (MS-FSA UserSetModificationTime); -2 lets it move again.
    frozen_write_ns: int | None = None
    # What CHANGE_NOTIFY last saw under this directory (smb.server.notify.Snapshot).
    notify_baseline: dict | None = None
    # Replay detection (smb.server.replay): LOCK buckets and the channel sequence.
    lock_sequences: replay.LockSequences = field(default_factory=replay.LockSequences)
    channel: replay.ChannelSequence = field(default_factory=replay.ChannelSequence)

    @property
    def key(self) -> str:
        return self.file_id.hex()

    @property
    def name(self) -> str:
        return self.parts[-1] if self.parts else ""

    @property
    def node_path(self) -> str:
        """The path the node table knows this open by."""
        return os.path.join(self.tree.root.root, *self.parts)

    @property
    def display_name(self) -> str:
        return "\\" + "\\".join(self.parts)


@dataclass
class TreeConnect:
    """What the tree-connect handler keeps in ``SessionInfo.trees``.

    ``encrypt_data`` tells the connection layer that every message on this
    tree must travel encrypted (the share's ``encrypt`` key).
    """

    tree_id: int
    share: "ShareConfig"
    root: vfs.Share
    read_only: bool
    encrypt_data: bool
    maximal_access: int
    node: NodeLocal
    opens: dict[bytes, Open] = field(default_factory=dict)


_node_tables: dict[str, NodeLocal] = {}


def node_table(config: "Config") -> NodeLocal:
    """This process's connection to the node's shared table, made on first use."""
    path = str(Path(config.node.state_dir) / f"smb-{config.cluster.name}.sqlite")
    table = _node_tables.get(path)
    if table is None:
        table = _node_tables[path] = NodeLocal(path)
    return table


def new_file_id(session: SessionInfo, persistent: int | None = None) -> bytes:
    """A random FileId; its Persistent half is a durable-capable id (smb.durable)."""
    while True:
        pid = new_persistent_id() if persistent is None else persistent
        fid = pid.to_bytes(8, "little") + secrets.token_bytes(8)
        if fid != RELATED_FILE_ID and all(fid not in t.opens for t in session.trees.values()):
            return fid


def open_count(session: SessionInfo) -> int:
    return sum(len(t.opens) for t in session.trees.values())


class CommandError(Exception):
    """Ends a command with an error status (raised inside handlers only)."""

    def __init__(self, status: int):
        super().__init__(hex(status))
        self.status = status


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
    return op


async def release_open(op: Open, *, keep_durable: bool = False) -> None:
    """Close an open: node-table rows, delete-on-close, then the descriptor.

    keep_durable: the open ends with its tree connect, session or connection
    rather than by CLOSE; a durable open then stays, disconnected, for its
    client's reconnect (its file is reopened from the record), as Samba does.
    """
    from smb.server import create_replay, durable_opens
    tree = op.tree
    tree.opens.pop(op.file_id, None)
    create_replay.forget(op)
    record = None
    with trio.CancelScope(shield=True):
        try:
            record = await durable_opens.disconnected_record(op, keep_durable=keep_durable)
        except BaseException:
            os.close(op.fd)
            await durable_opens.released(op, record)
            raise
        try:
            await _release_rows(op, record)
        finally:
            await durable_opens.released(op, record)


async def _release_rows(op: Open, record: "DurableRecord | None") -> None:
    """The node-table rows, delete-on-close and the descriptor, in that order,
    each on the event loop unless it would wait (smb.nowait).  An open staying
    disconnected (``record``) keeps its rows for other workers to see; its
    delete-on-close waits for its end."""
    must_delete = False
    try:
        if record is not None:
            await nowait.run(op.tree.node.keep_disconnected, op.key, op.dev, op.ino,
                             record.persistent_id)
        else:
            must_delete = await nowait.run(op.tree.node.close_file, op.key, op.dev, op.ino)
    finally:
        if not must_delete:
            os.close(op.fd)
    if not must_delete:
        return
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
    except vfs.VfsError:
        pass  # the file went away or the directory filled up meanwhile
    finally:
        await run(os.close, op.fd)


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
            await release_tree(tree, keep_durable=True)
