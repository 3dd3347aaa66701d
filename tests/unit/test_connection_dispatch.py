"""The dispatcher's rules, driven with bytes over trio's in-memory streams
and stand-in handlers (the file side is not under test here):

- a compound element that waits (an acknowledgement of a break it sent) does
  not stop the connection from reading: the acknowledgement comes in on the
  same connection, and the compound is answered whole, without an interim;
- LOGOFF, ECHO and CANCEL bodies are checked (MS-SMB2 2.2.7, 2.2.28, 2.2.30);
- a handler that raises is answered INTERNAL_ERROR with an ordinary error
  body, and its traceback goes to the log, not to the client.
"""

from __future__ import annotations

import logging
import struct

import trio
import trio.testing

from hanode.config import parse
from smb.server.connection import Connection
from smb.server.drain import SPEND
from smb.server.handler import Reply, SessionInfo
from smb.server.sessions import Session
from smb.wire.header import Command, Flags, Header, Status, error_body, parse_header

CONFIG = parse({"node": {"name": "n1"}})
SESSION = 7
RELATED = 0xFFFFFFFFFFFFFFFF
FILE_ID = b"F" * 16
_CLOSE = struct.Struct("<HHI16s")


class NoUsers:
    async def nt_hash(self, name: str) -> bytes | None:
        return None


def _logged_on(server, handlers) -> Connection:
    """A connection past NEGOTIATE with one valid unsigned session."""
    conn = Connection(server, CONFIG, NoUsers(), b"g" * 16, ("127.0.0.1", 1),
                      handlers=handlers)
    conn._setup.sessions[SESSION] = Session(SESSION, SessionInfo(SESSION, "u"), valid=True)
    conn._negotiation.negotiated = True
    conn._credits.grant(30)
    return conn


def _message(*elements: tuple[int, int, bytes]) -> bytes:
    """A framed (compound, related) message of (command, MessageId, body)."""
    out = b""
    for i, (command, message_id, body) in enumerate(elements):
        last = i == len(elements) - 1
        size = 64 + len(body)
        pad = 0 if last else -size % 8
        header = Header(command=command, message_id=message_id, credits=1,
                        session_id=SESSION if i == 0 else RELATED,
                        flags=Flags.RELATED_OPERATIONS if i else 0)
        out += header.pack(next_command=0 if last else size + pad) + body + bytes(pad)
    return struct.pack(">I", len(out)) + out


def _split(frame: bytes) -> list[tuple[Header, bytes]]:
    out, pos = [], 0
    while True:
        header = parse_header(frame[pos:])
        end = pos + header.next_command if header.next_command else len(frame)
        out.append((header, frame[pos + 64:end]))
        if not header.next_command:
            return out
        pos = end


async def _frames(client, count: int) -> list[list[tuple[Header, bytes]]]:
    out, buf = [], b""
    with trio.fail_after(5):
        while len(out) < count:
            buf += await client.receive_some(65536)
            while len(buf) >= 4 and len(buf) >= 4 + int.from_bytes(buf[1:4], "big"):
                n = int.from_bytes(buf[1:4], "big")
                out.append(_split(buf[4:4 + n]))
                buf = buf[4 + n:]
    return out


async def _exchange(handlers, data: bytes, replies: int) -> list[list[tuple[Header, bytes]]]:
    client, server = trio.testing.memory_stream_pair()
    conn = _logged_on(server, handlers)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn.serve)
        await client.send_all(data)
        frames = await _frames(client, replies)
        await client.aclose()
    return frames


