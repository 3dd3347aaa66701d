"""Node health and the leadership rules that use it, over sequences of results."""

from __future__ import annotations

from hypothesis import given, strategies as st

from hanode.leadership import (
    Campaign, ClaimVip, Facts, HandOver, LeaderSeen, PlannedRelease, State, SwitchoverSeen,
    Timing, check_kind, decide, healthy_standby,
)
from hanode.node_health import NOT_CHECKED, CheckSpec, CheckState, fold, report, verdict

SPEC = CheckSpec("worker 0", fall=2, rise=3)


def feed(results: list[bool], spec: CheckSpec = SPEC) -> list[CheckState]:
    state, out = CheckState(), []
    for i, ok in enumerate(results):
        state = fold(spec, state, ok, "fine" if ok else f"failure {i}", float(i))
        out.append(state)
    return out


def test_fresh_check_fails_until_its_first_pass_then_passes_at_once():
    assert CheckState().ok is False and CheckState().detail == NOT_CHECKED
    states = feed([False, False, False, True])
    assert [s.ok for s in states] == [False, False, False, True]
    assert states[2].detail == "failure 2"


def test_one_miss_is_not_a_failure_fall_misses_are():
    states = feed([True, False, True, False, False])
    assert [s.ok for s in states] == [True, True, True, True, False]
    assert states[3].detail == "fine" and states[4].detail == "failure 4"
    assert states[4].since == 4.0


def test_recovery_needs_rise_passes_in_a_row_and_keeps_the_reason_meanwhile():
    states = feed([True, False, False, True, True, False, True, True, True])
    assert [s.ok for s in states] == [True, True, False, False, False, False, False, False, True]
    assert states[4].detail == "failure 2 (recovering: 2/3 passes)"
    assert states[5].detail == "failure 5"
    assert states[8].since == 8.0 and states[8].detail == "fine"


@given(st.lists(st.booleans(), max_size=60))
def test_flips_only_after_enough_results_in_a_row(results):
    states = feed(results)
    for i in range(1, len(states)):
        before, after = states[i - 1], states[i]
        if before.ok and not after.ok:
            assert results[i - SPEC.fall + 1: i + 1] == [False] * SPEC.fall
        if not before.ok and after.ok:
            first = not any(s.ok for s in states[:i])
            need = 1 if first else SPEC.rise
            assert results[i - need + 1: i + 1] == [True] * need


def test_a_check_alternating_pass_fail_stays_failed():
    flapping = [True, False, False] + [True, False] * 20
    assert not any(s.ok for s in feed(flapping)[2:])


def test_verdict_names_every_failing_check_and_fatal_marks_must_not_serve():
    specs = [CheckSpec("worker 0"), CheckSpec("marker test", fall=1, fatal=True)]
    ok = CheckState(ok=True, detail="answers", passed_once=True)
    bad = CheckState(ok=False, detail="storage marker missing (not mounted?)", since=5.0)
    assert verdict(specs, {"worker 0": ok, "marker test": ok}).healthy
    v = verdict(specs, {"worker 0": ok, "marker test": bad})
    assert not v.healthy and v.fatal
    assert v.problem == "marker test: storage marker missing (not mounted?)"
    v = verdict(specs, {"marker test": ok})
    assert not v.healthy and not v.fatal and v.problem == f"worker 0: {NOT_CHECKED}"
    rep = report(specs, {"worker 0": ok, "marker test": bad})
    assert rep == {"healthy": False, "checks": [
        {"name": "worker 0", "ok": True, "detail": "answers", "since": None},
        {"name": "marker test", "ok": False,
         "detail": "storage marker missing (not mounted?)", "since": 5.0}]}


# -- leadership with health --------------------------------------------------------

ME = "node1"
T = Timing(lease_ttl=2.0, fence_margin=0.5, hold_down=10.0)
LEASE = 0x77


def facts(now: float, **kw) -> Facts:
    base = dict(now=now, lease_id=LEASE, lease_sent=now, leader=None, leader_known=True,
                vip_held=False)
    base.update(kw)
    return Facts(**base)


def leading(since: float = 0.0) -> State:
    return State(role="leader", term=42, lease_id=LEASE, led_since=since)


MINE = LeaderSeen(ME, 42, LEASE)


def test_unhealthy_standby_does_not_campaign_healthy_one_does():
    state, actions = decide(ME, State(), facts(0.0, unhealthy="worker 0: not answering"), T)
    assert state.role == "standby" and actions == []
    state, actions = decide(ME, state, facts(0.1), T)
    assert actions == [Campaign()]


