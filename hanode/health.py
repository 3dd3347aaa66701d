"""What the agent tells systemd and Prometheus about itself, turn by turn.

The agent's state lives in the elector and the VIP owner; this module only
reads it, on every turn of a short loop in the agent's nursery, and turns it
into sd_notify messages (READY=1 once the node has joined etcd, STATUS on
every change, WATCHDOG=1 every turn) and gauge values.  Reading instead of
being told keeps the election code free of reporting calls, as the node
record does.

The watchdog is petted from this loop, so what systemd watches is the trio
run loop of the agent: a blocking call made outside ``trio.to_thread``, or a
deadlock of the scheduler, stops the pets and gets the agent restarted.
"""

from __future__ import annotations

from typing import Iterable, Protocol

import trio

from hanode.metrics import Metrics
from hanode.sdnotify import Notifier
from hanode.store import Store, StoreUnavailable

INTERVAL = 0.25


class _State(Protocol):
    role: str
    term: int | None


class _Owner(Protocol):
    announced: int
    tickled: int

    def held_vips(self) -> list: ...


class _Elector(Protocol):
    me: str

    @property
    def state(self) -> _State: ...

    @property
    def lease_id(self) -> int | None: ...


class Reporter:
    """Turns observations into notifications and gauges, each only when it changes."""

    def __init__(self, me: str, metrics: Metrics, notifier: Notifier, vips: Iterable[str]):
        self.me = me
        self.metrics = metrics
        self.notifier = notifier
        self.vips = tuple(vips)
        self.ready = False
        self._leading = False
        self._status: str | None = None
        self._announced = 0
        self._tickled = 0

    def observe(self, role: str, term: int | None, joined: bool, held: set[str],
                announced: int = 0, tickled: int = 0) -> None:
        """One turn: role and term from the elector, joined = it holds a lease;
        announced and tickled are the VIP owner's running totals of frames sent."""
        if joined and not self.ready:
            self.notifier.ready(f"{self.me}: joined etcd, {role}")
            self.ready = True
        leading = role == "leader"
        self.metrics.set_leader(term if leading else None)
        if leading and not self._leading:
            self.metrics.takeover()
        self._leading = leading
        for ip in self.vips:
            self.metrics.vip_held(ip, ip in held)
        self.metrics.garps(max(0, announced - self._announced))
        self.metrics.tickles(max(0, tickled - self._tickled))
        self._announced, self._tickled = announced, tickled
        status = f"{self.me}: {role}" + (f", term {term}" if leading else "")
        status += f", VIP {' '.join(sorted(held))}" if held else ""
        if status != self._status and self.ready:
            self.notifier.status(status)
            self._status = status
        self.notifier.watchdog()


async def report_loop(reporter: Reporter, elector: _Elector, owner: _Owner) -> None:
    """Observe the elector and the VIP owner every INTERVAL until cancelled."""
    while True:
        state = elector.state
        reporter.observe(state.role, state.term, elector.lease_id is not None,
                         {vip.ip for vip in owner.held_vips()}, owner.announced, owner.tickled)
        await trio.sleep(INTERVAL)


DURABLE_INTERVAL = 5.0


async def durable_loop(metrics: Metrics, store: Store) -> None:
    """Count the cluster's durable handles in etcd every DURABLE_INTERVAL.

    etcd counts them (no records cross the wire), so every node can afford to
    report the cluster-wide number; an unreachable etcd keeps the last one.
    """
    prefix = store.key("durable") + "/"
    while True:
        try:
            count = await trio.to_thread.run_sync(store.count_prefix, prefix,
                                                  abandon_on_cancel=True)
        except StoreUnavailable:
            pass  # the elector logs etcd's state
        else:
            metrics.set_durable_handles(count)
        await trio.sleep(DURABLE_INTERVAL)
