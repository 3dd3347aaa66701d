"""CREATE sent again: a durable v2 open the client already has is answered, not made twice.

A client whose CREATE response was lost (a dropped connection, a failover, a
channel gone) sends the CREATE again with SMB2_FLAGS_REPLAY_OPERATION and the
same DH2Q CreateGuid.  Opening the file a second time would fail with a
sharing violation against the client's own first open, or leave it two
handles; MS-SMB2 3.3.5.9.10 has the server find the open by CreateGuid and
ClientGuid and answer with it instead.  What the reply says about caching
follows Samba (smbtorture smb2.replay): an open with an oplock answers with
the level the replay asks for (durable only if that is batch); an open with
a lease answers with the lease's current state whatever the replay asks,
unless it names another lease (or a lease for an oplock open): ACCESS_DENIED.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from smb.oplocks import LEASE_HANDLE, OPLOCK_BATCH, OPLOCK_LEASE, LeaseGrant
from smb.server import workerstate
from smb.server.handler import CommandContext
from smb.server.opens import CommandError
from smb.server.replay import is_replay
from smb.wire.create_contexts import (
    LEASE_FLAG_BREAK_IN_PROGRESS, DurabilityIntent, DurableV2Request, durable_v2_response,
)
from smb.wire.header import Status

if TYPE_CHECKING:
    from smb.durable import DurableRecord
    from smb.server.opens import Open


@dataclass(frozen=True)
class Replayed:
    """The open a replayed CREATE found, and what its response says."""

    op: "Open"
    oplock_level: int
    contexts: list[tuple[str, bytes]]


def find(ctx: CommandContext, flags: int, requested_level: int,
         intent: DurabilityIntent) -> Replayed | None:
    """The earlier open this CREATE replays, or None to process it as new.

    Only opens of this session that are still attached count: a
    disconnected one is taken back by DH2C, not by a replay.
    """
    ws = workerstate.current()
    request = intent.durable
    if ws is None or ctx.session is None or not is_replay(flags) \
            or not isinstance(request, DurableV2Request):
        return None
    trees = set(map(id, ctx.session.trees.values()))
    for op in ws.durable.values():
        record = op.durable
        if record is not None and record.disconnected_since is None \
                and record.create_guid == request.create_guid \
                and record.client_guid == ctx.connection.client_guid \
                and id(op.tree) in trees and op.open_id is not None:
            return _answer(ws, op, record, requested_level, intent)
    return None


def _answer(ws: "workerstate.WorkerState", op: "Open", record: "DurableRecord",
            requested_level: int, intent: DurabilityIntent) -> Replayed:
    durable = durable_v2_response(record.timeout_ms)
    if record.lease is None:
        if requested_level == OPLOCK_LEASE:
            raise CommandError(Status.ACCESS_DENIED)
        assert op.open_id is not None
        level = min(requested_level, ws.breaks.oplocks.oplock_level(op.open_id))
        contexts = [(durable.name.decode(), durable.data)] if level == OPLOCK_BATCH else []
        return Replayed(op, level, contexts)
    if intent.lease is not None and intent.lease.key != record.lease.key:
        raise CommandError(Status.ACCESS_DENIED)
    now = ws.breaks.oplocks.lease_state(record.client_guid, record.lease.key)
    state, epoch, breaking = now if now is not None else (0, record.lease.epoch, False)
    lease = LeaseGrant(record.lease.key, state, epoch, record.lease.version,
                       record.lease.parent_key, LEASE_FLAG_BREAK_IN_PROGRESS if breaking else 0)
    lease_ctx = lease.response_context()
    contexts = [(lease_ctx.name.decode(), lease_ctx.data)]
    if state & LEASE_HANDLE:
        contexts.append((durable.name.decode(), durable.data))
    return Replayed(op, OPLOCK_LEASE, contexts)
