"""The node-wide oplock and lease state machine: what a second opener gets, breaks, acks."""

from dataclasses import replace

import pytest

from smb.oplocks import (
    FILE_OVERWRITE_IF, FILE_READ_ATTRIBUTES, FILE_READ_DATA, FILE_WRITE_ATTRIBUTES,
    FILE_WRITE_DATA, GENERIC_READ,
    LEASE_HANDLE, LEASE_READ, LEASE_WRITE, OPLOCK_BATCH, OPLOCK_EXCLUSIVE, OPLOCK_II,
    OPLOCK_LEASE, OPLOCK_NONE, SHARE_READ, SHARE_WRITE, SHARE_DELETE, SYNCHRONIZE,
    LeaseBreak, Lease, NodeOplocks, OpenRequest, OplockBreak, Outcome, share_conflict,
)
from smb.wire.header import Status

R, W, H = LEASE_READ, LEASE_WRITE, LEASE_HANDLE
RW_ACCESS = FILE_READ_DATA | FILE_WRITE_DATA
SHARE_ALL = SHARE_READ | SHARE_WRITE | SHARE_DELETE
C1, C2 = b"\x01" * 16, b"\x02" * 16
K1, K2 = b"\x11" * 16, b"\x22" * 16
F = ("dev", 42)


def oplock(oid, level, client=C1, access=RW_ACCESS, share=SHARE_ALL, disposition=1):
    return OpenRequest(oid, client, access, share, disposition, oplock_level=level)


def leased(oid, key, state, client=C1, epoch=0, version=2, access=RW_ACCESS, share=SHARE_ALL,
           disposition=1):
    return OpenRequest(oid, client, access, share, disposition, oplock_level=OPLOCK_LEASE,
                       lease=Lease(key, state, epoch, version))


@pytest.fixture
def node():
    return NodeOplocks()


# -- oplocks -------------------------------------------------------------------

@pytest.mark.parametrize("level", [OPLOCK_BATCH, OPLOCK_EXCLUSIVE, OPLOCK_II, OPLOCK_NONE])
def test_first_opener_gets_what_it_asks(node, level):
    d = node.open(F, oplock(1, level))
    assert d.outcome is Outcome.GRANT and d.oplock_level == level and not d.breaks


def test_second_opener_breaks_batch_to_level2_and_waits_for_the_ack(node):
    node.open(F, oplock(1, OPLOCK_BATCH))
    d = node.open(F, oplock(2, OPLOCK_BATCH, client=C2))
    assert d.outcome is Outcome.WAIT and d.status == Status.PENDING
    (brk,) = d.breaks
    assert isinstance(brk, OplockBreak)
    assert (brk.open_id, brk.new_level, brk.ack_required) == (1, OPLOCK_II, True)
    # Retried before the ack: still waiting, and no second break is sent.
    again = node.open(F, oplock(2, OPLOCK_BATCH, client=C2), first_attempt=False)
    assert again.outcome is Outcome.WAIT and not again.breaks
    assert node.ack_oplock(1, OPLOCK_II).status == Status.SUCCESS
    d = node.open(F, oplock(2, OPLOCK_BATCH, client=C2), first_attempt=False)
    assert d.outcome is Outcome.GRANT and d.oplock_level == OPLOCK_II
    assert node.oplock_level(1) == OPLOCK_II


def test_exclusive_is_also_broken_to_level2(node):
    node.open(F, oplock(1, OPLOCK_EXCLUSIVE))
    d = node.open(F, oplock(2, OPLOCK_EXCLUSIVE))
    assert d.outcome is Outcome.WAIT and d.breaks[0].new_level == OPLOCK_II


def test_overwrite_breaks_batch_to_none(node):
    node.open(F, oplock(1, OPLOCK_BATCH))
    d = node.open(F, oplock(2, OPLOCK_BATCH, disposition=FILE_OVERWRITE_IF))
    assert d.outcome is Outcome.WAIT and d.breaks[0].new_level == OPLOCK_NONE
    node.ack_oplock(1, OPLOCK_NONE)
    d = node.open(F, oplock(2, OPLOCK_BATCH, disposition=FILE_OVERWRITE_IF), first_attempt=False)
    assert d.outcome is Outcome.GRANT and d.oplock_level == OPLOCK_II


def test_level2_holders_are_broken_to_none_without_ack_and_without_waiting(node):
    node.open(F, oplock(1, OPLOCK_BATCH))
    node.open(F, oplock(2, OPLOCK_BATCH))
    node.ack_oplock(1, OPLOCK_II)
    assert node.open(F, oplock(2, OPLOCK_BATCH), first_attempt=False).oplock_level == OPLOCK_II
    d = node.open(F, oplock(3, OPLOCK_BATCH, disposition=FILE_OVERWRITE_IF))
    assert d.outcome is Outcome.GRANT
    assert sorted((b.open_id, b.new_level, b.ack_required) for b in d.breaks) == [
        (1, OPLOCK_NONE, False), (2, OPLOCK_NONE, False)]
    assert node.oplock_level(1) == node.oplock_level(2) == OPLOCK_NONE


def test_sharing_violation_against_exclusive_is_immediate(node):
    node.open(F, oplock(1, OPLOCK_EXCLUSIVE, share=0))
    d = node.open(F, oplock(2, OPLOCK_BATCH))
    assert d.outcome is Outcome.REFUSE and d.status == Status.SHARING_VIOLATION and not d.breaks


