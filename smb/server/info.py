"""QUERY_INFO and SET_INFO on an open."""

from __future__ import annotations

import os
import struct
from typing import Hashable

import trio

from smb import nowait, vfs
from smb.server import access as acc
from smb.server import crossbreaks, durable_opens, security, stable, workerstate
from smb.server import writetime
from smb.server.files import file_times, write_time_kept
from smb.server.handler import CommandContext, Reply, Request
from smb.server.opens import CommandError, Open, open_of
from smb.wire import ea as ea_wire
from smb.wire import info as wire
from smb.wire.header import Status, error_body
from smb.wire.info import FileClass, FsClass, InfoType

# Times in FileBasicInformation: 0 leaves a time alone, -1 and -2 switch
# automatic updates off and on again, which a POSIX file cannot do.
_KEEP_TIMES = (0, -1, -2)
# MS-FSA 2.1.5.11: the classes that show attributes need FILE_READ_ATTRIBUTES.
_NEEDS_READ_ATTRIBUTES = frozenset({FileClass.BASIC, FileClass.ALL, FileClass.NETWORK_OPEN,
                                    FileClass.ATTRIBUTE_TAG})
# The classes whose encoding (smb.wire.info) shows DeletePending, and EaSize.
_SHOWS_DELETE_PENDING = frozenset({FileClass.STANDARD, FileClass.ALL})
_SHOWS_EA_SIZE = frozenset({FileClass.EA, FileClass.ALL})


def _file_facts(op: Open, info_class: int) -> wire.FileFacts:
    """The facts ``info_class`` reports; the two that cost a lookup of their
    own (the node table's delete-pending flag, the EA list) are read only for
    the classes that show them, and are left false and 0 for the others."""
    st = os.fstat(op.fd)
    times = file_times(op.fd, op.name, st)
    pending = info_class in _SHOWS_DELETE_PENDING and op.tree.node.delete_pending(op.dev, op.ino)
    eas = ea_wire.ea_size(vfs.get_eas(op.fd)) if info_class in _SHOWS_EA_SIZE else 0
    return wire.FileFacts(
        creation=times.creation, last_access=times.last_access, last_write=times.last_write,
        change=times.change, attributes=times.attributes,
        allocation_size=times.allocation_size, end_of_file=times.end_of_file,
        links=st.st_nlink, delete_pending=pending, is_directory=op.is_dir, index=st.st_ino,
        access=op.access, position=op.position, mode=op.mode, name=op.display_name,
        ea_size=eas)


def _volume_facts(op: Open) -> wire.VolumeFacts:
    if nowait.active():
        raise nowait.WouldBlock()  # statfs of a cluster filesystem asks its peers
    sv = vfs.disk_usage(op.fd)
    root = os.fstat(op.tree.root.root_fd)
    return wire.VolumeFacts(
        block_size=sv.f_frsize, total_blocks=sv.f_blocks, free_blocks=sv.f_bfree,
        available_blocks=sv.f_bavail, serial=(root.st_dev ^ root.st_ino) & 0xFFFFFFFF,
        label=op.tree.share.name, created=vfs.filetime(root.st_ctime_ns),
        object_id=struct.pack("<QQ", root.st_dev, root.st_ino))


def _full_eas(op: Open, q: wire.QueryInfoRequest) -> tuple[int, bytes]:
    """FileFullEaInformation: all EAs, or those the input buffer names."""
    if not op.access & acc.FILE_READ_EA:
        return Status.ACCESS_DENIED, b""
    eas = vfs.get_eas(op.fd)
    wanted = ea_wire.parse_get_ea_list(q.input)
    if wanted:
        by_name = {ea.name.upper(): ea for ea in eas}
        eas = [by_name.get(n.upper(), ea_wire.Ea(n, b"")) for n in wanted]
    if not eas:
        return Status.NO_EAS_ON_FILE, b""
    data = ea_wire.encode_full_ea_list(eas)
    if len(data) > q.output_length:
        return Status.BUFFER_TOO_SMALL, b""
    return Status.SUCCESS, data


