"""QUERY_DIRECTORY (MS-SMB2 2.2.33, 2.2.34) and the directory entry classes
of MS-FSCC 2.4 that clients ask for, plus DOS wildcard matching (MS-FSA 2.1.4.4).
"""

from __future__ import annotations

import enum
import re
import struct
from dataclasses import dataclass
from functools import lru_cache

from smb.wire.body import buffer_at, pad8, unpack_fixed, utf16
from smb.wire.header import HEADER_SIZE


class DirectoryClass(enum.IntEnum):
    DIRECTORY = 0x01
    FULL_DIRECTORY = 0x02
    BOTH_DIRECTORY = 0x03
    NAMES = 0x0C
    ID_BOTH_DIRECTORY = 0x25
    ID_FULL_DIRECTORY = 0x26


class QueryDirectoryFlags(enum.IntFlag):
    RESTART_SCANS = 0x01
    RETURN_SINGLE_ENTRY = 0x02
    INDEX_SPECIFIED = 0x04
    REOPEN = 0x10


_REQUEST = struct.Struct("<HBBI16sHHI")
_RESPONSE = struct.Struct("<HHI")
RESPONSE_BUFFER_OFFSET = HEADER_SIZE + 8

# NextEntryOffset, FileIndex, 4 times, EndOfFile, AllocationSize, attributes, name length.
_DIRECTORY = struct.Struct("<IIQQQQQQII")
_NAMES = struct.Struct("<III")


@dataclass(frozen=True)
class QueryDirectoryRequest:
    info_class: int
    flags: int
    file_index: int
    file_id: bytes
    pattern: str
    output_length: int


def parse_query_directory(body: bytes | memoryview,
                          message: bytes | memoryview) -> QueryDirectoryRequest:
    _, cls, flags, index, file_id, name_off, name_len, out_len = unpack_fixed(_REQUEST, body, 33)
    pattern = utf16(buffer_at(message, name_off, name_len)) if name_len else ""
    return QueryDirectoryRequest(cls, flags, index, file_id, pattern, out_len)


def query_directory_response(data: bytes) -> bytes:
    return _RESPONSE.pack(9, RESPONSE_BUFFER_OFFSET, len(data)) + (data or b"\x00")


@dataclass(frozen=True)
class EntryInfo:
    """What one directory entry says about a file."""

    name: str
    creation: int
    last_access: int
    last_write: int
    change: int
    end_of_file: int
    allocation_size: int
    attributes: int
    file_id: int


def fixed_entry_size(info_class: int) -> int:
    return len(encode_entry(info_class, EntryInfo("", 0, 0, 0, 0, 0, 0, 0, 0)))


def encode_entry(info_class: int, e: EntryInfo) -> bytes:
    """One entry without padding, NextEntryOffset 0 (the packer links them)."""
    name = e.name.encode("utf-16-le", errors="surrogatepass")
    if info_class == DirectoryClass.NAMES:
        return _NAMES.pack(0, 0, len(name)) + name
    base = _DIRECTORY.pack(0, 0, e.creation, e.last_access, e.last_write, e.change,
                           e.end_of_file, e.allocation_size, e.attributes, len(name))
    ea_size = b"\x00" * 4
    if info_class == DirectoryClass.DIRECTORY:
        return base + name
    if info_class == DirectoryClass.FULL_DIRECTORY:
        return base + ea_size + name
    if info_class == DirectoryClass.ID_FULL_DIRECTORY:
        return base + ea_size + struct.pack("<IQ", 0, e.file_id) + name
    # Short names are not generated: ShortNameLength 0, 24 zero bytes.
    both = base + ea_size + b"\x00\x00" + b"\x00" * 24
    if info_class == DirectoryClass.BOTH_DIRECTORY:
        return both + name
    if info_class == DirectoryClass.ID_BOTH_DIRECTORY:
        return both + struct.pack("<HQ", 0, e.file_id) + name
    raise ValueError(f"directory class {info_class:#x} not served")


def pack_entries(entries: list[bytes]) -> bytes:
    """Link entries with 8-aligned NextEntryOffset; the last one points nowhere."""
    out = bytearray()
    for i, entry in enumerate(entries):
        last = i == len(entries) - 1
        size = len(entry) if last else pad8(len(entry))
        out += struct.pack("<I", 0 if last else size) + entry[4:]
        out += b"\x00" * (size - len(entry))
    return bytes(out)


@lru_cache(maxsize=256)
def _compile(pattern: str) -> re.Pattern[str]:
    out = []
    for c in pattern:
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == ">":  # DOS_QM: any one character, or none before a dot / the end
            out.append("[^.]?")
        elif c == "<":  # DOS_STAR, approximated as '*'
            out.append(".*")
        elif c == '"':  # DOS_DOT
            out.append("(?:\\.|$)")
        else:
            out.append(re.escape(c))
    return re.compile("".join(out) + r"\Z", re.IGNORECASE | re.DOTALL)


def _has_wildcards(pattern: str) -> bool:
    return any(c in pattern for c in '*?<>"')


def matches(pattern: str, name: str) -> bool:
    """Case-insensitive DOS wildcard match; ``*`` and ``*.*`` match every name."""
    if pattern in ("*", "*.*", "<.<", ""):
        return True
    if not _has_wildcards(pattern):
        return pattern.casefold() == name.casefold()
    return _compile(pattern).match(name) is not None