def test_overwriting_reader_does_not_deny_writers(node):
    """Share modes weigh the access asked for: a reader that overwrote the file
    holds no write access a writer sharing only reads must exclude (smbd agrees)."""
    node.open(F, oplock(1, OPLOCK_NONE, access=GENERIC_READ, disposition=FILE_OVERWRITE_IF))
    d = node.open(F, oplock(2, OPLOCK_BATCH, client=C2, share=SHARE_READ,
                            disposition=FILE_OVERWRITE_IF))
    assert d.outcome is Outcome.GRANT and d.oplock_level == OPLOCK_II


def test_sharing_violation_against_batch_breaks_first_then_fails(node):
    node.open(F, oplock(1, OPLOCK_BATCH, share=0))
    d = node.open(F, oplock(2, OPLOCK_BATCH))
    assert d.outcome is Outcome.WAIT and d.breaks[0].new_level == OPLOCK_II
    node.ack_oplock(1, OPLOCK_II)
    d = node.open(F, oplock(2, OPLOCK_BATCH), first_attempt=False)
    assert d.outcome is Outcome.REFUSE and d.status == Status.SHARING_VIOLATION


def test_sharing_violation_when_holder_closed_during_break_succeeds(node):
    node.open(F, oplock(1, OPLOCK_BATCH, share=0))
    assert node.open(F, oplock(2, OPLOCK_BATCH)).outcome is Outcome.WAIT
    node.close(1)  # a batch holder usually answers a break by closing
    d = node.open(F, oplock(2, OPLOCK_BATCH), first_attempt=False)
    assert d.outcome is Outcome.GRANT and d.oplock_level == OPLOCK_BATCH


def test_stat_open_breaks_nothing(node):
    node.open(F, oplock(1, OPLOCK_BATCH, share=0))
    d = node.open(F, oplock(2, OPLOCK_NONE, access=FILE_READ_ATTRIBUTES | SYNCHRONIZE))
    assert d.outcome is Outcome.GRANT and not d.breaks and node.oplock_level(1) == OPLOCK_BATCH


def test_break_timeout_drops_oplock_to_none_and_stale_timer_is_ignored(node):
    node.open(F, oplock(1, OPLOCK_BATCH))
    (brk,) = node.open(F, oplock(2, OPLOCK_BATCH)).breaks
    assert node.break_timed_out(brk) == ()
    assert node.oplock_level(1) == OPLOCK_NONE
    assert node.open(F, oplock(2, OPLOCK_BATCH), first_attempt=False).oplock_level == OPLOCK_II
    # A second break later; the first break's timer firing late changes nothing.
    node.open(F, oplock(3, OPLOCK_NONE, disposition=FILE_OVERWRITE_IF))
    node.break_timed_out(brk)
    assert node.oplock_level(2) == OPLOCK_NONE  # broken by the overwrite, not the timer


def test_oplock_ack_errors(node):
    node.open(F, oplock(1, OPLOCK_BATCH))
    assert node.ack_oplock(99, OPLOCK_NONE).status == Status.FILE_CLOSED
    assert node.ack_oplock(1, OPLOCK_NONE).status == Status.INVALID_OPLOCK_PROTOCOL  # no break
    node.open(F, oplock(2, OPLOCK_NONE, disposition=FILE_OVERWRITE_IF))
    result = node.ack_oplock(1, OPLOCK_II)  # broken to none, acked with level II
    assert result.status == Status.INVALID_OPLOCK_PROTOCOL and node.oplock_level(1) == OPLOCK_NONE


# -- leases --------------------------------------------------------------------

def test_first_lease_is_granted_with_epoch_plus_one(node):
    d = node.open(F, leased(1, K1, R | W | H, epoch=4))
    assert d.outcome is Outcome.GRANT and d.oplock_level == OPLOCK_LEASE
    assert (d.lease.state, d.lease.epoch, d.lease.flags) == (R | W | H, 5, 0)


@pytest.mark.parametrize("asked, got", [(H, 0), (W, 0), (W | H, 0), (R, R), (R | H, R | H),
                                        (R | W, R | W), (R | W | H, R | W | H)])
def test_lease_states_that_can_be_granted(node, asked, got):
    assert node.open(F, leased(1, K1, asked)).lease.state == got


def test_same_lease_key_shares_the_lease_without_breaking(node):
    node.open(F, leased(1, K1, R | W | H))
    d = node.open(F, leased(2, K1, R | W | H))
    assert d.outcome is Outcome.GRANT and not d.breaks and d.lease.state == R | W | H


def test_other_lease_breaks_write_and_gets_read_handle(node):
    node.open(F, leased(1, K1, R | W | H, epoch=0))
    d = node.open(F, leased(2, K2, R | W | H, client=C2))
    assert d.outcome is Outcome.WAIT
    (brk,) = d.breaks
    assert isinstance(brk, LeaseBreak)
    assert (brk.key, brk.current_state, brk.new_state, brk.new_epoch, brk.ack_required) == (
        K1, R | W | H, R | H, 2, True)
    assert node.lease_state(C1, K1) == (R | W | H, 2, True)
    assert node.ack_lease(C1, K1, R | H).status == Status.SUCCESS
    d = node.open(F, leased(2, K2, R | W | H, client=C2), first_attempt=False)
    assert d.outcome is Outcome.GRANT and d.lease.state == R | H
    assert node.lease_state(C1, K1) == (R | H, 2, False)


