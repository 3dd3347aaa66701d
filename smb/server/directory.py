"""QUERY_DIRECTORY: an enumeration cursor per open, entries packed to fit."""

from __future__ import annotations

import os
import stat as stat_mod

from smb import nowait, vfs
from smb.server.handler import CommandContext, Reply, Request
from smb.server.opens import CommandError, DirectoryScan, Open, open_of
from smb.wire import directory as wire
from smb.wire.directory import DirectoryClass, QueryDirectoryFlags
from smb.wire.header import Status

_SERVED = frozenset(DirectoryClass)
_WILDCARDS = frozenset('*?<>"')


def _snapshot(op: Open, pattern: str) -> DirectoryScan:
    """All matching entries now, '.' and '..' first as Windows and Samba list them.

    A pattern without wildcards that names an entry exactly is answered by
    one stat instead of a read of the whole directory: that is what ``del``,
    ``dir name`` and Explorer send for one file, and a directory of 10,000
    files made each of them cost milliseconds.  Another entry differing only
    in case (possible on a case-sensitive filesystem) is then not listed, as
    with Samba; without an exact hit the directory is read as before.
    """
    entries: list[tuple[str, os.stat_result]] = []
    at_root = not op.parts
    if pattern not in (".", "..") and "\0" not in pattern and not _WILDCARDS.intersection(pattern):
        if at_root and vfs.is_reserved((pattern,)):
            return DirectoryScan([])
        st = vfs.restat(op.fd, pattern)
        if st is not None:
            return DirectoryScan([(pattern, st)])
    for name, st in ((".", os.fstat(op.fd)), ("..", vfs.parent_stat(op.fd) if op.parts
                                               else os.fstat(op.fd))):
        if wire.matches(pattern, name):
            entries.append((name, st))
    entries.extend((e.name, e.st) for e in vfs.list_directory(
        op.fd, lambda name: wire.matches(pattern, name)
        and not (at_root and vfs.is_reserved((name,)))))
    return DirectoryScan(entries)


def _entry(info_class: int, name: str, st: os.stat_result, dir_fd: int) -> bytes:
    attrs, created = vfs.dos_info(None, st, name=name, dir_fd=dir_fd)
    is_dir = stat_mod.S_ISDIR(st.st_mode)
    return wire.encode_entry(info_class, wire.EntryInfo(
        name=name, creation=created, last_access=vfs.filetime(st.st_atime_ns),
        last_write=vfs.filetime(st.st_mtime_ns), change=vfs.filetime(st.st_ctime_ns),
        end_of_file=0 if is_dir else st.st_size,
        allocation_size=0 if is_dir else st.st_blocks * 512,
        attributes=attrs, file_id=st.st_ino))


def _fill(op: Open, q: wire.QueryDirectoryRequest, limit: int) -> tuple[int, bytes]:
    restart = q.flags & (QueryDirectoryFlags.RESTART_SCANS | QueryDirectoryFlags.REOPEN)
    first = op.scan is None
    fresh = first or restart
    if fresh:
        op.scan = _snapshot(op, q.pattern or "*")
    scan = op.scan
    if not fresh and nowait.active() and scan.next_index < len(scan.entries):
        raise nowait.WouldBlock()  # each entry left is looked at again
    if scan.next_index >= len(scan.entries):
        if first and not scan.entries:
            return Status.NO_SUCH_FILE, b""
        return Status.NO_MORE_FILES, b""
    packed: list[bytes] = []
    used = 0
    single = q.flags & QueryDirectoryFlags.RETURN_SINGLE_ENTRY
    while scan.next_index < len(scan.entries):
        name, st = scan.entries[scan.next_index]
        if not fresh and name not in (".", ".."):
            # Later batches come from an older snapshot: drop what was deleted
            # meanwhile, as a live directory read would.
            st = vfs.restat(op.fd, name)
            if st is None:
                scan.next_index += 1
                continue
        entry = _entry(q.info_class, name, st, op.fd)
        need = (used + 7) & ~7
        if need + len(entry) > limit:
            break
        packed.append(entry)
        used = need + len(entry)
        scan.next_index += 1
        if single:
            break
    if not packed:
        if scan.next_index >= len(scan.entries):
            return Status.NO_MORE_FILES, b""
        return Status.INFO_LENGTH_MISMATCH, b""
    return Status.SUCCESS, wire.pack_entries(packed)


async def query_directory(ctx: CommandContext, req: Request) -> Reply:
    q = wire.parse_query_directory(req.body, req.message)
    op = open_of(ctx, req, q.file_id)
    if not op.is_dir:
        raise CommandError(Status.INVALID_PARAMETER)
    if q.info_class not in _SERVED:
        raise CommandError(Status.INVALID_INFO_CLASS)
    if q.output_length < wire.fixed_entry_size(q.info_class):
        raise CommandError(Status.INFO_LENGTH_MISMATCH)
    if q.pattern and ("\\" in q.pattern or "/" in q.pattern):
        raise CommandError(Status.OBJECT_NAME_INVALID)
    limit = min(q.output_length, ctx.connection.max_transact_size)
    status, data = await nowait.run(_fill, op, q, limit)
    if status != Status.SUCCESS:
        raise CommandError(status)
    return Reply(body=wire.query_directory_response(data))
