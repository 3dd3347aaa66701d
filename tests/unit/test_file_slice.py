"""vfs.FileSlice: READ data still in its file, on real files and a real socket pair."""

from __future__ import annotations

import os
import socket

from smb import vfs


def _file(tmp_path, data: bytes) -> int:
    path = tmp_path / "f"
    path.write_bytes(data)
    return os.open(path, os.O_RDWR)


def test_slice_stops_at_the_end_of_the_file(tmp_path):
    fd = _file(tmp_path, b"0123456789")
    try:
        assert vfs.FileSlice.of(fd, 10, 5) is None
        assert vfs.FileSlice.of(fd, 99, 5) is None
        data = vfs.FileSlice.of(fd, 7, 100)
        assert data is not None and len(data) == 3
        buf = bytearray(3)
        data.read_into(buf)
        assert buf == b"789"
        data.close()
    finally:
        os.close(fd)


def test_slice_outlives_the_open_and_pads_a_truncated_file(tmp_path):
    fd = _file(tmp_path, b"abcdefghij")
    data = vfs.FileSlice.of(fd, 2, 8)
    os.ftruncate(fd, 5)
    os.close(fd)  # a CLOSE from elsewhere: the slice keeps its own descriptor
    buf = bytearray(b"\xff" * 8)
    data.read_into(buf)
    assert buf == b"cde" + bytes(5)
    tail = bytearray(b"\xff" * 4)
    data.read_into(tail, start=4)
    assert tail == bytes(4)
    data.close()
    data.close()  # closing twice is harmless


def test_sendfile_to_a_socket(tmp_path):
    fd = _file(tmp_path, bytes(range(256)) * 16)
    data = vfs.FileSlice.of(fd, 100, 1000)
    os.close(fd)
    a, b = socket.socketpair()
    try:
        assert data.send_some(a.fileno(), 0) == (1000, False)
        got = b""
        while len(got) < 1000:
            got += b.recv(4096)
        assert got == (bytes(range(256)) * 16)[100:1100]
    finally:
        data.close()
        a.close()
        b.close()


def test_sendfile_stops_when_the_socket_is_full(tmp_path):
    fd = _file(tmp_path, os.urandom(8 << 20))
    data = vfs.FileSlice.of(fd, 0, 8 << 20)
    os.close(fd)
    a, b = socket.socketpair()
    a.setblocking(False)
    try:
        sent, full = data.send_some(a.fileno(), 0)
        assert full and 0 < sent < len(data)
    finally:
        data.close()
        a.close()
        b.close()