def test_read_lease_breaks_to_none_without_ack(node):
    node.open(F, leased(1, K1, R))
    d = node.open(F, leased(2, K2, R, disposition=FILE_OVERWRITE_IF))
    assert d.outcome is Outcome.GRANT
    (brk,) = d.breaks
    assert (brk.new_state, brk.ack_required, brk.flags) == (0, False, 0)
    assert node.lease_state(C1, K1)[0] == 0


def test_v1_lease_breaks_keep_epoch_zero(node):
    node.open(F, leased(1, K1, R | W | H, version=1))
    (brk,) = node.open(F, leased(2, K2, R, client=C2)).breaks
    assert brk.version == 1 and brk.new_epoch == 0  # v1 breaks carry no epoch


def test_lease_ack_rules(node):
    node.open(F, leased(1, K1, R | W | H))
    assert node.ack_lease(C1, K2, 0).status == Status.OBJECT_NAME_NOT_FOUND
    assert node.ack_lease(C1, K1, R).status == Status.UNSUCCESSFUL  # nothing breaking
    node.open(F, leased(2, K2, R, client=C2))
    assert node.ack_lease(C1, K1, R | W | H).status == Status.REQUEST_NOT_ACCEPTED
    assert node.ack_lease(C1, K1, R).status == Status.SUCCESS  # less than asked is fine
    assert node.lease_state(C1, K1)[0] == R


def test_breaks_during_a_break_step_down_one_ack_at_a_time(node):
    """The sequence smb2.lease.v2_breaking3 walks through."""
    node.open(F, leased(1, K1, R | W | H, epoch=0x11))
    opener = oplock(2, OPLOCK_NONE, client=C2)
    d = node.open(F, opener)
    (brk,) = d.breaks
    assert d.outcome is Outcome.WAIT
    assert (brk.current_state, brk.new_state, brk.new_epoch, brk.ack_required) == (
        R | W | H, R | H, 0x13, True)
    same = node.open(F, leased(3, K1, R | W | H))
    assert (same.lease.state, same.lease.flags, same.lease.epoch) == (R | W | H, 0x2, 0x13)
    overwriter = oplock(4, OPLOCK_NONE, client=C2, disposition=FILE_OVERWRITE_IF)
    d = node.open(F, overwriter)
    assert d.outcome is Outcome.WAIT and not d.breaks  # no second break while one is out

    ack = node.ack_lease(C1, K1, R | H)
    (step,) = ack.breaks
    assert ack.status == Status.SUCCESS and ack.level == R | H
    assert (step.current_state, step.new_state, step.new_epoch, step.ack_required) == (
        R | H, R, 0x13, True)
    for req in (opener, overwriter):
        assert node.open(F, req, first_attempt=False).outcome is Outcome.WAIT
    same = node.open(F, leased(5, K1, R | W | H))
    assert (same.lease.state, same.lease.flags) == (R | H, 0x2)

    ack = node.ack_lease(C1, K1, R)
    (last,) = ack.breaks
    assert (last.current_state, last.new_state, last.ack_required) == (R, 0, False)
    for req in (opener, overwriter):
        d = node.open(F, req, first_attempt=False)
        assert d.outcome is Outcome.GRANT and d.oplock_level == OPLOCK_NONE
    assert node.ack_lease(C1, K1, 0).status == Status.UNSUCCESSFUL  # nothing left to ack


def test_handle_lease_broken_by_overwrite_does_not_block_it(node):
    """smb2.lease.breaking4: RH to none needs an ack, but nobody waits for it."""
    node.open(F, leased(1, K1, R | H))
    d = node.open(F, oplock(2, OPLOCK_NONE, client=C2, disposition=FILE_OVERWRITE_IF))
    assert d.outcome is Outcome.GRANT
    assert [(b.new_state, b.ack_required) for b in d.breaks] == [(0, True)]
    d = node.open(F, oplock(3, OPLOCK_NONE, client=C2, disposition=FILE_OVERWRITE_IF))
    assert d.outcome is Outcome.GRANT and not d.breaks
    query = node.open(F, leased(4, K1, 0))
    assert (query.lease.state, query.lease.flags) == (R | H, 0x2)
    assert node.ack_lease(C1, K1, 0).status == Status.SUCCESS


def test_lease_break_timeout_drops_the_lease_to_none(node):
    """smb2.lease.timeout: the silent holder keeps nothing, so a later write breaks it no more."""
    node.open(F, leased(1, K1, R | W | H))
    (brk,) = node.open(F, leased(2, K2, R | H, client=C2)).breaks
    assert node.break_timed_out(brk) == ()
    assert node.lease_state(C1, K1) == (0, 2, False)
    assert node.break_timed_out(brk) == ()  # stale now
    assert node.ack_lease(C1, K1, R | H).status == Status.UNSUCCESSFUL  # too late
    second = node.open(F, leased(2, K2, R | H, client=C2), first_attempt=False)
    assert second.lease.state == R | H
    assert [b.key for b in node.contend_write(1)] == [K2]
    assert node.contend_write(2) == ()  # K1 holds nothing to break any more