def _query_blocking(op: Open, q: wire.QueryInfoRequest, dialect: int,
                    token: security.Token) -> tuple[int, bytes]:
    if q.info_type == InfoType.FILE and q.info_class == FileClass.FULL_EA:
        return _full_eas(op, q)
    if q.info_type == InfoType.FILE:
        entry = wire.FILE_CLASSES.get(q.info_class)
        if entry is None:
            return Status.INVALID_INFO_CLASS, b""
        if q.info_class == FileClass.NORMALIZED_NAME and dialect < 0x0311:
            return Status.NOT_SUPPORTED, b""
        if q.info_class in _NEEDS_READ_ATTRIBUTES and not op.access & acc.FILE_READ_ATTRIBUTES:
            return Status.ACCESS_DENIED, b""
        encode, minimum = entry
        data = encode(_file_facts(op, q.info_class))
    elif q.info_type == InfoType.FILESYSTEM:
        entry = wire.FS_CLASSES.get(q.info_class)
        if entry is None:
            return Status.INVALID_INFO_CLASS, b""
        encode, minimum = entry
        data = encode(_volume_facts(op))
    elif q.info_type == InfoType.SECURITY:
        if not op.access & acc.READ_CONTROL:
            return Status.ACCESS_DENIED, b""
        data, minimum = security.query(op, token, q.additional_information), 0
        if len(data) > q.output_length:
            # MS-SMB2 3.3.5.20.3: tell the client how big a buffer it needs.
            return Status.BUFFER_TOO_SMALL, len(data).to_bytes(4, "little")
    elif q.info_type == InfoType.QUOTA:
        return Status.NOT_SUPPORTED, b""
    else:
        return Status.INVALID_PARAMETER, b""
    fit, data = wire.fit_output(data, minimum, q.output_length)
    if fit == "short":
        return Status.INFO_LENGTH_MISMATCH, b""
    return (Status.BUFFER_OVERFLOW if fit == "overflow" else Status.SUCCESS), data


async def query_info(ctx: CommandContext, req: Request) -> Reply:
    q = wire.parse_query_info(req.body, req.message)
    op = open_of(ctx, req, q.file_id)
    if q.output_length > ctx.connection.max_transact_size:
        raise CommandError(Status.INVALID_PARAMETER)
    status, data = await nowait.run(_query_blocking, op, q, ctx.connection.dialect,
                                    _token(ctx))
    if status == Status.BUFFER_TOO_SMALL:
        return Reply(status=status, body=error_body(data))
    if status not in (Status.SUCCESS, Status.BUFFER_OVERFLOW):
        raise CommandError(status)
    return Reply(status=status, body=wire.query_info_response(data))


def _token(ctx: CommandContext) -> security.Token:
    assert ctx.session is not None
    return security.token_of(ctx.config.cluster.server_name, ctx.session)


def _need(op: Open, mask: int) -> None:
    if not op.access & mask:
        raise CommandError(Status.ACCESS_DENIED)


def _set_basic(op: Open, data: memoryview) -> None:
    _need(op, acc.FILE_WRITE_ATTRIBUTES)
    b = wire.parse_basic(data)
    if b.attributes & ~(vfs.SETTABLE_ATTRIBUTES | vfs.FILE_ATTRIBUTE_DIRECTORY
                        | vfs.FILE_ATTRIBUTE_NORMAL):
        raise CommandError(Status.INVALID_PARAMETER)
    if b.attributes & vfs.FILE_ATTRIBUTE_DIRECTORY and not op.is_dir:
        raise CommandError(Status.INVALID_PARAMETER)
    if b.attributes & vfs.FILE_ATTRIBUTE_TEMPORARY and op.is_dir:
        raise CommandError(Status.INVALID_PARAMETER)
    writetime.move_now(op)  # even a request that sets no time makes a pending move
    vfs.set_times(op.fd, None if b.last_access in _KEEP_TIMES else vfs.unix_ns(b.last_access),
                  None if b.last_write in _KEEP_TIMES else vfs.unix_ns(b.last_write))
    op.frozen_write_ns = write_time_kept(op.frozen_write_ns, b.last_write,
                                         os.fstat(op.fd).st_mtime_ns)
    attrs = b.attributes or None
    created = None if b.creation in _KEEP_TIMES else b.creation
    if attrs is not None or created is not None:
        vfs.set_dos_info(op.fd, os.fstat(op.fd), attrs=attrs, created=created)