async def test_waiting_compound_element_lets_its_acknowledgement_in():
    acked = trio.Event()

    async def create_breaking_own_lease(ctx, request):
        await ctx.go_async()  # not the last element: no interim, the receiver reads on
        await acked.wait()
        return Reply(body=b"c" * 88, file_id=FILE_ID)

    async def close(ctx, request):
        assert request.related_file_id == FILE_ID
        return Reply(body=b"x" * 60)

    async def ack(ctx, request):
        acked.set()
        return Reply(body=b"a" * 36)

    compound = _message((Command.CREATE, 0, b"\x00" * 57), (Command.CLOSE, 1, _CLOSE.pack(
        24, 0, 0, b"\xff" * 16)))
    acknowledgement = _message((Command.OPLOCK_BREAK, 2, b"\x00" * 36))
    handlers = {Command.CREATE: create_breaking_own_lease, Command.CLOSE: close,
                Command.OPLOCK_BREAK: ack}
    first, second = await _exchange(handlers, compound + acknowledgement, 2)
    assert [(h.message_id, h.status) for h, _ in first] == [(2, Status.SUCCESS)]
    assert [(h.message_id, h.status) for h, _ in second] == [
        (0, Status.SUCCESS), (1, Status.SUCCESS)]
    assert not any(h.flags & Flags.ASYNC_COMMAND for h, _ in second)


async def test_cancel_reaches_a_waiting_compound_element():
    async def waits_forever(ctx, request):
        await ctx.go_async()
        await trio.sleep_forever()
        return Reply()

    async def close(ctx, request):
        return Reply(body=b"x" * 60)

    compound = _message((Command.CREATE, 0, b"\x00" * 57),
                        (Command.CLOSE, 1, _CLOSE.pack(24, 0, 0, b"\xff" * 16)))
    cancel = _message((Command.CANCEL, 0, struct.pack("<HH", 4, 0)))
    [replies] = await _exchange({Command.CREATE: waits_forever, Command.CLOSE: close},
                                compound + cancel, 1)
    # The CREATE answers CANCELLED; the CLOSE related to it inherits the failure.
    assert [(h.message_id, h.status) for h, _ in replies] == [
        (0, Status.CANCELLED), (1, Status.CANCELLED)]


async def test_malformed_echo_and_logoff_are_refused_and_leave_the_session():
    bad, good = struct.pack("<HH", 8, 0), struct.pack("<HH", 4, 0)
    data = b"".join(_message((command, i, body)) for i, (command, body) in enumerate([
        (Command.ECHO, b"\x04"), (Command.ECHO, bad), (Command.LOGOFF, bad),
        (Command.LOGOFF, b""), (Command.ECHO, good), (Command.LOGOFF, good)]))
    replies = [frame[0][0] for frame in await _exchange({}, data, 6)]
    assert [(h.message_id, h.status) for h in replies] == [
        (0, Status.INVALID_PARAMETER), (1, Status.INVALID_PARAMETER),
        (2, Status.INVALID_PARAMETER), (3, Status.INVALID_PARAMETER),
        (4, Status.SUCCESS), (5, Status.SUCCESS)]  # the session outlived the bad LOGOFFs


async def test_malformed_cancel_cancels_nothing():
    async def waits_then_answers(ctx, request):
        await ctx.go_async()
        await trio.sleep(0.2)
        return Reply(body=b"l" * 4)

    lock = _message((Command.LOCK, 0, b"\x00" * 48))
    cancel = _message((Command.CANCEL, 0, struct.pack("<H", 4)))
    interim, final = await _exchange({Command.LOCK: waits_then_answers}, lock + cancel, 2)
    assert interim[0][0].status == Status.PENDING
    assert final[0][0].status == Status.SUCCESS


async def test_handler_bug_is_logged_with_traceback_not_sent(caplog):
    async def buggy(ctx, request):
        raise KeyError("secret-internal-detail")

    flush = _message((Command.FLUSH, 0, struct.pack("<HHI16s", 24, 0, 0, FILE_ID)))
    with caplog.at_level(logging.ERROR, logger="smb.server.connection"):
        [[(header, body)]] = await _exchange({Command.FLUSH: buggy}, flush, 1)
    assert header.status == Status.INTERNAL_ERROR
    assert body == error_body()
    [record] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.exc_info is not None and record.exc_info[0] is KeyError
    assert "FLUSH" in record.getMessage()


