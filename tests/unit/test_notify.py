"""CHANGE_NOTIFY: the snapshot diff on a real directory and its codec."""

from __future__ import annotations

import os
import struct

from smbprotocol.change_notify import FileNotifyInformation

from smb.server import notify
from smb.wire import notify as wire
from smb.wire.notify import Action, Filter


class _Open:
    """Just what notify.snapshot reads from an open: its directory fd."""

    def __init__(self, fd: int):
        self.fd = fd


def test_snapshot_diff_on_a_real_directory(tmp_path):
    (tmp_path / "keep.txt").write_text("a")
    (tmp_path / "gone.txt").write_text("b")
    (tmp_path / "sub").mkdir()
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        op = _Open(fd)
        before = notify.snapshot(op, recursive=True)
        assert set(before) == {"keep.txt", "gone.txt", "sub"}
        (tmp_path / "gone.txt").unlink()
        (tmp_path / "new.txt").write_text("c")
        (tmp_path / "keep.txt").write_text("longer")
        (tmp_path / "sub" / "deep.txt").write_text("d")
        (tmp_path / "newdir").mkdir()
        after = notify.snapshot(op, recursive=True)
        everything = Filter.FILE_NAME | Filter.DIR_NAME | Filter.SIZE
        assert notify.diff(before, after, everything) == [
            (Action.REMOVED, "gone.txt"), (Action.MODIFIED, "keep.txt"),
            (Action.ADDED, "new.txt"), (Action.ADDED, "newdir"), (Action.ADDED, "sub\\deep.txt"),
        ]
        assert notify.diff(before, after, Filter.DIR_NAME) == [(Action.ADDED, "newdir")]
        flat = notify.snapshot(op, recursive=False)
        assert "sub\\deep.txt" not in flat
    finally:
        os.close(fd)


def test_change_notify_codec_read_by_smbprotocol():
    body = struct.pack("<HHI16sII", 32, wire.WATCH_TREE, 4096, b"\x01" * 16, 0x17, 0)
    req = wire.parse_change_notify(body)
    assert (req.flags, req.output_length, req.completion_filter) == (1, 4096, 0x17)
    data = wire.encode_changes([(Action.ADDED, "a.txt"), (Action.REMOVED, "dir\\é")])
    first = FileNotifyInformation()
    rest = first.unpack(data)
    assert first["action"].get_value() == Action.ADDED
    assert first["file_name"].get_value() == "a.txt"
    assert first["next_entry_offset"].get_value() % 4 == 0
    second = FileNotifyInformation()
    second.unpack(data[first["next_entry_offset"].get_value():])
    assert second["file_name"].get_value() == "dir\\é" and rest is not None
