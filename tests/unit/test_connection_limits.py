"""Connection rules that need a clock or exact timing, driven over trio's
in-memory streams."""

import struct

import trio
import trio.testing

from hanode.config import parse
from smb.server.connection import Connection, Limits
from smb.server.handler import Reply, SessionInfo
from smb.server.sessions import Session
from smb.wire import crypto
from smb.wire.crypto import Cipher
from smb.wire.header import Command, Flags, Header, Status, parse_header

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


async def test_cancel_that_overtakes_its_request():
    """A CANCEL sent right behind a READ can reach the connection before the READ
    reaches its handler (READs run side by side); it must still cancel it."""
    started = trio.Event()

    async def waits_forever(ctx, request):
        started.set()
        await ctx.go_async()
        await trio.sleep_forever()
        return Reply()

    client, server = trio.testing.memory_stream_pair()
    conn = Connection(server, CONFIG, NoUsers(), b"g" * 16, ("127.0.0.1", 1),
                      handlers={Command.READ: waits_forever})
    # A logged-on session without signing, as after an NTLM exchange.
    conn._setup.sessions[7] = Session(7, SessionInfo(7, "u"), valid=True)
    conn._negotiation.negotiated = True
    conn._credits.grant(10)

    def frame(header: Header, body: bytes) -> bytes:
        message = header.pack() + body
        return struct.pack(">I", len(message)) + message

    read = frame(Header(command=Command.READ, message_id=0, session_id=7, credits=1),
                 struct.pack("<HBBIQ16sIIIHH", 49, 0, 0, 1, 0, b"f" * 16, 1, 0, 0, 0, 0)
                 + b"\x00")
    cancel = frame(Header(command=Command.CANCEL, message_id=0, session_id=7),
                   struct.pack("<HH", 4, 0))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn.serve)
        await client.send_all(read + cancel)
        replies = []
        with trio.fail_after(2):
            buf = b""
            while len(replies) < 2:
                buf += await client.receive_some(65536)
                while len(buf) >= 4 and len(buf) >= 4 + int.from_bytes(buf[1:4], "big"):
                    n = int.from_bytes(buf[1:4], "big")
                    replies.append(parse_header(buf[4:4 + n]))
                    buf = buf[4 + n:]
        assert started.is_set()
        assert [r.status for r in replies] == [Status.PENDING, Status.CANCELLED]
        assert all(r.flags & Flags.ASYNC_COMMAND for r in replies)
        await client.aclose()


async def _frames(client, count: int) -> list[bytes]:
    out, buf = [], b""
    with trio.fail_after(2):
        while len(out) < count:
            buf += await client.receive_some(65536)
            while len(buf) >= 4 and len(buf) >= 4 + int.from_bytes(buf[1:4], "big"):
                n = int.from_bytes(buf[1:4], "big")
                out.append(buf[4:4 + n])
                buf = buf[4 + n:]
    return out


async def test_server_initiated_notifications():
    """What the oplock/lease code sends through ConnectionInfo.notify: MessageId all
    0xFF, no credits, plain for a plain session, a transform header when the
    session requires encryption."""
    client, server = trio.testing.memory_stream_pair()
    conn = Connection(server, CONFIG, NoUsers(), b"g" * 16, ("127.0.0.1", 1))
    conn._negotiation.cipher = Cipher.AES_128_GCM
    key = b"e" * 16
    conn._setup.sessions[9] = Session(9, SessionInfo(9, "u", encrypt_data=True), valid=True,
                                encrypt_key=key, decrypt_key=b"d" * 16)
    body = struct.pack("<HBB", 24, 1, 0) + b"\x00" * 20
    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn.serve)
        assert await conn.info.notify(Command.OPLOCK_BREAK, body, 0)
        assert await conn.info.notify(Command.OPLOCK_BREAK, body, 9)
        plain, sealed = await _frames(client, 2)
        header = parse_header(plain)
        assert (header.message_id, header.credits, header.is_signed) == (2**64 - 1, 0, False)
        assert header.is_response and plain[64:] == body
        assert sealed[:4] == b"\xfdSMB"
        opened = crypto.decrypt(key, Cipher.AES_128_GCM, sealed)
        assert parse_header(opened).session_id == 9 and opened[64:] == body
        await client.aclose()
    assert not await conn.info.notify(Command.OPLOCK_BREAK, body, 0)  # connection gone


async def test_reads_run_side_by_side_and_others_wait_for_them():
    order = []

    async def slow_read(ctx, request):
        order.append(("read start", request.header.message_id))
        await trio.sleep(0.2)
        order.append(("read end", request.header.message_id))
        return Reply(body=b"r" * 17)

    async def flush(ctx, request):
        order.append(("flush", request.header.message_id))
        return Reply(body=struct.pack("<HH", 4, 0))

    client, server = trio.testing.memory_stream_pair()
    conn = Connection(server, CONFIG, NoUsers(), b"g" * 16, ("127.0.0.1", 1),
                      handlers={Command.READ: slow_read, Command.FLUSH: flush})
    conn._setup.sessions[7] = Session(7, SessionInfo(7, "u"), valid=True)
    conn._negotiation.negotiated = True
    conn._credits.grant(10)
    read_body = struct.pack("<HBBIQ16sIIIHH", 49, 0, 0, 1, 0, b"f" * 16, 1, 0, 0, 0, 0) + b"\x00"
    flush_body = struct.pack("<HHI16s", 24, 0, 0, b"f" * 16)

    def frame(command: int, message_id: int, body: bytes) -> bytes:
        message = Header(command=command, message_id=message_id, session_id=7,
                         credits=1).pack() + body
        return struct.pack(">I", len(message)) + message

    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn.serve)
        await client.send_all(frame(Command.READ, 0, read_body) + frame(Command.READ, 1, read_body)
                              + frame(Command.FLUSH, 2, flush_body))
        replies = [parse_header(f) for f in await _frames(client, 3)]
        await client.aclose()
    assert {r.message_id for r in replies} == {0, 1, 2}
    # Both READs started before either ended; the FLUSH ran after both.
    assert [o[0] for o in order[:2]] == ["read start", "read start"]
    assert order[-1] == ("flush", 2)
