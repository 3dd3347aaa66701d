"""Node health: a pure fold of check results over time, with hysteresis.

A node may lead only while it can serve: its workers answer, every share sits
on the cluster's storage and responds, the VIP's link is up, the operator's
checks pass.  Each check reports one result per round; this module turns the
stream of results into a verdict that does not flap with every round:

- a check that has passed fails only after ``fall`` failures in a row;
- a check that has failed recovers only after ``rise`` passes in a row;
- at start a check is failing ("not checked yet") until its first pass, which
  makes it pass at once: a fresh node becomes eligible as soon as everything
  has answered once, while a node that failed must prove itself ``rise``
  times before it counts again.

A check marked ``fatal`` (the share's storage identity) means the node must
not serve at all, not even degraded with no healthy standby: serving an
empty mount point would let clients write where no other node can see it.

Everything here is a function of results and clock readings, so the rules are
tested over sequences without any I/O (see ``hanode.checks`` for the drivers).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable, Mapping

NOT_CHECKED = "not checked yet"


@dataclass(frozen=True)
class CheckSpec:
    """How one check's results are judged."""
    name: str
    fall: int = 2    # failures in a row that turn a passing check failing
    rise: int = 3    # passes in a row that turn a failing check passing again
    fatal: bool = False  # failing: the node must not serve even without another node


@dataclass(frozen=True)
class CheckState:
    ok: bool = False
    detail: str = NOT_CHECKED
    since: float | None = None   # wall-clock time of the last change of ok
    passed_once: bool = False
    fails: int = 0               # consecutive failures
    passes: int = 0              # consecutive passes


def fold(spec: CheckSpec, state: CheckState, ok: bool, detail: str, now: float) -> CheckState:
    """The check's state after one more result; now is the wall clock (for display)."""
    if ok:
        passes = state.passes + 1
        recovered = not state.ok and (not state.passed_once or passes >= spec.rise)
        if recovered:
            return CheckState(ok=True, detail=detail, since=now, passed_once=True,
                              passes=passes)
        if state.ok:
            return replace(state, detail=detail, fails=0, passes=passes)
        # Still failing: keep the reason it failed for, and count the passes.
        return replace(state, fails=0, passes=passes,
                       detail=_recovering(state.detail, passes, spec.rise))
    fails = state.fails + 1
    if state.ok and fails < spec.fall:
        return replace(state, fails=fails, passes=0)  # one miss is not a failure yet
    changed = state.ok or state.since is None
    return replace(state, ok=False, detail=detail, fails=fails, passes=0,
                   since=now if changed else state.since)


def _recovering(detail: str, passes: int, rise: int) -> str:
    base = detail.split(" (recovering", 1)[0]
    return f"{base} (recovering: {passes}/{rise} passes)"


@dataclass(frozen=True)
class Verdict:
    """What the election needs to know: may this node lead, may it serve at all."""
    healthy: bool
    fatal: bool          # a fatal check fails: release the VIP even with no one to take it
    problem: str | None  # the failing checks and their reasons, for logs and handover causes


def verdict(specs: Iterable[CheckSpec], states: Mapping[str, CheckState]) -> Verdict:
    failing = [(spec, states.get(spec.name, CheckState())) for spec in specs]
    failing = [(spec, st) for spec, st in failing if not st.ok]
    if not failing:
        return Verdict(healthy=True, fatal=False, problem=None)
    problem = "; ".join(f"{spec.name}: {st.detail}" for spec, st in failing)
    return Verdict(healthy=False, fatal=any(spec.fatal for spec, _ in failing), problem=problem)


def report(specs: Iterable[CheckSpec], states: Mapping[str, CheckState]) -> dict:
    """The ``health`` object of the node record and of ``hanode status --json``."""
    specs = list(specs)
    checks = [{"name": spec.name, "ok": st.ok, "detail": st.detail, "since": st.since}
              for spec in specs for st in [states.get(spec.name, CheckState())]]
    return {"healthy": verdict(specs, states).healthy, "checks": checks}
