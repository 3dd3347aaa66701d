"""Passing a client connection to another worker of the node.

SO_REUSEPORT spreads a client's connections over the workers, but a session
and its channels live in one worker.  So, as Samba passes a connection to
the process that owns its client GUID, a worker that reads a 3.x NEGOTIATE
of a client another worker serves sends that worker the socket (SCM_RIGHTS
over a Unix socket) together with the bytes read so far (the NEGOTIATE);
the other worker serves the connection from that NEGOTIATE on, as if it had
accepted it.

Each worker listens on an abstract Unix socket (no file to clean up) named
for the node's state directory and the worker's index.
"""

from __future__ import annotations

import array
import logging
import os
import socket
from functools import partial
from typing import Awaitable, Callable

import trio

from smb import worker_channels

log = logging.getLogger(__name__)

# A NEGOTIATE frame (bounded before negotiation) and whatever followed it.
MAX_HANDED_BYTES = 128 * 1024  # under Linux's default socket send buffer (208 KiB)
# A worker that does not take a connection this fast is not going to.
HAND_OFF_TIMEOUT = 5.0
_FD_SPACE = socket.CMSG_SPACE(array.array("i").itemsize)


def address(state_dir: str, index: int) -> bytes:
    """The abstract socket address of worker ``index`` of the node at ``state_dir``."""
    return worker_channels.address(worker_channels.HAND_OFF, state_dir, index)


async def send(to: bytes, sock: trio.socket.SocketType, received: bytes) -> None:
    """Hand ``sock`` and the bytes already read from it to the worker at ``to``.

    Raises OSError when that worker does not take it (gone, or restarting).
    Once sent, the socket is the other worker's: the descriptor in flight
    keeps the connection open even after this worker closes its own.
    """
    if len(received) > MAX_HANDED_BYTES:
        raise OSError(f"{len(received)} bytes read ahead, more than a hand-off carries")
    fds = array.array("i", [sock.fileno()])
    with trio.move_on_after(HAND_OFF_TIMEOUT):
        with trio.socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as unix:
            await unix.connect(to)
            await unix.sendmsg([received], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
            return
    raise OSError("the worker did not take the connection in time")


Accept = Callable[[trio.SocketStream, bytes], Awaitable[None]]


async def serve(at: bytes, accept: Accept, *,
                task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Take connections handed to this worker and serve each with ``accept``."""
    await worker_channels.serve(at, socket.SOCK_SEQPACKET, 64, partial(_take, accept=accept),
                                task_status=task_status)


async def _take(unix: trio.socket.SocketType, accept: Accept) -> None:
    with unix:
        handed = await _receive(unix)
    if handed is None:
        return
    data, fd = handed
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:  # not a socket after all
        os.close(fd)
        log.warning("hand-off carried no usable socket: %s", exc)
        return
    try:
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
    except (OSError, ValueError) as exc:  # not a stream socket
        sock.close()
        log.warning("hand-off carried no usable socket: %s", exc)
        return
    await accept(stream, data)


async def _receive(unix: trio.socket.SocketType) -> tuple[bytes, int] | None:
    """The bytes and the one socket a hand-off carries; None (logged) when it
    does not carry exactly one socket in time."""
    with trio.move_on_after(HAND_OFF_TIMEOUT):
        try:
            data, ancillary, _, _ = await unix.recvmsg(MAX_HANDED_BYTES, _FD_SPACE)
        except OSError as exc:
            log.warning("hand-off failed: %s", exc)
            return None
        fds = array.array("i")
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[:len(payload) - len(payload) % fds.itemsize])
        if len(fds) == 1:
            return data, fds[0]
        for fd in fds:
            socket.close(fd)
        log.warning("hand-off without exactly one socket (%d)", len(fds))
        return None
    log.warning("hand-off: nothing received in %g s", HAND_OFF_TIMEOUT)
    return None
