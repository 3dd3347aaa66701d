"""Extended attributes as SMB carries them: FILE_FULL_EA_INFORMATION lists
(MS-FSCC 2.4.15) in the ExtA create context, in SET_INFO and in QUERY_INFO,
and FILE_GET_EA_INFORMATION lists (2.4.15.1) naming the ones wanted.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from smb.wire.body import MalformedRequest

_FULL = struct.Struct("<IBBH")
_GET = struct.Struct("<IB")


@dataclass(frozen=True)
class Ea:
    name: str
    value: bytes
    flags: int = 0


def _aligned(n: int) -> int:
    return (n + 3) & ~3


def parse_full_ea_list(data: bytes | memoryview) -> list[Ea]:
    data = bytes(data)
    out: list[Ea] = []
    pos = 0
    while True:
        if pos + _FULL.size > len(data):
            raise MalformedRequest("EA entry truncated")
        nxt, flags, name_len, value_len = _FULL.unpack_from(data, pos)
        name_at = pos + _FULL.size
        end = name_at + name_len + 1 + value_len
        if end > len(data) or (nxt and pos + nxt < end):
            raise MalformedRequest("EA entry overruns its buffer")
        if name_len == 0 or data[name_at + name_len] != 0:
            raise MalformedRequest("EA name missing or not terminated")
        try:
            name = data[name_at: name_at + name_len].decode("ascii")
        except UnicodeDecodeError:
            raise MalformedRequest("EA name not ASCII") from None
        value = data[name_at + name_len + 1: end]
        out.append(Ea(name, value, flags))
        if not nxt:
            return out
        pos += nxt


def encode_full_ea_list(eas: list[Ea]) -> bytes:
    out = bytearray()
    for i, ea in enumerate(eas):
        raw = ea.name.encode("ascii")
        entry = _FULL.pack(0, ea.flags, len(raw), len(ea.value)) + raw + b"\x00" + ea.value
        if i < len(eas) - 1:
            size = _aligned(len(entry))
            entry = struct.pack("<I", size) + entry[4:] + b"\x00" * (size - len(entry))
        out += entry
    return bytes(out)


def parse_get_ea_list(data: bytes | memoryview) -> list[str]:
    data = bytes(data)
    names: list[str] = []
    pos = 0
    while data:
        if pos + _GET.size > len(data):
            raise MalformedRequest("EA name entry truncated")
        nxt, name_len = _GET.unpack_from(data, pos)
        name = data[pos + _GET.size: pos + _GET.size + name_len]
        if len(name) != name_len:
            raise MalformedRequest("EA name entry overruns its buffer")
        names.append(name.decode("ascii", errors="replace"))
        if not nxt:
            break
        pos += nxt
    return names


def ea_size(eas: list[Ea]) -> int:
    """What FileEaInformation reports: the size of the full list as sent."""
    return len(encode_full_ea_list(eas)) if eas else 0


def merge(current: list[Ea], changes: list[Ea]) -> list[Ea]:
    """Apply a SET: names match case-insensitively, an empty value removes."""
    result = {ea.name.upper(): ea for ea in current}
    for ea in changes:
        if ea.value:
            result[ea.name.upper()] = ea
        else:
            result.pop(ea.name.upper(), None)
    return list(result.values())
