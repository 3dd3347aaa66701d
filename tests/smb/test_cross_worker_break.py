"""An oplock held through one worker is broken by a conflicting open that
another worker serves: the holder's client gets the OPLOCK_BREAK, acknowledges
it, and only then does the other open complete (well before the 35 s timeout).
Raw SMB2 clients, because the break and its ack are what is under test."""

from __future__ import annotations

import struct
import threading
import time

import durable_client as dc
import harness
from rawclient import RawClient
from smb.wire import oplock as oplock_wire
from smb.wire.header import Command, parse_header

_CREATE = struct.Struct("<HBBIQQIIIIIHHII")
GENERIC_READ_WRITE = 0x80000000 | 0x40000000
SHARE_ALL = 0x7
OPEN_IF = 3
OPLOCK_BATCH = 0x09
OPLOCK_II = 0x01


def _create(client: RawClient, name: str, oplock: int) -> tuple[int, int, bytes]:
    """(status, oplock level granted, FileId) of a CREATE."""
    path = name.encode("utf-16-le")
    body = _CREATE.pack(57, 0, oplock, 2, 0, 0, GENERIC_READ_WRITE, 0x80, SHARE_ALL, OPEN_IF,
                        0x40, 64 + _CREATE.size, len(path), 0, 0) + path
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


def test_batch_oplock_broken_across_workers(etcd_server, tmp_path):
    t = harness.start_hanode(etcd_server.url, tmp_path / "h", workers=2)
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

        status, level, file_id = _create(holder, "shared.dat", OPLOCK_BATCH)
        assert (status, level) == (0, OPLOCK_BATCH)

        result: dict = {}

        def conflicting_open() -> None:
            started = time.monotonic()
            result["open"] = _create(other, "shared.dat", 0)
            result["seconds"] = time.monotonic() - started

        opener = threading.Thread(target=conflicting_open)
        opener.start()
        frame = holder.recv_frame()
        assert frame is not None
        notice = parse_header(frame)
        assert notice.command == Command.OPLOCK_BREAK
        assert notice.message_id == 0xFFFFFFFFFFFFFFFF
        ack = oplock_wire.parse_ack(frame[64:])
        assert ack.file_id == file_id and ack.level == OPLOCK_II
        assert "open" not in result  # the conflicting open waits for the acknowledgement
        reply, _ = holder.request(Command.OPLOCK_BREAK, oplock_wire.oplock_break(OPLOCK_II, file_id))
        assert reply.status == 0
        opener.join(30)
        assert result["open"][0] == 0
        assert result["seconds"] < 10
    finally:
        for c in clients:
            c.close()
        harness.stop(t)
    assert "Traceback" not in t.log_text(), t.log_text()[-4000:]