def test_lease_upgrade_only_to_a_superset(node):
    node.open(F, leased(1, K1, R, epoch=0))
    d = node.open(F, leased(2, K1, R | W | H))
    assert (d.lease.state, d.lease.epoch) == (R | W | H, 2)
    d = node.open(F, leased(3, K1, R))
    assert (d.lease.state, d.lease.epoch) == (R | W | H, 2)


def test_lease_open_while_its_lease_breaks_reports_break_in_progress(node):
    node.open(F, leased(1, K1, R | W | H))
    node.open(F, leased(2, K2, R, client=C2))
    d = node.open(F, leased(3, K1, R | W | H))
    assert d.outcome is Outcome.GRANT and d.lease.flags == 0x2 and d.lease.state == R | W | H


def test_lease_key_on_another_file_is_invalid(node):
    node.open(F, leased(1, K1, R))
    d = node.open(("dev", 43), leased(2, K1, R))
    assert d.outcome is Outcome.REFUSE and d.status == Status.INVALID_PARAMETER
    # Another client may use the same key value.
    assert node.open(("dev", 43), leased(3, K1, R, client=C2)).outcome is Outcome.GRANT


def test_oplock_after_handle_lease_gets_none(node):
    node.open(F, leased(1, K1, R | W | H))
    d = node.open(F, oplock(2, OPLOCK_BATCH, client=C2))
    assert d.outcome is Outcome.WAIT and d.breaks[0].new_state == R | H
    node.ack_lease(C1, K1, R | H)
    d = node.open(F, oplock(2, OPLOCK_BATCH, client=C2), first_attempt=False)
    assert d.outcome is Outcome.GRANT and d.oplock_level == OPLOCK_NONE


def test_lease_after_oplock_gets_no_handle_caching(node):
    node.open(F, oplock(1, OPLOCK_BATCH))
    d = node.open(F, leased(2, K2, R | W | H, client=C2))
    assert d.outcome is Outcome.WAIT and d.breaks[0].new_level == OPLOCK_II
    node.ack_oplock(1, OPLOCK_II)
    d = node.open(F, leased(2, K2, R | W | H, client=C2), first_attempt=False)
    assert d.lease.state == R


def test_lease_stat_open_breaks_no_lease(node):
    node.open(F, leased(1, K1, R | W | H, share=0))
    d = node.open(F, oplock(2, OPLOCK_NONE, access=FILE_READ_ATTRIBUTES))
    assert d.outcome is Outcome.GRANT and not d.breaks


def test_close_of_last_open_drops_the_lease(node):
    node.open(F, leased(1, K1, R | H))
    node.open(F, leased(2, K1, R | H))
    node.close(1)
    assert node.lease_state(C1, K1) is not None
    node.close(2)
    assert node.lease_state(C1, K1) is None
    # The key is free for another file now.
    assert node.open(("dev", 43), leased(3, K1, R)).outcome is Outcome.GRANT


def test_lease_contexts_in_and_out(node):
    from smb.wire.create_contexts import LeaseContext, parse_lease
    ctx = LeaseContext(K1, R | W | H, flags=0x4, version=2, parent_key=K2, epoch=7)
    req = Lease.from_context(ctx)
    assert (req.key, req.state, req.epoch, req.version, req.parent_key) == (K1, R | W | H, 7, 2, K2)
    d = node.open(F, OpenRequest(1, C1, RW_ACCESS, SHARE_ALL, 1, OPLOCK_LEASE, req))
    out = parse_lease(d.lease.response_context().data)
    assert (out.key, out.state, out.flags, out.parent_key, out.epoch) == (K1, R | W | H, 0x4, K2, 8)
    v1 = Lease.from_context(LeaseContext(K2, R, version=1))
    d = node.open(("dev", 7), OpenRequest(2, C1, RW_ACCESS, SHARE_ALL, 1, OPLOCK_LEASE, v1))
    assert len(d.lease.response_context().data) == 32


# -- the second-opener table ----------------------------------------------------

B, X, II, NO = OPLOCK_BATCH, OPLOCK_EXCLUSIVE, OPLOCK_II, OPLOCK_NONE


def first(spec):
    return oplock(1, spec) if isinstance(spec, int) else leased(1, K1, LEASE_BITS[spec])


def second(spec):
    return (oplock(2, spec, client=C2) if isinstance(spec, int)
            else leased(2, K2, LEASE_BITS[spec], client=C2))


LEASE_BITS = {"R": R, "RH": R | H, "RW": R | W, "RWH": R | W | H}


