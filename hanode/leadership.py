"""The leadership rule: who leads, when to let go, as a pure function of facts.

:func:`decide` sees only facts and a clock reading and returns the next state
and what to do.  It holds the rule that keeps two nodes from ever holding
the VIP: a leader lets go at ``sent + ttl - margin`` after the last keepalive
that succeeded, while etcd cannot expire the key before ``sent + ttl``.
Nothing here does I/O or reads a clock (an import-linter contract in
pyproject.toml keeps it so); :mod:`hanode.election` gathers the facts and
applies the actions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Role = Literal["starting", "standby", "leader", "fenced", "stopped"]


@dataclass(frozen=True)
class Timing:
    lease_ttl: float
    fence_margin: float
    # A leader hands over for health reasons only after leading this long, so
    # that a flapping check moves the VIP at most once per hold-down period.
    hold_down: float = 0.0


@dataclass(frozen=True)
class LeaderSeen:
    """The leader key as read from etcd."""
    node: str
    term: int  # create revision of the key
    lease: int


@dataclass(frozen=True)
class SwitchoverSeen:
    """A planned move (``hanode switchover``) as read from etcd: from the leader to a node."""
    to: str
    from_: str


@dataclass(frozen=True)
class Facts:
    """Everything the decision may depend on, observed just before it."""
    now: float                   # monotonic seconds
    lease_id: int | None         # our current lease; None while we have none
    lease_sent: float | None     # when the last keepalive (or grant) that succeeded was sent
    leader: LeaderSeen | None    # the leader key at the last read; None: absent
    leader_known: bool           # False when the last read of the leader key failed
    vip_held: bool               # some VIP of ours is on its interface
    stopping: bool = False       # SIGTERM/SIGINT received
    switchover: SwitchoverSeen | None = None  # a planned move in progress
    # Node health (hanode.node_health): None while every check passes, else why not.
    unhealthy: str | None = None
    must_not_serve: bool = False  # a fatal check fails (wrong or missing storage)
    healthy_standby: str | None = None  # a standby whose record says healthy


@dataclass(frozen=True)
class State:
    role: Role = "starting"
    term: int | None = None      # the term we lead (or led, while fenced)
    lease_id: int | None = None  # the lease our leader key is bound to
    fenced_at: float | None = None
    led_since: float | None = None  # when we claimed (monotonic), for the hold-down


# -- actions ------------------------------------------------------------------

@dataclass(frozen=True)
class Campaign:
    """Create the leader key on our lease, only if it is absent."""


@dataclass(frozen=True)
class ClaimVip:
    """Add the VIPs, announce them, tickle the clients other nodes served."""
    term: int


@dataclass(frozen=True)
class ReleaseVip:
    """Remove the VIPs and reset our own connections on them.

    urgent: another node may claim the VIP any moment now (fencing deadline,
    leader key gone, a stray VIP), so the address goes first; otherwise (a
    graceful stop) the clients are reset first, while the address still lets
    the kernel route the RSTs.
    """
    reason: str
    urgent: bool = True
    # Set when node health makes us let go: the kind of check behind it (metrics).
    health_cause: str | None = None


@dataclass(frozen=True)
class PlannedRelease:
    """Let go of the VIP and resign in a planned move, in the order of
    hanode.handoff: the address and our sockets go first, then the key; the
    successor claims, announces and tickles, so no client reconnects into a
    VIP nobody answers."""
    term: int
    reason: str
    # Set when node health makes us let go: the kind of check behind it (metrics).
    health_cause: str | None = None


@dataclass(frozen=True)
class Resign:
    """Delete the leader key, but only the incarnation created at term."""
    term: int


@dataclass(frozen=True)
class RevokeLease:
    lease_id: int


@dataclass(frozen=True)
class HandOver:
    """Ask for a planned move to a healthy standby (the switchover request key);
    once it is seen, the switchover rule releases and resigns."""
    to: str
    cause: str


Action = Campaign | ClaimVip | ReleaseVip | PlannedRelease | Resign | RevokeLease | HandOver


def fence_deadline(facts: Facts, timing: Timing) -> float | None:
    """The moment a leader must have let go unless a newer keepalive succeeds."""
    if facts.lease_id is None or facts.lease_sent is None:
        return None
    return facts.lease_sent + timing.lease_ttl - timing.fence_margin


def granted_note(requested: int, granted: int) -> str | None:
    """What to tell the operator when etcd granted a longer lease than configured.

    The fence rule stays on the configured TTL: etcd cannot expire the key
    before the longer granted one, so fencing earlier is still safe.  But no
    node can take over before the granted TTL, which bounds failover time.
    """
    if granted <= requested:
        return None
    return (f"etcd granted a {granted} s lease where cluster.lease_ttl asks for {requested} s "
            f"(etcd's shortest lease is 1.5 election timeouts, rounded up); a dead leader is "
            f"replaced after {granted} s, not {requested} s: run etcd with "
            f"--heartbeat-interval 50 --election-timeout 500 for 1 s leases")


def lease_valid(facts: Facts, timing: Timing) -> bool:
    deadline = fence_deadline(facts, timing)
    return deadline is not None and facts.now < deadline


def decide(me: str, state: State, facts: Facts, timing: Timing) -> tuple[State, list[Action]]:
    """The next state and the actions that lead there; no I/O, no clock of its own."""
    if state.role == "stopped":
        return state, []

    if facts.stopping:
        actions: list[Action] = []
        if state.role == "leader" and state.term is not None:
            actions.append(PlannedRelease(state.term, "graceful stop"))
        else:
            if facts.vip_held:
                actions.append(ReleaseVip(reason="graceful stop", urgent=False))
            if state.term is not None:
                actions.append(Resign(state.term))
        if facts.lease_id is not None:
            actions.append(RevokeLease(facts.lease_id))
        return State(role="stopped"), actions

    valid = lease_valid(facts, timing)

    if state.role == "leader":
        if facts.lease_id != state.lease_id:
            return (State(role="fenced", term=state.term, lease_id=state.lease_id,
                          fenced_at=facts.now),
                    [ReleaseVip(reason="lease lost")])
        if not valid:
            return (State(role="fenced", term=state.term, lease_id=state.lease_id,
                          fenced_at=facts.now),
                    [ReleaseVip(reason="no keepalive from etcd in time")])
        ours = facts.leader is not None and facts.leader.term == state.term
        if facts.leader_known and not ours:
            return State(role="standby"), [ReleaseVip(reason="leader key gone")]
        move = facts.switchover
        if move is not None and move.from_ == me and move.to != me:
            assert state.term is not None  # a leader has its term
            return State(role="standby"), [PlannedRelease(state.term, f"switchover to {move.to}")]
        return _lead_while_unhealthy(state, facts, timing)

    if state.role == "fenced":
        if facts.lease_id != state.lease_id:
            # The old lease (and the key on it) is gone; a new lease campaigns afresh.
            return State(role="standby"), _drop_stray(facts)
        assert state.fenced_at is not None and state.term is not None
        if valid and facts.lease_sent is not None and facts.lease_sent > state.fenced_at:
            # etcd answers again while our key may still be there: give it up so
            # the election starts over on a clean slate.
            return State(role="standby"), [Resign(state.term), *_drop_stray(facts)]
        return state, _drop_stray(facts)

    # starting or standby
    actions = _drop_stray(facts)
    if not (valid and facts.leader_known):
        return state, actions
    leader = facts.leader
    if leader is not None and leader.node == me and leader.lease == facts.lease_id:
        return (State(role="leader", term=leader.term, lease_id=facts.lease_id,
                      led_since=facts.now),
                [*actions, ClaimVip(leader.term)])
    if (leader is None and facts.unhealthy is None
            and (facts.switchover is None or facts.switchover.to == me)):
        # Only a healthy node campaigns; during a planned move only its target.
        actions.append(Campaign())
    return State(role="standby"), actions


def _lead_while_unhealthy(state: State, facts: Facts,
                          timing: Timing) -> tuple[State, list[Action]]:
    """A leader whose node health fails hands over to a healthy standby.

    Wrong or missing storage (must_not_serve) lets go at once, with or without
    a successor: nothing may be written to a mount point that is not the
    cluster's.  Otherwise the move waits for a healthy standby (with none, the
    node keeps serving, degraded) and for the hold-down since we claimed.
    """
    if facts.unhealthy is None:
        return state, []
    assert state.term is not None
    if facts.must_not_serve:
        return State(role="standby"), [PlannedRelease(
            state.term, f"must not serve: {facts.unhealthy}",
            health_cause=check_kind(facts.unhealthy))]
    held_long_enough = (state.led_since is None
                        or facts.now - state.led_since >= timing.hold_down)
    if facts.healthy_standby is not None and held_long_enough and facts.switchover is None:
        return state, [HandOver(facts.healthy_standby, facts.unhealthy)]
    return state, []


def check_kind(problem: str) -> str:
    """The kind of the first failing check in a health problem ("marker test: ..." ->
    "marker"), the label of the handover metrics."""
    return problem.split(maxsplit=1)[0].rstrip(":") if problem.strip() else "unknown"


def _drop_stray(facts: Facts) -> list[Action]:
    """A VIP on our interface while we do not lead (left by a crash) must go."""
    if facts.vip_held:
        return [ReleaseVip(reason="not leader")]
    return []


def healthy_standby(me: str, records: list[object]) -> str | None:
    """The standby to hand over to: one whose record says healthy (first by name)."""
    names = sorted(r["name"] for r in records
                   if isinstance(r, dict) and isinstance(r.get("name"), str)
                   and r["name"] != me and r.get("state") == "standby"
                   and isinstance(r.get("health"), dict) and r["health"].get("healthy") is True)
    return names[0] if names else None
