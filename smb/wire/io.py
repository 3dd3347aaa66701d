"""READ, WRITE and FLUSH (MS-SMB2 2.2.17 to 2.2.22)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from smb.wire.body import MalformedRequest, buffer_at, unpack_fixed
from smb.wire.header import HEADER_SIZE

WRITE_FLAG_WRITE_THROUGH = 0x00000001

_READ_REQUEST = struct.Struct("<HBBIQ16sIIIHH")
_READ_RESPONSE = struct.Struct("<HBBIII")
_WRITE_REQUEST = struct.Struct("<HHIQ16sIIHHI")
_WRITE_RESPONSE = struct.Struct("<HHIIHH")
_FLUSH_REQUEST = struct.Struct("<HHI16s")
_FLUSH_RESPONSE = struct.Struct("<HH")

# Where READ data starts: after the header and the 16-byte fixed response.
READ_DATA_OFFSET = HEADER_SIZE + _READ_RESPONSE.size


@dataclass(frozen=True)
class ReadRequest:
    flags: int
    length: int
    offset: int
    file_id: bytes
    minimum_count: int


@dataclass(frozen=True)
class WriteRequest:
    offset: int
    file_id: bytes
    flags: int
    data: memoryview


def parse_read(body: bytes | memoryview) -> ReadRequest:
    (_, _, flags, length, offset, file_id, minimum, channel, _, _, _) = unpack_fixed(
        _READ_REQUEST, body, 49)
    if channel != 0:
        raise MalformedRequest("RDMA channels are not offered")
    return ReadRequest(flags, length, offset, file_id, minimum)


def read_response(data_length: int) -> bytes:
    """The fixed part; the data itself goes out as the reply's payload.

    With no data the one-byte Buffer that StructureSize 17 implies is sent.
    """
    fixed = _READ_RESPONSE.pack(17, READ_DATA_OFFSET, 0, data_length, 0, 0)
    return fixed if data_length else fixed + b"\x00"


def parse_write(body: bytes | memoryview, message: bytes | memoryview) -> WriteRequest:
    (_, data_off, length, offset, file_id, channel, _, _, _, flags) = unpack_fixed(
        _WRITE_REQUEST, body, 49)
    if channel != 0:
        raise MalformedRequest("RDMA channels are not offered")
    return WriteRequest(offset, file_id, flags, buffer_at(message, data_off, length))


def write_response(count: int) -> bytes:
    return _WRITE_RESPONSE.pack(17, 0, count, 0, 0, 0) + b"\x00"


def parse_flush(body: bytes | memoryview) -> bytes:
    _, _, _, file_id = unpack_fixed(_FLUSH_REQUEST, body, 24)
    return bytes(file_id)


def flush_response() -> bytes:
    return _FLUSH_RESPONSE.pack(4, 0)