@pytest.mark.parametrize("holder, asks, broken_to, gets", [
    # oplock holder, oplock opener
    (B, B, II, II), (B, X, II, II), (B, II, II, II), (B, NO, II, NO),
    (X, B, II, II), (II, B, None, II), (NO, B, None, II),
    # lease holder, lease opener (another client's key)
    ("RWH", "RWH", "RH", "RH"), ("RW", "RWH", "R", "RH"), ("RH", "RWH", None, "RH"),
    ("R", "RWH", None, "RH"), ("RWH", "R", "RH", "R"),
    # lease holder, oplock opener: no oplock next to handle caching
    ("RWH", B, "RH", NO), ("RH", B, None, NO), ("R", B, None, II),
    # oplock holder, lease opener: no handle caching next to an oplock
    (B, "RWH", II, "R"), (II, "RWH", None, "R"), (NO, "RWH", None, "R"),
])
def test_what_a_second_opener_gets(node, holder, asks, broken_to, gets):
    d = node.open(F, first(holder))
    assert d.outcome is Outcome.GRANT
    d = node.open(F, second(asks))
    if broken_to is None:
        assert not d.breaks and d.outcome is Outcome.GRANT
    else:
        (brk,) = d.breaks
        assert d.outcome is Outcome.WAIT
        if isinstance(brk, OplockBreak):
            assert brk.new_level == broken_to
            node.ack_oplock(1, brk.new_level)
        else:
            assert brk.new_state == LEASE_BITS[broken_to]
            node.ack_lease(C1, K1, brk.new_state)
        d = node.open(F, second(asks), first_attempt=False)
        assert d.outcome is Outcome.GRANT
    if isinstance(gets, int):
        assert d.oplock_level == gets
    else:
        assert d.oplock_level == OPLOCK_LEASE and d.lease.state == LEASE_BITS[gets]


# What smb2.lease.oplock asserts: a lease held, an oplock asked for (by the
# same client, on a file opened with default share modes), and the reverse.
LEASE_THEN_OPLOCK = [(held, asked, broken, got)
                     for held, broken, got in [("R", "R", II), ("RH", "RH", NO),
                                               ("RW", "R", II), ("RWH", "RH", NO)]
                     for asked in (II, X, B)]
OPLOCK_THEN_LEASE = [(held, asked, II, "R") for held in (II, X, B)
                     for asked in ("R", "RH", "RW", "RWH")]


@pytest.mark.parametrize("held, asked, broken, got", LEASE_THEN_OPLOCK)
def test_lease_oplock_matrix_lease_held(node, held, asked, broken, got):
    node.open(F, leased(1, K1, LEASE_BITS[held]))
    d = node.open(F, oplock(2, asked))
    if broken != held:
        (brk,) = d.breaks
        assert brk.new_state == LEASE_BITS[broken]
        if brk.ack_required:
            node.ack_lease(C1, K1, brk.new_state)
            d = node.open(F, oplock(2, asked), first_attempt=False)
    assert d.outcome is Outcome.GRANT and d.oplock_level == got
    assert node.lease_state(C1, K1)[0] == LEASE_BITS[broken]


@pytest.mark.parametrize("held, asked, broken, got", OPLOCK_THEN_LEASE)
def test_lease_oplock_matrix_oplock_held(node, held, asked, broken, got):
    node.open(F, oplock(1, held))
    d = node.open(F, leased(2, K1, LEASE_BITS[asked]))
    if held != broken:
        (brk,) = d.breaks
        assert brk.new_level == broken
        node.ack_oplock(1, brk.new_level)
        d = node.open(F, leased(2, K1, LEASE_BITS[asked]), first_attempt=False)
    assert d.outcome is Outcome.GRANT and d.lease.state == LEASE_BITS[got]
    assert node.oplock_level(1) == broken


STAT = FILE_READ_ATTRIBUTES | FILE_WRITE_ATTRIBUTES | SYNCHRONIZE


def test_stat_open_gets_no_oplock_next_to_an_exclusive_one(node):
    """smb2.oplock.exclusive4."""
    node.open(F, oplock(1, X))
    d = node.open(F, oplock(2, X, client=C2, access=STAT))
    assert d.outcome is Outcome.GRANT and d.oplock_level == NO and not d.breaks
    assert node.oplock_level(1) == X


def test_truncating_stat_open_is_not_a_stat_open(node):
    """smb2.oplock.exclusive5: OVERWRITE_IF with attribute access still breaks."""
    node.open(F, oplock(1, X))
    req = oplock(2, II, client=C2, access=STAT, disposition=FILE_OVERWRITE_IF)
    (brk,) = node.open(F, req).breaks
    assert brk.new_level == NO
    node.ack_oplock(1, NO)
    assert node.open(F, req, first_attempt=False).oplock_level == II


@pytest.mark.parametrize("access, is_stat", [
    (FILE_READ_DATA, False), (FILE_WRITE_DATA, False), (0x8, False), (0x10, False),  # EAs
    (0x20, False), (0x10000, False), (0x40000, False), (0x80000, False),  # exec, DELETE, DAC, owner
    (FILE_READ_ATTRIBUTES, True), (FILE_WRITE_ATTRIBUTES, True), (0x20000, True),
    (SYNCHRONIZE, True),
])
def test_which_opens_are_stat_opens_for_a_lease(node, access, is_stat):
    """smb2.lease.statopen4: only stat opens leave an RWH lease alone."""
    node.open(F, leased(1, K1, R | W | H))
    d = node.open(F, oplock(2, NO, client=C2, access=access))
    assert bool(d.breaks) is not is_stat
    if is_stat:
        # ... and do not stop the lease's own client from reopening with RWH.
        assert node.open(F, leased(3, K1, R | W | H)).lease.state == R | W | H


