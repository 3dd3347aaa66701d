"""OPLOCK_BREAK messages (MS-SMB2 2.2.23 to 2.2.26): notifications the server
sends unasked, and the acknowledgements a client answers them with.

One command code carries two shapes, told apart by StructureSize: 24 for an
oplock (notification, acknowledgement and response alike) and 44/36 for a
lease (notification / acknowledgement and response).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from smb.wire.body import MalformedRequest

_OPLOCK = struct.Struct("<HBBI16s")          # size 24, level, reserved, reserved2, FileId
_LEASE_BREAK = struct.Struct("<HHI16sIIIII")  # size 44, epoch, flags, key, cur, new, reason, hints
_LEASE_ACK = struct.Struct("<HHI16sIQ")       # size 36, reserved, flags, key, state, duration
OPLOCK_SIZE = 24
LEASE_ACK_SIZE = 36
# The MessageId every unsolicited notification carries (2.2.23).
NOTIFICATION_MESSAGE_ID = 0xFFFFFFFFFFFFFFFF


@dataclass(frozen=True)
class OplockAck:
    level: int
    file_id: bytes


@dataclass(frozen=True)
class LeaseAck:
    key: bytes
    state: int


def oplock_break(level: int, file_id: bytes) -> bytes:
    """The oplock break notification, and equally the acknowledgement's response."""
    return _OPLOCK.pack(OPLOCK_SIZE, level, 0, 0, file_id)


def lease_break(epoch: int, flags: int, key: bytes, current: int, new: int) -> bytes:
    return _LEASE_BREAK.pack(44, epoch, flags, key, current, new, 0, 0, 0)


def lease_ack_response(key: bytes, state: int) -> bytes:
    return _LEASE_ACK.pack(LEASE_ACK_SIZE, 0, 0, key, state, 0)


def parse_ack(body: bytes | memoryview) -> OplockAck | LeaseAck:
    """An acknowledgement; its StructureSize says which kind."""
    if len(body) < 2:
        raise MalformedRequest("OPLOCK_BREAK body too short")
    size = int.from_bytes(body[:2], "little")
    if size == OPLOCK_SIZE and len(body) >= _OPLOCK.size:
        _, level, _, _, file_id = _OPLOCK.unpack_from(body)
        return OplockAck(level, bytes(file_id))
    if size == LEASE_ACK_SIZE and len(body) >= _LEASE_ACK.size:
        _, _, _, key, state, _ = _LEASE_ACK.unpack_from(body)
        return LeaseAck(bytes(key), state)
    raise MalformedRequest(f"OPLOCK_BREAK with StructureSize {size}")
