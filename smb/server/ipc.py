"""The IPC$ share: named-pipe opens and the DCE/RPC services behind them.

The tree-connect handler makes an :class:`IpcTree` for IPC$; every command
on that tree comes here (smb.server.commands routes it with :func:`beside`)
instead of to the file handlers.  A pipe open is an :class:`RpcPipe`
(smb.rpc.pipe) plus its service; WRITE feeds it, READ drains it, and
FSCTL_PIPE_TRANSCEIVE does both in one round trip.

Each call's answer is computed from facts gathered for that call (the
config, the session's user, etcd's user list), so a pipe holds nothing but
its own association: after a failover the client opens and binds again and
any worker of any node answers the same.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from hanode.store import StoreUnavailable
from smb.rpc import lsarpc, srvsvc, wkssvc
from smb.rpc.interface import (
    STYPE_DISKTREE, STYPE_IPC, STYPE_SPECIAL, Call, CallFault, Facts, Interface, ShareFacts,
)
from smb.rpc.pdu import Fault
from smb.rpc.pipe import PendingCall, RpcPipe
from smb.server import workerstate
from smb.server.access import may_connect
from smb.server.handler import CommandContext, Handler, Reply, Request, SessionInfo
from smb.server.opens import RELATED_FILE_ID, CommandError
from smb.wire import create as create_wire
from smb.wire import io as io_wire
from smb.wire import ioctl as ioctl_wire
from smb.wire.header import Command, Status, error_body

if TYPE_CHECKING:
    from hanode.config import Config

log = logging.getLogger(__name__)

SHARE_NAME = "IPC$"
SHARE_TYPE_PIPE = 0x02
SERVER_COMMENT = "hanode"
MAXIMAL_ACCESS = 0x001F01FF  # what Samba grants on IPC$
# A pipe may buffer a few MiB (smb.rpc.pipe.MAX_REQUEST, MAX_BUFFERED); clients
# use a handful of pipes, so this bounds what one session can make a worker hold.
MAX_PIPES_PER_SESSION = 64
READ_WAIT = 2.0  # seconds a READ on an empty pipe waits for an answer to appear
_INTERFACES: dict[str, Interface] = {
    "srvsvc": srvsvc.INTERFACE,
    "wkssvc": wkssvc.INTERFACE,
    "lsarpc": lsarpc.INTERFACE,
    "lsass": lsarpc.INTERFACE,  # another name of the same pipe
}
_PIPE_TIMES = create_wire.FileTimes(allocation_size=4096, attributes=0x80)  # FILE_ATTRIBUTE_NORMAL
# Commands a pipe open cannot do (after its FileId was checked).
_NOT_ON_PIPES = (Command.LOCK, Command.QUERY_DIRECTORY, Command.CHANGE_NOTIFY,
                 Command.QUERY_INFO, Command.SET_INFO, Command.OPLOCK_BREAK)
# Where each command's FileId sits in its body.
_FILE_ID_AT = {Command.CLOSE: 8, Command.FLUSH: 8, Command.READ: 16, Command.WRITE: 16,
               Command.LOCK: 8, Command.QUERY_DIRECTORY: 8, Command.CHANGE_NOTIFY: 8,
               Command.QUERY_INFO: 24, Command.SET_INFO: 16, Command.OPLOCK_BREAK: 8}


@dataclass
class PipeOpen:
    file_id: bytes
    interface: Interface
    rpc: RpcPipe
    handles: set[bytes] = field(default_factory=set)
    closed: bool = False
    # Set (and replaced) whenever output may have appeared or the open closed:
    # a READ that found the pipe empty waits on it, as a blocking pipe read does.
    changed: trio.Event = field(default_factory=trio.Event)

    def wake(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    def close(self) -> None:
        self.closed = True
        self.wake()


@dataclass
class IpcTree:
    """What the tree-connect handler keeps in ``SessionInfo.trees`` for IPC$."""

    tree_id: int
    encrypt_data: bool
    pipes: dict[bytes, PipeOpen] = field(default_factory=dict)
    # File opens: never any on IPC$.  Present because session-wide walks over
    # every tree's file opens (FileId uniqueness, open counts) include this one.
    opens: dict[bytes, object] = field(default_factory=dict)


def disconnect(tree: IpcTree) -> None:
    """TREE_DISCONNECT of IPC$: its pipes close, and READs waiting on them end."""
    for pipe in tree.pipes.values():
        pipe.close()
    tree.pipes.clear()


def connect(config: "Config", session: SessionInfo, tree_id: int, encrypt: bool) -> IpcTree | int:
    """The IPC$ tree for a session, or the status that refuses it."""
    if session.is_guest and not config.smb.allow_guest:
        return Status.ACCESS_DENIED
    return IpcTree(tree_id, encrypt)


def _windows_path(path: str) -> str:
    """A share's path as Windows tools show it (and Samba reports it)."""
    return "C:" + path.replace("/", "\\")


