"""The trio driver around :class:`smb.oplocks.NodeOplocks` for one worker.

NodeOplocks decides; this module delivers what it decides: a break goes to
the connection of the open (or, for a lease, of any open of the lease), an
acknowledgement-requiring break starts the 35 s timer, and every change
(an acknowledgement, a timeout, a close) wakes the opens that wait for one.
A break that cannot be delivered (its connection just went away) is simply
dropped: its timer still settles the state.  Deliveries and timers run in
``Breaks.tasks``, which the worker's state runs for the worker's lifetime.

Scope: one worker process.  Across workers, the node table (nodelocal)
mirrors what each open caches; an open in another worker files a break
request that the holder's worker feeds through its own NodeOplocks here
(workerstate), and an open gets caching only while no other worker holds
the file open.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Awaitable, Callable, Hashable

import trio

from smb.oplocks import (
    BREAK_TIMEOUT_S, CACHING_OPLOCK, REMOTE_RENAME, REMOTE_WRITE, AckResult, Break, NodeOplocks,
    OpenDecision, OpenRequest, OplockBreak, Outcome, oplock_as_lease,
)
from smb.server.background import Background
from smb.wire import oplock as wire
from smb.wire.header import Command

log = logging.getLogger(__name__)

Notify = Callable[[int, bytes, int], Awaitable[bool]]


@dataclass
class Holder:
    """Where the breaks of one open go."""

    notify: Notify
    session_id: int
    file_id: bytes


class Breaks:
    def __init__(self) -> None:
        self.oplocks = NodeOplocks()
        self.holders: dict[Hashable, Holder] = {}
        self._changed = trio.Event()
        # Set whenever caching may have changed, so the worker mirrors it to
        # the node table for the other workers (workerstate).
        self.dirty = False
        # Opens whose writes already had other workers break their read caches
        # (crossbreaks.contend_write).
        self.remote_writes_done: set[Hashable] = set()
        # Deliveries and timers; the worker's state runs it (workerstate).
        self.tasks = Background("oplock and lease breaks")

    def attach(self, open_id: Hashable, holder: Holder) -> None:
        self.holders[open_id] = holder
        self.dirty = True

    def detach(self, open_id: Hashable) -> None:
        self.holders.pop(open_id, None)

    def changed(self) -> None:
        """Something waiting opens care about happened: let them decide again."""
        self.dirty = True
        self._changed.set()
        self._changed = trio.Event()

    def close(self, open_id: Hashable) -> None:
        self.holders.pop(open_id, None)
        self.remote_writes_done.discard(open_id)
        self.oplocks.close(open_id)
        self.changed()

    def caching(self, open_id: Hashable, lease_id: tuple[bytes, bytes] | None) -> int:
        """What an open caches now, as lease-state bits (0 once it is gone)."""
        if lease_id is not None:
            held = self.oplocks.lease_state(*lease_id)
            return held[0] if held else 0
        try:
            cached = oplock_as_lease(self.oplocks.oplock_level(open_id))
        except KeyError:
            return 0
        return cached | CACHING_OPLOCK if cached else 0

    def remote_open(self, file: Hashable, request_id: int, access: int, share: int,
                    disposition: int) -> tuple[Hashable, ...]:
        """Another worker's open of ``file`` (or its write, for REMOTE_WRITE):
        break our holders as it requires.

        It is decided as a local open would be and forgotten at once; the
        other worker waits on the mirrored caching, not on this answer.
        Returns the disconnected durable opens it purged.
        """
        if disposition == REMOTE_WRITE:
            self.dispatch(self.oplocks.contend_remote_write(file))
            return ()
        if disposition == REMOTE_RENAME:
            self.dispatch(self.oplocks.contend_remote_rename(file))
            return ()
        open_id = ("remote", request_id)
        req = OpenRequest(open_id, b"remote-worker\x00\x00\x00", access, share, disposition)
        decision = self.oplocks.open(file, req)
        log.debug("another worker's open: %s, breaks %s", decision.outcome.name, decision.breaks)
        self.dispatch(decision.breaks)
        if decision.outcome == Outcome.GRANT:
            self.oplocks.close(open_id)
        self.dirty = True
        return decision.purged

    def dispatch(self, breaks: tuple[Break, ...]) -> None:
        self.dirty = self.dirty or bool(breaks)
        for brk in breaks:
            self.tasks.start_soon(self._deliver, brk)
            if brk.ack_required:
                self.tasks.start_soon(self._timer, brk)

    async def _deliver(self, brk: Break) -> None:
        # notify returns False when the holder's connection is gone; when no
        # connection is left, the timer settles the break.
        if isinstance(brk, OplockBreak):
            holder = self.holders.get(brk.open_id)
            if holder is not None:
                await holder.notify(Command.OPLOCK_BREAK,
                                    wire.oplock_break(brk.new_level, holder.file_id),
                                    holder.session_id)
            return
        body = wire.lease_break(brk.new_epoch, brk.flags, brk.key, brk.current_state,
                                brk.new_state)
        for holder in self._client_holders(brk.client_guid):
            if await holder.notify(Command.OPLOCK_BREAK, body, 0):
                return

    def _client_holders(self, client_guid: bytes) -> list[Holder]:
        """Where a lease break of this client may go, best first.

        A lease belongs to the client, not to a connection: like Samba, the
        break goes to the client's oldest connection we know of (that of its
        longest-held open), even when the lease's opens came over another
        one (smb2.lease.v2_complex1).
        """
        return [h for i, h in self.holders.items() if self.oplocks.client_of(i) == client_guid]

    async def _timer(self, brk: Break) -> None:
        await trio.sleep(BREAK_TIMEOUT_S)
        self.dispatch(self.oplocks.break_timed_out(brk))
        self.changed()

    async def decide(self, file: Hashable, req: OpenRequest,
                     go_async: Callable[[], Awaitable[int]]) -> OpenDecision:
        """Decide an open, sending its breaks and waiting (interim response) until it may go on."""
        first = True
        while True:
            decision = self.oplocks.open(file, req, first_attempt=first)
            self.dispatch(decision.breaks)
            if decision.outcome != Outcome.WAIT:
                return decision
            first = False
            changed = self._changed
            await go_async()
            await changed.wait()

    async def before_rename(self, open_id: Hashable,
                            go_async: Callable[[], Awaitable[int]]) -> None:
        """Break other leases' handle caching of the file and wait (interim
        response) until they let go."""
        while True:
            changed = self._changed
            breaks, wait = self.oplocks.rename_breaks(open_id)
            self.dispatch(breaks)
            if not wait:
                return
            await go_async()
            await changed.wait()

    def contend_write(self, open_id: Hashable) -> None:
        if self.holders:
            self.dispatch(self.oplocks.contend_write(open_id))

    def ack_lease(self, client_guid: bytes, key: bytes, state: int) -> AckResult:
        result = self.oplocks.ack_lease(client_guid, key, state)
        self.dispatch(result.breaks)
        self.changed()
        return result

    def ack_oplock(self, open_id: Hashable, level: int) -> AckResult:
        result = self.oplocks.ack_oplock(open_id, level)
        self.changed()
        return result

