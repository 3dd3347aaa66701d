"""CREATE sent again: an open the client already has is answered, not made twice.

A client whose CREATE response was lost (a dropped connection, a failover, a
channel gone) sends the CREATE again with SMB2_FLAGS_REPLAY_OPERATION and the
same DH2Q CreateGuid.  Opening the file a second time would fail with a
sharing violation against the client's own first open, or leave it two
handles; MS-SMB2 3.3.5.9.10 has the server find the open by CreateGuid and
ClientGuid and answer with it instead.  A replay of a CREATE that is still
being processed (waiting for a break) gets STATUS_FILE_NOT_AVAILABLE, and
the client tries again later.

What the reply says about caching follows Samba (smbtorture smb2.replay): an
open with an oplock answers with the level the replay asks for (durable only
if that is batch); an open with a lease answers with the lease's current
state whatever the replay asks, unless it names another lease (or a lease
for an oplock open): ACCESS_DENIED.

The table is the worker's: a CreateGuid is looked up where its connection
is served, and each worker is its own process.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

from trio.lowlevel import RunVar

from smb.oplocks import LEASE_HANDLE, OPLOCK_BATCH, OPLOCK_LEASE, OPLOCK_NONE, LeaseGrant
from smb.server import workerstate
from smb.server.handler import CommandContext
from smb.server.errors import CommandError
from smb.server.replay import is_replay
from smb.wire.create_contexts import (
    LEASE_FLAG_BREAK_IN_PROGRESS, DurabilityIntent, DurableV2Request, durable_v2_response,
)
from smb.wire.header import Status

if TYPE_CHECKING:
    from smb.durable import DurableRecord
    from smb.server.handles import Open

ReplayKey = tuple[bytes, bytes]  # (ClientGuid, CreateGuid)

# Opens made by a DH2Q CREATE, by ReplayKey; None while that CREATE is in
# progress.  One table per trio run (the worker's), not per process.
_tables: RunVar[dict[ReplayKey, "Open | None"]] = RunVar("hanode_create_replays")


def _opens() -> dict[ReplayKey, "Open | None"]:
    try:
        return _tables.get()
    except LookupError:
        table: dict[ReplayKey, "Open | None"] = {}
        _tables.set(table)
        return table


@dataclass(frozen=True)
class Replayed:
    """The open a replayed CREATE found, and what its response says."""

    op: "Open"
    oplock_level: int
    contexts: list[tuple[str, bytes]]


def _key(ctx: CommandContext, intent: DurabilityIntent) -> ReplayKey | None:
    if not isinstance(intent.durable, DurableV2Request):
        return None
    return ctx.connection.client_guid, intent.durable.create_guid


def find(ctx: CommandContext, flags: int, requested_level: int,
         intent: DurabilityIntent) -> Replayed | None:
    """The earlier open this CREATE replays, or None to process it as new.

    A CreateGuid still in use refuses a CREATE that is not a replay
    (DUPLICATE_OBJECTID).  An open that served any other request since is
    no longer replay-eligible (3.3.5.9.10): the replay then opens anew.
    Only opens of this session count that are still open here: a
    disconnected durable open is taken back by DH2C, not by a replay.
    """
    key = _key(ctx, intent)
    opens = _opens()
    if key is None or ctx.session is None or key not in opens:
        return None
    if not is_replay(flags):
        raise CommandError(Status.DUPLICATE_OBJECTID)
    op = opens[key]
    if op is None:
        raise CommandError(Status.FILE_NOT_AVAILABLE)  # the original is still on its way
    if not op.replay_eligible or op.tree.opens.get(op.file_id) is not op \
            or all(tree is not op.tree for tree in ctx.session.trees.values()):
        return None
    return _answer(op, requested_level, intent)


class Claim:
    """A DH2Q CREATE in progress; opened() records the open it made."""

    def __init__(self, key: ReplayKey | None):
        self.key = key

    def opened(self, op: "Open") -> None:
        if self.key is not None:
            _opens()[self.key] = op
            op.replay_key = self.key


@contextmanager
def in_progress(ctx: CommandContext, intent: DurabilityIntent) -> Iterator[Claim]:
    """While a new CREATE is processed, replays of it are told to wait.

    Its open takes the CreateGuid over from an earlier one that was no
    longer replay-eligible."""
    key = _key(ctx, intent)
    opens = _opens()
    if key is not None:
        opens[key] = None
    try:
        yield Claim(key)
    finally:
        if key is not None and opens.get(key) is None:
            del opens[key]


def forget(op: "Open") -> None:
    """The open ended: a replay of its CREATE is a new CREATE again."""
    opens = _opens()
    if op.replay_key is not None and opens.get(op.replay_key) is op:
        del opens[op.replay_key]


def _answer(op: "Open", requested_level: int, intent: DurabilityIntent) -> Replayed:
    ws = workerstate.current()
    record = op.durable
    if record is None or record.lease is None:
        if requested_level == OPLOCK_LEASE:
            raise CommandError(Status.ACCESS_DENIED)
        held = OPLOCK_NONE
        if ws is not None and op.open_id is not None:
            held = ws.breaks.oplocks.oplock_level(op.open_id)
        level = min(requested_level, held)
        contexts = []
        if level == OPLOCK_BATCH and record is not None:
            contexts.append(_durable_context(record))
        return Replayed(op, level, contexts)
    if intent.lease is not None and intent.lease.key != record.lease.key:
        raise CommandError(Status.ACCESS_DENIED)
    now = ws.breaks.oplocks.lease_state(record.client_guid, record.lease.key) \
        if ws is not None else None
    state, epoch, breaking = now if now is not None else (0, record.lease.epoch, False)
    lease = LeaseGrant(record.lease.key, state, epoch, record.lease.version,
                       record.lease.parent_key, LEASE_FLAG_BREAK_IN_PROGRESS if breaking else 0)
    lease_ctx = lease.response_context()
    contexts = [(lease_ctx.name.decode(), lease_ctx.data)]
    if state & LEASE_HANDLE:
        contexts.append(_durable_context(record))
    return Replayed(op, OPLOCK_LEASE, contexts)


def _durable_context(record: "DurableRecord") -> tuple[str, bytes]:
    ctx = durable_v2_response(record.timeout_ms)
    return ctx.name.decode(), ctx.data
