"""The agent's end-to-end probe of one SMB worker: a real SMB2 NEGOTIATE exchange.

SO_REUSEPORT lets the kernel pick which worker takes a TCP connection, so a
probe over TCP cannot ask a given worker.  Each worker therefore also serves
SMB on an abstract Unix socket named for the node's state directory and its
index, through the very connection code its clients get; it opens that
socket only once its TCP listener is up, so an answer also means "this
worker accepts clients".  Only a worker whose event loop turns can answer: a
worker that is stopped (SIGSTOP), wedged, or crash-looping cannot.

The request and reply are built and read here without I/O (``request``,
``reply_problem``); ``serve`` and ``ask`` are the two thin trio ends.
"""

from __future__ import annotations

import logging
import socket
import struct
import uuid
from typing import Awaitable, Callable

import trio

from smb import worker_channels

log = logging.getLogger(__name__)

# SMB 2.0.2 and 2.1 only: a 3.x NEGOTIATE may be handed to another worker
# (multichannel), and the probe must be answered by the worker it asked.
DIALECTS = (0x0202, 0x0210)
_HEADER = struct.Struct("<4sHHIHHIIQIIQ16s")
_BODY = struct.Struct("<HHHHI16sQ")
MAX_REPLY = 64 * 1024
# The peer address the worker's connection code sees for a probe.
PEER = ("probe", 0)


def address(state_dir: str, index: int) -> bytes:
    """The abstract socket address of worker ``index``'s probe at ``state_dir``."""
    return worker_channels.address(worker_channels.PROBE, state_dir, index)


def request() -> bytes:
    """One NEGOTIATE request with its 4-byte transport header (MS-SMB2 2.2.3)."""
    header = _HEADER.pack(b"\xfeSMB", 64, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, bytes(16))
    body = _BODY.pack(36, len(DIALECTS), 1, 0, 0, uuid.uuid4().bytes_le, 0)
    body += b"".join(struct.pack("<H", d) for d in DIALECTS)
    message = header + body
    return struct.pack(">I", len(message)) + message


def reply_size(data: bytes) -> int | None:
    """How many bytes the first frame needs in all, once its transport header is in."""
    if len(data) < 4:
        return None
    return 4 + (struct.unpack(">I", data[:4])[0] & 0xFFFFFF)


def reply_problem(frame: bytes) -> str | None:
    """What is wrong with a NEGOTIATE reply frame (transport header included), or None."""
    message = frame[4:]
    if len(message) < 64 + 8 or message[:4] != b"\xfeSMB":
        return "reply is not an SMB2 message"
    status, command = struct.unpack_from("<IH", message, 8)
    if command != 0:
        return f"reply to command {command}, not NEGOTIATE"
    if status != 0:
        return f"NEGOTIATE failed with status 0x{status:08x}"
    dialect = struct.unpack_from("<H", message, 64 + 4)[0]
    if dialect not in DIALECTS:
        return f"server chose dialect 0x{dialect:04x}, not one offered"
    return None


async def ask(at: bytes) -> str | None:
    """One exchange with the worker at ``at``; None when it answered well, else why not.
    The caller bounds the time it may take."""
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            await sock.connect(at)
        except OSError as exc:
            return f"not listening ({exc.strerror or exc})"
        stream = trio.SocketStream(sock)
        try:
            await stream.send_all(request())
            data = b""
            while (need := reply_size(data)) is None or len(data) < need:
                chunk = await stream.receive_some(MAX_REPLY)
                if not chunk:
                    return "closed the connection without a NEGOTIATE reply"
                data += chunk
                if len(data) > MAX_REPLY:
                    return "reply too long"
        except (trio.BrokenResourceError, OSError) as exc:
            return f"connection broke: {exc}"
        return reply_problem(data[:need])
    finally:
        sock.close()


async def serve(at: bytes, handle: Callable[[trio.SocketStream], Awaitable[None]], *,
                task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve probes on ``at`` with the worker's connection code (``handle``)."""
    async def one(sock: trio.socket.SocketType) -> None:
        await handle(trio.SocketStream(sock))

    await worker_channels.serve(at, socket.SOCK_STREAM, 16, one, task_status=task_status)
