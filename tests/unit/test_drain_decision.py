"""When a connection counts as drained before a planned move (smb.server.drain)."""

from __future__ import annotations

from dataclasses import replace

from smb.server.drain import (
    POLL, SPEND, DrainFacts, Drained, Shut, StopTaking, Wait, next_step,
)

# A client writing: one request being answered, credits left, the drain just begun.
BUSY = DrainFacts(now=5.0, started=5.0, deadline=5.5, in_flight=1, partial=False,
                  credits_held=40, finishing=False, finished=False, ended=False)
# The same client once the drain stopped taking its requests.
FINISHING = replace(BUSY, now=5.0 + SPEND, finishing=True)


def test_waits_while_a_request_is_in_flight():
    assert next_step(BUSY) == Wait(5.0 + POLL)
    assert next_step(replace(BUSY, credits_held=0)) == Wait(5.0 + POLL)


def test_waits_while_a_request_is_partly_in():
    f = replace(BUSY, in_flight=0, partial=True, credits_held=0)
    assert next_step(f) == Wait(5.0 + POLL)


def test_drained_once_answered_and_the_client_holds_no_credit():
    """Without a credit the client can send nothing more: it waits, the cut finds it idle."""
    assert next_step(replace(BUSY, in_flight=0, credits_held=0)) == Drained(quiet=True)


def test_a_client_still_holding_credits_after_a_moment_is_finished():
    """It would go on sending as long as its credits last: the server stops
    taking its requests, lets those taken answer, then shuts its side."""
    assert next_step(replace(BUSY, now=5.0 + SPEND / 2)) == Wait(5.0 + SPEND / 2 + POLL)
    assert next_step(replace(BUSY, now=5.0 + SPEND)) == StopTaking()
    # Idle but holding credits: finished the same way (it may start sending any time).
    assert next_step(replace(BUSY, in_flight=0, now=5.0 + SPEND)) == StopTaking()
    assert next_step(FINISHING) == Wait(5.0 + SPEND + POLL)
    assert next_step(replace(FINISHING, in_flight=0, partial=True)) == Shut()


def test_a_finishing_client_out_of_credits_is_not_drained_before_it_closes():
    """Once requests are dropped, the client may be sending one that will get
    no answer: it is drained only when it has closed its side."""
    shut = replace(FINISHING, in_flight=0, credits_held=0, finished=True)
    assert next_step(shut) == Wait(5.0 + SPEND + POLL)
    assert next_step(replace(shut, ended=True)) == Drained(quiet=True)


def test_the_deadline_ends_the_drain_whatever_is_in_flight():
    assert next_step(replace(BUSY, now=5.5)) == Drained(quiet=False)
    assert next_step(replace(BUSY, now=5.498, finishing=True)) == Wait(5.5)
    assert next_step(replace(FINISHING, now=9.0, in_flight=0, finished=True)) == \
        Drained(quiet=False)


def test_drained_wins_over_a_passed_deadline():
    """A connection drained at the deadline is drained, not late."""
    assert next_step(replace(BUSY, now=5.6, in_flight=0, credits_held=0)) == Drained(quiet=True)
    assert next_step(replace(FINISHING, now=5.6, ended=True)) == Drained(quiet=True)
