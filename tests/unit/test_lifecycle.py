"""The durable-open lifecycle (smb.lifecycle): single transitions, whole
sequences of facts (Hypothesis), and every way an ending can go."""

from __future__ import annotations

from hypothesis import given, strategies as st

from smb.lifecycle import (
    FINAL, Action, Decision, EndFacts, Event, Life, Owner, Phase, decide, ending, orphan_purged,
)

DURABLE = Life(Phase.ATTACHED, durable=True)
DISCONNECTED = Life(Phase.DISCONNECTED, durable=True)


def test_a_granted_open_is_durable_and_stays_attached():
    d = decide(Life(), Event.GRANTED)
    assert d.life == DURABLE and d.actions == () and d.ending is None


def test_close_of_a_durable_open_forgets_it_and_queues_its_records_delete():
    d = decide(DURABLE, Event.CLOSED)
    assert d.life.phase is Phase.CLOSED
    assert d.actions == (Action.FORGET, Action.DISCARD_RECORD)


def test_a_plain_open_closes_with_its_connection_and_has_no_record_to_drop():
    for event in (Event.CLOSED, Event.CONNECTION_LOST):
        d = decide(Life(), event)
        assert d.life.phase is Phase.CLOSED and d.actions == (Action.FORGET,)


def test_a_lost_connection_leaves_a_durable_open_disconnected_with_its_timer():
    d = decide(DURABLE, Event.CONNECTION_LOST)
    assert d.life == DISCONNECTED
    assert d.actions == (Action.DETACH, Action.STORE_RECORD, Action.ARM_EXPIRY)


def test_purge_and_timeout_start_an_ending_with_their_cause():
    assert decide(DISCONNECTED, Event.PURGE).ending is Phase.PURGED
    assert decide(DISCONNECTED, Event.TIMED_OUT).ending is Phase.EXPIRED
    # ... but never for an open that is attached: a late timer does nothing.
    assert decide(DURABLE, Event.TIMED_OUT) == decide(DURABLE, Event.PURGE) == Decision(DURABLE)


def test_reclaims_elsewhere_only_forget_here():
    d = decide(DISCONNECTED, Event.RECORD_ELSEWHERE)
    assert d.life.phase is Phase.RECLAIMED and d.actions == (Action.FORGET, Action.FORGET_ROWS)
    d = decide(DISCONNECTED, Event.RECORD_GONE)
    assert d.life.phase is Phase.PURGED and d.actions == (Action.FORGET, Action.FORGET_ROWS)


def test_a_reconnect_here_revives_its_oplock_and_retires_the_old_open():
    d = decide(DISCONNECTED, Event.RECLAIMED_HERE)
    assert d.life.phase is Phase.RECLAIMED and d.actions == (Action.REVIVE,)


def test_a_reclaimed_file_gone_from_storage_ends_with_its_record():
    d = decide(DISCONNECTED, Event.CLOSED)
    assert d.life.phase is Phase.CLOSED
    assert d.actions == (Action.FORGET, Action.DELETE_RECORD)


@given(st.sampled_from(sorted(FINAL, key=lambda p: p.value)), st.booleans(),
       st.sampled_from(list(Event)))
def test_final_phases_absorb_every_fact(phase, durable, event):
    life = Life(phase, durable)
    d = decide(life, event)
    assert d.life == life and d.actions == () and d.ending is None


@given(st.lists(st.sampled_from(list(Event)), max_size=12))
def test_sequences_of_facts(events):
    """Whatever happens in whatever order: the open ends at most once, only a
    durable open is ever disconnected, its record is stored disconnected only
    from ATTACHED and always with its timer, an ending starts only while
    disconnected, and once final nothing acts on it again."""
    life = Life()
    ended_at = None
    for i, event in enumerate(events):
        before = life
        d = decide(life, event)
        life = d.life
        if before.phase in FINAL:
            assert d.actions == () and d.ending is None and life == before
        if Action.STORE_RECORD in d.actions:
            assert before.phase is Phase.ATTACHED and before.durable
            assert d.actions[-1] is Action.ARM_EXPIRY
        if d.ending is not None:
            assert before.phase is Phase.DISCONNECTED and life == before
        if life.phase is Phase.DISCONNECTED:
            assert life.durable
        if life.phase in FINAL and before.phase not in FINAL:
            assert ended_at is None
            ended_at = i
            # Leaving memory is part of every end but a reclaim here (a new Open
            # takes its place in memory) and a close of a plain open.
            assert Action.FORGET in d.actions or life.phase is Phase.RECLAIMED
        if Action.DISCARD_RECORD in d.actions or Action.DELETE_RECORD in d.actions:
            assert before.durable
        if life.keeps_file and before.phase is Phase.DISCONNECTED:
            assert d.ending is not Phase.PURGED  # refuses conflicting opens instead
        if Action.DETACH_KEEPING in d.actions:
            assert life.keeps_file and Action.DETACH not in d.actions


