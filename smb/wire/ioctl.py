"""IOCTL (MS-SMB2 2.2.31, 2.2.32) and the FSCTL payloads this server answers."""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from smb.wire.body import MalformedRequest, buffer_at, pad8, unpack_fixed
from smb.wire.header import HEADER_SIZE

FSCTL_GET_COMPRESSION = 0x0009003C
FSCTL_SET_COMPRESSION = 0x0009C040
FSCTL_CREATE_OR_GET_OBJECT_ID = 0x000900C0
FSCTL_SET_SPARSE = 0x000900C4
FSCTL_SET_ZERO_DATA = 0x000980C8
FSCTL_QUERY_ALLOCATED_RANGES = 0x000940CF
FSCTL_SRV_REQUEST_RESUME_KEY = 0x00140078
FSCTL_SRV_COPYCHUNK = 0x001440F2
FSCTL_SRV_COPYCHUNK_WRITE = 0x001480F2
COMPRESSION_FORMAT_NONE = 0
FSCTL_DFS_GET_REFERRALS = 0x00060194
FSCTL_DFS_GET_REFERRALS_EX = 0x000601B0
FSCTL_QUERY_NETWORK_INTERFACE_INFO = 0x001401FC
FSCTL_VALIDATE_NEGOTIATE_INFO = 0x00140204
FSCTL_PIPE_TRANSCEIVE = 0x0011C017
FSCTL_LMR_REQUEST_RESILIENCY = 0x001401D4
IOCTL_IS_FSCTL = 0x00000001

_REQUEST = struct.Struct("<HHI16sIIIIIIII")
_RESPONSE = struct.Struct("<HHI16sIIIIII")
_VALIDATE = struct.Struct("<I16sHH")
_INTERFACE = struct.Struct("<IIIIQ")
OUTPUT_OFFSET = HEADER_SIZE + _RESPONSE.size


@dataclass(frozen=True)
class IoctlRequest:
    ctl_code: int
    file_id: bytes
    input: memoryview
    max_output: int
    flags: int


def parse_ioctl(body: bytes | memoryview, message: bytes | memoryview) -> IoctlRequest:
    (_, _, code, file_id, in_off, in_len, _, _, _, max_out, flags, _) = unpack_fixed(
        _REQUEST, body, 57)
    return IoctlRequest(code, file_id, buffer_at(message, in_off, in_len), max_out, flags)


def ioctl_response(ctl_code: int, file_id: bytes, output: bytes) -> bytes:
    out_off = OUTPUT_OFFSET if output else 0
    # Input is not echoed back; its offset still points at the buffer as Windows does.
    fixed = _RESPONSE.pack(49, 0, ctl_code, file_id, OUTPUT_OFFSET, 0, out_off, len(output), 0, 0)
    return fixed + (output or b"\x00")


@dataclass(frozen=True)
class ValidateNegotiate:
    capabilities: int
    guid: bytes
    security_mode: int
    dialects: tuple[int, ...]


def parse_validate_negotiate(data: bytes | memoryview) -> ValidateNegotiate:
    if len(data) < _VALIDATE.size:
        raise MalformedRequest("VALIDATE_NEGOTIATE_INFO input too short")
    caps, guid, mode, count = _VALIDATE.unpack_from(data)
    if _VALIDATE.size + 2 * count > len(data):
        raise MalformedRequest("VALIDATE_NEGOTIATE_INFO dialects truncated")
    dialects = struct.unpack_from(f"<{count}H", data, _VALIDATE.size)
    return ValidateNegotiate(caps, bytes(guid), mode, tuple(dialects))


def validate_negotiate_response(capabilities: int, guid: bytes, security_mode: int,
                                dialect: int) -> bytes:
    return _VALIDATE.pack(capabilities, guid, security_mode, dialect)


_RESILIENCY = struct.Struct("<II")


def parse_resiliency_request(data: bytes | memoryview) -> int | None:
    """NETWORK_RESILIENCY_REQUEST (2.2.31.3): the Timeout in milliseconds, or None
    when the input is shorter than the structure (3.3.5.15.9 makes that
    INVALID_PARAMETER, not a malformed message).  Reserved is ignored."""
    if len(data) < _RESILIENCY.size:
        return None
    timeout: int = _RESILIENCY.unpack_from(data)[0]
    return timeout


