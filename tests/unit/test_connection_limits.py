"""Connection bounds that need a clock, driven over trio's in-memory streams."""

import struct

import trio
import trio.testing

from hanode.config import parse
from smb.server.connection import Connection, Limits
from smb.wire.header import Command, Header

CONFIG = parse({"node": {"name": "n1"}})


class NoUsers:
    async def nt_hash(self, name: str) -> bytes | None:
        return None


async def _serve(limits: Limits):
    client, server = trio.testing.memory_stream_pair()
    conn = Connection(server, CONFIG, NoUsers(), b"g" * 16, ("127.0.0.1", 1), limits)
    return client, conn


async def _closed(client) -> bool:
    while True:
        data = await client.receive_some(65536)
        if not data:
            return True


async def test_silent_client_is_dropped_before_logon():
    client, conn = await _serve(Limits(logon_timeout=0.2))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn.serve)
        with trio.fail_after(2):
            assert await _closed(client)


async def test_trickling_client_is_dropped_before_logon():
    client, conn = await _serve(Limits(logon_timeout=0.3))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn.serve)
        # A NEGOTIATE, answered; then half a frame that never completes.
        dialects = struct.pack("<H", 0x0210)
        body = struct.pack("<HHHHI16sIHH", 36, 1, 1, 0, 0, b"c" * 16, 0, 0, 0) + dialects
        message = Header(command=Command.NEGOTIATE, message_id=0, credits=1).pack() + body
        await client.send_all(struct.pack(">I", len(message)) + message)
        await client.send_all(struct.pack(">I", 100) + b"\xfeSMB")
        with trio.fail_after(2):
            head = await client.receive_some(4)
            assert head[0] == 0  # the NEGOTIATE response came first
            assert await _closed(client)
