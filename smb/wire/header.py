"""The 64-byte SMB2 header (MS-SMB2 2.2.1), command codes and NT status codes.

Pure bytes in, values out: no sockets, no clocks.  Shared by every message
codec in ``smb.wire`` and by the dispatcher in ``smb.server``.
"""

from __future__ import annotations

import enum
import struct
from typing import Any, NamedTuple

PROTOCOL_ID = b"\xfeSMB"
TRANSFORM_PROTOCOL_ID = b"\xfdSMB"
SMB1_PROTOCOL_ID = b"\xffSMB"
HEADER_SIZE = 64
SIGNATURE_OFFSET = 48
SIGNATURE_SIZE = 16

# ProtocolId, StructureSize, CreditCharge, Status/ChannelSequence, Command,
# CreditRequest/Response, Flags, NextCommand, MessageId, then either
# (Reserved, TreeId) or AsyncId, SessionId, Signature.
_HEADER = struct.Struct("<4sHHIHHIIQQQ16s")
assert _HEADER.size == HEADER_SIZE


class Command(enum.IntEnum):
    NEGOTIATE = 0x00
    SESSION_SETUP = 0x01
    LOGOFF = 0x02
    TREE_CONNECT = 0x03
    TREE_DISCONNECT = 0x04
    CREATE = 0x05
    CLOSE = 0x06
    FLUSH = 0x07
    READ = 0x08
    WRITE = 0x09
    LOCK = 0x0A
    IOCTL = 0x0B
    CANCEL = 0x0C
    ECHO = 0x0D
    QUERY_DIRECTORY = 0x0E
    CHANGE_NOTIFY = 0x0F
    QUERY_INFO = 0x10
    SET_INFO = 0x11
    OPLOCK_BREAK = 0x12


class Flags(enum.IntFlag):
    SERVER_TO_REDIR = 0x00000001
    ASYNC_COMMAND = 0x00000002
    RELATED_OPERATIONS = 0x00000004
    SIGNED = 0x00000008
    PRIORITY_MASK = 0x00000070
    DFS_OPERATIONS = 0x10000000
    REPLAY_OPERATION = 0x20000000


# The flags as plain ints: every request tests them, and IntFlag arithmetic
# builds a new enum member each time (it showed up in profiles of the dispatcher).
_RESPONSE = int(Flags.SERVER_TO_REDIR)
_ASYNC = int(Flags.ASYNC_COMMAND)
_RELATED = int(Flags.RELATED_OPERATIONS)
_SIGNED = int(Flags.SIGNED)


class Status(enum.IntEnum):
    """The NT status codes this server sends (MS-ERREF 2.3)."""

    SUCCESS = 0x00000000
    PENDING = 0x00000103
    NOTIFY_CLEANUP = 0x0000010B
    NOTIFY_ENUM_DIR = 0x0000010C
    BUFFER_OVERFLOW = 0x80000005
    NO_MORE_FILES = 0x80000006
    UNSUCCESSFUL = 0xC0000001
    NOT_IMPLEMENTED = 0xC0000002
    INVALID_INFO_CLASS = 0xC0000003
    INFO_LENGTH_MISMATCH = 0xC0000004
    INVALID_HANDLE = 0xC0000008
    INVALID_PARAMETER = 0xC000000D
    NO_SUCH_FILE = 0xC000000F
    INVALID_DEVICE_REQUEST = 0xC0000010
    END_OF_FILE = 0xC0000011
    MORE_PROCESSING_REQUIRED = 0xC0000016
    ACCESS_DENIED = 0xC0000022
    BUFFER_TOO_SMALL = 0xC0000023
    OBJECT_NAME_INVALID = 0xC0000033
    OBJECT_NAME_NOT_FOUND = 0xC0000034
    OBJECT_NAME_COLLISION = 0xC0000035
    OBJECT_PATH_INVALID = 0xC0000039
    OBJECT_PATH_NOT_FOUND = 0xC000003A
    OBJECT_PATH_SYNTAX_BAD = 0xC000003B
    SHARING_VIOLATION = 0xC0000043
    DELETE_PENDING = 0xC0000056
    PRIVILEGE_NOT_HELD = 0xC0000061
    INVALID_OWNER = 0xC000005A
    INVALID_SECURITY_DESCR = 0xC0000079
    LOGON_FAILURE = 0xC000006D
    ACCOUNT_RESTRICTION = 0xC000006E
    LOCK_NOT_GRANTED = 0xC0000055
    FILE_LOCK_CONFLICT = 0xC0000054
    RANGE_NOT_LOCKED = 0xC000007E
    DISK_FULL = 0xC000007F
    INSUFFICIENT_RESOURCES = 0xC000009A
    FILE_IS_A_DIRECTORY = 0xC00000BA
    NOT_SUPPORTED = 0xC00000BB
    NETWORK_NAME_DELETED = 0xC00000C9
    BAD_NETWORK_NAME = 0xC00000CC
    REQUEST_NOT_ACCEPTED = 0xC00000D0
    REQUEST_OUT_OF_SEQUENCE = 0xC000042A
    INVALID_OPLOCK_PROTOCOL = 0xC00000E3
    INTERNAL_ERROR = 0xC00000E5
    DIRECTORY_NOT_EMPTY = 0xC0000101
    NOT_A_DIRECTORY = 0xC0000103
    CANCELLED = 0xC0000120
    FILE_CLOSED = 0xC0000128
    USER_SESSION_DELETED = 0xC0000203
    NETWORK_SESSION_EXPIRED = 0xC000035C
    NOT_A_REPARSE_POINT = 0xC0000275
    FS_DRIVER_REQUIRED = 0xC000019C
    INVALID_NETWORK_RESPONSE = 0xC00000C3
    STOPPED_ON_SYMLINK = 0x8000002D
    FILE_NOT_AVAILABLE = 0xC0000467
    DUPLICATE_OBJECTID = 0xC000022A
    BAD_IMPERSONATION_LEVEL = 0xC00000A5
    CANNOT_DELETE = 0xC0000121
    INVALID_LOCK_RANGE = 0xC00001A1
    NOT_SAME_DEVICE = 0xC00000D4
    EAS_NOT_SUPPORTED = 0xC000004F
    NO_EAS_ON_FILE = 0xC0000052
    INVALID_VIEW_SIZE = 0xC000001F
    PIPE_DISCONNECTED = 0xC00000B0
    PIPE_EMPTY = 0xC00000D9
    EA_TOO_LARGE = 0xC0000050