def facts(config: "Config", session: SessionInfo, users: tuple[str, ...] = ()) -> Facts:
    shares = [ShareFacts(s.name, STYPE_DISKTREE, s.comment, _windows_path(s.path), s.read_only)
              for s in config.shares if may_connect(s, session)]
    shares.append(ShareFacts(SHARE_NAME, STYPE_IPC | STYPE_SPECIAL,
                             f"IPC Service ({SERVER_COMMENT})", "C:\\", True))
    return Facts(config.cluster.server_name, config.cluster.workgroup.upper(), SERVER_COMMENT,
                 tuple(shares), "" if session.is_guest else session.user, users, time.time())


async def _user_names() -> tuple[str, ...]:
    """hanode's users as etcd lists them now (none outside a worker or without etcd)."""
    ws = workerstate.current()
    if ws is None:
        return ()
    prefix = ws.store.key("users") + "/"
    try:
        entries = await trio.to_thread.run_sync(ws.store.get_prefix, prefix)
    except StoreUnavailable as exc:
        log.warning("user list for an RPC lookup failed: %s", exc)
        return ()
    return tuple(e.key[len(prefix):] for e in entries)


# -- dispatch ------------------------------------------------------------------------


def _error(status: int) -> Reply:
    return Reply(status=status, body=error_body())


def beside(command: Command, handler: Handler) -> Handler:
    """``handler`` for file trees; commands on an IPC$ tree go to the pipes."""
    if command in (Command.TREE_CONNECT, Command.TREE_DISCONNECT):
        return handler

    async def run(ctx: CommandContext, req: Request) -> Reply:
        session = ctx.session
        tree = session.trees.get(req.header.tree_id) if session is not None else None
        if not isinstance(tree, IpcTree):
            return await handler(ctx, req)
        if command == Command.IOCTL:
            r = ioctl_wire.parse_ioctl(req.body, req.message)
            if r.ctl_code == ioctl_wire.FSCTL_LMR_REQUEST_RESILIENCY:
                # A pipe is never kept for a reconnect: refused as a directory's
                # request is (smb.server.ioctl; the spec names no status).
                _pipe(tree, req, r.file_id)
                return _error(Status.INVALID_PARAMETER)
            if r.ctl_code != ioctl_wire.FSCTL_PIPE_TRANSCEIVE:
                return await handler(ctx, req)  # VALIDATE_NEGOTIATE_INFO and the like
            return await _transceive(ctx, tree, _pipe(tree, req, r.file_id), r)
        pipe_command = _PIPE_COMMANDS.get(command)
        if pipe_command is None:  # a command added to the file side later
            return _error(Status.INVALID_DEVICE_REQUEST)
        return await pipe_command(ctx, tree, req)
    return run


def _pipe(tree: IpcTree, req: Request, file_id: bytes) -> PipeOpen:
    if file_id == RELATED_FILE_ID:
        if req.related_file_id is None:
            raise CommandError(Status.FILE_CLOSED)
        file_id = req.related_file_id
    pipe = tree.pipes.get(bytes(file_id))
    if pipe is None:
        raise CommandError(Status.FILE_CLOSED)
    return pipe


def _pipe_at(tree: IpcTree, req: Request) -> PipeOpen:
    offset = _FILE_ID_AT[req.header.command]
    if len(req.body) < offset + 16:
        raise CommandError(Status.INVALID_PARAMETER)
    return _pipe(tree, req, bytes(req.body[offset:offset + 16]))


async def _create(ctx: CommandContext, tree: IpcTree, req: Request) -> Reply:
    c = create_wire.parse_create(req.body, req.message)
    interface = _INTERFACES.get(c.name.lstrip("\\").lower())
    if interface is None:
        return _error(Status.OBJECT_NAME_NOT_FOUND)
    session = ctx.session
    if sum(len(t.pipes) for t in session.trees.values()
           if isinstance(t, IpcTree)) >= MAX_PIPES_PER_SESSION:
        return _error(Status.INSUFFICIENT_RESOURCES)
    file_id = secrets.token_bytes(16)
    while file_id == RELATED_FILE_ID or file_id in tree.pipes:
        file_id = secrets.token_bytes(16)
    tree.pipes[file_id] = PipeOpen(file_id, interface,
                                   RpcPipe(interface.pipe, interface.syntax))
    body = create_wire.create_response(create_wire.CreateAction.OPENED, _PIPE_TIMES, file_id)
    return Reply(body=body, file_id=file_id)


