"""The abstract Unix sockets through which a worker is reached by its node.

A worker listens on a few such sockets besides its TCP port: the agent's
health probe, the agent's drain requests before a planned move, and the
connections sibling workers hand it (multichannel).  Each is named for the
node's state directory, what it is for and the worker's index, so two lab
nodes on one machine never meet and there is no file to clean up.  This
module owns the naming and the accept loop; what a channel says is its own
module's business (smb.probe, smb.drainctl, smb.server.handoff).
"""

from __future__ import annotations

import hashlib
import socket
from typing import Awaitable, Callable

import trio

PROBE = "probe"
DRAIN = "drain"
HAND_OFF = "smb"


def address(purpose: str, state_dir: str, index: int) -> bytes:
    """The abstract address of worker ``index``'s ``purpose`` channel at ``state_dir``."""
    node = hashlib.sha256(state_dir.encode()).hexdigest()[:24]
    return f"\0hanode-{purpose}-{node}-w{index}".encode()


async def serve(at: bytes, kind: socket.SocketKind, backlog: int,
                handle: Callable[[trio.socket.SocketType], Awaitable[None]], *,
                task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Listen on ``at`` and serve every accepted socket with ``handle``, each in
    its own task of this listener's nursery, until cancelled."""
    listener = trio.socket.socket(socket.AF_UNIX, kind)
    with listener:
        await listener.bind(at)
        listener.listen(backlog)
        task_status.started()
        async with trio.open_nursery() as nursery:
            while True:
                sock, _ = await listener.accept()
                nursery.start_soon(handle, sock)