def _set_rename(op: Open, data: memoryview) -> None:
    _need(op, acc.DELETE)
    r = wire.parse_rename(data)
    if r.root_directory or not r.name:
        raise CommandError(Status.INVALID_PARAMETER)
    target = vfs.parse_name(r.name[1:] if r.name.startswith("\\") else r.name)
    if not target or not op.parts:
        raise CommandError(Status.ACCESS_DENIED)
    node = op.tree.node
    existing = op.tree.root.exists(target)
    if existing is not None and existing.st_ino != op.ino:
        if not r.replace:
            raise CommandError(Status.OBJECT_NAME_COLLISION)
        # A file someone holds open cannot be replaced (Windows and Samba agree).
        if node.others_open("", existing.st_dev, existing.st_ino):
            raise CommandError(Status.ACCESS_DENIED)
    if op.is_dir and node.opens_below(op.node_path):
        raise CommandError(Status.ACCESS_DENIED)
    parent = op.tree.root.parent_stat(op.parts)
    if node.blocks_rename_inside(parent.st_dev, parent.st_ino):
        raise CommandError(Status.SHARING_VIOLATION)
    ws = trio.from_thread.run_sync(workerstate.current)  # a RunVar of the trio run
    old_key = durable_opens.file_key(op.tree, op.parts)
    op.parts = op.tree.root.rename(op.parts, op.ino, target, r.replace,
                                   sync=stable.names_through(op.tree.share))
    node.set_path(op.key, op.node_path)
    if ws is not None:
        # Runs in a worker thread: the oplock state lives in the trio thread.
        trio.from_thread.run_sync(_renamed, ws, op, old_key)


def _set_link(op: Open, data: memoryview) -> None:
    """FileLinkInformation (MS-FSA 2.1.5.15.7): one more name for the open file."""
    r = wire.parse_rename(data)
    if r.root_directory or not r.name:
        raise CommandError(Status.INVALID_PARAMETER)
    if op.is_dir:
        raise CommandError(Status.FILE_IS_A_DIRECTORY)
    target = vfs.parse_name(r.name[1:] if r.name.startswith("\\") else r.name)
    if not target or not op.parts:
        raise CommandError(Status.ACCESS_DENIED)
    existing = op.tree.root.exists(target)
    if existing is not None:
        if not r.replace:
            raise CommandError(Status.OBJECT_NAME_COLLISION)
        # The name replaced is deleted as by an open that shares nothing, so
        # any open of it (this one too, for its own name) is a sharing
        # violation: smbd's answer.
        if op.tree.node.delete_pending(existing.st_dev, existing.st_ino):
            raise CommandError(Status.DELETE_PENDING)  # smbd's answer
        if op.tree.node.others_open("", existing.st_dev, existing.st_ino):
            raise CommandError(Status.SHARING_VIOLATION)
    op.tree.root.link(op.parts, op.ino, target, r.replace)


async def _before_rename(ctx: CommandContext, op: Open) -> None:
    """Other leases may cache the handle only while the name stays: break that first."""
    ws = workerstate.current()
    if ws is not None and op.open_id is not None:
        await ws.breaks.before_rename(op.open_id, ctx.go_async)
        await crossbreaks.before_rename(ctx, op)


def _renamed(ws: "workerstate.WorkerState", op: Open, old_key: Hashable) -> None:
    """Oplocks and leases are kept per name: they follow the file to its new one."""
    new_key = durable_opens.file_key(op.tree, op.parts)
    ws.breaks.oplocks.move(old_key, new_key)
    if ws.inodes.get((op.dev, op.ino)) == old_key:
        ws.inodes[(op.dev, op.ino)] = new_key


def _pending(data: memoryview) -> bool:
    """FileDispositionInformation's DeletePending."""
    return bool(wire.parse_u8(data) & 1)


def _set_disposition(op: Open, data: memoryview) -> None:
    _need(op, acc.DELETE)
    pending = _pending(data)
    if pending:
        if not op.parts:
            raise CommandError(Status.ACCESS_DENIED)
        if op.is_dir and not vfs.is_empty_directory(op.fd):
            raise CommandError(Status.DIRECTORY_NOT_EMPTY)
        if not op.is_dir and vfs.dos_info(op.fd, os.fstat(op.fd))[0] & vfs.FILE_ATTRIBUTE_READONLY:
            raise CommandError(Status.CANNOT_DELETE)
    op.tree.node.set_delete_pending(op.dev, op.ino, pending)


