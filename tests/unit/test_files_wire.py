"""File-command codecs on bytes: requests recorded from smbclient and
smbprotocol, and our responses read back by smbprotocol's own parsers."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from smbprotocol import ioctl as sp_ioctl
from smbprotocol import open as sp_open
from smbprotocol import file_info as sp_info
from smbprotocol import tree as sp_tree

from smb.wire import create, directory, info, io, ioctl, lock, tree
from smb.wire import security as sec
from smb.wire.body import MalformedRequest
from smb.wire.header import Command, parse_header

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "smbfiles_requests.json").read_text())
REQUESTS = [(bytes.fromhex(r["message"]), r) for r in FIXTURE["requests"]]


def recorded(command: int) -> list[tuple[bytes, memoryview]]:
    return [(m, memoryview(m)[64:]) for m, r in REQUESTS if r["command"] == command]


PARSERS = {
    Command.TREE_CONNECT: lambda b, m: tree.parse_tree_connect(b, m),
    Command.TREE_DISCONNECT: lambda b, m: tree.parse_tree_disconnect(b),
    Command.CREATE: create.parse_create,
    Command.CLOSE: lambda b, m: create.parse_close(b),
    Command.READ: lambda b, m: io.parse_read(b),
    Command.WRITE: io.parse_write,
    Command.IOCTL: ioctl.parse_ioctl,
    Command.QUERY_DIRECTORY: directory.parse_query_directory,
    Command.QUERY_INFO: info.parse_query_info,
    Command.SET_INFO: info.parse_set_info,
}


def test_every_recorded_request_parses():
    assert len(REQUESTS) > 50
    for message, row in REQUESTS:
        header = parse_header(message)
        assert header.command == row["command"]
        PARSERS[header.command](memoryview(message)[64:], message)


def test_every_truncation_of_a_recorded_request_is_refused_cleanly():
    for message, row in REQUESTS:
        parse = PARSERS[row["command"]]
        for cut in range(64, len(message) - 1, 3):
            short = message[:cut]
            try:
                parse(memoryview(short)[64:], short)
            except MalformedRequest:
                pass


def test_tree_connect_names_the_share():
    for message, body in recorded(Command.TREE_CONNECT):
        req = tree.parse_tree_connect(body, message)
        assert req.path == "\\\\127.0.0.1\\data" and req.share_name == "data"


def test_smbclient_creates():
    names = {}
    for message, body in recorded(Command.CREATE):
        req = create.parse_create(body, message)
        names.setdefault(req.name, []).append(req)
    put = names["up.bin"][0]
    assert put.disposition == create.Disposition.OVERWRITE_IF
    assert put.options & create.CreateOptions.NON_DIRECTORY_FILE
    assert put.desired_access == 0x0012019F
    assert names["d"][0].disposition == create.Disposition.CREATE
    assert names["d"][0].options & create.CreateOptions.DIRECTORY_FILE
    assert any(r.options & create.CreateOptions.DELETE_ON_CLOSE for r in names["up2.bin"])
    assert names[""][0].options & create.CreateOptions.DIRECTORY_FILE


def test_write_read_and_query_requests():
    (message, body), *_ = recorded(Command.WRITE)
    w = io.parse_write(body, message)
    assert (w.offset, bytes(w.data)) == (0, b"abc" * 10)
    (message, body), *_ = recorded(Command.READ)
    r = io.parse_read(body)
    assert (r.offset, r.length, r.minimum_count) == (0, 9, 0)
    classes = {info.parse_query_info(b, m).info_class for m, b in recorded(Command.QUERY_INFO)}
    assert {18, 3, 4, 1, 5, 6, 35} <= classes
    dirs = [directory.parse_query_directory(b, m) for m, b in recorded(Command.QUERY_DIRECTORY)]
    assert {d.info_class for d in dirs} == {0x25, 0x0C}
    assert {d.pattern for d in dirs} == {"*", "up2.bin"}


def test_set_info_rename_and_disposition():
    sets = [info.parse_set_info(b, m) for m, b in recorded(Command.SET_INFO)]
    rename = next(s for s in sets if s.info_class == info.FileClass.RENAME)
    r = info.parse_rename(rename.buffer)
    assert (r.name, r.replace, r.root_directory) == ("up2.bin", False, 0)
    disp = next(s for s in sets if s.info_class == info.FileClass.DISPOSITION)
    assert info.parse_u8(disp.buffer) == 1


def test_validate_negotiate_request():
    (message, body), = recorded(Command.IOCTL)
    req = ioctl.parse_ioctl(body, message)
    assert req.ctl_code == ioctl.FSCTL_VALIDATE_NEGOTIATE_INFO and req.flags == 1
    v = ioctl.parse_validate_negotiate(req.input)
    assert v.dialects == (0x0202, 0x0210, 0x0300)


def test_lying_lengths_are_refused():
    message, body = recorded(Command.CREATE)[0]
    bad = bytearray(message)
    struct.pack_into("<H", bad, 64 + 46, 0xFFFF)  # NameLength past the end
    with pytest.raises(MalformedRequest):
        create.parse_create(memoryview(bad)[64:], bad)
    message, body = recorded(Command.WRITE)[0]
    bad = bytearray(message)
    struct.pack_into("<I", bad, 64 + 4, 1 << 30)  # Length of 1 GiB in a tiny message
    with pytest.raises(MalformedRequest):
        io.parse_write(memoryview(bad)[64:], bad)
    with pytest.raises(MalformedRequest):
        lock.parse_lock(struct.pack("<HHI16s", 48, 5, 0, b"\x00" * 16) + b"\x00" * 24)


def test_create_contexts_round_trip():
    blob = create.encode_create_contexts([("MxAc", b"\x00" * 8), ("QFid", b"\x01" * 32)])
    assert create.parse_create_contexts(blob) == {"MxAc": b"\x00" * 8, "QFid": b"\x01" * 32}
    with pytest.raises(MalformedRequest):
        create.parse_create_contexts(blob[:20])


def test_create_response_read_by_smbprotocol():
    times = create.FileTimes(1, 2, 3, 4, 4096, 10, 0x20)
    body = create.create_response(create.CreateAction.CREATED, times, b"\xab" * 16,
                                  [("MxAc", struct.pack("<II", 0, 0x1F01FF))])
    resp = sp_open.SMB2CreateResponse()
    resp.unpack(body)
    assert resp["create_action"].get_value() == create.CreateAction.CREATED
    assert resp["end_of_file"].get_value() == 10
    assert resp["file_id"].get_value() == b"\xab" * 16
    ctx = resp["buffer"].get_value()[0]
    assert ctx["buffer_name"].get_value() == b"MxAc"


def test_close_and_io_responses_read_by_smbprotocol():
    resp = sp_open.SMB2CloseResponse()
    resp.unpack(create.close_response(1, create.FileTimes(5, 6, 7, 8, 0, 99, 0x80)))
    assert resp["end_of_file"].get_value() == 99 and resp["file_attributes"].get_value() == 0x80
    resp = sp_open.SMB2ReadResponse()
    resp.unpack(io.read_response(3) + b"xyz")
    assert resp["buffer"].get_value() == b"xyz" and resp["data_offset"].get_value() == 80
    resp = sp_open.SMB2WriteResponse()
    resp.unpack(io.write_response(1234))
    assert resp["count"].get_value() == 1234


def test_tree_connect_response_read_by_smbprotocol():
    resp = sp_tree.SMB2TreeConnectResponse()
    resp.unpack(tree.tree_connect_response(tree.SHARE_TYPE_DISK, tree.SHAREFLAG_ENCRYPT_DATA,
                                           0, 0x1F01FF))
    assert resp["share_type"].get_value() == tree.SHARE_TYPE_DISK
    assert resp["share_flags"].get_value() == tree.SHAREFLAG_ENCRYPT_DATA


ENTRY = directory.EntryInfo("Grüße.txt", 11, 12, 13, 14, 100, 4096, 0x20, 77)


@pytest.mark.parametrize("cls, sp_cls", [
    (directory.DirectoryClass.DIRECTORY, sp_info.FileDirectoryInformation),
    (directory.DirectoryClass.FULL_DIRECTORY, sp_info.FileFullDirectoryInformation),
    (directory.DirectoryClass.BOTH_DIRECTORY, sp_info.FileBothDirectoryInformation),
    (directory.DirectoryClass.ID_BOTH_DIRECTORY, sp_info.FileIdBothDirectoryInformation),
    (directory.DirectoryClass.ID_FULL_DIRECTORY, sp_info.FileIdFullDirectoryInformation),
    (directory.DirectoryClass.NAMES, sp_info.FileNamesInformation),
])
def test_directory_entries_read_by_smbprotocol(cls, sp_cls):
    data = directory.pack_entries([directory.encode_entry(cls, ENTRY),
                                   directory.encode_entry(cls, directory.EntryInfo(
                                       "b", 0, 0, 0, 0, 0, 0, 0x10, 78))])
    entries = sp_open.SMB2QueryDirectoryRequest.unpack_response(cls, data)
    assert [e["file_name"].get_value().decode("utf-16-le") for e in entries] == ["Grüße.txt", "b"]
    first = entries[0]
    assert first["next_entry_offset"].get_value() % 8 == 0
    if cls != directory.DirectoryClass.NAMES:
        assert first["end_of_file"].get_value() == 100
        assert first["file_attributes"].get_value() == 0x20
    if cls in (directory.DirectoryClass.ID_BOTH_DIRECTORY, directory.DirectoryClass.ID_FULL_DIRECTORY):
        assert first["file_id"].get_value() == 77


@pytest.mark.parametrize("pattern, name, hit", [
    ("*", "anything", True), ("*.*", "noext", True), ("*.TXT", "a.txt", True),
    ("a?c", "abc", True), ("a?c", "abbc", False), ("File.Txt", "file.txt", True),
    ("*.txt", "a.txt.bak", False), ("a*", "b", False), ("[x]", "[x]", True),
])
def test_wildcards(pattern, name, hit):
    assert directory.matches(pattern, name) is hit


FACTS = info.FileFacts(1, 2, 3, 4, 0x20, 4096, 10, 1, False, False, 99, 0x1F01FF, 5, 0,
                       "\\dir\\f.txt")


@pytest.mark.parametrize("cls, sp_cls, field, value", [
    (info.FileClass.BASIC, sp_info.FileBasicInformation, "last_write_time", 3),
    (info.FileClass.STANDARD, sp_info.FileStandardInformation, "end_of_file", 10),
    (info.FileClass.INTERNAL, sp_info.FileInternalInformation, "index_number", 99),
    (info.FileClass.ATTRIBUTE_TAG, sp_info.FileAttributeTagInformation, "file_attributes", 0x20),
    (info.FileClass.POSITION, sp_info.FilePositionInformation, "current_byte_offset", 5),
])
def test_file_classes_read_by_smbprotocol(cls, sp_cls, field, value):
    encode, minimum = info.FILE_CLASSES[cls]
    data = encode(FACTS)
    assert len(data) == minimum
    parsed = sp_cls()
    parsed.unpack(data)
    assert parsed[field].get_value() == value


def test_file_all_information_read_by_smbprotocol():
    encode, minimum = info.FILE_CLASSES[info.FileClass.ALL]
    data = encode(FACTS)
    parsed = sp_info.FileAllInformation()
    parsed.unpack(data)
    assert parsed["standard_information"]["end_of_file"].get_value() == 10
    assert parsed["name_information"]["file_name"].get_value() == "\\dir\\f.txt"
    assert info.fit_output(data, minimum, 104) == ("overflow", data[:104])
    assert info.fit_output(data, minimum, 103)[0] == "short"
    assert info.fit_output(data, minimum, len(data)) == ("ok", data)


def test_fs_classes_read_by_smbprotocol():
    v = info.VolumeFacts(4096, 1000, 500, 400, 0x1234, "data", 7)
    parsed = sp_info.FileFsVolumeInformation()
    parsed.unpack(info.FS_CLASSES[info.FsClass.VOLUME][0](v))
    assert parsed["volume_label"].get_value() == "data"
    assert parsed["volume_serial_number"].get_value() == 0x1234
    parsed = sp_info.FileFsFullSizeInformation()
    parsed.unpack(info.FS_CLASSES[info.FsClass.FULL_SIZE][0](v))
    assert parsed["total_allocation_units"].get_value() == 1000
    assert parsed["caller_available_units"].get_value() == 400
    assert parsed["bytes_per_sector"].get_value() * parsed["sectors_per_unit"].get_value() == 4096


def test_security_descriptor_read_by_smbprotocol():
    from smbprotocol.security_descriptor import SMB2CreateSDBuffer
    raw = sec.default_descriptor(sec.Sid.parse("S-1-22-1-0"), sec.Sid.parse("S-1-22-2-0"),
                                 0x1F01FF).encode()
    sd = SMB2CreateSDBuffer()
    sd.unpack(raw)
    assert str(sd.get_owner()) == "S-1-22-1-0"
    assert str(sd.get_group()) == "S-1-22-2-0"
    aces = sd.get_dacl()["aces"].get_value()
    assert str(aces[1]["sid"].get_value()) == "S-1-1-0"
    assert aces[1]["mask"].get_value() == 0x1F01FF


def test_ioctl_responses_read_by_smbprotocol():
    out = ioctl.validate_negotiate_response(0x7F, b"\x01" * 16, 1, 0x0300)
    body = ioctl.ioctl_response(ioctl.FSCTL_VALIDATE_NEGOTIATE_INFO, b"\xff" * 16, out)
    resp = sp_ioctl.SMB2IOCTLResponse()
    resp.unpack(body)
    vn = sp_ioctl.SMB2ValidateNegotiateInfoResponse()
    vn.unpack(resp["buffer"].get_value())
    assert vn["dialect"].get_value() == 0x0300 and vn["guid"].get_value().bytes_le == b"\x01" * 16
    data = ioctl.network_interfaces([ioctl.NetworkInterface(1, "192.0.2.1", 10**9),
                                     ioctl.NetworkInterface(2, "2001:db8::1", 10**9)])
    first = sp_ioctl.SMB2NetworkInterfaceInfo()
    rest = first.unpack(data)
    assert first["if_index"].get_value() == 1 and first["next"].get_value() == 152
    assert len(data) == 2 * 152 and rest


def test_lock_request():
    body = struct.pack("<HHI16s", 48, 2, 0, b"\x07" * 16) + struct.pack(
        "<QQII", 0, 10, lock.LockFlags.EXCLUSIVE | lock.LockFlags.FAIL_IMMEDIATELY, 0) + struct.pack(
        "<QQII", 2**64 - 1, 1, lock.LockFlags.SHARED | lock.LockFlags.FAIL_IMMEDIATELY, 0)
    req = lock.parse_lock(body)
    assert req.file_id == b"\x07" * 16
    assert [(el.offset, el.length) for el in req.locks] == [(0, 10), (2**64 - 1, 1)]


def test_ea_lists_round_trip_and_merge():
    from smb.wire import ea
    eas = [ea.Ea("EAONE", b"VALUE1"), ea.Ea("SecondEA", b"ValueTwo", 0x80)]
    raw = ea.encode_full_ea_list(eas)
    assert struct.unpack_from("<I", raw)[0] % 4 == 0
    assert ea.parse_full_ea_list(raw) == eas
    assert ea.ea_size(eas) == len(raw) and ea.ea_size([]) == 0
    merged = ea.merge(eas, [ea.Ea("eaone", b""), ea.Ea("THIRD", b"3")])
    assert [e.name for e in merged] == ["SecondEA", "THIRD"]
    with pytest.raises(MalformedRequest):
        ea.parse_full_ea_list(raw[:-3] if len(raw) > 3 else b"")
    with pytest.raises(MalformedRequest):
        ea.parse_full_ea_list(struct.pack("<IBBH", 0, 0, 5, 0) + b"ABCDEX")  # no NUL
    get = struct.pack("<IB", 12, 3) + b"ONE\x00\x00\x00\x00" + struct.pack("<IB", 0, 3) + b"TWO\x00"
    assert ea.parse_get_ea_list(get) == ["ONE", "TWO"]


def test_copychunk_and_range_codecs():
    key = bytes(range(24))
    body = struct.pack("<24sII", key, 2, 0) + struct.pack("<QQII", 0, 4096, 100, 0) + \
        struct.pack("<QQII", 8, 0, 50, 0)
    req = ioctl.parse_copychunk(body, 256)
    assert req.source_key == key
    assert req.chunks == (ioctl.Chunk(0, 4096, 100), ioctl.Chunk(8, 0, 50))
    with pytest.raises(MalformedRequest):
        ioctl.parse_copychunk(body[:-1], 256)
    # More chunks than allowed are reported as too many without reading them.
    assert len(ioctl.parse_copychunk(struct.pack("<24sII", key, 10**6, 0), 256).chunks) == 257
    assert ioctl.copychunk_response(1, 2, 3) == struct.pack("<III", 1, 2, 3)
    assert ioctl.parse_range(struct.pack("<qq", 5, -1)) == (5, -1)
    assert ioctl.encode_ranges([(0, 10), (20, 5)]) == struct.pack("<qqqq", 0, 10, 20, 5)


@pytest.mark.parametrize("name, short", [
    ("README", "README"), ("FOO.TXT", "FOO.TXT"), ("a long name.docx", None),
    ("foo.txt", None), (".hidden", None),
])
def test_short_names_are_8_3(name, short):
    got = info.short_name(name)
    if short is not None:
        assert got == short
    else:
        base, _, ext = got.partition(".")
        assert "~" in base and len(base) <= 8 and len(ext) <= 3 and got == got.upper()
        assert info.short_name(name) == got  # stable
