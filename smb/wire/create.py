"""CREATE and CLOSE (MS-SMB2 2.2.13, 2.2.14, 2.2.15, 2.2.16).

Create contexts are kept as raw ``name -> data`` pairs: the durable-handle
and lease contexts (DHnQ, DH2Q, RqLs, ...) get typed codecs when the server
starts granting them.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field
from typing import Sequence

from smb.wire.body import MalformedRequest, buffer_at, pad8, unpack_fixed, utf16


class Disposition(enum.IntEnum):
    SUPERSEDE = 0
    OPEN = 1
    CREATE = 2
    OPEN_IF = 3
    OVERWRITE = 4
    OVERWRITE_IF = 5


class CreateAction(enum.IntEnum):
    SUPERSEDED = 0
    OPENED = 1
    CREATED = 2
    OVERWRITTEN = 3


class CreateOptions(enum.IntFlag):
    DIRECTORY_FILE = 0x00000001
    WRITE_THROUGH = 0x00000002
    SEQUENTIAL_ONLY = 0x00000004
    NO_INTERMEDIATE_BUFFERING = 0x00000008
    NON_DIRECTORY_FILE = 0x00000040
    NO_EA_KNOWLEDGE = 0x00000200
    RANDOM_ACCESS = 0x00000800
    DELETE_ON_CLOSE = 0x00001000
    OPEN_BY_FILE_ID = 0x00002000
    OPEN_FOR_BACKUP_INTENT = 0x00004000
    OPEN_REPARSE_POINT = 0x00200000


IMPERSONATION_DELEGATE = 3
CLOSE_FLAG_POSTQUERY_ATTRIB = 0x0001

_REQUEST = struct.Struct("<HBBIQQIIIIIHHII")
_RESPONSE = struct.Struct("<HBBIQQQQQQII16sII")
_CONTEXT = struct.Struct("<IHHHHI")
_CLOSE_REQUEST = struct.Struct("<HHI16s")
_CLOSE_RESPONSE = struct.Struct("<HHIQQQQQQI")


@dataclass(frozen=True)
class CreateRequest:
    oplock_level: int
    impersonation_level: int
    desired_access: int
    file_attributes: int
    share_access: int
    disposition: int
    options: int
    name: str
    contexts: dict[str, bytes] = field(default_factory=dict)


def parse_create_contexts(data: bytes | memoryview) -> dict[str, bytes]:
    """The chain of create contexts (2.2.13.2) as name -> data."""
    data = memoryview(data)
    contexts: dict[str, bytes] = {}
    pos = 0
    while True:
        if pos + _CONTEXT.size > len(data):
            raise MalformedRequest("create context truncated")
        nxt, name_off, name_len, _, data_off, data_len = _CONTEXT.unpack_from(data, pos)
        end = pos + (nxt if nxt else len(data) - pos)
        if end > len(data) or (nxt and nxt < _CONTEXT.size):
            raise MalformedRequest("create context Next out of bounds")
        if name_off < _CONTEXT.size or pos + name_off + name_len > end or name_len == 0:
            raise MalformedRequest("create context name out of bounds")
        if data_len and (data_off < name_off + name_len or pos + data_off + data_len > end):
            raise MalformedRequest("create context data out of bounds")
        name = bytes(data[pos + name_off: pos + name_off + name_len]).decode("latin-1")
        if name in contexts:
            raise MalformedRequest("create context repeated")
        contexts[name] = bytes(data[pos + data_off: pos + data_off + data_len])
        if not nxt:
            return contexts
        pos += nxt


def encode_create_contexts(contexts: list[tuple[str, bytes]]) -> bytes:
    """Chain response contexts, each 8-aligned, name padded to 8 before its data."""
    out = bytearray()
    for i, (name, data) in enumerate(contexts):
        raw_name = name.encode("latin-1")
        data_off = pad8(_CONTEXT.size + len(raw_name))
        size = data_off + len(data)
        last = i == len(contexts) - 1
        nxt = 0 if last else pad8(size)
        entry = _CONTEXT.pack(nxt, _CONTEXT.size, len(raw_name), 0,
                              data_off if data else 0, len(data)) + raw_name
        entry = entry.ljust(data_off, b"\x00") + data
        out += entry if last else entry.ljust(nxt, b"\x00")
    return bytes(out)


def parse_create(body: bytes | memoryview, message: bytes | memoryview) -> CreateRequest:
    (_, _, oplock, imp, _, _, access, attrs, share, disposition, options,
     name_off, name_len, ctx_off, ctx_len) = unpack_fixed(_REQUEST, body, 57)
    name = utf16(buffer_at(message, name_off, name_len)) if name_len else ""
    contexts = parse_create_contexts(buffer_at(message, ctx_off, ctx_len)) if ctx_len else {}
    return CreateRequest(oplock, imp, access, attrs, share, disposition, options, name, contexts)


@dataclass(frozen=True)
class FileTimes:
    """The times, sizes and attributes CREATE and CLOSE replies carry."""

    creation: int = 0
    last_access: int = 0
    last_write: int = 0
    change: int = 0
    allocation_size: int = 0
    end_of_file: int = 0
    attributes: int = 0


def create_response(action: int, times: FileTimes, file_id: bytes,
                    contexts: Sequence[tuple[str, bytes]] = (), oplock_level: int = 0) -> bytes:
    blob = encode_create_contexts(list(contexts)) if contexts else b""
    # Contexts start 8-aligned after the 64-byte header and the 88-byte fixed part.
    ctx_off = 64 + _RESPONSE.size if blob else 0
    fixed = _RESPONSE.pack(
        89, oplock_level, 0, action, times.creation, times.last_access, times.last_write,
        times.change, times.allocation_size, times.end_of_file, times.attributes, 0,
        file_id, ctx_off, len(blob))
    return fixed + (blob or b"\x00")


def parse_close(body: bytes | memoryview) -> tuple[int, bytes]:
    """(flags, file_id)."""
    _, flags, _, file_id = unpack_fixed(_CLOSE_REQUEST, body, 24)
    return flags, file_id


def close_response(flags: int, times: FileTimes | None) -> bytes:
    t = times or FileTimes()
    return _CLOSE_RESPONSE.pack(60, flags if times else 0, 0, t.creation, t.last_access,
                                t.last_write, t.change, t.allocation_size, t.end_of_file,
                                t.attributes)
