"""TREE_CONNECT and TREE_DISCONNECT (MS-SMB2 2.2.9, 2.2.10, 2.2.11, 2.2.12)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from smb.wire.body import MalformedRequest, buffer_at, unpack_fixed, utf16

SHARE_TYPE_DISK = 0x01
SHAREFLAG_MANUAL_CACHING = 0x0000
SHAREFLAG_NO_CACHING = 0x0030
SHAREFLAG_ENCRYPT_DATA = 0x8000
SHARE_CAP_CONTINUOUS_AVAILABILITY = 0x0010
TREE_CONNECT_FLAG_EXTENSION_PRESENT = 0x0004

_REQUEST = struct.Struct("<HHHH")
_RESPONSE = struct.Struct("<HBBIII")
_DISCONNECT = struct.Struct("<HH")


@dataclass(frozen=True)
class TreeConnectRequest:
    flags: int
    path: str

    @property
    def share_name(self) -> str:
        r"""The share part of ``\\server\share``."""
        path = self.path
        if not path.startswith("\\\\"):
            raise MalformedRequest("tree connect path is not \\\\server\\share")
        parts = path[2:].split("\\")
        if len(parts) != 2 or not parts[0] or not parts[1]:
            raise MalformedRequest("tree connect path is not \\\\server\\share")
        return parts[1]


def parse_tree_connect(body: bytes | memoryview, message: bytes | memoryview) -> TreeConnectRequest:
    _, flags, offset, length = unpack_fixed(_REQUEST, body, 9)
    if flags & TREE_CONNECT_FLAG_EXTENSION_PRESENT:
        # 2.2.9.1 tree connect contexts (remoted identity, redirection) are not served.
        raise MalformedRequest("tree connect extensions are not supported")
    return TreeConnectRequest(flags, utf16(buffer_at(message, offset, length)))


def tree_connect_response(share_type: int, share_flags: int, capabilities: int,
                          maximal_access: int) -> bytes:
    return _RESPONSE.pack(16, share_type, 0, share_flags, capabilities, maximal_access)


def parse_tree_disconnect(body: bytes | memoryview) -> None:
    unpack_fixed(_DISCONNECT, body, 4)


def tree_disconnect_response() -> bytes:
    return _DISCONNECT.pack(4, 0)