def test_lease_after_a_stat_open_gets_everything(node):
    """smb2.lease.statopen3."""
    node.open(F, oplock(1, NO, access=FILE_READ_ATTRIBUTES))
    d = node.open(F, leased(2, K1, R | W | H, access=FILE_WRITE_DATA))
    assert d.lease.state == R | W | H


# -- writes --------------------------------------------------------------------

def test_write_breaks_every_level2_oplock_to_none_without_waiting(node):
    """smb2.oplock.batch6: both level II holders, the writer too, hear of it."""
    node.open(F, oplock(1, OPLOCK_BATCH))
    node.open(F, oplock(2, OPLOCK_BATCH, client=C2))
    node.ack_oplock(1, OPLOCK_II)
    node.open(F, oplock(2, OPLOCK_BATCH, client=C2), first_attempt=False)  # level II
    breaks = node.contend_write(1)
    assert sorted((b.open_id, b.new_level, b.ack_required) for b in breaks) == [
        (1, OPLOCK_NONE, False), (2, OPLOCK_NONE, False)]
    assert node.oplock_level(1) == node.oplock_level(2) == OPLOCK_NONE
    assert node.contend_write(1) == ()  # nothing cached any more


def test_unlink_against_batch_then_self_write(node):
    """smb2.oplock.batch1: the unlinker breaks batch to II and still fails; a write
    through the holder then breaks its own level II to none."""
    node.open(F, oplock(1, OPLOCK_BATCH, share=0))
    unlink = oplock(2, OPLOCK_NONE, client=C2, access=0x10000)  # DELETE
    (brk,) = node.open(F, unlink).breaks
    assert brk.new_level == OPLOCK_II
    node.ack_oplock(1, OPLOCK_II)
    d = node.open(F, unlink, first_attempt=False)
    assert d.status == Status.SHARING_VIOLATION and not d.breaks
    assert node.open(F, unlink).status == Status.SHARING_VIOLATION  # 2nd unlink: no break
    assert [(b.open_id, b.new_level) for b in node.contend_write(1)] == [(1, OPLOCK_NONE)]


def test_write_breaks_other_read_leases_to_none(node):
    node.open(F, leased(1, K1, R | H))
    node.open(F, leased(2, K2, R, client=C2))
    writer = leased(3, b"\x33" * 16, R | W, client=b"\x03" * 16)
    assert node.open(F, writer).lease.state == R  # others around: no write caching
    breaks = {b.key: b for b in node.contend_write(3)}
    assert set(breaks) == {K1, K2}
    assert (breaks[K1].new_state, breaks[K1].ack_required) == (0, True)  # held H
    assert (breaks[K2].new_state, breaks[K2].ack_required) == (0, False)
    assert node.lease_state(C2, K2)[0] == 0
    assert node.ack_lease(C1, K1, 0).status == Status.SUCCESS


def test_write_by_the_write_cache_holder_breaks_nothing(node):
    node.open(F, leased(1, K1, R | W | H))
    node.open(F, leased(2, K1, R | W | H))
    assert node.contend_write(1) == ()
    assert node.contend_write(99) == ()


# -- disconnected durable opens ------------------------------------------------

def test_disconnected_durable_batch_is_purged_by_a_conflicting_open(node):
    node.open(F, oplock(1, OPLOCK_BATCH))
    node.set_disconnected(1, True)
    d = node.open(F, oplock(2, OPLOCK_BATCH, client=C2))
    assert d.outcome is Outcome.GRANT and d.purged == (1,) and d.oplock_level == OPLOCK_BATCH
    assert node.ack_oplock(1, OPLOCK_NONE).status == Status.FILE_CLOSED


def test_disconnected_durable_lease_survives_a_stat_open_and_its_own_reconnect(node):
    node.open(F, leased(1, K1, R | W | H))
    node.set_disconnected(1, True)
    assert node.open(F, oplock(2, OPLOCK_NONE, access=FILE_READ_ATTRIBUTES)).purged == ()
    node.close(2)
    node.set_disconnected(1, False)
    assert node.lease_state(C1, K1)[0] == R | W | H


def test_disconnected_persistent_open_refuses_a_share_conflict_and_is_never_purged(node):
    node.open(F, oplock(1, OPLOCK_NONE, share=SHARE_READ))
    node.set_disconnected(1, True, refuse=Status.FILE_NOT_AVAILABLE)
    d = node.open(F, oplock(2, OPLOCK_NONE, client=C2))
    assert (d.outcome, d.status, d.refused_by, d.purged) == (
        Outcome.REFUSE, Status.FILE_NOT_AVAILABLE, 1, ())
    reader = oplock(3, OPLOCK_NONE, client=C2, access=FILE_READ_DATA)
    assert node.open(F, reader).outcome is Outcome.GRANT  # shares reading with it
    node.close(3)
    # An SMB 3.x reader is refused all the same (MS-SMB2 3.3.5.9).
    d = node.open(F, replace(reader, smb3=True))
    assert (d.outcome, d.status, d.refused_by) == (Outcome.REFUSE, Status.FILE_NOT_AVAILABLE, 1)
    node.set_disconnected(1, False)  # reclaimed: an ordinary open again
    assert node.open(F, replace(reader, open_id=5, smb3=True)).outcome is Outcome.GRANT
    assert node.open(F, oplock(4, OPLOCK_NONE, client=C2)).status == Status.SHARING_VIOLATION


