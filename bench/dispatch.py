"""The connection layer's own CPU per request, without the file side.

    .venv/bin/python bench/dispatch.py                      # 30,000 requests, 1 and 3 per frame
    .venv/bin/python bench/dispatch.py --requests 10000 --per-frame 1,3,8

One ``smb.server.connection.Connection`` on one end of a socketpair, past
NEGOTIATE with one unsigned session, and a stand-in QUERY_INFO handler that
answers at once; a client task in the same process sends (compound) frames
of related requests one at a time and waits for each reply.  What is
measured is the process's CPU per request: framing, the header parse,
credits, the compound walk, the session checks, the handler call and its
cancel scope, the reply's header and its write, and trio's scheduler, plus
the client's own share (the same in every run).  On a shared machine this
moves far less with the load than the end-to-end benches of
bench/metadata.py do, so it is the figure to compare a change of the
dispatcher with (run the old and the new tree back to back).
"""

from __future__ import annotations

import argparse
import struct
import sys
import time

import trio

from hanode.config import parse
from smb.server.connection import Connection
from smb.server.handler import CommandContext, Reply, Request, SessionInfo
from smb.server.sessions import Session
from smb.wire.header import Command, Flags, Header

SESSION = 7
RELATED_SESSION = 0xFFFFFFFFFFFFFFFF
_BODY = bytes(24)
_REPLY = b"\x09\x00" + bytes(14)


class _NoUsers:
    async def nt_hash(self, name: str) -> bytes | None:
        return None


async def _answer(ctx: CommandContext, req: Request) -> Reply:
    return Reply(body=_REPLY)


def _frame(message_id: int, count: int) -> bytes:
    """A framed compound of ``count`` related QUERY_INFO requests."""
    out = b""
    for i in range(count):
        last = i == count - 1
        size = 64 + len(_BODY)
        pad = 0 if last else -size % 8
        header = Header(command=Command.QUERY_INFO, message_id=message_id + i, credits=1,
                        session_id=SESSION if i == 0 else RELATED_SESSION,
                        flags=Flags.RELATED_OPERATIONS if i else 0)
        out += header.pack(next_command=0 if last else size + pad) + _BODY + bytes(pad)
    return struct.pack(">I", len(out)) + out


async def _measure(requests: int, per_frame: int) -> tuple[float, float]:
    """(CPU us, wall us) per request."""
    a, b = trio.socket.socketpair()
    client = trio.SocketStream(b)
    conn = Connection(trio.SocketStream(a), parse({"node": {"name": "bench"}}), _NoUsers(),
                      b"g" * 16, ("127.0.0.1", 1), handlers={Command.QUERY_INFO: _answer})
    conn._setup.sessions[SESSION] = Session(SESSION, SessionInfo(SESSION, "bench"), valid=True)
    conn._negotiation.negotiated = True
    conn._credits.grant(per_frame)
    frames = requests // per_frame
    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn.serve)
        cpu, wall = time.process_time(), time.perf_counter()
        for n in range(frames):
            await client.send_all(_frame(n * per_frame, per_frame))
            got = b""
            while len(got) < 4 or len(got) < 4 + int.from_bytes(got[1:4], "big"):
                chunk = await client.receive_some(65536)
                if not chunk:
                    raise SystemExit("the connection closed")
                got += chunk
            conn._credits.grant(per_frame)  # as the replies did
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        nursery.cancel_scope.cancel()
    done = frames * per_frame
    return cpu / done * 1e6, wall / done * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30_000, help="requests per run")
    parser.add_argument("--per-frame", default="1,3",
                        help="requests per compound frame, comma-separated (default 1,3)")
    args = parser.parse_args(argv)
    try:
        sizes = [int(x) for x in args.per_frame.split(",")]
    except ValueError:
        parser.error("--per-frame: comma-separated whole numbers")
    if args.requests < 1 or any(not 1 <= n <= 64 for n in sizes):
        parser.error("--requests: at least 1; --per-frame: 1 to 64 each")
    for n in sizes:
        cpu, wall = trio.run(_measure, args.requests, n)
        print(f"{n} per frame: {cpu:.1f} us CPU per request (client included), "
              f"{wall:.1f} us wall")
    return 0


if __name__ == "__main__":
    sys.exit(main())