def _set_size(op: Open, data: memoryview, allocation: bool) -> None:
    _need(op, acc.FILE_WRITE_DATA)
    if op.is_dir:
        raise CommandError(Status.INVALID_PARAMETER)
    size = wire.parse_u64(data)
    if size > (1 << 63) - 1:
        raise CommandError(Status.INVALID_PARAMETER)
    # Allocation below the end of file cuts the file; above it changes nothing visible.
    if allocation and size >= os.fstat(op.fd).st_size:
        return
    vfs.truncate(op.fd, size)
    writetime.size_changed(op)
    if stable.for_open(op):
        vfs.fdatasync(op.fd)  # a new end of file is data too (a CA share loses none)


def _set_eas(op: Open, data: memoryview) -> None:
    _need(op, acc.FILE_WRITE_EA)
    vfs.set_eas(op.fd, ea_wire.merge(vfs.get_eas(op.fd), ea_wire.parse_full_ea_list(data)))


def _set_position(op: Open, data: memoryview) -> None:
    op.position = wire.parse_u64(data)


def _set_mode(op: Open, data: memoryview) -> None:
    op.mode = wire.parse_u32(data)


_SETTERS = {
    FileClass.BASIC: _set_basic,
    FileClass.RENAME: _set_rename,
    FileClass.LINK: _set_link,
    FileClass.DISPOSITION: _set_disposition,
    FileClass.FULL_EA: _set_eas,
    FileClass.POSITION: _set_position,
    FileClass.MODE: _set_mode,
    FileClass.ALLOCATION: lambda op, d: _set_size(op, d, True),
    FileClass.END_OF_FILE: lambda op, d: _set_size(op, d, False),
}


# Classes a Windows server knows but hanode cannot honour: valid data length
# (needs SeManageVolumePrivilege's preallocation) and 8.3 short names (none
# exist here).  NOT_SUPPORTED, as smbd answers, tells a client it may go on.
_KNOWN_NOT_SUPPORTED = frozenset({FileClass.VALID_DATA_LENGTH, FileClass.SHORT_NAME})


# Setters made of a few syscalls on the open's descriptor and node-table
# statements (smb.nowait); a rename or a size change may take long.
_SET_WITHOUT_WAITING = frozenset({FileClass.BASIC, FileClass.DISPOSITION, FileClass.FULL_EA,
                                  FileClass.POSITION, FileClass.MODE})


async def set_info(ctx: CommandContext, req: Request) -> Reply:
    s = wire.parse_set_info(req.body, req.message)
    op = open_of(ctx, req, s.file_id)
    if s.info_type == InfoType.FILESYSTEM and s.info_class != FsClass.CONTROL:
        raise CommandError(Status.INVALID_INFO_CLASS)  # volume labels and the like: smbd's answer
    if s.info_type == InfoType.SECURITY:
        if op.tree.read_only:
            raise CommandError(Status.ACCESS_DENIED)
        await nowait.run(security.set_descriptor, op, _token(ctx), s.additional_information,
                         s.buffer)
        return Reply(body=wire.set_info_response())
    if s.info_type != InfoType.FILE:
        raise CommandError(Status.NOT_SUPPORTED)  # quotas
    if s.info_class in _KNOWN_NOT_SUPPORTED:
        raise CommandError(Status.NOT_SUPPORTED)
    setter = _SETTERS.get(s.info_class)
    if setter is None:
        raise CommandError(Status.INVALID_INFO_CLASS)
    if op.tree.read_only and s.info_class not in (FileClass.POSITION, FileClass.MODE):
        raise CommandError(Status.ACCESS_DENIED)
    if s.info_class == FileClass.RENAME:
        await _before_rename(ctx, op)
    if s.info_class in _SET_WITHOUT_WAITING:
        await nowait.run(setter, op, s.buffer)
    else:
        await trio.to_thread.run_sync(setter, op, s.buffer)
    if s.info_class == FileClass.DISPOSITION:
        await durable_opens.keep_delete_pending(op, _pending(s.buffer))
    if s.info_class in (FileClass.ALLOCATION, FileClass.END_OF_FILE):
        durable_opens.contend_write(op)  # a size change makes read caches stale
    return Reply(body=wire.set_info_response())
