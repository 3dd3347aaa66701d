"""Bounds-checked access to a request body and its variable buffers.

Every file-command codec reads a fixed part and then one or more buffers that
the client locates with an offset counted from the start of the SMB2 header.
A length field that lies must be refused before anything is sliced or
allocated; these helpers are where that happens, once.
"""

from __future__ import annotations

import struct
from typing import Any

from smb.wire.header import HEADER_SIZE, Status


class MalformedRequest(ValueError):
    """A request whose fields do not fit its bytes; answered with ``status``."""

    def __init__(self, why: str, status: int = Status.INVALID_PARAMETER):
        super().__init__(why)
        self.status = status


def unpack_fixed(layout: struct.Struct, body: bytes | memoryview,
                 structure_size: int) -> tuple[Any, ...]:
    """Unpack the fixed part; its first field is the StructureSize."""
    if len(body) < layout.size:
        raise MalformedRequest("request body shorter than its fixed part")
    fields = layout.unpack_from(body)
    if fields[0] != structure_size:
        raise MalformedRequest(f"StructureSize {fields[0]} is not {structure_size}")
    return fields


def buffer_at(message: bytes | memoryview, offset: int, length: int) -> memoryview:
    """The ``length`` bytes at ``offset`` from the header start, or empty for length 0."""
    if length == 0:
        return memoryview(b"")
    if offset < HEADER_SIZE or offset + length > len(message):
        raise MalformedRequest("buffer lies outside the message")
    return memoryview(message)[offset: offset + length]


def utf16(data: bytes | memoryview) -> str:
    """Decode a UTF-16LE name; odd lengths and lone surrogates are refused."""
    if len(data) % 2:
        raise MalformedRequest("odd-length UTF-16 name", Status.OBJECT_NAME_INVALID)
    text = bytes(data).decode("utf-16-le", errors="surrogatepass")
    return text.rstrip("\x00")


def pad8(n: int) -> int:
    return (n + 7) & ~7