class Header(NamedTuple):
    """One SMB2 header; ``tree_id`` is meaningless when ASYNC_COMMAND is set.

    A named tuple rather than a frozen dataclass: every request parses one
    and every response builds one, and a frozen dataclass's ``__init__``
    (one ``object.__setattr__`` per field) cost several times as much.
    """

    command: int
    message_id: int
    flags: int = 0
    status: int = 0  # in requests from 3.x clients: ChannelSequence + Reserved
    credit_charge: int = 0
    credits: int = 0  # CreditRequest in requests, CreditResponse in responses
    next_command: int = 0
    tree_id: int = 0
    async_id: int = 0
    session_id: int = 0
    signature: bytes = b"\x00" * SIGNATURE_SIZE

    @property
    def is_async(self) -> bool:
        return bool(self.flags & _ASYNC)

    @property
    def is_related(self) -> bool:
        return bool(self.flags & _RELATED)

    @property
    def is_signed(self) -> bool:
        return bool(self.flags & _SIGNED)

    @property
    def is_response(self) -> bool:
        return bool(self.flags & _RESPONSE)

    def evolve(self, **changes: Any) -> "Header":
        return self._replace(**changes)

    def pack(self, next_command: int | None = None) -> bytes:
        """The 64 bytes; ``next_command`` overrides NextCommand (a compound's
        replies are framed without a copy of each header)."""
        middle = self.async_id if self.flags & _ASYNC else self.tree_id << 32
        return _HEADER.pack(
            PROTOCOL_ID, HEADER_SIZE, self.credit_charge, self.status, self.command,
            self.credits, self.flags, self.next_command if next_command is None else next_command,
            self.message_id, middle, self.session_id, self.signature,
        )


class HeaderError(ValueError):
    """Bytes that are not an SMB2 header."""


def parse_header(data: bytes | memoryview) -> Header:
    """Parse the first 64 bytes of ``data`` as an SMB2 header."""
    if len(data) < HEADER_SIZE:
        raise HeaderError("message shorter than an SMB2 header")
    (proto, size, charge, status, command, credits, flags, next_command,
     message_id, middle, session_id, signature) = _HEADER.unpack_from(data)
    if proto != PROTOCOL_ID:
        raise HeaderError("not an SMB2 message")
    if size != HEADER_SIZE:
        raise HeaderError("bad SMB2 header StructureSize")
    if flags & _ASYNC:
        tree_id, async_id = 0, middle
    else:
        tree_id, async_id = middle >> 32, 0
    # Positional, in the fields' order: keywords cost a third of the parse.
    return Header(command, message_id, flags, status, charge, credits, next_command,
                  tree_id, async_id, session_id, bytes(signature))


def error_body(error_data: bytes = b"") -> bytes:
    """An ERROR response body (2.2.2): StructureSize 9 and at least one byte of data."""
    return struct.pack("<HBBI", 9, 0, 0, len(error_data)) + (error_data or b"\x00")
