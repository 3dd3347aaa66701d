"""QUERY_INFO and SET_INFO (MS-SMB2 2.2.37 to 2.2.40) with the file and
filesystem information classes of MS-FSCC 2.4/2.5 and a self-relative
security descriptor (MS-DTYP 2.4.6).
"""

from __future__ import annotations

import enum
import re
import struct
from dataclasses import dataclass

from smb.wire.body import MalformedRequest, buffer_at, unpack_fixed, utf16
from smb.wire.header import HEADER_SIZE


class InfoType(enum.IntEnum):
    FILE = 1
    FILESYSTEM = 2
    SECURITY = 3
    QUOTA = 4


class FileClass(enum.IntEnum):
    BASIC = 4
    STANDARD = 5
    INTERNAL = 6
    EA = 7
    ACCESS = 8
    NAME = 9
    RENAME = 10
    LINK = 11
    DISPOSITION = 13
    POSITION = 14
    FULL_EA = 15
    MODE = 16
    ALIGNMENT = 17
    ALL = 18
    ALLOCATION = 19
    END_OF_FILE = 20
    ALTERNATE_NAME = 21
    STREAM = 22
    COMPRESSION = 28
    NETWORK_OPEN = 34
    VALID_DATA_LENGTH = 39
    SHORT_NAME = 40
    ATTRIBUTE_TAG = 35
    NORMALIZED_NAME = 48


class FsClass(enum.IntEnum):
    VOLUME = 1
    SIZE = 3
    DEVICE = 4
    ATTRIBUTE = 5
    CONTROL = 6
    FULL_SIZE = 7
    OBJECT_ID = 8
    SECTOR_SIZE = 11


_QUERY_REQUEST = struct.Struct("<HBBIHHIII16s")
_QUERY_RESPONSE = struct.Struct("<HHI")
_SET_REQUEST = struct.Struct("<HBBIHHI16s")
QUERY_RESPONSE_BUFFER_OFFSET = HEADER_SIZE + 8


@dataclass(frozen=True)
class QueryInfoRequest:
    info_type: int
    info_class: int
    output_length: int
    input: memoryview
    additional_information: int
    flags: int
    file_id: bytes


@dataclass(frozen=True)
class SetInfoRequest:
    info_type: int
    info_class: int
    buffer: memoryview
    additional_information: int
    file_id: bytes


def parse_query_info(body: bytes | memoryview, message: bytes | memoryview) -> QueryInfoRequest:
    (_, itype, cls, out_len, in_off, _, in_len, addl, flags, file_id) = unpack_fixed(
        _QUERY_REQUEST, body, 41)
    return QueryInfoRequest(itype, cls, out_len, buffer_at(message, in_off, in_len),
                            addl, flags, file_id)


def query_info_response(data: bytes) -> bytes:
    return _QUERY_RESPONSE.pack(9, QUERY_RESPONSE_BUFFER_OFFSET, len(data)) + (data or b"\x00")


def parse_set_info(body: bytes | memoryview, message: bytes | memoryview) -> SetInfoRequest:
    _, itype, cls, length, offset, _, addl, file_id = unpack_fixed(_SET_REQUEST, body, 33)
    return SetInfoRequest(itype, cls, buffer_at(message, offset, length), addl, file_id)


def set_info_response() -> bytes:
    return struct.pack("<H", 2)


# -- file information classes ------------------------------------------------


@dataclass(frozen=True)
class FileFacts:
    """Everything the file classes report, gathered once per request."""

    creation: int
    last_access: int
    last_write: int
    change: int
    attributes: int
    allocation_size: int
    end_of_file: int
    links: int
    delete_pending: bool
    is_directory: bool
    index: int
    access: int
    position: int
    mode: int
    name: str  # share-relative, backslash separated, with a leading backslash
    ea_size: int = 0


_BASIC = struct.Struct("<QQQQII")
_STANDARD = struct.Struct("<QQIBBH")


def _basic(f: FileFacts) -> bytes:
    return _BASIC.pack(f.creation, f.last_access, f.last_write, f.change, f.attributes, 0)


