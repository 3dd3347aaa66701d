"""Compounded requests (MS-SMB2 3.3.5.2.7) as pure rules on bytes: walking a
message's elements, and what a related element inherits from the one
before it.  The dispatcher (smb.server.connection) runs the elements; this
module decides nothing that needs a socket, a session or a file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, NamedTuple

from smb.server.violation import ProtocolViolation
from smb.wire.header import HEADER_SIZE, Command, Header, HeaderError, Status, parse_header

RELATED_SESSION = 0xFFFFFFFFFFFFFFFF
RELATED_TREE = 0xFFFFFFFF
_ALL_FF = b"\xff" * 16

# Where each command's FileId sits in its body, for the FileId a related
# command inherits when the previous one was not a CREATE.
_FILE_ID_OFFSET = {
    Command.CLOSE: 8, Command.FLUSH: 8, Command.READ: 16, Command.WRITE: 16,
    Command.LOCK: 8, Command.IOCTL: 8, Command.QUERY_DIRECTORY: 8,
    Command.CHANGE_NOTIFY: 8, Command.QUERY_INFO: 24, Command.SET_INFO: 16,
    Command.OPLOCK_BREAK: 8,
}


class Element(NamedTuple):
    """One request of a (possibly compound) message (a named tuple: one per
    request, cheaper to build than a frozen dataclass)."""

    header: Header
    # From its header's first byte up to NextCommand (or the message's end).
    message: memoryview
    last: bool


def elements(msg: memoryview) -> Iterator[Element]:
    """The requests of ``msg`` in order; a broken header or NextCommand ends
    the connection (raised when the walk reaches it, after the elements
    before it were yielded)."""
    pos = 0
    while True:
        rest = msg[pos:]
        try:
            header = parse_header(rest)
        except HeaderError as exc:
            raise ProtocolViolation(str(exc)) from None
        if header.is_response:
            raise ProtocolViolation("a response sent to the server")
        step = header.next_command
        if not step:
            yield Element(header, rest, True)
            return
        if step % 8 or step < HEADER_SIZE or step > len(rest):
            raise ProtocolViolation("bad NextCommand")
        yield Element(header, rest[:step], False)
        pos += step


@dataclass(slots=True)
class Chain:
    """What a related request inherits from the one before it (3.3.5.2.7.2)."""

    session_id: int = 0
    tree_id: int = 0
    file_id: bytes | None = None
    # A failed CREATE fails the related requests after it with its status; a
    # request without a usable session or a misplaced related flag makes the
    # related requests after it INVALID_PARAMETER (as Windows and Samba answer).
    inherited_status: int = Status.SUCCESS


class Resolved(NamedTuple):
    """A request as it is to be run: its header with the related ids filled
    in, the FileId standing in for an all-0xFF one, and, when it is to fail
    without running, the status and what the requests after it inherit."""

    header: Header
    file_id: bytes | None
    refusal: int = Status.SUCCESS
    carry: Chain | None = None


def resolve(header: Header, before: Chain | None) -> Resolved:
    """Apply a related request's inheritance; unrelated requests pass as they are."""
    if not header.is_related:
        return Resolved(header, None)
    if before is None:  # the first request of a message cannot be related
        return Resolved(header, None, Status.INVALID_PARAMETER,
                        Chain(inherited_status=Status.INVALID_PARAMETER))
    header = header.evolve(
        session_id=before.session_id if header.session_id == RELATED_SESSION
        else header.session_id,
        tree_id=before.tree_id if header.tree_id == RELATED_TREE else header.tree_id)
    if before.inherited_status != Status.SUCCESS:
        return Resolved(header, before.file_id, before.inherited_status, before)
    return Resolved(header, before.file_id)


def request_file_id(command: int, body: memoryview, related: bytes | None) -> bytes | None:
    """The FileId a request names (the inherited one where it names all 0xFF)."""
    offset = _FILE_ID_OFFSET.get(command)
    if offset is None or len(body) < offset + 16:
        return None
    file_id = bytes(body[offset:offset + 16])
    return related if file_id == _ALL_FF and related is not None else file_id
