"""SESSION_SETUP, LOGOFF, ECHO and CANCEL bodies (MS-SMB2 2.2.5-2.2.8, 2.2.28, 2.2.30)."""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from smb.wire.header import HEADER_SIZE


class SessionFlags(enum.IntFlag):
    IS_GUEST = 0x0001
    IS_NULL = 0x0002
    ENCRYPT_DATA = 0x0004


SESSION_SETUP_BINDING = 0x01


class BodyError(ValueError):
    """A request body that is too short or points outside its message."""


@dataclass(frozen=True)
class SessionSetupRequest:
    flags: int
    security_mode: int
    capabilities: int
    previous_session_id: int
    security_buffer: bytes


def parse_session_setup(body: bytes | memoryview,
                        message: bytes | memoryview) -> SessionSetupRequest:
    if len(body) < 24:
        raise BodyError("SESSION_SETUP body too short")
    (size, flags, security_mode, capabilities, _, offset, length,
     previous) = struct.unpack_from("<HBBIIHHQ", body)
    if size != 25:
        raise BodyError("bad SESSION_SETUP StructureSize")
    if length and (offset < HEADER_SIZE + 24 or offset + length > len(message)):
        raise BodyError("security buffer outside the message")
    return SessionSetupRequest(flags, security_mode, capabilities, previous,
                               bytes(message[offset:offset + length]))


def session_setup_response(session_flags: int, security_buffer: bytes) -> bytes:
    offset = HEADER_SIZE + 8 if security_buffer else 0
    return struct.pack("<HHHH", 9, session_flags, offset, len(security_buffer)) + security_buffer


def check_small_body(body: bytes | memoryview, name: str) -> None:
    """LOGOFF, ECHO and CANCEL: StructureSize 4 and two reserved bytes."""
    if len(body) < 4 or struct.unpack_from("<H", body)[0] != 4:
        raise BodyError(f"bad {name} body")


SMALL_RESPONSE = struct.pack("<HH", 4, 0)
