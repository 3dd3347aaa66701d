"""READ through each of its paths, with smbprotocol against ``hanode smb``.

A plain (unsigned, unencrypted) READ reply leaves by sendfile(2) straight from
the file; a signed or encrypted one is read into a pooled buffer first.  Both
must give the file's bytes, honour byte-range locks, answer END_OF_FILE where
the file ends, and keep the stream framed when the file shrinks under them.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

import pytest
from smbprotocol.connection import Connection, Dialects
from smbprotocol.exceptions import SMBResponseException
from smbprotocol.open import (
    CreateDisposition, ImpersonationLevel, LockFlags, Open, ShareAccess,
)
from smbprotocol.session import Session
from smbprotocol.tree import TreeConnect

import durable_client as dc

MODES = {"plain": (False, False), "signed": (True, False), "encrypted": (True, True)}
MiB = 1024 * 1024
# smbprotocol keeps 127 credits at most: 4 MiB (64 credits) per READ at a time.
CHUNK = 4 * MiB
END_OF_FILE = 0xC0000011
FILE_LOCK_CONFLICT = 0xC0000054
# No zero byte: a zero read back can only come from a truncated stretch.
PATTERN = bytes(range(1, 256))


def _pattern(size: int) -> bytes:
    return (PATTERN * (size // len(PATTERN) + 1))[:size]


def _file_or_zeros(got: bytes, expected: bytes) -> bool:
    """Whether every byte of ``got`` is the expected one or zero (per 4 KiB page,
    so that an 8 MiB reply is checked quickly)."""
    zeros = bytes(4096)
    for at in range(0, len(got), 4096):
        g, e = got[at:at + 4096], expected[at:at + 4096]
        if g != e and g != zeros[:len(g)] and any(a not in (b, 0) for a, b in zip(g, e)):
            return False
    return True


@pytest.fixture
def trees(two_workers):
    """open(mode) -> a tree connect on a fresh connection in that mode."""
    conns: list[Connection] = []

    def open_tree(mode: str) -> TreeConnect:
        sign, encrypt = MODES[mode]
        conn = Connection(uuid.uuid4(), "127.0.0.1", two_workers.port, require_signing=sign)
        # SMB 3.1.1 signs every tree connect, and smbprotocol signs it only on a
        # signed session (smbd refuses it unsigned too): unsigned means 3.0.2.
        conn.connect(dialect=Dialects.SMB_3_0_2 if not sign else None)
        conns.append(conn)
        session = Session(conn, two_workers.user, two_workers.password,
                          require_encryption=encrypt)
        session.connect()
        assert session.signing_required == (sign and not encrypt)
        assert session.encrypt_data == encrypt
        tree = TreeConnect(session, f"\\\\127.0.0.1\\{two_workers.share_name}")
        tree.connect()
        return tree

    try:
        yield open_tree
    finally:
        for conn in conns:
            conn.disconnect(True)


def _open(tree: TreeConnect, name: str) -> Open:
    op = Open(tree, name)
    op.create(ImpersonationLevel.Impersonation, 0x1 | 0x2 | 0x80, 0,
              ShareAccess.FILE_SHARE_READ | ShareAccess.FILE_SHARE_WRITE,
              CreateDisposition.FILE_OPEN, 0)
    return op


@pytest.mark.parametrize("mode", MODES)
def test_reads_give_the_file(two_workers, trees, mode):
    data = os.urandom(20 * MiB + 12345)
    (two_workers.share / "big").write_bytes(data)
    op = _open(trees(mode), "big")
    got = bytearray()
    while len(got) < len(data):
        got += op.read(len(got), CHUNK)
    assert got == data
    # Unaligned, small, and ending past the end of the file (a short READ).
    assert op.read(4097, 300) == data[4097:4397]
    assert op.read(len(data) - 100, MiB) == data[-100:]
    op.close()


@pytest.mark.parametrize("mode", MODES)
def test_read_at_and_after_the_end(two_workers, trees, mode):
    (two_workers.share / "f").write_bytes(_pattern(100))
    op = _open(trees(mode), "f")
    for offset in (100, 101, 1 << 40):
        with pytest.raises(SMBResponseException) as info:
            op.read(offset, 10)
        assert info.value.status == END_OF_FILE
    with pytest.raises(SMBResponseException) as info:
        op.read(95, 10, min_length=6)  # 5 bytes there, 6 asked for at least
    assert info.value.status == END_OF_FILE
    assert op.read(95, 10, min_length=5) == _pattern(100)[95:]
    op.close()


@pytest.mark.parametrize("mode", MODES)
def test_read_across_a_lock_is_refused(two_workers, trees, mode):
    data = _pattern(4 * MiB)
    (two_workers.share / "f").write_bytes(data)
    holder = _open(trees("encrypted"), "f")
    holder.lock([dc.lock_element(MiB, 10, LockFlags.SMB2_LOCKFLAG_EXCLUSIVE_LOCK
                       | LockFlags.SMB2_LOCKFLAG_FAIL_IMMEDIATELY)])
    reader = _open(trees(mode), "f")
    for offset, length in ((0, 4 * MiB), (MiB + 9, 1), (MiB - 1, 2)):
        with pytest.raises(SMBResponseException) as info:
            reader.read(offset, length)
        assert info.value.status == FILE_LOCK_CONFLICT
    assert reader.read(0, MiB) == data[:MiB]  # up to the lock
    assert reader.read(MiB + 10, MiB) == data[MiB + 10:2 * MiB + 10]
    holder.lock([dc.lock_element(MiB, 10, LockFlags.SMB2_LOCKFLAG_UNLOCK)])
    assert reader.read(0, 4 * MiB) == data
    reader.close()
    holder.close()


@pytest.mark.parametrize("mode", MODES)
def test_read_of_a_file_truncated_meanwhile(two_workers, trees, mode):
    """Every byte that comes back is the file's or a zero of a stretch cut off
    after its length was promised; nothing else, and the stream stays framed."""
    size = 16 * MiB
    data = _pattern(size)
    path = two_workers.share / "f"
    path.write_bytes(data)
    op = _open(trees(mode), "f")
    stop = threading.Event()

    def cut_and_restore() -> None:
        rng = 0
        with open(path, "r+b") as f:
            while not stop.is_set():
                rng = (rng * 1103515245 + 12345) % (1 << 31)
                keep = rng % size
                f.truncate(keep)
                time.sleep(0.001)
                f.seek(keep)
                f.write(data[keep:])
                f.flush()

    cutter = threading.Thread(target=cut_and_restore)
    cutter.start()
    try:
        deadline = time.monotonic() + 2
        offset = 0
        while time.monotonic() < deadline:
            try:
                got = op.read(offset, CHUNK)
            except SMBResponseException as exc:
                assert exc.status == END_OF_FILE
                got = b""
            expected = data[offset:offset + len(got)]
            if got != expected:
                assert _file_or_zeros(got, expected)
            offset = (offset + 3 * MiB + 7) % size
    finally:
        stop.set()
        cutter.join()
    assert b"".join(op.read(at, CHUNK) for at in range(0, size, CHUNK)) == data
    op.close()
