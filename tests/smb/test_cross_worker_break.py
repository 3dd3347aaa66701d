"""Oplocks held through one worker are broken by what another worker serves:
- a conflicting open: the holder's client gets the OPLOCK_BREAK, acknowledges
  it, and only then does the other open complete (well before the 35 s timeout);
- an open refused for its share mode: the holder's handle caching is broken
  first, and the open is let in if the holder closes its handle on the break;
- a write: level II holders are broken to none, and the write does not wait.
Raw SMB2 clients, because the breaks and their acks are what is under test."""

from __future__ import annotations

import struct
import threading
import time
from contextlib import contextmanager
from typing import Iterator

import durable_client as dc
import harness
from rawclient import RawClient
from smb.wire import oplock as oplock_wire
from smb.wire.create import encode_create_contexts
from smb.wire.create_contexts import LeaseContext
from smb.wire.header import Command, parse_header

_CREATE = struct.Struct("<HBBIQQIIIIIHHII")
_CLOSE = struct.Struct("<HHI16s")
_WRITE = struct.Struct("<HHIQ16sIIHHI")
GENERIC_READ_WRITE = 0x80000000 | 0x40000000
SHARE_ALL = 0x7
OPEN_IF = 3
OPLOCK_BATCH = 0x09
OPLOCK_II = 0x01
OPLOCK_LEASE = 0xFF
LEASE_READ = 0x1
_LEASE_BREAK = struct.Struct("<HHI16sII")  # size 44, epoch, flags, key, current, new state


def _create(client: RawClient, name: str, oplock: int, share: int = SHARE_ALL,
            lease: LeaseContext | None = None) -> tuple[int, int, bytes]:
    """(status, oplock level granted, FileId) of a CREATE."""
    path = name.encode("utf-16-le")
    contexts = b""
    ctx_offset = 0
    if lease is not None:
        contexts = encode_create_contexts([("RqLs", lease.pack())])
        ctx_offset = 64 + _CREATE.size + len(path) + (-len(path) % 8)
    body = _CREATE.pack(57, 0, oplock, 2, 0, 0, GENERIC_READ_WRITE, 0x80, share, OPEN_IF,
                        0x40, 64 + _CREATE.size, len(path), ctx_offset, len(contexts)) + path
    if contexts:
        body += b"\x00" * (-len(path) % 8) + contexts
    header, frame = client.request(Command.CREATE, body)
    if header.status:
        return header.status, 0, b""
    return 0, frame[64 + 2], frame[64 + 64:64 + 80]


def _logged_on(port: int) -> RawClient:
    c = RawClient(port)
    assert c.negotiate().status == 0
    assert c.session_setup(harness.USER, harness.PASSWORD) == 0
    assert c.tree_connect(harness.SHARE) == 0
    return c


def _close(client: RawClient, file_id: bytes) -> int:
    header, _ = client.request(Command.CLOSE, _CLOSE.pack(24, 0, 0, file_id))
    return header.status


def _write(client: RawClient, file_id: bytes, data: bytes) -> int:
    body = _WRITE.pack(49, 64 + _WRITE.size, len(data), 0, file_id, 0, 0, 0, 0, 0) + data
    header, _ = client.request(Command.WRITE, body)
    return header.status


def _ack(client: RawClient, file_id: bytes, level: int) -> int:
    header, _ = client.request(Command.OPLOCK_BREAK, oplock_wire.oplock_break(level, file_id))
    return header.status


def _break_notice(client: RawClient) -> tuple[bytes, int]:
    """(FileId, new level) of the OPLOCK_BREAK notification the client receives next."""
    frame = client.recv_frame()
    assert frame is not None
    notice = parse_header(frame)
    assert notice.command == Command.OPLOCK_BREAK
    assert notice.message_id == 0xFFFFFFFFFFFFFFFF
    ack = oplock_wire.parse_ack(frame[64:])
    return ack.file_id, ack.level


@contextmanager
def _two_workers(etcd_url: str, where) -> Iterator[tuple[RawClient, RawClient]]:
    """A hanode with 2 workers and a logged-on client on each of them."""
    t = harness.start_hanode(etcd_url, where, workers=2)
    clients: list[RawClient] = []
    try:
        holder = _logged_on(t.port)
        clients.append(holder)
        holder_pid = dc.serving_pid(t.port, holder.sock.getsockname()[1])
        deadline = time.monotonic() + 20
        while True:  # a second client on the other worker (the kernel picks one per connection)
            other = _logged_on(t.port)
            clients.append(other)
            if dc.serving_pid(t.port, other.sock.getsockname()[1]) != holder_pid:
                break
            assert time.monotonic() < deadline, "never reached the second worker"
        yield holder, other
    finally:
        for c in clients:
            c.close()
        harness.stop(t)
    assert "Traceback" not in t.log_text(), t.log_text()[-4000:]


