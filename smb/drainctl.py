"""The agent asks the SMB workers to drain their connections on the VIPs before a
planned move cuts them (see smb.server.drain for why and when a connection is
drained).

The agent cuts the connections itself (it removes the address, then destroys
the sockets), so a worker only has to get its clients quiet first: no credit
granted any more, every request in flight answered while the address still
routes the replies.  Each worker listens on an abstract Unix socket named for
the node's state directory and its index (as smb.probe does); the agent sends
``drain BOUND IP...``, the worker answers ``drained N LATE`` (N connections,
LATE of them not quiet by the bound) and keeps those addresses draining while
the agent holds the socket open.  When the agent lets go and a drained
connection is still there (the move did not cut it), the worker closes it:
its client holds no credit and could not go on, so it reconnects.

The messages are built and read here without I/O; :func:`drained` (the
agent's end) and :func:`serve` (the worker's) are the thin trio ends.
"""

from __future__ import annotations

import logging
import socket
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from functools import partial
from typing import AsyncIterator, Iterable, Iterator, Protocol

import trio

from smb import worker_channels

log = logging.getLogger(__name__)

MAX_MESSAGE = 4096
# What the agent allows a worker beyond the bound to answer.
REPLY_MARGIN = 0.1
# A worker ends a drain by itself this long after the agent asked, should the
# agent neither cut the connections nor let go of the socket.
MAX_HOLD = 5.0


def address(state_dir: str, index: int) -> bytes:
    """The abstract socket address of worker ``index``'s drain channel at ``state_dir``."""
    return worker_channels.address(worker_channels.DRAIN, state_dir, index)


def request(bound: float, ips: Iterable[str]) -> bytes:
    return " ".join(["drain", f"{bound:g}", *ips]).encode()


def parse_request(data: bytes) -> tuple[float, frozenset[str]]:
    """(bound, addresses) of a drain request; ValueError naming the problem."""
    words = data.decode("ascii", "replace").split()
    if len(words) < 2 or words[0] != "drain":
        raise ValueError(f"not a drain request: {data[:60]!r}")
    bound = float(words[1])
    if not 0 <= bound <= MAX_HOLD:
        raise ValueError(f"drain bound {bound:g} s outside 0..{MAX_HOLD:g}")
    return bound, frozenset(words[2:])


def reply(connections: int, late: int) -> bytes:
    return f"drained {connections} {late}".encode()


def parse_reply(data: bytes) -> tuple[int, int]:
    words = data.decode("ascii", "replace").split()
    if len(words) != 3 or words[0] != "drained":
        raise ValueError(f"not a drain reply: {data[:60]!r}")
    return int(words[1]), int(words[2])


@asynccontextmanager
async def drained(addresses: Iterable[bytes], ips: Iterable[str],
                  bound: float) -> AsyncIterator[tuple[int, int]]:
    """Have every worker at ``addresses`` drain its connections on ``ips``.

    Yields (connections drained, of them not quiet in time) once the workers
    answered or the bound (plus a margin) passed; the workers keep those
    connections draining until the block exits.  A worker that is not there
    (none running, or restarting) is skipped.
    """
    message = request(bound, ips)
    async with AsyncExitStack() as held:
        asked = []
        for at in addresses:
            sock = held.enter_context(trio.socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET))
            try:
                await sock.connect(at)
                await sock.send(message)
            except OSError:
                continue
            asked.append(sock)
        total = late = 0
        with trio.move_on_after(bound + REPLY_MARGIN):
            for sock in asked:
                try:
                    n, slow = parse_reply(await sock.recv(MAX_MESSAGE))
                except (OSError, ValueError) as exc:
                    log.warning("a worker did not drain: %s", exc)
                    continue
                total, late = total + n, late + slow
        yield total, late


class Drainable(Protocol):
    """What a worker drains: smb.server.connection.Connection."""
    draining: bool
    ended: bool

    @property
    def local_ip(self) -> str: ...

    async def drain(self, deadline: float) -> bool: ...

    def close(self) -> None: ...


class Drains:
    """A worker's connections, and the addresses it is draining."""

    def __init__(self) -> None:
        self._conns: set[Drainable] = set()
        self._ips: dict[str, int] = {}  # address: drains asking for it

    @contextmanager
    def track(self, conn: Drainable) -> Iterator[None]:
        """While a connection is served; one that comes in on an address being
        drained starts drained (it gets no credits)."""
        if conn.local_ip in self._ips:
            conn.draining = True
        self._conns.add(conn)
        try:
            yield
        finally:
            self._conns.discard(conn)

    async def drain(self, ips: frozenset[str], bound: float) -> tuple[int, int]:
        """Drain the connections on ``ips``: (how many, how many not quiet in time)."""
        deadline = trio.current_time() + bound
        targets = [c for c in self._conns if c.local_ip in ips]
        quiet: list[bool] = []

        async def one(conn: Drainable) -> None:
            quiet.append(await conn.drain(deadline))

        with trio.move_on_at(deadline + REPLY_MARGIN):
            async with trio.open_nursery() as nursery:
                for conn in targets:
                    nursery.start_soon(one, conn)
        return len(targets), len(targets) - sum(quiet)

    @contextmanager
    def holding(self, ips: frozenset[str]) -> Iterator[None]:
        """Keep ``ips`` draining; at the end close what is still drained there."""
        for ip in ips:
            self._ips[ip] = self._ips.get(ip, 0) + 1
        try:
            yield
        finally:
            for ip in ips:
                self._ips[ip] -= 1
                if not self._ips[ip]:
                    del self._ips[ip]
            for conn in list(self._conns):
                if conn.local_ip in ips and conn.local_ip not in self._ips \
                        and conn.draining and not conn.ended:
                    log.info("closing a drained connection the move did not cut")
                    conn.close()


async def serve(at: bytes, drains: Drains, *,
                task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Answer the agent's drain requests on the abstract socket ``at``."""
    await worker_channels.serve(at, socket.SOCK_SEQPACKET, 8, partial(_answer, drains=drains),
                                task_status=task_status)


async def _answer(sock: trio.socket.SocketType, drains: Drains) -> None:
    with sock, trio.move_on_after(MAX_HOLD):
        try:
            bound, ips = parse_request(await sock.recv(MAX_MESSAGE))
        except (OSError, ValueError) as exc:
            log.warning("drain request refused: %s", exc)
            return
        with drains.holding(ips):
            n, late = await drains.drain(ips, bound)
            log.info("drained %d connections on %s (%d not quiet in %g s)",
                     n, " ".join(sorted(ips)), late, bound)
            try:
                await sock.send(reply(n, late))
                while await sock.recv(MAX_MESSAGE):
                    pass  # until the agent lets go
            except OSError:
                pass
