"""CREATE, CLOSE, FLUSH, READ and WRITE."""

from __future__ import annotations

import dataclasses
import functools
import os
import stat as stat_mod
import struct
from typing import Callable

import trio

from smb import nowait, vfs
from smb.server import access as acc
from smb.server import create_replay, crossbreaks, security, stable, writetime
from smb.server import durable_opens as dur
from smb.server.handler import CommandContext, Reply, Request
from smb.server.opens import (
    INLINE_FREE_BYTES, MAX_OPENS_PER_SESSION, CommandError, Open, TreeConnect, new_file_id, open_count, open_of,
    release_open, tree_of,
)
from smb.wire import create as wire
from smb.wire import ea as ea_wire
from smb.wire import io as io_wire
from smb.wire import security as sec_wire
from smb.wire.create import CreateOptions, Disposition
from smb.wire.create_contexts import DurabilityIntent
from smb.wire.header import Status

_VALID_SHARE_ACCESS = 0x7
_TRUNCATING = (Disposition.SUPERSEDE, Disposition.OVERWRITE, Disposition.OVERWRITE_IF)
_DATA_WRITE = acc.FILE_WRITE_DATA | acc.FILE_APPEND_DATA
_DATA_READ = acc.FILE_READ_DATA | acc.FILE_EXECUTE
_MAX_FILE_OFFSET = (1 << 63) - 1
# WRITEs up to this size run on the event loop (smb.nowait) when no lock check waits.
INLINE_WRITE_BYTES = 64 * 1024
_QUOTA_FAKE_FILE = "$extend\\$quota:$q:$index_allocation"
# What Windows reports for it: a hidden system directory without times.
_QUOTA_FILE_TIMES = wire.FileTimes(attributes=vfs.FILE_ATTRIBUTE_HIDDEN
                                   | vfs.FILE_ATTRIBUTE_SYSTEM | vfs.FILE_ATTRIBUTE_DIRECTORY
                                   | vfs.FILE_ATTRIBUTE_ARCHIVE)


def file_times(fd: int, name: str = "", st: os.stat_result | None = None) -> wire.FileTimes:
    """What CREATE and CLOSE report.

    Called on the event loop: fstat and fgetxattr on an open descriptor resolve
    no path and cost microseconds, far less than a hop to a thread and back.
    """
    st = st or os.fstat(fd)
    attrs, created = vfs.dos_info(fd, st, name=name)
    is_dir = stat_mod.S_ISDIR(st.st_mode)
    return wire.FileTimes(
        creation=created, last_access=vfs.filetime(st.st_atime_ns),
        last_write=vfs.filetime(st.st_mtime_ns), change=vfs.filetime(st.st_ctime_ns),
        allocation_size=0 if is_dir else st.st_blocks * 512,
        end_of_file=0 if is_dir else st.st_size, attributes=attrs)


def write_time_kept(kept: int | None, requested: int, current_ns: int) -> int | None:
    """The write time a handle keeps after a FileBasicInformation with
    LastWriteTime ``requested`` (MS-FSA 2.1.5.15.2): a time the client sets
    stays through later writes on that handle, as does the current one
    after -1; -2 lets writes move it again; 0 changes nothing."""
    if requested == -2:
        return None
    if requested == 0:
        return kept
    return current_ns  # -1, or the time just set