def _run_ending(cause, owner, claimed, deleted):
    """Drive :func:`ending` as the driver does, answering its questions."""
    facts = EndFacts(cause)
    done: list[Action] = []
    asked: list[Action] = []
    for _ in range(6):
        step = ending(facts)
        done += step.actions
        if step.final is not None:
            return step.final, done, asked
        asked.append(step.action)
        if step.action is Action.READ_RECORD:
            facts = EndFacts(cause, owner)
        elif step.action is Action.CLAIM_ROWS:
            facts = EndFacts(cause, facts.owner, claimed)
        elif step.action is Action.DELETE_RECORD_IF_UNCHANGED:
            facts = EndFacts(cause, facts.owner, facts.rows_claimed, deleted)
        else:
            raise AssertionError(step)
    raise AssertionError("an ending did not end")


@given(st.sampled_from([Phase.PURGED, Phase.EXPIRED]), st.sampled_from(list(Owner)),
       st.booleans(), st.booleans())
def test_every_ending(cause, owner, claimed, deleted):
    final, done, asked = _run_ending(cause, owner, claimed, deleted)
    assert done[0] is Action.FORGET and done.count(Action.FORGET) == 1
    assert asked[0] is Action.READ_RECORD
    if owner is Owner.OTHER:  # a reconnect elsewhere owns record and file: only rows go
        assert final is Phase.RECLAIMED and done == [Action.FORGET, Action.FORGET_ROWS]
        assert asked == [Action.READ_RECORD]
        return
    assert Action.CLAIM_ROWS in asked
    if not claimed:  # a reconnect on this node took the rows over
        assert final is Phase.RECLAIMED and done == [Action.FORGET]
        return
    # Only our own record is deleted, and only if unchanged since it was read.
    assert (Action.DELETE_RECORD_IF_UNCHANGED in asked) == (owner is Owner.US)
    assert final is cause
    deleting = owner is Owner.UNKNOWN or deleted
    assert done[-1] is (Action.CLOSE_ROWS_DELETING if deleting else Action.CLOSE_ROWS)


def test_an_orphans_file_goes_only_with_its_record():
    assert orphan_purged(True) == (Action.DELETE_ON_CLOSE,)
    assert orphan_purged(False) == ()   # a reconnect adopted it meanwhile
    assert orphan_purged(None) == ()    # etcd unreachable: the scavenger decides later


KEEPING = Life(Phase.ATTACHED, durable=True, keeps_file=True)


def test_a_persistent_or_resilient_open_keeps_its_file_while_disconnected():
    assert decide(Life(), Event.GRANTED_KEEPING).life == KEEPING
    assert decide(DURABLE, Event.GRANTED_KEEPING).life == KEEPING  # made resilient later
    d = decide(KEEPING, Event.CONNECTION_LOST)
    assert d.life == Life(Phase.DISCONNECTED, durable=True, keeps_file=True)
    assert d.actions == (Action.DETACH_KEEPING, Action.STORE_RECORD, Action.ARM_EXPIRY)
    # A conflicting open is refused, so a purge reaching it changes nothing;
    # its timeout still ends it, a reclaim still takes it.
    assert decide(d.life, Event.PURGE) == Decision(d.life)
    assert decide(d.life, Event.TIMED_OUT).ending is Phase.EXPIRED
    assert decide(d.life, Event.RECLAIMED_HERE).life.phase is Phase.RECLAIMED