def test_disconnected_persistent_caching_is_broken_at_once_not_purged_nor_waited_for(node):
    node.open(F, leased(1, K1, R | W | H))
    node.set_disconnected(1, True, refuse=Status.FILE_NOT_AVAILABLE)
    d = node.open(F, leased(2, K2, R | H, client=C2))
    assert d.outcome is Outcome.GRANT and d.breaks == () and d.purged == ()
    assert node.lease_state(C1, K1)[0] == R | H  # lost only its write caching
    node.restore(("dev", 2), 5, C1, RW_ACCESS, SHARE_ALL, OPLOCK_BATCH, None,
                 refuse=Status.SHARING_VIOLATION)  # a dead worker's resilient open
    d = node.open(("dev", 2), oplock(6, OPLOCK_NONE, client=C2, access=FILE_READ_DATA))
    assert d.outcome is Outcome.GRANT and d.purged == () and d.breaks == ()


def test_restored_durable_open_is_purged_or_reattached_like_a_local_one(node):
    node.restore(F, 7, C1, RW_ACCESS, SHARE_ALL, OPLOCK_BATCH, None)
    d = node.open(F, oplock(8, OPLOCK_BATCH, client=C2))
    assert d.purged == (7,) and d.oplock_level == OPLOCK_BATCH
    node.restore(("dev", 9), 10, C1, RW_ACCESS, SHARE_ALL, OPLOCK_LEASE,
                 Lease(K1, R | W | H, epoch=4))
    assert node.lease_state(C1, K1) == (R | W | H, 4, False)
    node.set_disconnected(10, False)
    d = node.open(("dev", 9), leased(11, K2, R | H, client=C2))
    (brk,) = d.breaks  # now connected: broken, not purged
    assert d.outcome is Outcome.WAIT and brk.new_state == R | H and brk.new_epoch == 5


# -- share modes ---------------------------------------------------------------

@pytest.mark.parametrize("a, sa, b, sb, conflict", [
    (FILE_READ_DATA, SHARE_READ, FILE_READ_DATA, SHARE_READ, False),
    (FILE_READ_DATA, SHARE_READ, FILE_WRITE_DATA, SHARE_ALL, True),
    (FILE_WRITE_DATA, SHARE_ALL, FILE_READ_DATA, SHARE_READ, True),
    (GENERIC_READ, SHARE_READ | SHARE_WRITE, FILE_WRITE_DATA, SHARE_ALL, False),
    (FILE_READ_ATTRIBUTES, 0, RW_ACCESS, 0, False),
    (0x10000, SHARE_READ, FILE_READ_DATA, SHARE_READ, True),  # DELETE needs SHARE_DELETE
])
def test_share_conflicts(a, sa, b, sb, conflict):
    assert share_conflict(a, sa, b, sb) is conflict
    assert share_conflict(b, sb, a, sa) is conflict


# -- properties: random interleavings keep the caching invariants ---------------

from hypothesis import given, settings, strategies as st  # noqa: E402

from smb.oplocks import OPLOCK_LEASE as _LEASE  # noqa: E402

CLIENTS = [C1, C2, b"\x03" * 16]
KEYS = [K1, K2]
STATES = [R, R | H, R | W, R | W | H]
LEVELS = [OPLOCK_NONE, OPLOCK_II, OPLOCK_EXCLUSIVE, OPLOCK_BATCH]
ACCESS = [RW_ACCESS, FILE_READ_DATA, FILE_READ_ATTRIBUTES]
SHARES = [SHARE_ALL, SHARE_READ, 0]

events = st.lists(st.one_of(
    st.tuples(st.just("oplock"), st.sampled_from(LEVELS), st.sampled_from(CLIENTS),
              st.sampled_from(ACCESS), st.sampled_from(SHARES), st.booleans()),
    st.tuples(st.just("lease"), st.sampled_from(STATES), st.sampled_from(CLIENTS),
              st.sampled_from(KEYS), st.sampled_from(ACCESS), st.booleans()),
    st.tuples(st.just("close"), st.integers(0, 20)),
    st.tuples(st.just("ack"), st.integers(0, 20)),
    st.tuples(st.just("timeout"), st.integers(0, 20)),
), max_size=40)


def check_invariants(node):
    for file in node._files.values():
        writers = [lid for lid, lease in file.leases.items() if lease.state & W]
        writers += [oid for oid, o in file.opens.items()
                    if o.lease_id is None and o.oplock in (OPLOCK_EXCLUSIVE, OPLOCK_BATCH)]
        assert len(writers) <= 1, writers
        if writers:
            # Write caching means alone on the file, but for stat opens and the lease's own opens.
            for oid, o in file.opens.items():
                if o.lease_id is not None and o.lease_id in writers or oid in writers:
                    continue
                assert not o.access & (FILE_READ_DATA | FILE_WRITE_DATA), (writers, oid)
        if any(lease.state & H for lease in file.leases.values()):
            # Handle caching and oplocks exclude each other (either order of arrival).
            assert all(o.oplock == OPLOCK_NONE for o in file.opens.values() if o.lease_id is None)
        for lid in file.leases:
            assert any(o.lease_id == lid for o in file.opens.values())
        for o in file.opens.values():
            assert (o.oplock == _LEASE) == (o.lease_id is not None)


