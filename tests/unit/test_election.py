"""The election's decisions over sequences of facts and clock readings."""

from __future__ import annotations

from dataclasses import replace

from hanode.leadership import (
    Campaign, ClaimVip, Facts, LeaderSeen, PlannedRelease, ReleaseVip, Resign, RevokeLease, State,
    SwitchoverSeen, Timing, decide, fence_deadline,
)

ME = "node1"
T = Timing(lease_ttl=2.0, fence_margin=0.5)
LEASE = 0x77


def facts(now: float, **kw) -> Facts:
    base = dict(now=now, lease_id=LEASE, lease_sent=now, leader=None, leader_known=True,
                vip_held=False)
    base.update(kw)
    return Facts(**base)


def run(steps: list[Facts], state: State = State()) -> list[tuple[State, list]]:
    """Feed a sequence of facts; return each step's (state, actions)."""
    out = []
    for f in steps:
        state, actions = decide(ME, state, f, T)
        out.append((state, actions))
    return out


def leader_state(term: int = 42) -> State:
    return State(role="leader", term=term, lease_id=LEASE)


def mine(term: int = 42) -> LeaderSeen:
    return LeaderSeen(ME, term, LEASE)


def test_starting_without_lease_waits_and_does_nothing():
    (state, actions), = run([facts(0.0, lease_id=None, lease_sent=None, leader_known=False)])
    assert state.role == "starting" and actions == []


def test_starting_with_stray_vip_removes_it_before_anything_else():
    (state, actions), = run([facts(0.0, lease_id=None, lease_sent=None, leader_known=False,
                                   vip_held=True)])
    assert state.role == "starting"
    assert [type(a) for a in actions] == [ReleaseVip]


def test_absent_key_campaign_then_win_claims_vip():
    steps = run([facts(0.0), facts(0.05, lease_sent=0.0, leader=mine())])
    (s1, a1), (s2, a2) = steps
    assert s1.role == "standby" and a1 == [Campaign()]
    assert s2 == replace(leader_state(), led_since=0.05) and a2 == [ClaimVip(42)]


def test_other_leader_means_standby_without_campaign():
    other = LeaderSeen("node2", 40, 0x99)
    (state, actions), = run([facts(0.0, leader=other)])
    assert state.role == "standby" and actions == []


def test_unknown_leader_no_campaign():
    (state, actions), = run([facts(0.0, leader_known=False)])
    assert actions == []


def test_no_campaign_when_lease_is_past_its_fence_deadline():
    # Last keepalive sent at 0; at 1.6 the lease may be about to lapse.
    (state, actions), = run([facts(1.6, lease_sent=0.0)])
    assert Campaign() not in actions


def test_key_of_same_name_but_older_lease_is_not_ours():
    stale = LeaderSeen(ME, 30, 0x11)  # left by our previous incarnation
    (state, actions), = run([facts(0.0, leader=stale)])
    assert state.role == "standby" and actions == []


def test_leader_holds_while_keepalives_succeed():
    seq = [facts(t, lease_sent=t - 0.3, leader=mine(), vip_held=True) for t in (1, 2, 3, 4)]
    for state, actions in run(seq, leader_state()):
        assert state == leader_state() and actions == []


def test_self_fencing_exactly_at_sent_plus_ttl_minus_margin():
    # Keepalive sent at 10.0 succeeded; nothing newer; etcd unknown from then on.
    f = facts(0, lease_sent=10.0, leader=mine(), leader_known=False, vip_held=True)
    assert fence_deadline(f, T) == 11.5
    steps = run([replace(f, now=11.0), replace(f, now=11.49), replace(f, now=11.5)],
                leader_state())
    assert steps[0] == (leader_state(), [])
    assert steps[1] == (leader_state(), [])
    state, actions = steps[2]
    assert state.role == "fenced" and state.term == 42 and state.fenced_at == 11.5
    assert len(actions) == 1 and isinstance(actions[0], ReleaseVip)
    assert actions[0].urgent


def test_self_fence_counts_from_send_time_not_answer_time():
    # A slow keepalive sent at 10.0 whose answer came at 11.2: deadline is still 11.5.
    f = facts(11.5, lease_sent=10.0, leader=mine(), vip_held=True)
    state, actions = decide(ME, leader_state(), f, T)
    assert state.role == "fenced"


def test_fenced_stays_down_while_etcd_silent_then_resigns_and_campaigns():
    silent = facts(12.0, lease_sent=10.0, leader=mine(), leader_known=False)
    fenced = State(role="fenced", term=42, lease_id=LEASE, fenced_at=11.5)
    steps = run([
        silent,
        replace(silent, now=12.5),
        # etcd answers: a keepalive sent at 12.6 (after the fence) succeeded, key still ours.
        facts(12.7, lease_sent=12.6, leader=mine()),
        # our Resign deleted the key; the next read shows it absent.
        facts(12.8, lease_sent=12.6, leader=None),
        facts(12.9, lease_sent=12.6, leader=LeaderSeen(ME, 57, LEASE)),
    ], fenced)
    assert steps[0] == (fenced, []) and steps[1] == (fenced, [])
    assert steps[2][0].role == "standby" and steps[2][1] == [Resign(42)]
    assert steps[3][1] == [Campaign()]
    assert steps[4] == (State(role="leader", term=57, lease_id=LEASE, led_since=12.9),
                        [ClaimVip(57)])


def test_fenced_keepalive_sent_before_fence_does_not_resurrect():
    # An answer to a keepalive sent before the fence must not count as etcd being back.
    fenced = State(role="fenced", term=42, lease_id=LEASE, fenced_at=11.5)
    state, actions = decide(ME, fenced, facts(11.6, lease_sent=11.4, leader=mine()), T)
    assert state == fenced and actions == []


