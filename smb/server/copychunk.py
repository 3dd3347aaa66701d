"""Server-side copy: FSCTL_SRV_REQUEST_RESUME_KEY and FSCTL_SRV_COPYCHUNK[_WRITE]
(MS-SMB2 3.3.5.15.6).  The data moves between two opens of this session
without crossing the network, within the limits Windows and Samba announce.
"""

from __future__ import annotations

import trio

from smb import vfs
from smb.server import access as acc
from smb.server import stable
from smb.server.handler import CommandContext, Reply
from smb.server.opens import CommandError, Open
from smb.wire import ioctl as wire
from smb.wire.header import Status

MAX_CHUNKS = 256
MAX_CHUNK_SIZE = 1 << 20
MAX_TOTAL_SIZE = 16 << 20
_KEY_PAD = bytes(8)


def resume_key(op: Open) -> bytes:
    """The FileId is already random and unguessable, so it serves as the key."""
    return op.file_id + _KEY_PAD


def _source(ctx: CommandContext, key: bytes) -> Open:
    if key[16:] == _KEY_PAD and ctx.session is not None:
        for tree in ctx.session.trees.values():
            op = tree.opens.get(key[:16])
            if op is not None:
                return op
    raise CommandError(Status.OBJECT_NAME_NOT_FOUND)


def _copy(src: Open, dest: Open, chunks: tuple[wire.Chunk, ...]) -> tuple[int, int, int]:
    """Copy chunk by chunk; (status, chunks written, bytes written)."""
    status, written, total = Status.SUCCESS, 0, 0
    for chunk in chunks:
        if not src.tree.node.io_allowed(src.key, src.dev, src.ino, chunk.source_offset,
                                        chunk.length, False) or \
                not dest.tree.node.io_allowed(dest.key, dest.dev, dest.ino,
                                              chunk.target_offset, chunk.length, True):
            status = Status.FILE_LOCK_CONFLICT
            break
        buf = bytearray(chunk.length)
        if vfs.pread_into(src.fd, buf, chunk.source_offset) < chunk.length:
            status = Status.INVALID_VIEW_SIZE
            break
        vfs.pwrite(dest.fd, buf, chunk.target_offset)
        written += 1
        total += chunk.length
    if total and stable.for_open(dest):
        vfs.fdatasync(dest.fd)  # what the answer counts as written is stable, as for a WRITE
    return status, written, total


async def copychunk(ctx: CommandContext, r: wire.IoctlRequest, dest: Open) -> Reply:
    if r.max_output < len(wire.copychunk_response(0, 0, 0)):
        raise CommandError(Status.INVALID_PARAMETER)
    need = acc.FILE_WRITE_DATA
    if r.ctl_code == wire.FSCTL_SRV_COPYCHUNK:
        need |= acc.FILE_READ_DATA  # the plain variant reads the target too (3.3.5.15.6)
    if dest.access & need != need:
        raise CommandError(Status.ACCESS_DENIED)
    request = wire.parse_copychunk(r.input, MAX_CHUNKS)
    src = _source(ctx, request.source_key)
    if not src.access & (acc.FILE_READ_DATA | acc.FILE_EXECUTE):
        raise CommandError(Status.ACCESS_DENIED)
    chunks = request.chunks
    if (len(chunks) > MAX_CHUNKS or any(c.length == 0 or c.length > MAX_CHUNK_SIZE
                                        for c in chunks)
            or sum(c.length for c in chunks) > MAX_TOTAL_SIZE):
        limits = wire.copychunk_response(MAX_CHUNKS, MAX_CHUNK_SIZE, MAX_TOTAL_SIZE)
        return Reply(status=Status.INVALID_PARAMETER,
                     body=wire.ioctl_response(r.ctl_code, r.file_id, limits))
    status, written, total = await trio.to_thread.run_sync(_copy, src, dest, chunks)
    return Reply(status=status, body=wire.ioctl_response(
        r.ctl_code, r.file_id, wire.copychunk_response(written, 0, total)))