@settings(max_examples=300, deadline=None)
@given(events)
def test_random_event_sequences_keep_invariants(seq):
    node = NodeOplocks()
    pending = []  # breaks still owed an ack
    opens = []
    for n, ev in enumerate(seq):
        kind = ev[0]
        if kind in ("oplock", "lease"):
            if kind == "oplock":
                _, level, client, access, share, overwrite = ev
                req = oplock(n, level, client=client, access=access, share=share,
                             disposition=FILE_OVERWRITE_IF if overwrite else 1)
            else:
                _, state, client, key, access, overwrite = ev
                req = leased(n, key, state, client=client, access=access, share=SHARE_ALL,
                             disposition=FILE_OVERWRITE_IF if overwrite else 1)
            d = node.open(F, req)
            if d.outcome is Outcome.GRANT:
                opens.append(n)
            pending.extend(b for b in d.breaks if b.ack_required)
        elif kind == "close" and opens:
            node.close(opens.pop(ev[1] % len(opens)))
        elif kind in ("ack", "timeout") and pending:
            brk = pending.pop(ev[1] % len(pending))
            if kind == "timeout":
                pending.extend(node.break_timed_out(brk))
            elif isinstance(brk, OplockBreak):
                node.ack_oplock(brk.open_id, brk.new_level)
            else:
                result = node.ack_lease(brk.client_guid, brk.key, brk.new_state)
                pending.extend(b for b in result.breaks if b.ack_required)
        check_invariants(node)


def test_write_through_another_worker_breaks_every_read_cache(node):
    """A writer this table does not know of holds nothing: level II and R leases all go."""
    node.open(F, oplock(1, OPLOCK_II))
    node.open(F, leased(2, K2, R, client=C2))
    breaks = node.contend_remote_write(F)
    assert sorted((type(b).__name__, b.ack_required) for b in breaks) == [
        ("LeaseBreak", False), ("OplockBreak", False)]
    assert node.oplock_level(1) == OPLOCK_NONE
    assert node.lease_state(C2, K2)[0] == 0
    assert node.contend_remote_write(F) == ()
    assert node.contend_remote_write(("dev", 7)) == ()  # a file nobody here has open


def test_stat_open_as_sole_opener_gets_its_oplock_and_is_broken_later(node):
    """smb2.oplock.batch9/9a: the first opener gets batch even for attributes only;
    a second stat open neither breaks it nor gets one; a data open breaks it to II."""
    stat = FILE_READ_ATTRIBUTES | FILE_WRITE_ATTRIBUTES | SYNCHRONIZE
    assert node.open(F, oplock(1, OPLOCK_BATCH, access=stat, share=0)).oplock_level == OPLOCK_BATCH
    d = node.open(F, oplock(2, OPLOCK_BATCH, access=stat, share=0))
    assert (d.outcome, d.oplock_level, d.breaks) == (Outcome.GRANT, OPLOCK_NONE, ())
    node.close(2)
    full = oplock(3, OPLOCK_BATCH, share=0)
    d = node.open(F, full)
    assert d.outcome is Outcome.WAIT
    assert [(b.open_id, b.new_level) for b in d.breaks] == [(1, OPLOCK_II)]
    node.ack_oplock(1, OPLOCK_II)
    assert node.open(F, full, first_attempt=False).oplock_level == OPLOCK_II
    assert sorted(b.open_id for b in node.contend_write(3)) == [1, 3]


def test_rename_breaks_other_leases_handle_caching_and_waits_for_the_ack(node):
    """smb2.lease.v2_rename: the renamer's own lease keeps RH; another lease loses H."""
    node.open(F, leased(1, K1, R | H))
    node.open(F, leased(2, K2, R | H, client=C2))
    breaks, wait = node.rename_breaks(1)
    assert wait and [(b.key, b.current_state, b.new_state, b.ack_required) for b in breaks] == [
        (K2, R | H, R, True)]
    assert node.rename_breaks(1) == ((), True)  # still breaking: keep waiting, no new break
    node.ack_lease(C2, K2, R)
    assert node.rename_breaks(1) == ((), False)
    assert node.lease_state(C1, K1)[0] == R | H
    assert node.rename_breaks(99) == ((), False)


def test_renamed_file_keeps_its_opens_and_leases_under_the_new_name(node):
    node.open(F, leased(1, K1, R | W | H))
    new = ("dev", "renamed")
    node.move(F, new)
    again = node.open(new, leased(2, K1, 0))  # the same lease key on the new name
    assert again.outcome is Outcome.GRANT and again.lease.state == R | W | H
    assert node.open(F, leased(3, K1, R)).status == Status.INVALID_PARAMETER  # not the old
    node.close(1)
    node.close(2)
    assert node.lease_state(C1, K1) is None
    node.move(("dev", "nothing open"), F)  # a file without opens: nothing to carry


def test_rename_leaves_oplocks_alone(node):
    node.open(F, oplock(1, OPLOCK_BATCH))
    d = node.open(F, oplock(2, OPLOCK_NONE, client=C2, access=FILE_READ_ATTRIBUTES | SYNCHRONIZE))
    assert d.outcome is Outcome.GRANT  # a stat open: registered, breaking nothing
    assert node.rename_breaks(2) == ((), False)
    assert node.oplock_level(1) == OPLOCK_BATCH
