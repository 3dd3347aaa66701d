"""The order of a planned move, over sequences of facts (hanode.handoff)."""

from __future__ import annotations

from dataclasses import replace

from hanode.handoff import (
    CLAIM_BOUND, DRAIN_BOUND, RESET_WAIT, Done, Drain, DropSockets, HandOffFacts, RecordClients,
    ReadClients, RemoveAddress, ResetClients, Resign, Step, WaitForClaim, next_step,
)

VIP = "10.0.0.50"
OLD = (VIP, "10.0.0.9", 50000)    # listed by the last reconciliation
FRESH = (VIP, "10.0.0.9", 50001)  # connected since: not listed yet

START = HandOffFacts(now=10.0, address_held=True, clients=None, recording_tried=False,
                     drained=False, sockets_dropped=False, resigned=False, released_at=None, claimed_by=None)


def play(world: list[tuple[float, str | None]], clients: frozenset = frozenset({OLD, FRESH}),
         recording_fails: bool = False) -> list[Step]:
    """Drive next_step as the driver would: each step changes the facts it acts on.

    world: (time, node holding the leader key if not us) seen at each claim poll."""
    f, steps, polls = START, [], iter(world)
    while True:
        step = next_step(f)
        steps.append(step)
        if isinstance(step, ReadClients):
            f = replace(f, clients=clients)
        elif isinstance(step, RecordClients):
            f = replace(f, recording_tried=True)
        elif isinstance(step, Drain):
            f = replace(f, drained=True)
        elif isinstance(step, RemoveAddress):
            f = replace(f, address_held=False, released_at=f.now)
        elif isinstance(step, DropSockets):
            f = replace(f, sockets_dropped=True)
        elif isinstance(step, Resign):
            f = replace(f, resigned=True)
        elif isinstance(step, ResetClients):
            f = replace(f, clients_reset=True)
        elif isinstance(step, WaitForClaim):
            now, claimed = next(polls)
            assert now <= step.until or claimed is None
            f = replace(f, now=now, claimed_by=claimed)
        else:
            return steps


def test_clients_are_recorded_and_the_address_goes_before_the_key():
    steps = play([(10.02, None), (10.04, "node2")])
    assert steps[:6] == [ReadClients(), RecordClients(frozenset({OLD, FRESH})),
                         Drain(DRAIN_BOUND), RemoveAddress(), DropSockets(), Resign()]
    # Only after the key is gone does anyone wait for (and see) the successor's claim.
    assert steps[6:] == [WaitForClaim(10.0 + CLAIM_BOUND), WaitForClaim(10.0 + CLAIM_BOUND),
                         Done("node2")]


def test_never_resigns_while_the_address_is_ours():
    """Whatever the facts, Resign only comes once the address is gone and our
    sockets with it: the successor claims as soon as the key is gone."""
    for held in (True, False):
        for dropped in (True, False):
            for clients in (None, frozenset(), frozenset({OLD})):
                for tried in (True, False):
                    f = replace(START, address_held=held, sockets_dropped=dropped,
                                clients=clients, recording_tried=tried,
                                released_at=None if held else 10.0)
                    if isinstance(next_step(f), Resign):
                        assert not held and dropped


def test_no_clients_goes_straight_to_the_address():
    steps = play([(10.01, "node3")], clients=frozenset())
    assert steps == [ReadClients(), RemoveAddress(), DropSockets(), Resign(),
                     WaitForClaim(10.0 + CLAIM_BOUND), Done("node3")]


def test_a_record_etcd_refused_does_not_hold_the_move_up():
    """The driver notes the attempt whatever etcd said: the move goes on."""
    steps = play([(10.01, "node2")])
    assert steps[:4] == [ReadClients(), RecordClients(frozenset({OLD, FRESH})),
                         Drain(DRAIN_BOUND), RemoveAddress()]
    assert steps.count(RecordClients(frozenset({OLD, FRESH}))) == 1
    assert steps[-1] == Done("node2")


def test_nobody_claims_stops_waiting_after_the_bound():
    world = [(10.0 + t / 10, None) for t in range(1, 20)]
    steps = play(world, clients=frozenset())
    assert steps[-1] == Done(None)
    waits = [s for s in steps if isinstance(s, WaitForClaim)]
    assert len(waits) == int(CLAIM_BOUND * 10)


def test_the_connections_are_drained_while_the_address_still_routes_replies():
    """The drain comes after the recording and before the address goes (the
    replies to the requests in flight must reach the clients), and never
    twice; without clients there is nothing to drain."""
    for held in (True, False):
        for drained in (True, False):
            for clients in (None, frozenset(), frozenset({OLD})):
                f = replace(START, address_held=held, drained=drained, clients=clients,
                            recording_tried=True, released_at=None if held else 10.0)
                if isinstance(next_step(f), Drain):
                    assert held and not drained and clients
    f = replace(START, clients=frozenset({OLD}), recording_tried=True)
    assert next_step(f) == Drain(DRAIN_BOUND)
    assert next_step(replace(f, drained=True)) == RemoveAddress()


def test_nobody_claims_the_old_leader_resets_its_clients_itself_once():
    """The last node stopping: no successor tickles, so the clients would wait
    on dead sockets; the old leader resets them after the bound, then is done."""
    world = [(10.0 + t / 10, None) for t in range(1, 20)]
    steps = play(world)
    assert steps[-2:] == [ResetClients(frozenset({OLD, FRESH}), RESET_WAIT), Done(None)]
    # Not before the bound: a successor may still claim and tickle them.
    assert all(isinstance(s, WaitForClaim) for s in steps[6:-2])
    assert steps.count(ResetClients(frozenset({OLD, FRESH}), RESET_WAIT)) == 1


def test_a_successor_resets_the_clients_not_the_old_leader():
    steps = play([(10.3, None), (10.45, "node2")])
    assert not any(isinstance(s, ResetClients) for s in steps)
    assert steps[-1] == Done("node2")


def test_drain_timeout_sets_the_bound_and_zero_skips_the_drain():
    f = replace(START, clients=frozenset({OLD}), recording_tried=True)
    assert next_step(f, drain_bound=2.0) == Drain(2.0)
    assert next_step(f, drain_bound=0) == RemoveAddress()