def _initial_allocation(c: wire.CreateRequest) -> int:
    """AlSi (2.2.13.2.6): the allocation size asked for at create, in whole 4 KiB blocks.

    Nothing is preallocated; the size is reported (the larger of it and what
    the file really occupies) for the life of the open, as Samba does.
    """
    data = c.contexts.get("AlSi", b"")
    if len(data) != 8:
        return 0
    return -(-int.from_bytes(data, "little") // 4096) * 4096


def _with_allocation(times: wire.FileTimes, op: Open) -> wire.FileTimes:
    if times.allocation_size >= op.initial_allocation or op.is_dir:
        return times
    return dataclasses.replace(times, allocation_size=op.initial_allocation)


def _is_quota_file(c: wire.CreateRequest) -> bool:
    return c.name.casefold() == _QUOTA_FAKE_FILE


@dataclasses.dataclass(frozen=True)
class Asker:
    """Who opens, for the security descriptor checks: the session's token and
    the descriptor its SMB2_CREATE_SD_BUFFER ("SecD") gives a new file."""

    token: security.Token
    given: sec_wire.SecurityDescriptor | None

    @classmethod
    def of(cls, ctx: CommandContext, c: wire.CreateRequest) -> "Asker":
        assert ctx.session is not None
        given = sec_wire.decode(c.contexts["SecD"]) if "SecD" in c.contexts else None
        return cls(security.token_of(ctx.config.cluster.server_name, ctx.session), given)


def _check_create(c: wire.CreateRequest, tree: TreeConnect) -> int:
    """Validate the request; returns the access mask to grant."""
    if c.impersonation_level > wire.IMPERSONATION_DELEGATE:
        raise CommandError(Status.BAD_IMPERSONATION_LEVEL)
    if c.disposition > Disposition.OVERWRITE_IF or c.share_access & ~_VALID_SHARE_ACCESS:
        raise CommandError(Status.INVALID_PARAMETER)
    if (c.options & CreateOptions.DIRECTORY_FILE
            and c.options & CreateOptions.NON_DIRECTORY_FILE):
        raise CommandError(Status.INVALID_PARAMETER)
    if c.options & CreateOptions.OPEN_BY_FILE_ID:
        raise CommandError(Status.NOT_SUPPORTED)
    if not acc.is_valid(c.desired_access):
        raise CommandError(Status.ACCESS_DENIED)
    if c.desired_access & acc.ACCESS_SYSTEM_SECURITY:
        raise CommandError(Status.PRIVILEGE_NOT_HELD)
    granted = acc.map_generic(c.desired_access, tree.maximal_access)
    if granted & ~tree.maximal_access:
        raise CommandError(Status.ACCESS_DENIED)
    if c.options & CreateOptions.DELETE_ON_CLOSE and not granted & acc.DELETE:
        # Asked without DELETE is a malformed request (Windows, as smbtorture's
        # deltest9 checks); DELETE asked but beyond the share's grant is denied.
        asked = c.desired_access & (acc.DELETE | acc.GENERIC_ALL | acc.MAXIMUM_ALLOWED)
        raise CommandError(Status.ACCESS_DENIED if asked else Status.INVALID_PARAMETER)
    return granted


def _open_blocking(tree: TreeConnect, c: wire.CreateRequest, granted: int,
                   file_id: bytes, asker: Asker | None,
                   smb3: bool = False) -> tuple[Open, int, bool]:
    """Look up, open or create, then register the share mode.

    (open, action, others): ``others`` says whether another worker had the
    file (not a directory) open just now.  Made as
    a :mod:`smb.nowait` attempt, it opens only existing files found by their
    exact name and gives up (WouldBlock) before it changed anything otherwise.
    """
    # NTFS's quota index: Windows tools open it to manage quotas; like Samba,
    # the share's root directory stands in for it.
    parts = () if _is_quota_file(c) else vfs.parse_name(c.name)
    eas = ea_wire.parse_full_ea_list(c.contexts["ExtA"]) if "ExtA" in c.contexts else []
    truncate = False
    if not parts:
        if c.disposition not in (Disposition.OPEN, Disposition.OPEN_IF):
            raise CommandError(Status.ACCESS_DENIED if c.disposition != Disposition.CREATE
                               else Status.OBJECT_NAME_COLLISION)
        if c.options & CreateOptions.NON_DIRECTORY_FILE:
            raise CommandError(Status.FILE_IS_A_DIRECTORY)
        fd, action, is_dir = tree.root.open_root(), wire.CreateAction.OPENED, True
        if asker is not None:
            granted = _descriptor_allows(tree, None, fd, c, asker, granted)
    else:
        parts, fd, action, is_dir, truncate, granted = _lookup_and_open(tree, parts, c,
                                                                        granted, asker)
    delete_on_close = bool(c.options & CreateOptions.DELETE_ON_CLOSE)
    # Steps after the registration that may still fail, and delete-on-close
    # that must then be refused, keep their order; otherwise delete-on-close
    # is recorded with the open, in its transaction.
    later = truncate or (action == wire.CreateAction.CREATED and bool(eas))
    try:
        st = os.fstat(fd)
        if delete_on_close and is_dir and not vfs.is_empty_directory(fd):
            # Windows (and smbd) open a directory that is not empty with
            # FILE_DELETE_ON_CLOSE but do not delete it: the flag is dropped.
            delete_on_close = False
        with_open = delete_on_close and not later and (
            is_dir or not vfs.dos_info(fd, st)[0] & vfs.FILE_ATTRIBUTE_READONLY)
        if delete_on_close and not with_open and nowait.active():
            raise nowait.WouldBlock()
        op = Open(file_id=file_id, tree=tree, fd=fd, parts=parts, is_dir=is_dir,
                  access=granted, dev=st.st_dev, ino=st.st_ino)
        registered = tree.node.register_open(op.key, op.dev, op.ino, granted, c.share_access,
                                             op.node_path, with_open, smb3)
        if registered.status != Status.SUCCESS:
            raise CommandError(registered.status)
    except BaseException:
        os.close(fd)
        raise
    try:
        if truncate:
            vfs.truncate(fd, 0)
            vfs.set_dos_info(fd, st, attrs=c.file_attributes | vfs.FILE_ATTRIBUTE_ARCHIVE)
        if truncate or (action == wire.CreateAction.CREATED and eas):
            vfs.set_eas(fd, ea_wire.merge([], eas))
        if delete_on_close and not with_open:
            if not is_dir and vfs.dos_info(fd, st)[0] & vfs.FILE_ATTRIBUTE_READONLY:
                raise CommandError(Status.CANNOT_DELETE)
            tree.node.set_delete_on_close(op.key, True)
    except BaseException:
        try:
            # Registered already: the row must go even if that means waiting
            # (on the event loop; this is the failure path of a small file).
            with nowait.suspended():
                tree.node.close_file(op.key, op.dev, op.ino)
        finally:
            os.close(fd)
        raise
    return op, action, not is_dir and registered.other_owners


def _lookup_and_open(tree: TreeConnect, parts: tuple[str, ...], c: wire.CreateRequest,
                     granted: int, asker: Asker | None
                     ) -> tuple[tuple[str, ...], int, int, bool, bool, int]:
    """(real parts, fd, action, is_dir, must_truncate, granted access).

    Another worker may create the name between our lookup and our create;
    for the dispositions that also open, the second look then opens what it
    made instead of failing with a collision.
    """
    with tree.root.lookup(parts) as where:
        try:
            return (where.parts, *_open_or_create(tree, where, c, granted, asker))
        except vfs.VfsError as exc:
            raced = (where.st is None and exc.status == Status.OBJECT_NAME_COLLISION
                     and c.disposition != Disposition.CREATE)
            if not raced:
                raise
    with tree.root.lookup(parts) as where:  # it exists now: open what the other made
        return (where.parts, *_open_or_create(tree, where, c, granted, asker))


def _open_or_create(tree: TreeConnect, where: vfs.Lookup, c: wire.CreateRequest,
                    granted: int, asker: Asker | None) -> tuple[int, int, bool, bool, int]:
    """(fd, action, is_dir, must_truncate, granted access) for one looked-up name.

    asker None: a durable reconnect takes back an open that was already
    allowed, so neither a read-only attribute nor a descriptor set since
    refuses it.
    """
    reopen = asker is None
    want_write = bool(granted & _DATA_WRITE)
    if where.st is not None:
        is_dir = stat_mod.S_ISDIR(where.st.st_mode)
        if not is_dir and not stat_mod.S_ISREG(where.st.st_mode):
            raise CommandError(Status.ACCESS_DENIED)  # symlinks, devices, FIFOs
        if c.disposition == Disposition.CREATE:
            raise CommandError(Status.OBJECT_NAME_COLLISION)
        if is_dir and c.options & CreateOptions.NON_DIRECTORY_FILE:
            raise CommandError(Status.FILE_IS_A_DIRECTORY)
        if not is_dir and c.options & CreateOptions.DIRECTORY_FILE:
            raise CommandError(Status.NOT_A_DIRECTORY)
        truncate = c.disposition in _TRUNCATING
        if truncate and is_dir:
            raise CommandError(Status.INVALID_PARAMETER)
        if truncate and tree.read_only:
            raise CommandError(Status.ACCESS_DENIED)
        if truncate and nowait.active() and where.st.st_blocks * 512 > INLINE_FREE_BYTES:
            raise nowait.WouldBlock()  # freeing a large file's blocks takes a while
        fd = tree.root.open(where, write=want_write or truncate, directory=is_dir)
        if asker is not None:
            granted = _descriptor_allows(tree, where.parent_fd, fd, c, asker, granted)
        if not is_dir and not reopen and (want_write or truncate) and (
                vfs.dos_info(fd, where.st)[0] & vfs.FILE_ATTRIBUTE_READONLY):
            os.close(fd)
            raise CommandError(Status.ACCESS_DENIED)
        action = {Disposition.SUPERSEDE: wire.CreateAction.SUPERSEDED,
                  Disposition.OVERWRITE: wire.CreateAction.OVERWRITTEN,
                  Disposition.OVERWRITE_IF: wire.CreateAction.OVERWRITTEN,
                  }.get(c.disposition, wire.CreateAction.OPENED)
        return fd, action, is_dir, truncate, granted
    if c.disposition in (Disposition.OPEN, Disposition.OVERWRITE):
        raise CommandError(Status.OBJECT_NAME_NOT_FOUND)
    if tree.read_only:
        raise CommandError(Status.ACCESS_DENIED)
    is_dir = bool(c.options & CreateOptions.DIRECTORY_FILE)
    if (not is_dir and c.options & CreateOptions.DELETE_ON_CLOSE
            and c.file_attributes & vfs.FILE_ATTRIBUTE_READONLY):
        raise CommandError(Status.CANNOT_DELETE)  # refused before the file exists
    if asker is not None:
        security.check_create(where.parent_fd, asker.token, tree.maximal_access, is_dir)
    durable_name = stable.names_through(tree.share)
    if durable_name and nowait.active():
        raise nowait.WouldBlock()  # the directory's sync waits for the disk
    fd = tree.root.open(where, write=not is_dir, create=True, directory=is_dir)
    # New files get ARCHIVE ("changed since the last backup"), as on Windows.
    attrs = c.file_attributes | (0 if is_dir else vfs.FILE_ATTRIBUTE_ARCHIVE)
    try:
        # Born with the times the file system gave it, so the four times of a
        # new file are equal, as on Windows (and a write time not yet moved
        # by the deferred rules reads as the creation time).
        st = os.fstat(fd)
        vfs.set_dos_info(fd, st, attrs=attrs, created=vfs.filetime(st.st_mtime_ns))
        if asker is not None:
            security.label_new(fd, where.parent_fd, asker.given, asker.token,
                               tree.maximal_access, is_dir)
        if durable_name:  # the new name, with its attributes, before the answer
            vfs.sync_dir(where.parent_fd)
    except BaseException:
        os.close(fd)
        raise
    return fd, wire.CreateAction.CREATED, is_dir, False, granted


def _descriptor_allows(tree: TreeConnect, parent_fd: int | None, fd: int,
                       c: wire.CreateRequest, asker: Asker, granted: int) -> int:
    """The access the file's descriptor leaves of ``granted`` (MAXIMUM_ALLOWED
    narrowed to what it allows); closes ``fd`` and raises when it denies.
    ``parent_fd`` is None for the share's root."""
    implied = {Disposition.SUPERSEDE: acc.DELETE, Disposition.OVERWRITE: acc.FILE_WRITE_DATA,
               Disposition.OVERWRITE_IF: acc.FILE_WRITE_DATA}.get(c.disposition, 0)
    try:
        allowed = security.check_open(fd, parent_fd, asker.token, tree.maximal_access,
                                      c.desired_access, implied)
    except BaseException:
        os.close(fd)
        raise
    return granted if allowed is None else allowed


def _response_contexts(c: wire.CreateRequest, op: Open) -> list[tuple[str, bytes]]:
    out = []
    if "MxAc" in c.contexts:
        mxac = op.tree.maximal_access if op.maximal_access is None else op.maximal_access
        out.append(("MxAc", struct.pack("<II", Status.SUCCESS, mxac)))
    if "QFid" in c.contexts:
        out.append(("QFid", struct.pack("<QQQQ", op.ino, 0, op.dev, 0)))
    return out


async def create(ctx: CommandContext, req: Request) -> Reply:
    tree = tree_of(ctx, req)
    c = wire.parse_create(req.body, req.message)
    intent = dur.intent_of(c)
    if dur.is_reconnect(intent):
        return await _reconnect(ctx, tree, c, intent)
    replayed = create_replay.find(ctx, req.header.flags, c.oplock_level, intent)
    if replayed is not None:  # its first response was lost: answer with that open
        return _create_reply(c, replayed.op, _response_contexts(c, replayed.op)
                             + replayed.contexts, replayed.oplock_level)
    with create_replay.in_progress(ctx, intent) as claim:
        op, contexts, level = await _open_new(ctx, tree, c, intent)
        claim.opened(op)
    return _create_reply(c, op, contexts, level)


async def _open_new(ctx: CommandContext, tree: TreeConnect, c: wire.CreateRequest,
                    intent: DurabilityIntent) -> tuple[Open, list[tuple[str, bytes]], int]:
    """A CREATE that is not a reconnect or a replay: (open, response contexts, oplock level)."""
    granted = _check_create(c, tree)
    asker = Asker.of(ctx, c)
    if open_count(ctx.session) >= MAX_OPENS_PER_SESSION:
        raise CommandError(Status.INSUFFICIENT_RESOURCES)
    file_id = new_file_id(ctx.session)
    open_id = dur.persistent_of(file_id)
    parts = () if _is_quota_file(c) else vfs.parse_name(c.name)
    oreq = dur.open_request(ctx, c, intent, granted, open_id)
    decision = await dur.decide(ctx, tree, oreq, parts)
    try:
        op, action, others = await _open(ctx, tree, c, granted, functools.partial(
            _open_blocking, tree, c, granted, file_id, asker, oreq.smb3))
    except BaseException:
        if decision is not None:
            dur.abandon(open_id)
        raise
    op.open_id = open_id if decision is not None else None
    op.share_access, op.create_options = c.share_access, c.options
    op.create_action = action
    if action == wire.CreateAction.CREATED:
        op.initial_allocation = _initial_allocation(c)
    if "MxAc" in c.contexts:
        op.maximal_access = await nowait.run(security.maximal_access, op, asker.token)
    tree.opens[file_id] = op
    contexts = _response_contexts(c, op)
    level = 0
    if decision is not None:
        if others:  # other workers mirror caching only of files they hold open
            await dur.wait_for_other_workers(ctx, op, c)
        # Asked again only if another worker held it at open time: the
        # breaks just waited for may have made it close.
        if dur.has_caching(decision) and (op.is_dir or others and await trio.to_thread.run_sync(
                tree.node.other_owners_open, op.dev, op.ino)):
            decision = dur.without_caching(tree, oreq, parts)
        await dur.attach(ctx, op, dur.lease_id_of(ctx.connection.client_guid, decision.lease))
        contexts += await dur.grant(ctx, op, c, intent, decision)
        level = decision.oplock_level
    return op, contexts, level


def _create_reply(c: wire.CreateRequest, op: Open, contexts: list[tuple[str, bytes]],
                  level: int) -> Reply:
    if _is_quota_file(c):
        times = _QUOTA_FILE_TIMES
    else:
        times = _with_allocation(file_times(op.fd, op.name), op)
    body = wire.create_response(op.create_action, times, op.file_id, contexts,
                                oplock_level=level)
    return Reply(body=body, file_id=op.file_id)


async def _open(ctx: CommandContext, tree: TreeConnect, c: wire.CreateRequest, granted: int,
                open_blocking: Callable[[], tuple[Open, int, bool]]) -> tuple[Open, int, bool]:
    """Open on the event loop when that needs no waiting (an existing file, no
    truncation, the node table free); anything else, a sharing violation
    included (it may need another worker's break), goes the threaded way."""
    try:
        return nowait.attempt(open_blocking)
    except nowait.WouldBlock:
        pass
    except CommandError as exc:
        if exc.status != Status.SHARING_VIOLATION:
            raise
    return await crossbreaks.open_breaking_handles(ctx, tree, c, granted, open_blocking)


async def _reconnect(ctx: CommandContext, tree: TreeConnect, c: wire.CreateRequest,
                     intent) -> Reply:
    """DHnC/DH2C: adopt the durable record and reopen its file from the recorded path."""
    stored = await dur.reclaim(ctx, tree, c, intent)
    record = stored.record
    file_id = new_file_id(ctx.session, record.persistent_id)
    reopen = dur.reopen_request(record)
    try:
        op, _, _ = await trio.to_thread.run_sync(_open_blocking, tree, reopen,
                                              record.desired_access, file_id, None)
        await dur.relock(op, record)
    except CommandError:
        await dur.give_up(record)
        raise
    op.open_id = record.persistent_id
    op.share_access, op.create_options = record.share_access, record.create_options
    op.position, op.initial_allocation = record.position, record.initial_allocation
    tree.opens[file_id] = op
    await dur.restore(ctx, tree, op, record)
    times = _with_allocation(file_times(op.fd, op.name), op)
    contexts = dur.lease_context(record) + _response_contexts(c, op)
    body = wire.create_response(wire.CreateAction.OPENED, times, file_id, contexts,
                                oplock_level=record.oplock_level)
    return Reply(body=body, file_id=file_id)


async def close(ctx: CommandContext, req: Request) -> Reply:
    flags, file_id = wire.parse_close(req.body)
    op = open_of(ctx, req, file_id)
    times = None
    writetime.closing(op)
    if flags & wire.CLOSE_FLAG_POSTQUERY_ATTRIB:
        times = file_times(op.fd, op.name)
    with trio.CancelScope(shield=True):
        deleted = await release_open(op)
    if deleted != Status.SUCCESS:
        raise CommandError(deleted)
    return Reply(body=wire.close_response(flags, times))


async def flush(ctx: CommandContext, req: Request) -> Reply:
    op = open_of(ctx, req, io_wire.parse_flush(req.body))
    if not op.access & _DATA_WRITE:
        raise CommandError(Status.ACCESS_DENIED)
    await trio.to_thread.run_sync(vfs.fdatasync, op.fd)
    writetime.move_now(op)
    return Reply(body=io_wire.flush_response())


async def read(ctx: CommandContext, req: Request) -> Reply:
    r = io_wire.parse_read(req.body)
    op = open_of(ctx, req, r.file_id)
    if op.is_dir:
        raise CommandError(Status.INVALID_DEVICE_REQUEST)
    if not op.access & _DATA_READ:
        raise CommandError(Status.ACCESS_DENIED)
    if r.length > ctx.connection.max_read_size or r.offset > _MAX_FILE_OFFSET:
        raise CommandError(Status.INVALID_PARAMETER)
    data = await trio.to_thread.run_sync(_read_slice, op, r.offset, r.length) \
        if r.length else None
    n = len(data) if data is not None else 0
    if (r.length and n == 0) or n < r.minimum_count:
        if data is not None:
            data.close()
        raise CommandError(Status.END_OF_FILE)
    op.position = r.offset + n
    return Reply(body=io_wire.read_response(n), payload=data if data is not None else b"")


def _read_slice(op: Open, offset: int, length: int) -> vfs.FileSlice | None:
    """The READ's data (None past the end of the file), after the byte-range
    locks allowed it: one thread hop for both."""
    if not op.tree.node.io_allowed(op.key, op.dev, op.ino, offset, length, False):
        raise CommandError(Status.FILE_LOCK_CONFLICT)
    return vfs.FileSlice.of(op.fd, offset, length)


async def write(ctx: CommandContext, req: Request) -> Reply:
    w = io_wire.parse_write(req.body, req.message)
    op = open_of(ctx, req, w.file_id)
    if op.is_dir:
        raise CommandError(Status.INVALID_DEVICE_REQUEST)
    if not op.access & _DATA_WRITE:
        raise CommandError(Status.ACCESS_DENIED)
    if len(w.data) > ctx.connection.max_write_size:
        raise CommandError(Status.INVALID_PARAMETER)
    offset = w.offset
    if offset == 0xFFFFFFFFFFFFFFFF and op.access & acc.FILE_APPEND_DATA:
        offset = os.fstat(op.fd).st_size  # 2.2.21: append to the end of the file
    if offset + len(w.data) > _MAX_FILE_OFFSET:
        raise CommandError(Status.INVALID_PARAMETER)
    through = stable.for_open(op, w.flags)
    before = writetime.before_write(op) if w.data else None
    # A small write only copies into the page cache: cheaper here than the
    # hop to a thread and back (a large one, or one that syncs, goes there).
    run = nowait.run if len(w.data) <= INLINE_WRITE_BYTES and not through \
        else trio.to_thread.run_sync
    n = await run(_write_blocking, op, w.data, offset, through) if w.data or through else 0
    if w.data:
        writetime.after_write(op, before)
    dur.contend_write(op)
    op.position = offset + n
    return Reply(body=io_wire.write_response(n))


def _write_blocking(op: Open, data: memoryview, offset: int, through: bool) -> int:
    """Lock check, write and (write-through) sync in one thread hop: bytes written.
    In a no-waiting attempt only the lock check may give up (WouldBlock), before
    anything is written."""
    if data and not op.tree.node.io_allowed(op.key, op.dev, op.ino, offset, len(data), True):
        raise CommandError(Status.FILE_LOCK_CONFLICT)
    n = vfs.pwrite(op.fd, data, offset) if data else 0
    if through:
        vfs.fdatasync(op.fd)
    return n
