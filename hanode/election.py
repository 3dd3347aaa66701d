"""The election's trio driver: it gathers facts and applies the actions of the
leadership rule.

Safety lives in :func:`hanode.leadership.decide`, which sees only facts and a
clock reading and returns what to do.  The :class:`Elector` only gathers facts
(lease keepalives, leader-key polls) and applies the actions, so the rule can
be tested over sequences of facts without any I/O.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Protocol, TypeVar

import trio

from hanode.leadership import (
    Action, Campaign, ClaimVip, Facts, HandOver, LeaderSeen, PlannedRelease, ReleaseVip, Resign,
    RevokeLease, State, SwitchoverSeen, Timing, check_kind, decide, fence_deadline,
    granted_note, healthy_standby, lease_valid,
)
from hanode.node_health import Verdict
from hanode.store import Entry, Store, StoreUnavailable

log = logging.getLogger("hanode.election")

# How often a standby reads the leader key: a deleted or expired key is seen
# within this, which bounds the SIGTERM handover time.
LEADER_POLL_INTERVAL = 0.1
# The target of a switchover polls faster: the clients are waiting for its claim.
SWITCHOVER_POLL_INTERVAL = 0.01
# How often a leader reads the node records to know which standby is healthy.
PEERS_INTERVAL = 0.25
# The lease of a handover request the leader writes: if the target never
# claims, the request vanishes by itself and the election goes back to normal.
HANDOVER_TTL = 3
# A keepalive goes every TTL / KEEPALIVES_PER_TTL.  The leader lets go at
# sent + TTL - margin, so a keepalive may take up to TTL - margin - TTL/8
# (0.625 s of a 1 s lease) before the leader fences itself; at TTL/4 that was
# 0.5 s, which a busy machine exceeds now and then.
KEEPALIVES_PER_TTL = 8
# Keepalives in flight at once: up to a TTL's worth less the margin.
KEEPALIVES_IN_FLIGHT = 6
# Threads for the elector's own etcd calls, apart from trio's default limiter:
# a health check hung on dead storage abandons a thread every round, and once
# those fill the default limiter a keepalive waiting for a token would let the
# lease run out.  The elector has at most ten calls in flight (keepalives,
# leader poll, peers, an action, one abandoned by a stop).
ELECTOR_THREADS = 14
# Retry pacing while etcd does not answer and our lease is surely gone.
BACKOFF_FIRST = 0.25
BACKOFF_MAX = 2.0


class HealthSource(Protocol):
    """What the elector needs from node health (hanode.checks.Monitor implements it)."""

    def verdict(self) -> Verdict: ...


HEALTHY = Verdict(healthy=True, fatal=False, problem=None)


class VipEffects(Protocol):
    """What the elector needs from the VIP side (hanode.takeover implements it)."""

    async def claim(self, term: int) -> None: ...
    async def release(self, urgent: bool) -> int: ...
    async def hand_off(self, resign: Callable[[], Awaitable[object]],
                       successor: Callable[[], Awaitable[str | None]]) -> str: ...
    async def held(self) -> bool: ...


T = TypeVar("T")


@dataclass
class _Observed:
    lease_id: int | None = None
    lease_sent: float | None = None
    leader: LeaderSeen | None = None
    leader_known: bool = False
    leader_read_at: float = float("-inf")
    vip_held: bool = False
    stopping: bool = False
    switchover: SwitchoverSeen | None = None
    healthy_standby: str | None = None
    changed: trio.Event = field(default_factory=trio.Event)

    def poke(self) -> None:
        self.changed.set()

    def facts(self, now: float, health: Verdict) -> Facts:
        return Facts(now=now, lease_id=self.lease_id, lease_sent=self.lease_sent,
                     leader=self.leader, leader_known=self.leader_known,
                     vip_held=self.vip_held, stopping=self.stopping,
                     switchover=self.switchover,
                     unhealthy=None if health.healthy else (health.problem or "unhealthy"),
                     must_not_serve=health.fatal, healthy_standby=self.healthy_standby)


class Elector:
    """Keeps the node's lease, watches the leader key, and applies decide()."""

    def __init__(self, me: str, store: Store, vips: VipEffects, timing: Timing,
                 health: HealthSource | None = None,
                 on_handover: Callable[[str], None] = lambda cause: None,
                 on_keepalive: Callable[[float], None] = lambda seconds: None):
        self.me = me
        self.store = store
        self.vips = vips
        self.timing = timing
        self.health = health
        # Told the kind of check (worker, marker, storage, link, check) behind each
        # health handover, for the metrics.
        self.on_handover = on_handover
        # Told the round trip of each keepalive that succeeded (seconds), for the
        # metrics: the fence deadline is measured from when it was sent.
        self.on_keepalive = on_keepalive
        self.state = State()
        self.state_since = time.time()
        self._obs = _Observed()
        self._etcd_up: bool | None = None
        self._campaign_scope = trio.CancelScope()
        self._threads = trio.CapacityLimiter(ELECTOR_THREADS)
        self._keepalives_in_flight = 0
        # The TTL etcd granted our last lease (None before the first grant).
        self.granted_ttl: int | None = None

    # -- what others read -------------------------------------------------------

    @property
    def lease_id(self) -> int | None:
        return self._obs.lease_id

    def lease_valid(self) -> bool:
        """Whether our lease surely still lives in etcd (the first half of node health)."""
        facts = self._obs.facts(trio.current_time(), HEALTHY)
        return lease_valid(facts, self.timing)

    def stop(self) -> None:
        self._obs.stopping = True
        self._campaign_scope.cancel()  # a campaign stuck on a slow etcd must not delay the exit
        self._obs.poke()

    # -- main loop ---------------------------------------------------------------

    async def run(self, stop_budget: float = 1.5) -> None:
        """Run until stop() was called and the stop actions are done."""
        self._obs.vip_held = await self.vips.held()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._lease_loop)
            nursery.start_soon(self._leader_poll_loop)
            nursery.start_soon(self._vip_watch_loop)
            nursery.start_soon(self._peers_loop)
            await self._decide_loop(stop_budget)
            nursery.cancel_scope.cancel()

    async def _decide_loop(self, stop_budget: float) -> None:
        while True:
            obs = self._obs
            obs.changed = trio.Event()
            facts = obs.facts(trio.current_time(),
                              self.health.verdict() if self.health else HEALTHY)
            new, actions = decide(self.me, self.state, facts, self.timing)
            if new.role == "stopped":
                notes = []
                with trio.move_on_after(stop_budget):
                    for action in actions:
                        notes.append(await self._apply(action))
                self._set_state(new, notes, facts)
                return
            notes = [await self._apply(action) for action in actions]
            if new != self.state:
                self._set_state(new, notes, facts)
            wait = LEADER_POLL_INTERVAL
            deadline = fence_deadline(facts, self.timing)
            if self.state.role == "leader" and deadline is not None:
                wait = max(0.0, min(wait, deadline - trio.current_time()))
            with trio.move_on_after(wait):
                await obs.changed.wait()

    def _set_state(self, new: State, notes: list[str | None], facts: Facts) -> None:
        """One log line per change of role; the leader's own line comes from the claim."""
        old, self.state = self.state, new
        if old.role != new.role:
            self.state_since = time.time()
            if new.role != "leader":
                what = f"{new.role} (term {old.term})" if new.role == "fenced" else new.role
                seen = facts.leader
                if new.role == "standby" and seen is not None and seen.node != self.me:
                    what += f" (leader {seen.node}, term {seen.term})"
                details = "; ".join(n for n in notes if n)
                log.info("%s: %s%s", self.me, what, f": {details}" if details else "")

    async def _apply(self, action: Action) -> str | None:
        """Carry out one action; returns a note for the state-change log line."""
        if isinstance(action, Campaign):
            with trio.CancelScope() as self._campaign_scope:
                if not self._obs.stopping:
                    await self._campaign()
        elif isinstance(action, ClaimVip):
            await self.vips.claim(action.term)
            self._obs.vip_held = True
        elif isinstance(action, ReleaseVip):
            if action.health_cause is not None:
                self.on_handover(action.health_cause)
            reset = await self.vips.release(action.urgent)
            self._obs.vip_held = False
            return f"{action.reason}, VIP released, {reset} clients reset"
        elif isinstance(action, PlannedRelease):
            if action.health_cause is not None:
                self.on_handover(action.health_cause)
            notes: list[str] = []

            async def resign() -> None:
                note = await self._resign(action.term)
                if note:
                    notes.append(note)
            done = await self.vips.hand_off(resign, self._successor)
            self._obs.vip_held = False
            return "; ".join([f"{action.reason}, {done}", *notes])
        elif isinstance(action, Resign):
            return await self._resign(action.term)
        elif isinstance(action, HandOver):
            await self._hand_over(action)
        elif isinstance(action, RevokeLease):
            try:
                await self._etcd(self.store.revoke_lease, action.lease_id)
            except StoreUnavailable:
                return "lease left to expire"
            finally:
                self._obs.lease_id = None
        return None

    async def _resign(self, term: int) -> str | None:
        """Delete the leader key of term (only that incarnation); a note for the log."""
        try:
            deleted = await self._etcd(self.store.delete_if_created, self.store.leader_key, term)
        except StoreUnavailable:
            return "leader key left to expire"
        if not deleted:
            return None
        # A poll begun before the delete may still show our key; it must
        # not make us leader again.
        self._see_leader(None, trio.current_time())
        return f"leader key of term {term} deleted"

    async def _successor(self) -> str | None:
        """The node now holding the leader key if it is not us (a planned move's claim)."""
        try:
            leader = _leader_from(await self._etcd(self.store.get, self.store.leader_key))
        except StoreUnavailable:
            return None
        return leader.node if leader is not None and leader.node != self.me else None

    async def _hand_over(self, action: HandOver) -> None:
        """Write the switchover request for a healthy standby; seeing it (set here at
        once, not at the next poll) makes decide() release and resign."""
        log.warning("%s: unhealthy (%s); handing over to %s", self.me, action.cause, action.to)
        value = {"to": action.to, "from": self.me, "time": time.time(), "cause": action.cause}
        try:
            lease = await self._etcd(self.store.grant_lease, HANDOVER_TTL)
            created, _ = await self._etcd(self.store.create, self.store.switchover_key,
                                          value, lease)
            entry = None if created else await self._etcd(self.store.get,
                                                          self.store.switchover_key)
        except StoreUnavailable as exc:
            self._note_etcd(exc)
            return
        if created:
            self.on_handover(check_kind(action.cause))
            self._obs.switchover = SwitchoverSeen(to=action.to, from_=self.me)
        else:
            self._obs.switchover = _switchover_from(entry)
        self._obs.poke()

    async def _campaign(self) -> None:
        lease = self._obs.lease_id
        value = {"node": self.me, "since": time.time()}
        try:
            won, term = await self._etcd(self.store.create, self.store.leader_key, value, lease)
            entry = None if won else await self._etcd(self.store.get, self.store.leader_key)
        except StoreUnavailable as exc:
            self._note_etcd(exc)
            return
        # Stamped with the time of the answer: a poll that began before it may
        # have been served before our create and must not count as newer.
        answered = trio.current_time()
        if won:
            assert lease is not None
            self._see_leader(LeaderSeen(self.me, term, lease), answered)
        else:
            self._see_leader(_leader_from(entry), answered)

    # -- fact gatherers -----------------------------------------------------------

    async def _etcd(self, fn: Callable[..., T], *args: object) -> T:
        return await trio.to_thread.run_sync(fn, *args, abandon_on_cancel=True,
                                             limiter=self._threads)

    def _note_etcd(self, error: StoreUnavailable | None) -> None:
        """One log line per change between reachable and unreachable."""
        up = error is None
        if up != self._etcd_up:
            if up:
                log.info("%s: etcd reachable", self.me)
            else:
                log.warning("%s: etcd unreachable (%s); retrying", self.me, error)
            self._etcd_up = up

    def _note_granted(self, granted: int) -> None:
        """One log line when etcd raised our TTL (again after it changes)."""
        if granted != self.granted_ttl:
            note = granted_note(int(self.timing.lease_ttl), granted)
            if note is not None:
                log.warning("%s: %s", self.me, note)
            self.granted_ttl = granted

    def _see_leader(self, leader: LeaderSeen | None, as_of: float) -> None:
        """Keep the newest read: a poll that began before a campaign ended must not undo it.

        as_of: for a poll, when it began (it was served later); for a campaign,
        when its answer came (it was served earlier).  etcd reads are
        linearizable, so a poll begun after a campaign's answer sees its result.
        """
        obs = self._obs
        if as_of < obs.leader_read_at:
            return
        obs.leader_read_at = as_of
        if leader != obs.leader or not obs.leader_known:
            obs.leader = leader
            obs.leader_known = True
            obs.poke()

    async def _lease_loop(self) -> None:
        """Grant a lease, then send a keepalive every TTL/8 without waiting for the
        one before: on a busy machine a single keepalive may take half a second
        (a starved thread, a slow etcd), and while the next ones waited behind it
        the leader fenced itself at sent + TTL - margin though etcd kept the lease
        alive.  Each success moves lease_sent to its own send time, if later."""
        obs = self._obs
        ttl = self.timing.lease_ttl
        backoff = BACKOFF_FIRST
        async with trio.open_nursery() as keepalives:
            while not obs.stopping:
                sent = trio.current_time()
                delay = ttl / KEEPALIVES_PER_TTL
                if obs.lease_id is None:
                    try:
                        obs.lease_id, granted = await self._etcd(self.store.grant_lease_ttl,
                                                                 int(ttl))
                        obs.lease_sent = sent
                        self._note_granted(granted)
                        self._note_etcd(None)
                        backoff = BACKOFF_FIRST
                    except StoreUnavailable as exc:
                        self._note_etcd(exc)
                        delay, backoff = backoff, min(backoff * 2, BACKOFF_MAX)
                    obs.poke()
                else:
                    if self._keepalives_in_flight < KEEPALIVES_IN_FLIGHT:
                        keepalives.start_soon(self._keepalive, obs.lease_id, sent)
                    if obs.lease_sent is not None and sent < obs.lease_sent + ttl:
                        backoff = BACKOFF_FIRST  # the lease may still live: keep the pace
                    else:
                        delay, backoff = backoff, min(backoff * 2, BACKOFF_MAX)
                await trio.sleep_until(sent + delay)
            keepalives.cancel_scope.cancel()

    async def _keepalive(self, lease_id: int, sent: float) -> None:
        """One keepalive of lease_id, sent at sent; records what it learnt."""
        obs = self._obs
        self._keepalives_in_flight += 1
        try:
            ttl_left = await self._etcd(self.store.keepalive, lease_id)
        except StoreUnavailable as exc:
            self._note_etcd(exc)
            return
        finally:
            self._keepalives_in_flight -= 1
        if obs.lease_id != lease_id:
            return  # that lease was given up meanwhile
        self._note_etcd(None)
        if ttl_left > 0:
            self.on_keepalive(trio.current_time() - sent)
            if obs.lease_sent is None or sent > obs.lease_sent:
                obs.lease_sent = sent
        else:
            log.warning("%s: lease %x expired in etcd; taking a new one", self.me, lease_id)
            obs.lease_id = obs.lease_sent = None
        obs.poke()

    async def _leader_poll_loop(self) -> None:
        obs = self._obs
        while True:
            started = trio.current_time()
            try:
                entry = await self._etcd(self.store.get, self.store.leader_key)
                move = _switchover_from(await self._etcd(self.store.get,
                                                         self.store.switchover_key))
                if move != obs.switchover:
                    obs.switchover = move
                    obs.poke()
                self._see_leader(_leader_from(entry), started)
            except StoreUnavailable:
                if started >= obs.leader_read_at and obs.leader_known:
                    obs.leader_known = False
                    obs.poke()
            move = obs.switchover
            fast = move is not None and move.to == self.me and self.state.role != "leader"
            await trio.sleep_until(
                started + (SWITCHOVER_POLL_INTERVAL if fast else LEADER_POLL_INTERVAL))

    async def _peers_loop(self) -> None:
        """While leading, keep track of a standby whose node record says healthy."""
        obs = self._obs
        prefix = self.store.key("nodes") + "/"
        while True:
            found: str | None = None
            if self.state.role == "leader":
                try:
                    records = await self._etcd(self.store.get_prefix, prefix)
                    found = healthy_standby(self.me, [e.value for e in records])
                except StoreUnavailable:
                    found = None
            if found != obs.healthy_standby:
                obs.healthy_standby = found
                obs.poke()
            await trio.sleep(PEERS_INTERVAL)

    async def _vip_watch_loop(self) -> None:
        """Notice a VIP someone else added or removed on our interface."""
        while True:
            await trio.sleep(1.0)
            held = await self.vips.held()
            if held != self._obs.vip_held:
                self._obs.vip_held = held
                self._obs.poke()


def _switchover_from(entry: Entry | None) -> SwitchoverSeen | None:
    value = entry.value if entry is not None else None
    if not isinstance(value, dict) or not isinstance(value.get("to"), str):
        return None
    return SwitchoverSeen(to=value["to"], from_=str(value.get("from", "")))


def _leader_from(entry: Entry | None) -> LeaderSeen | None:
    if entry is None:
        return None
    node = entry.value.get("node", "?") if isinstance(entry.value, dict) else "?"
    return LeaderSeen(node=str(node), term=entry.create_revision, lease=entry.lease)

