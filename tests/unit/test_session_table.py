"""The worker's session table (PreviousSessionId, binding) and its
multichannel client counts: pure objects, one per worker, checked on their
own and against a plain model (Hypothesis)."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, strategies as st

from smb.server.affinity import ClientAffinity, claim, release
from smb.server.handler import SessionInfo
from smb.server.session_table import SessionTable
from smb.server.sessions import Session


class Owner:
    def __init__(self) -> None:
        self.dropped: list[Session] = []

    async def drop_session(self, session: Session) -> None:
        self.dropped.append(session)


def _session(session_id: int, user: str = "alice", valid: bool = True) -> Session:
    return Session(session_id, SessionInfo(session_id, user), valid=valid)


async def test_logoff_drops_only_a_valid_session_of_the_same_user():
    table, owner = SessionTable(), Owner()
    alice = _session(1)
    table.add(owner, alice)
    assert await table.logoff(1, "bob")  # held here, but not bob's: ignored
    assert await table.logoff(2, "alice") is False  # not this worker's
    assert owner.dropped == [] and table.holds(alice)
    assert await table.logoff(1, "alice")
    assert owner.dropped == [alice] and 1 not in table


async def test_a_session_is_reached_through_its_remaining_channel():
    table, first, second = SessionTable(), Owner(), Owner()
    session = _session(5)
    table.add(first, session)
    table.reach_through(second, session, first)  # not the owner: nothing changes
    table.reach_through(first, session, second)
    assert await table.logoff(5, "alice")
    assert second.dropped == [session] and first.dropped == []


def test_forget_leaves_a_newer_session_of_the_same_id():
    table, owner = SessionTable(), Owner()
    old, new = _session(9), _session(9)
    table.add(owner, old)
    table.add(owner, new)
    table.forget(old)
    assert table.get(9) is new and table.holds(new) and not table.holds(old)
    table.forget(new)
    assert table.get(9) is None


def test_tables_are_per_worker():
    one, two = SessionTable(), SessionTable()
    one.add(Owner(), _session(3))
    assert 3 in one and 3 not in two


@given(st.lists(st.tuples(st.booleans(), st.sampled_from([b"a" * 16, b"b" * 16]))))
def test_affinity_claim_lasts_while_a_connection_is_served(steps):
    affinity, model = ClientAffinity(), Counter()
    for joining, guid in steps:
        if joining:
            affinity.join(guid)
            model[guid] += 1
        elif model[guid]:
            model[guid] -= 1
            assert affinity.leave(guid) == (model[guid] == 0)
        for g in (b"a" * 16, b"b" * 16):
            assert affinity.serves(g) == (model[g] > 0)


async def test_logoff_of_a_session_not_yet_valid_drops_nothing():
    table, owner = SessionTable(), Owner()
    table.add(owner, _session(4, valid=False))
    assert await table.logoff(4, "alice")  # held here, so no other worker is asked
    assert owner.dropped == []


class Claims:
    """The node table's claims, as a dict (the real one is nodelocal's SQLite)."""

    def __init__(self) -> None:
        self.held: dict[bytes, bytes] = {}

    def claim_client(self, client_guid: bytes, address: bytes) -> bytes | None:
        there = self.held.setdefault(client_guid, address)
        return None if there == address else there

    def release_client(self, client_guid: bytes) -> None:
        del self.held[client_guid]


async def test_claim_lasts_until_the_workers_last_connection_of_the_client():
    here, there, claims = ClientAffinity(), ClientAffinity(), Claims()
    guid = b"c" * 16
    assert await claim(here, claims, guid, b"w0") is None
    assert await claim(here, claims, guid, b"w0") is None  # counted, not asked again
    assert await claim(there, claims, guid, b"w1") == b"w0"  # goes to worker 0
    assert not there.serves(guid)
    await release(here, claims, guid)
    assert claims.held == {guid: b"w0"}
    await release(here, claims, guid)
    assert claims.held == {}
    assert await claim(there, claims, guid, b"w1") is None
