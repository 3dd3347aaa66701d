"""The file-side command handlers, registered by command code.

Every handler is wrapped once here so that the errors a file command can
meet (a malformed body, a refused name, a closed handle, an OS error the
VFS mapped) all become an SMB2 error response; none escapes to the
connection layer as an exception.
"""

from __future__ import annotations

import functools

from smb import vfs
from smb.server import directory, durable_opens, files, info, ioctl, ipc, lock, notify, tree
from smb.server.handler import CommandContext, Handler, Reply, Request
from smb.server.opens import CommandError, session_closed
from smb.wire.body import MalformedRequest
from smb.wire.header import Command, Status, error_body

__all__ = ["HANDLERS", "session_closed"]


def _guarded(handler: Handler) -> Handler:
    @functools.wraps(handler)
    async def run(ctx: CommandContext, req: Request) -> Reply:
        try:
            return await handler(ctx, req)
        except (CommandError, MalformedRequest, vfs.VfsError) as exc:
            return Reply(status=exc.status, body=error_body())
        except OSError:
            return Reply(status=Status.UNSUCCESSFUL, body=error_body())
    return run


HANDLERS: dict[Command, Handler] = {
    command: _guarded(ipc.beside(command, handler)) for command, handler in {
        Command.TREE_CONNECT: tree.tree_connect,
        Command.TREE_DISCONNECT: tree.tree_disconnect,
        Command.CREATE: files.create,
        Command.CLOSE: files.close,
        Command.FLUSH: files.flush,
        Command.READ: files.read,
        Command.WRITE: files.write,
        Command.LOCK: lock.lock,
        Command.IOCTL: ioctl.ioctl,
        Command.QUERY_DIRECTORY: directory.query_directory,
        Command.CHANGE_NOTIFY: notify.change_notify,
        Command.QUERY_INFO: info.query_info,
        Command.SET_INFO: info.set_info,
        Command.OPLOCK_BREAK: durable_opens.oplock_break,
    }.items()
}