def _in_background(result: dict, fn, *args) -> threading.Thread:
    def run() -> None:
        started = time.monotonic()
        result["value"] = fn(*args)
        result["seconds"] = time.monotonic() - started
    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _contended(holder: RawClient, other: RawClient,
               name: str) -> tuple[bytes, dict, threading.Thread]:
    """The holder opens ``name`` with a batch oplock and shares nothing; the
    other worker's open of it starts in the background and the holder gets
    its break notice.  (holder's file id, the opener's result, the opener)."""
    status, level, file_id = _create(holder, name, OPLOCK_BATCH, share=0)
    assert (status, level) == (0, OPLOCK_BATCH)
    result: dict = {}
    opener = _in_background(result, _create, other, name, 0)
    assert _break_notice(holder) == (file_id, OPLOCK_II)
    return file_id, result, opener


def test_batch_oplock_broken_across_workers(etcd_server, tmp_path):
    with _two_workers(etcd_server.url, tmp_path / "h") as (holder, other):
        status, level, file_id = _create(holder, "shared.dat", OPLOCK_BATCH)
        assert (status, level) == (0, OPLOCK_BATCH)
        result: dict = {}
        opener = _in_background(result, _create, other, "shared.dat", 0)
        assert _break_notice(holder) == (file_id, OPLOCK_II)
        assert "value" not in result  # the conflicting open waits for the acknowledgement
        assert _ack(holder, file_id, OPLOCK_II) == 0
        opener.join(30)
        assert result["value"][0] == 0
        assert result["seconds"] < 10


def test_sharing_violation_breaks_handle_caching_across_workers(etcd_server, tmp_path):
    """The holder denies all sharing but caches handles: the other worker's open
    breaks that first; once the holder closes on the break, the open succeeds."""
    with _two_workers(etcd_server.url, tmp_path / "h") as (holder, other):
        file_id, result, opener = _contended(holder, other, "locked.dat")
        assert "value" not in result  # waits for the holder's answer
        assert _close(holder, file_id) == 0
        opener.join(30)
        assert result["value"][0] == 0
        assert result["seconds"] < 10


def test_sharing_violation_stands_when_the_holder_keeps_its_handle(etcd_server, tmp_path):
    with _two_workers(etcd_server.url, tmp_path / "h") as (holder, other):
        file_id, result, opener = _contended(holder, other, "kept.dat")
        assert _ack(holder, file_id, OPLOCK_II) == 0
        opener.join(30)
        assert result["value"][0] == 0xC0000043  # STATUS_SHARING_VIOLATION, after one retry
        assert result["seconds"] < 10
        # No handle caching left to break: the next refusal is immediate.
        started = time.monotonic()
        assert _create(other, "kept.dat", 0)[0] == 0xC0000043
        assert time.monotonic() - started < 5


def test_write_breaks_level2_oplock_across_workers(etcd_server, tmp_path):
    with _two_workers(etcd_server.url, tmp_path / "h") as (holder, other):
        status, level, file_id = _create(holder, "read.dat", OPLOCK_II)
        assert (status, level) == (0, OPLOCK_II)
        status, _, other_id = _create(other, "read.dat", 0)
        assert status == 0
        started = time.monotonic()
        assert _write(other, other_id, b"stale now") == 0
        assert time.monotonic() - started < 5  # the write does not wait for the break
        assert _break_notice(holder) == (file_id, 0)  # level II to none, no ack wanted


def test_write_breaks_the_open_left_after_another_of_the_file_closed(etcd_server, tmp_path):
    """The holder's worker still finds the file by its inode for another
    worker's break request after one of its two opens of it closed."""
    with _two_workers(etcd_server.url, tmp_path / "h") as (holder, other):
        status, level, first_id = _create(holder, "twice.dat", OPLOCK_II)
        assert (status, level) == (0, OPLOCK_II)
        status, level, kept_id = _create(holder, "twice.dat", OPLOCK_II)
        assert (status, level) == (0, OPLOCK_II)
        assert _close(holder, first_id) == 0
        status, _, other_id = _create(other, "twice.dat", 0)
        assert status == 0
        assert _write(other, other_id, b"stale now") == 0
        assert _break_notice(holder) == (kept_id, 0)


def test_write_breaks_read_lease_across_workers(etcd_server, tmp_path):
    key = bytes(range(16))
    with _two_workers(etcd_server.url, tmp_path / "h") as (holder, other):
        status, level, _ = _create(holder, "leased.dat", OPLOCK_LEASE,
                                   lease=LeaseContext(key, LEASE_READ, version=1))
        assert (status, level) == (0, OPLOCK_LEASE)
        status, _, other_id = _create(other, "leased.dat", 0)
        assert status == 0
        assert _write(other, other_id, b"stale now") == 0
        frame = holder.recv_frame()
        assert frame is not None
        assert parse_header(frame).command == Command.OPLOCK_BREAK
        size, _, flags, broken, current, new = _LEASE_BREAK.unpack_from(frame, 64)
        assert (size, broken, current, new) == (44, key, LEASE_READ, 0)
        assert flags == 0  # R alone: no acknowledgement wanted
