"""The contract between the dispatcher and the command handlers.

The connection layer (negotiate, session setup, signing, encryption, credits,
compounds) owns the TCP stream and turns each SMB2 command into a
:class:`Request`.  A handler for one command turns it into a :class:`Reply`.
Handlers never see signing, encryption, credits or message framing, and the
connection layer never sees files; that split is what lets each side be tested
on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Protocol

from smb.wire.header import Header, Status

if TYPE_CHECKING:
    from hanode.config import Config
    from smb.server.replay import Admission
    from smb.vfs import FileSlice


@dataclass(slots=True)
class Request:
    header: Header
    # This command's bytes after its 64-byte header, up to NextCommand (or the end).
    body: memoryview
    # This command's bytes from its header's first byte: MS-SMB2 buffer offsets
    # (e.g. a CREATE name's NameOffset) count from there.
    message: memoryview
    # In a related compound: the FileId the previous command's reply produced,
    # to stand in for the all-0xFF FileId (MS-SMB2 3.3.5.2.7.2).
    related_file_id: bytes | None = None
    # Set when the request met its open: counted in that open's channel
    # sequence (smb.server.replay) until it is answered.
    admission: "Admission | None" = None


@dataclass(slots=True)
class Reply:
    status: int = Status.SUCCESS
    # The response body after the header (for errors, smb.wire.header.error_body()).
    body: bytes = b""
    # Sent after body without being copied into it (e.g. READ data; a FileSlice
    # is READ data still in its file, sent by sendfile(2) where it can be).
    payload: "bytes | memoryview | FileSlice" = b""
    # For CREATE replies: the FileId a following related command inherits.
    file_id: bytes | None = None
    # For TREE_CONNECT replies: the TreeId the response header carries (and a
    # following related command inherits); None keeps the request's TreeId.
    tree_id: int | None = None


@dataclass
class ConnectionInfo:
    """What handlers may read about the transport connection."""

    dialect: int = 0
    client_guid: bytes = b"\x00" * 16
    server_guid: bytes = b"\x00" * 16
    max_transact_size: int = 8 * 1024 * 1024
    max_read_size: int = 8 * 1024 * 1024
    max_write_size: int = 8 * 1024 * 1024
    client_address: tuple[str, int] = ("", 0)
    security_mode: int = 0
    client_capabilities: int = 0
    server_capabilities: int = 0
    client_security_mode: int = 0
    client_dialects: tuple[int, ...] = ()
    # The address the client connected to (the VIP, on a node that holds one).
    local_address: tuple[str, int] = ("", 0)
    # Sends a server-initiated message (an OPLOCK_BREAK or LEASE_BREAK
    # notification, MS-SMB2 3.3.4.6/3.3.4.7) on this connection:
    # ``await notify(command, body, session_id)``; encrypted when that session
    # requires it; returns False when the connection is already gone.
    notify: Callable[[int, bytes, int], Awaitable[bool]] | None = field(
        default=None, repr=False, compare=False)


@dataclass
class SessionInfo:
    """An authenticated session, as handlers see it."""

    session_id: int
    user: str
    is_guest: bool = False
    encrypt_data: bool = False
    # tree_id -> whatever the tree-connect handler keeps per tree connect.
    trees: dict[int, Any] = field(default_factory=dict)


class CommandContext(Protocol):
    config: "Config"
    connection: ConnectionInfo
    # None only for commands that need no session (NEGOTIATE, SESSION_SETUP, ECHO).
    session: SessionInfo | None

    async def go_async(self) -> int:
        """Send the interim STATUS_PENDING response now; returns the AsyncId.

        A handler that is about to wait (a lock, an oplock break) calls this
        first; its final reply then goes out as an async response.
        """

    def is_cancelled(self) -> bool:
        """True once the client sent CANCEL for this request."""


Handler = Callable[[CommandContext, Request], Awaitable[Reply]]
