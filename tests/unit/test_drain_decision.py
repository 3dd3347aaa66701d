"""When a connection counts as drained before a planned move (smb.server.drain)."""

from __future__ import annotations

from dataclasses import replace

from smb.server.drain import POLL, QUIET, DrainFacts, Drained, Wait, next_step

# A client writing: one request being answered, credits left, bytes just in.
BUSY = DrainFacts(now=5.0, deadline=5.2, in_flight=1, partial=False, credits_held=40,
                  last_received=5.0)


def test_waits_while_a_request_is_in_flight():
    assert next_step(BUSY) == Wait(5.0 + POLL)
    assert next_step(replace(BUSY, last_received=1.0)) == Wait(5.0 + POLL)


def test_waits_while_a_request_is_partly_in():
    f = replace(BUSY, in_flight=0, partial=True, credits_held=0, last_received=1.0)
    assert next_step(f) == Wait(5.0 + POLL)


def test_drained_once_answered_and_the_client_holds_no_credit():
    """Without a credit the client can send nothing more: no wait for quiet."""
    f = replace(BUSY, in_flight=0, credits_held=0)
    assert next_step(f) == Drained(quiet=True)


def test_a_client_with_credits_is_drained_once_it_has_been_quiet():
    f = replace(BUSY, in_flight=0)
    assert next_step(f) == Wait(5.0 + POLL)
    assert next_step(replace(f, now=5.0 + QUIET / 2)) == Wait(5.0 + QUIET / 2 + POLL)
    assert next_step(replace(f, now=5.0 + QUIET)) == Drained(quiet=True)


def test_the_deadline_ends_the_drain_whatever_is_in_flight():
    assert next_step(replace(BUSY, now=5.2)) == Drained(quiet=False)
    assert next_step(replace(BUSY, now=5.198)) == Wait(5.2)
    assert next_step(replace(BUSY, now=9.0, partial=True)) == Drained(quiet=False)


def test_quiet_wins_over_a_passed_deadline():
    """A connection quiet at the deadline is drained, not late."""
    f = replace(BUSY, now=5.3, in_flight=0, credits_held=0)
    assert next_step(f) == Drained(quiet=True)