def _standard(f: FileFacts) -> bytes:
    return _STANDARD.pack(f.allocation_size, f.end_of_file, f.links,
                          int(f.delete_pending), int(f.is_directory), 0)


def _name(name: str) -> bytes:
    raw = name.encode("utf-16-le", errors="surrogatepass")
    return struct.pack("<I", len(raw)) + raw


def _stream(f: FileFacts) -> bytes:
    if f.is_directory:
        return b""
    name = "::$DATA".encode("utf-16-le")
    return struct.pack("<IIQQ", 0, len(name), f.end_of_file, f.allocation_size) + name


_EIGHT_DOT_THREE = re.compile(r"^[A-Z0-9_$~!#%&'()@^`{}-]{1,8}(\.[A-Z0-9_$~!#%&'()@^`{}-]{1,3})?$")


def short_name(name: str) -> str:
    """An 8.3 name for FileAlternateNameInformation.

    A name that already is 8.3 is its own short name; others get a stable
    mangled form (letters, '~', two hash digits, extension) in the spirit of
    Samba's default mangling.
    """
    if _EIGHT_DOT_THREE.match(name):
        return name
    base, _, ext = name.rpartition(".") if "." in name[1:] else (name, "", "")

    def clean(text: str) -> str:
        return "".join(c for c in text.upper() if c.isascii() and c.isalnum())

    digest = sum(ord(c) * (i + 1) for i, c in enumerate(name)) % 100
    ext = clean(ext)[:3]
    return f"{(clean(base) or 'FILE')[:5]}~{digest:02d}" + (f".{ext}" if ext else "")


# Class -> (encoder, fixed size below which the buffer is INFO_LENGTH_MISMATCH;
# Windows counts one padded name character into the fixed part).
FILE_CLASSES = {
    FileClass.BASIC: (_basic, 40),
    FileClass.STANDARD: (_standard, 24),
    FileClass.INTERNAL: (lambda f: struct.pack("<Q", f.index), 8),
    FileClass.EA: (lambda f: struct.pack("<I", f.ea_size), 4),
    FileClass.ACCESS: (lambda f: struct.pack("<I", f.access), 4),
    FileClass.POSITION: (lambda f: struct.pack("<Q", f.position), 8),
    FileClass.MODE: (lambda f: struct.pack("<I", f.mode), 4),
    FileClass.ALIGNMENT: (lambda f: struct.pack("<I", 0), 4),
    FileClass.ALL: (lambda f: (_basic(f) + _standard(f)
                               + struct.pack("<QIIQII", f.index, f.ea_size, f.access, f.position,
                                             f.mode, 0)
                               + _name(f.name)), 104),
    FileClass.NAME: (lambda f: _name(f.name), 8),
    FileClass.NORMALIZED_NAME: (lambda f: _name(f.name.lstrip("\\")), 8),
    FileClass.ALTERNATE_NAME: (lambda f: _name(short_name(f.name.rpartition("\\")[2])), 8),
    FileClass.STREAM: (_stream, 32),
    FileClass.COMPRESSION: (lambda f: struct.pack("<QHBBB3x", f.end_of_file, 0, 0, 0, 0), 16),
    FileClass.NETWORK_OPEN: (lambda f: struct.pack(
        "<QQQQQQII", f.creation, f.last_access, f.last_write, f.change, f.allocation_size,
        f.end_of_file, f.attributes, 0), 56),
    FileClass.ATTRIBUTE_TAG: (lambda f: struct.pack("<II", f.attributes, 0), 8),
}


# -- filesystem information classes --------------------------------------------

FILE_CASE_SENSITIVE_SEARCH = 0x00000001
FILE_CASE_PRESERVED_NAMES = 0x00000002
FILE_UNICODE_ON_DISK = 0x00000004
FILE_SUPPORTS_SPARSE_FILES = 0x00000040
FILE_DEVICE_DISK = 0x00000007
FILE_DEVICE_IS_MOUNTED = 0x00000020


@dataclass(frozen=True)
class VolumeFacts:
    block_size: int
    total_blocks: int
    free_blocks: int
    available_blocks: int
    serial: int
    label: str
    created: int
    object_id: bytes = b"\x00" * 16


