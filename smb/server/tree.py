"""TREE_CONNECT and TREE_DISCONNECT: the share's access rules and its jail root."""

from __future__ import annotations

import logging
import secrets

from typing import TYPE_CHECKING

import trio

from smb import vfs
from smb.server import ipc, workerstate
from smb.server.access import may_connect, share_maximal_access
from smb.server.handler import CommandContext, Reply, Request, SessionInfo
from smb.server.nodelocal import node_table
from smb.server.opens import TreeConnect, release_tree
from smb.wire import tree as wire
from smb.wire.header import Status, error_body

if TYPE_CHECKING:
    from hanode.config import ShareConfig

MAX_TREES_PER_SESSION = 128

log = logging.getLogger(__name__)


def _error(status: int) -> Reply:
    return Reply(status=status, body=error_body())


async def tree_connect(ctx: CommandContext, req: Request) -> Reply:
    session = ctx.session
    if session is None:
        return _error(Status.USER_SESSION_DELETED)
    parsed = wire.parse_tree_connect(req.body, req.message)
    if parsed.share_name.upper() == ipc.SHARE_NAME:
        return _connect_ipc(ctx, session)
    share = ctx.config.share(parsed.share_name)
    if share is None:
        return _error(Status.BAD_NETWORK_NAME)
    if not may_connect(share, session):
        return _error(Status.ACCESS_DENIED)
    if share.encrypt and ctx.connection.dialect < 0x0300:
        return _error(Status.ACCESS_DENIED)  # the client cannot encrypt
    if len(session.trees) >= MAX_TREES_PER_SESSION:
        return _error(Status.INSUFFICIENT_RESOURCES)
    state = workerstate.current()
    problem = await state.share_ids.problem(share) if state is not None else None
    if problem is not None:
        log.warning("share %s not served: %s", share.name, problem)
        return _error(Status.BAD_NETWORK_NAME)
    try:
        root = await trio.to_thread.run_sync(vfs.Share, share.path)
    except vfs.VfsError as exc:
        return _error(exc.status)
    node = await trio.to_thread.run_sync(node_table, ctx.config)
    tree_id = _new_tree_id(session)
    maximal = share_maximal_access(share.read_only)
    encrypt = share.encrypt or session.encrypt_data
    session.trees[tree_id] = TreeConnect(
        tree_id=tree_id, share=share, root=root, read_only=share.read_only,
        encrypt_data=encrypt, maximal_access=maximal, node=node)
    flags = wire.SHAREFLAG_MANUAL_CACHING | (wire.SHAREFLAG_ENCRYPT_DATA if encrypt else 0)
    body = wire.tree_connect_response(wire.SHARE_TYPE_DISK, flags, share_capabilities(
        share, ctx.connection.dialect), maximal)
    return Reply(body=body, tree_id=tree_id)


def share_capabilities(share: "ShareConfig", dialect: int) -> int:
    """A continuously available share says so to 3.x clients only (3.3.5.7): the
    capability is what makes them ask for persistent handles, which 2.x cannot."""
    if share.continuous_availability and dialect >= 0x0300:
        return wire.SHARE_CAP_CONTINUOUS_AVAILABILITY
    return 0


def _new_tree_id(session: SessionInfo) -> int:
    tree_id = secrets.randbelow(0xFFFFFFFE) + 1
    while tree_id in session.trees:
        tree_id = secrets.randbelow(0xFFFFFFFE) + 1
    return tree_id


def _connect_ipc(ctx: CommandContext, session: SessionInfo) -> Reply:
    """IPC$: named pipes to the RPC services (smb.server.ipc)."""
    if len(session.trees) >= MAX_TREES_PER_SESSION:
        return _error(Status.INSUFFICIENT_RESOURCES)
    tree_id = _new_tree_id(session)
    tree = ipc.connect(ctx.config, session, tree_id, session.encrypt_data)
    if not isinstance(tree, ipc.IpcTree):
        return _error(tree)
    session.trees[tree_id] = tree
    flags = wire.SHAREFLAG_NO_CACHING | (wire.SHAREFLAG_ENCRYPT_DATA if tree.encrypt_data else 0)
    body = wire.tree_connect_response(ipc.SHARE_TYPE_PIPE, flags, 0, ipc.MAXIMAL_ACCESS)
    return Reply(body=body, tree_id=tree_id)


async def tree_disconnect(ctx: CommandContext, req: Request) -> Reply:
    wire.parse_tree_disconnect(req.body)
    session = ctx.session
    tree = session.trees.pop(req.header.tree_id, None) if session is not None else None
    if tree is None:
        return _error(Status.NETWORK_NAME_DELETED)
    if isinstance(tree, ipc.IpcTree):
        ipc.disconnect(tree)
    else:
        with trio.CancelScope(shield=True):
            await release_tree(tree)
    return Reply(body=wire.tree_disconnect_response())