async def _close(ctx: CommandContext, tree: IpcTree, req: Request) -> Reply:
    flags, _ = create_wire.parse_close(req.body)
    pipe = _pipe_at(tree, req)
    del tree.pipes[pipe.file_id]
    pipe.close()
    times = _PIPE_TIMES if flags & create_wire.CLOSE_FLAG_POSTQUERY_ATTRIB else None
    return Reply(body=create_wire.close_response(flags, times))


async def _flush(ctx: CommandContext, tree: IpcTree, req: Request) -> Reply:
    io_wire.parse_flush(req.body)
    _pipe_at(tree, req)
    return Reply(body=io_wire.flush_response())


async def _write(ctx: CommandContext, tree: IpcTree, req: Request) -> Reply:
    w = io_wire.parse_write(req.body, req.message)
    pipe = _pipe(tree, req, w.file_id)
    if pipe.rpc.broken:
        return _error(Status.PIPE_DISCONNECTED)
    await _feed(ctx, pipe, w.data)
    return Reply(body=io_wire.write_response(len(w.data)))


async def _read(ctx: CommandContext, tree: IpcTree, req: Request) -> Reply:
    r = io_wire.parse_read(req.body)
    pipe = _pipe(tree, req, r.file_id)
    if not pipe.rpc.pending() and not pipe.rpc.broken:
        # Clients with several calls outstanding (Samba's async requests) post
        # the READ before the WRITE that makes its answer: it waits, async, for
        # at most READ_WAIT.  The bound is there because the connection holds
        # every command but READ and WRITE back until the READs and WRITEs
        # before it are done, so a CLOSE behind a READ that waited for good
        # would never run.
        await ctx.go_async()
        with trio.move_on_after(READ_WAIT):
            while not pipe.rpc.pending() and not pipe.rpc.broken and not pipe.closed:
                await pipe.changed.wait()
    if pipe.closed:
        return _error(Status.PIPE_DISCONNECTED)
    data, more = pipe.rpc.read(r.length)
    if not data:
        return _error(Status.PIPE_DISCONNECTED if pipe.rpc.broken else Status.PIPE_EMPTY)
    return Reply(status=Status.BUFFER_OVERFLOW if more else Status.SUCCESS,
                 body=io_wire.read_response(len(data)), payload=data)


async def _transceive(ctx: CommandContext, tree: IpcTree, pipe: PipeOpen,
                      r: ioctl_wire.IoctlRequest) -> Reply:
    if pipe.rpc.broken:
        return _error(Status.PIPE_DISCONNECTED)
    await _feed(ctx, pipe, r.input)
    data, more = pipe.rpc.read(r.max_output)
    if not data and pipe.rpc.broken:
        return _error(Status.PIPE_DISCONNECTED)
    return Reply(status=Status.BUFFER_OVERFLOW if more else Status.SUCCESS,
                 body=ioctl_wire.ioctl_response(r.ctl_code, r.file_id, data))


async def _not_on_pipes(ctx: CommandContext, tree: IpcTree, req: Request) -> Reply:
    _pipe_at(tree, req)
    return _error(Status.INVALID_DEVICE_REQUEST)


async def _feed(ctx: CommandContext, pipe: PipeOpen, data: memoryview) -> None:
    """Give the pipe what the client wrote and answer every call it completes."""
    try:
        for call in pipe.rpc.receive(data):
            await _answer(ctx, pipe, call)
    finally:
        pipe.wake()


async def _answer(ctx: CommandContext, pipe: PipeOpen, pending: PendingCall) -> None:
    users = await _user_names() if pending.opnum in pipe.interface.needs_users else ()
    call = Call(pending.opnum, pending.stub, pending.ndr64, facts(ctx.config, ctx.session, users),
                pipe.handles)
    try:
        pipe.rpc.answer(pending, pipe.interface.invoke(call))
    except CallFault as fault:
        pipe.rpc.answer(pending, None, fault.status)
    except Exception as exc:  # noqa: BLE001 - a service bug must cost one call, not the worker
        log.error("%s opnum %d failed: %r", pipe.interface.pipe, pending.opnum, exc)
        pipe.rpc.answer(pending, None, Fault.UNSPEC_REJECT)


_PIPE_COMMANDS = {
    Command.CREATE: _create,
    Command.CLOSE: _close,
    Command.FLUSH: _flush,
    Command.WRITE: _write,
    Command.READ: _read,
    **{command: _not_on_pipes for command in _NOT_ON_PIPES},
}