def object_id(oid: bytes) -> bytes:
    """FILE_OBJECTID_BUFFER (MS-FSCC 2.1.3.1): the id, then 48 bytes of birth ids."""
    return oid + b"\x00" * 48


def resume_key_response(key: bytes) -> bytes:
    """SRV_REQUEST_RESUME_KEY response (2.2.32.3): 24-byte key, no context."""
    return key + struct.pack("<I", 0) + b"\x00" * 4


_RANGE = struct.Struct("<qq")
RANGE_SIZE = _RANGE.size


def parse_range(data: bytes | memoryview) -> tuple[int, int]:
    """FILE_ALLOCATED_RANGE_BUFFER / FILE_ZERO_DATA_INFORMATION: two signed 64-bit values."""
    if len(data) < _RANGE.size:
        raise MalformedRequest("range buffer too short")
    return _RANGE.unpack_from(data)


def encode_ranges(ranges: list[tuple[int, int]]) -> bytes:
    return b"".join(_RANGE.pack(offset, length) for offset, length in ranges)


_COPYCHUNK_HEAD = struct.Struct("<24sII")
_CHUNK = struct.Struct("<QQII")
_COPYCHUNK_RESPONSE = struct.Struct("<III")


@dataclass(frozen=True)
class Chunk:
    source_offset: int
    target_offset: int
    length: int


@dataclass(frozen=True)
class CopyChunkRequest:
    source_key: bytes
    chunks: tuple[Chunk, ...]


def parse_copychunk(data: bytes | memoryview, max_chunks: int) -> CopyChunkRequest:
    """SRV_COPYCHUNK_COPY (2.2.31.1); more than ``max_chunks`` chunks are not parsed."""
    if len(data) < _COPYCHUNK_HEAD.size:
        raise MalformedRequest("SRV_COPYCHUNK_COPY too short")
    key, count, _ = _COPYCHUNK_HEAD.unpack_from(data)
    if count > max_chunks:
        return CopyChunkRequest(key, tuple(Chunk(0, 0, 0) for _ in range(max_chunks + 1)))
    if _COPYCHUNK_HEAD.size + count * _CHUNK.size > len(data):
        raise MalformedRequest("SRV_COPYCHUNK_COPY chunks truncated")
    chunks = tuple(Chunk(*_CHUNK.unpack_from(data, _COPYCHUNK_HEAD.size + i * _CHUNK.size)[:3])
                   for i in range(count))
    return CopyChunkRequest(bytes(key), chunks)


def copychunk_response(chunks_written: int, chunk_bytes_written: int,
                       total_bytes_written: int) -> bytes:
    """SRV_COPYCHUNK_RESPONSE (2.2.32.1); on INVALID_PARAMETER it carries the limits."""
    return _COPYCHUNK_RESPONSE.pack(chunks_written, chunk_bytes_written, total_bytes_written)


@dataclass(frozen=True)
class NetworkInterface:
    index: int
    address: str
    link_speed: int
    rss: bool = False


def _sockaddr(address: str) -> bytes:
    """SOCKADDR_STORAGE (MS-SMB2 2.2.32.5.1), 128 bytes."""
    if ":" in address:
        raw = struct.pack("<HHI16sI", 0x17, 0, 0, socket.inet_pton(socket.AF_INET6, address), 0)
    else:
        raw = struct.pack("<HH4s8x", 0x02, 0, socket.inet_pton(socket.AF_INET, address))
    return raw.ljust(128, b"\x00")


def network_interfaces(interfaces: list[NetworkInterface]) -> bytes:
    """NETWORK_INTERFACE_INFO entries (2.2.32.5) linked by Next."""
    out = bytearray()
    for i, iface in enumerate(interfaces):
        last = i == len(interfaces) - 1
        entry_size = pad8(_INTERFACE.size + 128)
        out += _INTERFACE.pack(0 if last else entry_size, iface.index, 1 if iface.rss else 0,
                               0, iface.link_speed) + _sockaddr(iface.address)
    return bytes(out)
