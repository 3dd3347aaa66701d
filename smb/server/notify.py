"""CHANGE_NOTIFY by comparing snapshots of the watched directory.

The workers of a node, and on shared storage the other nodes, all change the
same directories, so changes are observed on the filesystem itself rather
than through this process: the request goes async, then the directory (or
the tree under it) is looked at every POLL_INTERVAL seconds and the first
difference from the previous look that passes the client's filter is
reported.  inotify would only see this machine's changes.  A rename shows as
a removal and an addition.
"""

from __future__ import annotations

import stat as stat_mod

import trio

from smb import vfs
from smb.server.handler import CommandContext, Reply, Request
from smb.server.opens import CommandError, Open, open_of
from smb.wire import notify as wire
from smb.wire.header import Status
from smb.wire.notify import Action, Filter

POLL_INTERVAL = 0.5
MAX_WATCHED_ENTRIES = 20000

# Relative name -> (is a directory, size, mtime ns, ctime ns).
Snapshot = dict[str, tuple[bool, int, int, int]]


def snapshot(op: Open, recursive: bool) -> Snapshot:
    return {name: (stat_mod.S_ISDIR(st.st_mode), st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            for name, st in vfs.walk(op.fd, recursive, MAX_WATCHED_ENTRIES)}


def diff(old: Snapshot, new: Snapshot, completion_filter: int) -> list[tuple[int, str]]:
    """The changes from ``old`` to ``new`` that the filter asks for, in name order."""
    def named(facts: tuple[bool, int, int, int]) -> bool:
        return bool(completion_filter & (Filter.DIR_NAME if facts[0] else Filter.FILE_NAME))

    changes = [(Action.ADDED, n) for n in new.keys() - old.keys() if named(new[n])]
    changes += [(Action.REMOVED, n) for n in old.keys() - new.keys() if named(old[n])]
    for name in old.keys() & new.keys():
        (_, size_a, mtime_a, ctime_a), (_, size_b, mtime_b, ctime_b) = old[name], new[name]
        if ((size_a != size_b and completion_filter & Filter.SIZE)
                or (mtime_a != mtime_b and completion_filter & Filter.LAST_WRITE)
                or (ctime_a != ctime_b and completion_filter & (Filter.ATTRIBUTES
                                                               | Filter.SECURITY | Filter.EA))):
            changes.append((Action.MODIFIED, name))
    return sorted(changes, key=lambda change: (change[1], change[0]))


async def change_notify(ctx: CommandContext, req: Request) -> Reply:
    n = wire.parse_change_notify(req.body)
    op = open_of(ctx, req, n.file_id)
    if not op.is_dir or n.output_length > ctx.connection.max_transact_size:
        raise CommandError(Status.INVALID_PARAMETER)
    recursive = bool(n.flags & wire.WATCH_TREE)
    if op.notify_baseline is None:
        op.notify_baseline = await trio.to_thread.run_sync(snapshot, op, recursive)
    await ctx.go_async()
    while True:
        if ctx.is_cancelled():
            raise CommandError(Status.CANCELLED)
        if op.file_id not in op.tree.opens:
            return Reply(status=Status.NOTIFY_CLEANUP, body=wire.change_notify_response(b""))
        await trio.sleep(POLL_INTERVAL)
        if op.file_id not in op.tree.opens:
            continue
        current = await trio.to_thread.run_sync(snapshot, op, recursive)
        changes = diff(op.notify_baseline, current, n.completion_filter)
        op.notify_baseline = current
        if changes:
            data = wire.encode_changes(changes)
            if len(data) > n.output_length:
                return Reply(status=Status.NOTIFY_ENUM_DIR, body=wire.change_notify_response(b""))
            return Reply(body=wire.change_notify_response(data))
