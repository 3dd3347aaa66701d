"""LOCK (MS-SMB2 2.2.26, 2.2.27)."""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from smb.wire.body import MalformedRequest, unpack_fixed


class LockFlags(enum.IntFlag):
    SHARED = 0x01
    EXCLUSIVE = 0x02
    UNLOCK = 0x04
    FAIL_IMMEDIATELY = 0x10


_REQUEST = struct.Struct("<HHI16s")
_ELEMENT = struct.Struct("<QQII")
_RESPONSE = struct.Struct("<HH")
MAX_LOCKS_PER_REQUEST = 64


@dataclass(frozen=True)
class LockElement:
    offset: int
    length: int
    flags: int


@dataclass(frozen=True)
class LockRequest:
    sequence: int
    file_id: bytes
    locks: tuple[LockElement, ...]


def parse_lock(body: bytes | memoryview) -> LockRequest:
    _, count, sequence, file_id = unpack_fixed(_REQUEST, body, 48)
    if count == 0 or count > MAX_LOCKS_PER_REQUEST:
        raise MalformedRequest("LockCount out of range")
    if _REQUEST.size + count * _ELEMENT.size > len(body):
        raise MalformedRequest("lock elements truncated")
    locks = tuple(LockElement(*_ELEMENT.unpack_from(body, _REQUEST.size + i * _ELEMENT.size)[:3])
                  for i in range(count))
    return LockRequest(sequence, file_id, locks)


def lock_response() -> bytes:
    return _RESPONSE.pack(4, 0)