async def test_every_waiting_request_lets_the_next_ones_in_and_order_holds_otherwise():
    """Two requests that wait in a row (the second behind the first's
    hand-over) and one that does not: each waiting one answers PENDING and
    lets the receiving go on; the plain ones run in arrival order; the
    waiting ones finish when the last request releases them."""
    order: list[str] = []
    release = trio.Event()

    async def waits(ctx, request):
        order.append(f"wait {request.header.message_id}")
        await ctx.go_async()
        await release.wait()
        return Reply(body=b"w" * 8)

    async def plain(ctx, request):
        order.append(f"plain {request.header.message_id}")
        if request.header.message_id == 3:
            release.set()
        return Reply(body=struct.pack("<HH", 4, 0))

    flush = struct.pack("<HHI16s", 24, 0, 0, FILE_ID)
    data = (_message((Command.FLUSH, 0, flush)) + _message((Command.QUERY_INFO, 1, bytes(40)))
            + _message((Command.FLUSH, 2, flush)) + _message((Command.IOCTL, 3, bytes(56))))
    frames = await _exchange({Command.FLUSH: waits, Command.QUERY_INFO: plain,
                              Command.IOCTL: plain}, data, 6)
    assert order == ["wait 0", "plain 1", "wait 2", "plain 3"]
    statuses = [(h.message_id, h.status) for frame in frames for h, _ in frame]
    assert statuses[:4] == [(0, Status.PENDING), (1, Status.SUCCESS), (2, Status.PENDING),
                            (3, Status.SUCCESS)]
    assert sorted(statuses[4:]) == [(0, Status.SUCCESS), (2, Status.SUCCESS)]


async def test_drain_finishes_a_client_that_still_holds_credits():
    """smb.server.drain: a client holding credits a moment into the drain is
    finished.  The request it is being served answers (granting nothing),
    the ones it sends from then on are read and dropped, the server's side
    is shut once nothing taken is unanswered, and the drain ends, in time,
    when the client closes."""
    release = trio.Event()
    called: list[int] = []

    async def flush(ctx, request):
        called.append(request.header.message_id)
        if request.header.message_id == 0:
            await release.wait()
        return Reply(body=struct.pack("<HH", 4, 0))

    def flush_request(message_id: int) -> bytes:
        return _message((Command.FLUSH, message_id, struct.pack("<HHI16s", 24, 0, 0, FILE_ID)))

    client, server = trio.testing.memory_stream_pair()
    conn = _logged_on(server, {Command.FLUSH: flush})
    drained: list[bool] = []

    async def drain():
        drained.append(await conn.drain(trio.current_time() + 3))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn.serve)
        await client.send_all(flush_request(0))
        with trio.fail_after(2):
            while not called:
                await trio.sleep(0.01)
        nursery.start_soon(drain)
        await trio.sleep(SPEND + 0.1)
        await client.send_all(flush_request(1))  # no longer taken
        await trio.sleep(0.05)
        assert not drained and called == [0]  # FLUSH 0 unanswered: not shut yet
        release.set()
        [[(header, _)]] = await _frames(client, 1)
        assert (header.message_id, header.status, header.credits) == (0, Status.SUCCESS, 0)
        with trio.fail_after(2):
            assert await client.receive_some(65536) == b""  # the server's side is shut
        await client.send_all(flush_request(2))  # still read, and dropped
        await trio.sleep(0.05)
        assert not drained  # not before the client has closed
        await client.aclose()
    assert drained == [True]
    assert called == [0]


async def test_a_connection_that_comes_in_on_a_draining_address_is_not_answered():
    """Its client would get no credit at NEGOTIATE (cifs.ko then waits 60 s for
    one, also after the cut): it gets nothing, and reconnects at the cut."""
    client, server = trio.testing.memory_stream_pair()
    conn = Connection(server, CONFIG, NoUsers(), b"g" * 16, ("127.0.0.1", 1))
    conn.draining = True
    negotiate = struct.pack("<HHHHI16sQ", 36, 1, 1, 0, 0x7F, b"c" * 16, 0) + struct.pack(
        "<H", 0x0311)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn.serve)
        await client.send_all(_message((Command.NEGOTIATE, 0, negotiate)))
        with trio.move_on_after(0.3) as waited:
            await client.receive_some(65536)
        assert waited.cancelled_caught  # no answer, and the connection is still there
        await client.aclose()
    assert conn.ended
