"""CHANGE_NOTIFY (MS-SMB2 2.2.35, 2.2.36) and FILE_NOTIFY_INFORMATION (MS-FSCC 2.7.1)."""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from smb.wire.body import unpack_fixed
from smb.wire.header import HEADER_SIZE

WATCH_TREE = 0x0001

_REQUEST = struct.Struct("<HHI16sII")
_RESPONSE = struct.Struct("<HHI")
_ENTRY = struct.Struct("<III")


class Filter(enum.IntFlag):
    FILE_NAME = 0x001
    DIR_NAME = 0x002
    ATTRIBUTES = 0x004
    SIZE = 0x008
    LAST_WRITE = 0x010
    LAST_ACCESS = 0x020
    CREATION = 0x040
    EA = 0x080
    SECURITY = 0x100


class Action(enum.IntEnum):
    ADDED = 1
    REMOVED = 2
    MODIFIED = 3


@dataclass(frozen=True)
class ChangeNotifyRequest:
    flags: int
    output_length: int
    file_id: bytes
    completion_filter: int


def parse_change_notify(body: bytes | memoryview) -> ChangeNotifyRequest:
    _, flags, out_len, file_id, completion_filter, _ = unpack_fixed(_REQUEST, body, 32)
    return ChangeNotifyRequest(flags, out_len, file_id, completion_filter)


def encode_changes(changes: list[tuple[int, str]]) -> bytes:
    """FILE_NOTIFY_INFORMATION entries, each 4-byte aligned and linked by offset."""
    out = bytearray()
    for i, (action, name) in enumerate(changes):
        raw = name.encode("utf-16-le", errors="surrogatepass")
        entry = _ENTRY.pack(0, action, len(raw)) + raw
        if i < len(changes) - 1:
            size = (len(entry) + 3) & ~3
            entry = struct.pack("<I", size) + entry[4:] + b"\x00" * (size - len(entry))
        out += entry
    return bytes(out)


def change_notify_response(data: bytes) -> bytes:
    offset = HEADER_SIZE + _RESPONSE.size if data else 0
    return _RESPONSE.pack(9, offset, len(data)) + (data or b"\x00")