def test_fenced_with_lost_lease_becomes_standby_and_new_lease_campaigns():
    fenced = State(role="fenced", term=42, lease_id=LEASE, fenced_at=11.5)
    steps = run([
        facts(13.0, lease_id=None, lease_sent=None, leader_known=False),
        facts(13.5, lease_id=0x88, lease_sent=13.4, leader=LeaderSeen("node2", 60, 0x99)),
    ], fenced)
    assert steps[0] == (State(role="standby"), [])
    assert steps[1] == (State(role="standby"), [])


def test_leader_whose_lease_was_replaced_fences_at_once():
    f = facts(5.0, lease_id=0x88, lease_sent=5.0, leader=mine(), vip_held=True)
    state, actions = decide(ME, leader_state(), f, T)
    assert state.role == "fenced" and isinstance(actions[0], ReleaseVip)


def test_leader_sees_key_deleted_or_taken_steps_down():
    for seen in (None, LeaderSeen("node2", 50, 0x99)):
        state, actions = decide(ME, leader_state(), facts(3.0, leader=seen, vip_held=True), T)
        assert state == State(role="standby")
        assert [type(a) for a in actions] == [ReleaseVip]


def test_leader_keeps_vip_while_leader_key_unreadable_but_lease_fresh():
    state, actions = decide(ME, leader_state(),
                            facts(3.0, lease_sent=2.9, leader_known=False, vip_held=True), T)
    assert state == leader_state() and actions == []


def test_standby_with_vip_on_interface_drops_it():
    other = LeaderSeen("node2", 40, 0x99)
    state, actions = decide(ME, State(role="standby"), facts(1.0, leader=other, vip_held=True), T)
    assert [type(a) for a in actions] == [ReleaseVip]


def test_stop_as_leader_hands_off_then_revokes():
    state, actions = decide(ME, leader_state(), facts(3.0, leader=mine(), vip_held=True,
                                                      stopping=True), T)
    assert state.role == "stopped"
    # The hand-off resigns after the address went; the lease goes last.
    assert actions == [PlannedRelease(42, "graceful stop"), RevokeLease(LEASE)]
    assert decide(ME, state, facts(3.1), T) == (state, [])


def test_stop_as_standby_with_a_stray_vip_releases_it_gently():
    state, actions = decide(ME, State(role="standby"),
                            facts(3.0, leader=LeaderSeen("node2", 40, 0x99), vip_held=True,
                                  stopping=True), T)
    assert state.role == "stopped"
    assert actions == [ReleaseVip(reason="graceful stop", urgent=False), RevokeLease(LEASE)]


def test_stop_as_standby_only_revokes():
    state, actions = decide(ME, State(role="standby"), facts(3.0, stopping=True), T)
    assert state.role == "stopped" and actions == [RevokeLease(LEASE)]


def test_stop_without_lease_does_nothing_in_etcd():
    state, actions = decide(ME, State(), facts(3.0, lease_id=None, lease_sent=None,
                                              stopping=True), T)
    assert state.role == "stopped" and actions == []


def test_two_nodes_never_hold_at_once_over_a_partition():
    """node1 leads, then is cut from etcd; node2 claims only after etcd expired the lease,
    and node1 fenced before that moment."""
    ttl = T.lease_ttl
    n1 = leader_state()
    last_sent = 10.0
    # etcd received that keepalive at some point >= sent; it expires the lease at >= sent+ttl.
    expiry = last_sent + 0.05 + ttl
    fence_time = None
    for step in range(0, 400):
        now = 10.0 + step * 0.01
        n1, _ = decide(ME, n1, facts(now, lease_sent=last_sent, leader_known=False,
                                     leader=mine(), vip_held=n1.role == "leader"), T)
        if n1.role == "fenced" and fence_time is None:
            fence_time = now
        # node2 can win only once the key is gone, i.e. after expiry.
        if now >= expiry:
            assert n1.role != "leader"
    assert fence_time is not None and fence_time <= expiry - T.fence_margin + 0.01


# -- planned moves (hanode switchover) -------------------------------------------

def test_switchover_from_me_hands_off_in_the_planned_order():
    move = SwitchoverSeen(to="node2", from_=ME)
    (state, actions), = run([facts(1.0, leader=mine(), vip_held=True, switchover=move)],
                            leader_state())
    assert state.role == "standby"
    assert actions == [PlannedRelease(42, "switchover to node2")]


def test_switchover_naming_another_leader_is_ignored():
    move = SwitchoverSeen(to="node3", from_="node2")
    (state, actions), = run([facts(1.0, leader=mine(), vip_held=True, switchover=move)],
                            leader_state())
    assert state == leader_state() and actions == []


def test_switchover_to_me_is_ignored_by_the_leader():
    move = SwitchoverSeen(to=ME, from_=ME)
    (state, actions), = run([facts(1.0, leader=mine(), vip_held=True, switchover=move)],
                            leader_state())
    assert state == leader_state() and actions == []


def test_during_switchover_only_the_target_campaigns():
    (other, a_other), = run([facts(1.0, switchover=SwitchoverSeen(to="node2", from_="node3"))],
                            State(role="standby"))
    (target, a_target), = run([facts(1.0, switchover=SwitchoverSeen(to=ME, from_="node3"))],
                              State(role="standby"))
    assert other.role == "standby" and a_other == []
    assert target.role == "standby" and a_target == [Campaign()]


def test_after_switchover_key_is_gone_everyone_campaigns_again():
    steps = run([facts(1.0, switchover=SwitchoverSeen(to="node2", from_="node3")),
                 facts(1.1)], State(role="standby"))
    assert [a for _, a in steps] == [[], [Campaign()]]