def _units(v: VolumeFacts) -> tuple[int, int, int, int, int]:
    """(total, caller-available, actually-free, sectors per unit, bytes per sector)."""
    sector = 512
    per_unit = max(v.block_size // sector, 1)
    return v.total_blocks, v.available_blocks, v.free_blocks, per_unit, sector


def _volume(v: VolumeFacts) -> bytes:
    label = v.label.encode("utf-16-le")
    return struct.pack("<QIIBB", v.created, v.serial, len(label), 0, 0) + label


def _fs_attribute(v: VolumeFacts) -> bytes:
    name = "NTFS".encode("utf-16-le")
    attrs = (FILE_CASE_SENSITIVE_SEARCH | FILE_CASE_PRESERVED_NAMES | FILE_UNICODE_ON_DISK
             | FILE_SUPPORTS_SPARSE_FILES)
    return struct.pack("<III", attrs, 255, len(name)) + name


FS_CLASSES = {
    FsClass.VOLUME: (_volume, 24),
    FsClass.SIZE: (lambda v: struct.pack("<QQII", *(_units(v)[i] for i in (0, 1, 3, 4))), 24),
    FsClass.DEVICE: (lambda v: struct.pack("<II", FILE_DEVICE_DISK, FILE_DEVICE_IS_MOUNTED), 8),
    FsClass.ATTRIBUTE: (_fs_attribute, 16),
    # No quotas: thresholds and limits all "none" (-1), control flags 0.
    FsClass.CONTROL: (lambda v: struct.pack("<QQQqqII", 0, 0, 0, -1, -1, 0, 0), 48),
    FsClass.FULL_SIZE: (lambda v: struct.pack("<QQQII", *_units(v)), 32),
    FsClass.OBJECT_ID: (lambda v: v.object_id + b"\x00" * 48, 64),
    FsClass.SECTOR_SIZE: (lambda v: struct.pack("<IIIIIII", 512, 512, 512, 512, 0x3, 0, 0), 28),
}


def fit_output(data: bytes, minimum: int, output_length: int) -> tuple[str, bytes]:
    """Fit a class's bytes into the client's buffer (MS-SMB2 3.3.5.20.1).

    Returns ("ok"|"short"|"overflow", data): "short" when even the fixed part
    does not fit (INFO_LENGTH_MISMATCH), "overflow" when variable data was cut
    (BUFFER_OVERFLOW with the truncated bytes).
    """
    if output_length < minimum:
        return "short", b""
    if len(data) > output_length:
        return "overflow", data[:output_length]
    return "ok", data


# -- SET_INFO payloads -----------------------------------------------------------


@dataclass(frozen=True)
class BasicInfo:
    creation: int
    last_access: int
    last_write: int
    change: int
    attributes: int


def parse_basic(data: bytes | memoryview) -> BasicInfo:
    if len(data) < 36:
        raise MalformedRequest("FileBasicInformation too short")
    return BasicInfo(*struct.unpack_from("<qqqqI", data))


@dataclass(frozen=True)
class RenameInfo:
    replace: bool
    root_directory: int
    name: str


def parse_rename(data: bytes | memoryview) -> RenameInfo:
    """FileRenameInformation, SMB2 layout (MS-FSCC 2.4.37.2); FileLinkInformation
    (2.4.21.2) has the same one."""
    if len(data) < 20:
        raise MalformedRequest("FileRenameInformation too short")
    replace, root, length = struct.unpack_from("<B7xQI", data)
    if 20 + length > len(data):
        raise MalformedRequest("FileRenameInformation name out of bounds")
    return RenameInfo(bool(replace), root, utf16(bytes(data[20: 20 + length])))


def parse_u8(data: bytes | memoryview) -> int:
    if len(data) < 1:
        raise MalformedRequest("information buffer too short")
    return data[0]


def parse_u64(data: bytes | memoryview) -> int:
    if len(data) < 8:
        raise MalformedRequest("information buffer too short")
    return int(struct.unpack_from("<Q", data)[0])


def parse_u32(data: bytes | memoryview) -> int:
    if len(data) < 4:
        raise MalformedRequest("information buffer too short")
    return int(struct.unpack_from("<I", data)[0])
