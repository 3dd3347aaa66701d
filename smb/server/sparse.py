"""Sparse files: FSCTL_SET_SPARSE, FSCTL_QUERY_ALLOCATED_RANGES and
FSCTL_SET_ZERO_DATA (MS-FSCC 2.3), on the filesystem's own holes
(SEEK_DATA/SEEK_HOLE and hole punching), so what a client is told is
allocated is what the disk holds.
"""

from __future__ import annotations

import os

import trio

from smb import vfs
from smb.server import access as acc
from smb.server.handler import Reply
from smb.server.opens import CommandError, Open
from smb.wire import ioctl as wire
from smb.wire.header import Status

_ZERO_CHUNK = 1 << 20


def _set_sparse(op: Open, data: memoryview) -> None:
    if op.is_dir:
        raise CommandError(Status.INVALID_PARAMETER)
    if not op.access & (acc.FILE_WRITE_DATA | acc.FILE_WRITE_ATTRIBUTES | acc.FILE_APPEND_DATA):
        raise CommandError(Status.ACCESS_DENIED)
    # No FILE_SET_SPARSE_BUFFER means "set"; a longer one is read by its first byte.
    sparse = True if len(data) == 0 else data[0] != 0
    vfs.set_dos_info(op.fd, os.fstat(op.fd), sparse=sparse)


def _allocated(op: Open, data: memoryview, max_output: int) -> tuple[int, bytes]:
    if not op.access & acc.FILE_READ_DATA:
        raise CommandError(Status.ACCESS_DENIED)
    offset, length = wire.parse_range(data)
    if offset < 0 or length < 0 or offset + length > (1 << 63) - 1:
        raise CommandError(Status.INVALID_PARAMETER)
    st = os.fstat(op.fd)
    end = min(offset + length, st.st_size)
    if offset >= end:
        return Status.SUCCESS, b""
    if vfs.dos_info(op.fd, st)[0] & vfs.FILE_ATTRIBUTE_SPARSE_FILE:
        ranges = vfs.allocated_ranges(op.fd, offset, end)
    else:
        ranges = [(offset, end - offset)]  # a file that is not sparse counts as allocated
    fits = max_output // wire.RANGE_SIZE
    if ranges and fits == 0:
        raise CommandError(Status.BUFFER_TOO_SMALL)
    if len(ranges) > fits:
        return Status.BUFFER_OVERFLOW, wire.encode_ranges(ranges[:fits])
    return Status.SUCCESS, wire.encode_ranges(ranges)


def _zero(op: Open, data: memoryview) -> None:
    if not op.access & acc.FILE_WRITE_DATA:
        raise CommandError(Status.ACCESS_DENIED)
    offset, beyond = wire.parse_range(data)
    if offset < 0 or beyond < 0 or offset > beyond:
        raise CommandError(Status.INVALID_PARAMETER)
    st = os.fstat(op.fd)
    end = min(beyond, st.st_size)
    if offset >= end:
        return
    if not op.tree.node.io_allowed(op.key, op.dev, op.ino, offset, end - offset, True):
        raise CommandError(Status.FILE_LOCK_CONFLICT)
    if vfs.dos_info(op.fd, st)[0] & vfs.FILE_ATTRIBUTE_SPARSE_FILE:
        vfs.punch_hole(op.fd, offset, end - offset)
        return
    zeros = bytes(min(_ZERO_CHUNK, end - offset))
    for pos in range(offset, end, _ZERO_CHUNK):
        vfs.pwrite(op.fd, zeros[: min(_ZERO_CHUNK, end - pos)], pos)


async def fsctl(op: Open, r: wire.IoctlRequest) -> Reply:
    """Answer one of the three sparse FSCTLs on ``op``."""
    status, output = Status.SUCCESS, b""
    if r.ctl_code == wire.FSCTL_SET_SPARSE:
        await trio.to_thread.run_sync(_set_sparse, op, r.input)
    elif r.ctl_code == wire.FSCTL_SET_ZERO_DATA:
        await trio.to_thread.run_sync(_zero, op, r.input)
    else:
        status, output = await trio.to_thread.run_sync(_allocated, op, r.input, r.max_output)
    return Reply(status=status, body=wire.ioctl_response(r.ctl_code, r.file_id, output))


CODES = frozenset({wire.FSCTL_SET_SPARSE, wire.FSCTL_SET_ZERO_DATA,
                   wire.FSCTL_QUERY_ALLOCATED_RANGES})