def test_unhealthy_target_of_a_switchover_does_not_campaign_either():
    move = SwitchoverSeen(to=ME, from_="node2")
    _, actions = decide(ME, State(role="standby"),
                        facts(0.0, switchover=move, unhealthy="link eth0: no carrier"), T)
    assert actions == []


def test_claim_remembers_when_for_the_hold_down():
    state, actions = decide(ME, State(role="standby"), facts(3.0, leader=MINE), T)
    assert state == leading(3.0) and actions == [ClaimVip(42)]


def test_unhealthy_leader_hands_over_to_healthy_standby_then_releases_and_resigns():
    f = facts(20.0, leader=MINE, vip_held=True, unhealthy="worker 0: not answering",
              healthy_standby="node2")
    state, actions = decide(ME, leading(), f, T)
    assert state == leading() and actions == [HandOver("node2", "worker 0: not answering")]
    # The driver writes the request and sees it: the planned-switchover rule does the rest.
    f2 = facts(20.01, leader=MINE, vip_held=True, unhealthy="worker 0: not answering",
               healthy_standby="node2", switchover=SwitchoverSeen("node2", ME))
    state, actions = decide(ME, state, f2, T)
    assert state.role == "standby"
    assert actions == [PlannedRelease(42, "switchover to node2")]


def test_unhealthy_leader_without_healthy_standby_keeps_serving_degraded():
    f = facts(20.0, leader=MINE, vip_held=True, unhealthy="worker 0: not answering")
    assert decide(ME, leading(), f, T) == (leading(), [])


def test_hold_down_delays_a_health_handover_after_a_claim():
    f = dict(leader=MINE, vip_held=True, unhealthy="command flappy: exit 1",
             healthy_standby="node2")
    assert decide(ME, leading(5.0), facts(14.9, **f), T) == (leading(5.0), [])
    _, actions = decide(ME, leading(5.0), facts(15.0, **f), T)
    assert actions == [HandOver("node2", "command flappy: exit 1")]


def test_wrong_storage_releases_at_once_even_without_a_standby_and_within_hold_down():
    f = facts(1.0, leader=MINE, vip_held=True, must_not_serve=True,
              unhealthy="marker test: storage marker missing (not mounted?)")
    state, actions = decide(ME, leading(0.5), f, T)
    assert state.role == "standby"
    assert actions == [PlannedRelease(42, "must not serve: marker test: storage marker missing "
                                      "(not mounted?)", health_cause="marker")]


def test_check_kind_labels_the_handover_metrics():
    assert check_kind("worker 0: no NEGOTIATE reply within 1 s; link eth0: no carrier") == "worker"
    assert check_kind("marker test: storage marker missing (not mounted?)") == "marker"
    assert check_kind("") == "unknown"


def test_recovered_node_does_not_take_the_vip_back():
    other = LeaderSeen("node2", 50, 0x99)
    state, actions = decide(ME, State(role="standby"), facts(30.0, leader=other), T)
    assert state.role == "standby" and actions == []


@given(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=80))
def test_health_handovers_at_most_once_per_hold_down(steps):
    """A leader flapping healthy/unhealthy, with a standby present or not: every HandOver
    comes at least hold_down after the claim, and none while healthy."""
    state = leading(0.0)
    for i, (healthy, standby) in enumerate(steps):
        now = 0.5 * i
        f = facts(now, leader=MINE, vip_held=True,
                  unhealthy=None if healthy else "command flappy: exit 1",
                  healthy_standby="node2" if standby else None)
        state, actions = decide(ME, state, f, T)
        if any(isinstance(a, HandOver) for a in actions):
            assert not healthy and standby and now >= T.hold_down


def test_healthy_standby_picks_a_healthy_standby_other_than_me():
    records = [
        {"name": ME, "state": "leader", "health": {"healthy": True}},
        {"name": "node3", "state": "standby", "health": {"healthy": True}},
        {"name": "node2", "state": "standby", "health": {"healthy": False}},
        {"name": "node4", "state": "fenced", "health": {"healthy": True}},
        {"name": "node5", "state": "standby"},
        "garbage",
    ]
    assert healthy_standby(ME, records) == "node3"
    assert healthy_standby(ME, records[:3]) == "node3"
    assert healthy_standby(ME, records[2:]) is None
