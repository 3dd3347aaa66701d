"""The node's health checks and the monitor that runs them (the drivers of node_health).

Each check runs in its own loop: every ``interval`` one round, bounded by
``timeout`` (a cancel scope), whose result is folded into the check's state
by :func:`hanode.node_health.fold`.  The elector reads :meth:`Monitor.verdict`
before every decision; the node record and ``/readyz`` read
:meth:`Monitor.report` and the verdict.

A check that touches a share's filesystem runs its blocking calls in a
thread (:class:`Blocking`): a hung filesystem leaves that thread stuck, the
round times out, and the next rounds report the hang instead of starting
more threads that would hang too.  The agent's event loop never waits on it.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from dataclasses import dataclass
from typing import Awaitable, Callable, Protocol, Sequence

import trio

from hanode import share_storage
from hanode.config import Config, ProbeConfig
from hanode.node_health import CheckSpec, CheckState, Verdict, fold, report, verdict
from hanode.store import Store, StoreUnavailable
from smb import probe

log = logging.getLogger("hanode.checks")

# A round's outcome: (passed, detail), or None when the round says nothing
# (its question is answered by another check, e.g. the marker of a hung share).
Result = tuple[bool, str] | None


@dataclass(frozen=True)
class Check:
    spec: CheckSpec
    interval: float
    timeout: float
    run: Callable[[], Awaitable[Result]]
    # What a round that did not finish within the timeout counts as.
    on_timeout: Result = None
    # Called after every round once the check has failed spec.fall times in a row.
    on_failed: Callable[[], None] | None = None


class Blocking:
    """One blocking call at a time, in a thread that may be abandoned if it hangs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._busy_since: float | None = None

    def busy_for(self, now: float) -> float | None:
        """How long a call begun in an earlier round has been stuck, or None."""
        with self._lock:
            return None if self._busy_since is None else now - self._busy_since

    async def call(self, fn: Callable[[], None]) -> None:
        """fn() in a thread; cancelling abandons the thread, which clears the busy mark
        whenever fn finally returns."""
        with self._lock:
            self._busy_since = trio.current_time()

        def run() -> None:
            try:
                fn()
            finally:
                with self._lock:
                    self._busy_since = None

        await trio.to_thread.run_sync(run, abandon_on_cancel=True)


class Metrics(Protocol):
    def health_check(self, name: str, ok: bool, seconds: float) -> None: ...
    def node_healthy(self, healthy: bool) -> None: ...


class Monitor:
    """Runs the checks; holds their states; logs one line per change of the node's health."""

    def __init__(self, me: str, checks: Sequence[Check], metrics: Metrics | None = None):
        self.me = me
        self.checks = list(checks)
        self.specs = [c.spec for c in self.checks]
        self.metrics = metrics
        self.states: dict[str, CheckState] = {c.spec.name: CheckState() for c in self.checks}
        self._logged: tuple[bool, tuple[str, ...]] | None = None

    def verdict(self) -> Verdict:
        return verdict(self.specs, self.states)

    def report(self) -> dict:
        return report(self.specs, self.states)

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            for check in self.checks:
                nursery.start_soon(self._loop, check)

    async def _loop(self, check: Check) -> None:
        while True:
            started = trio.current_time()
            result = check.on_timeout
            with trio.move_on_after(check.timeout):
                result = await check.run()
            if result is not None:
                self.record(check, *result, took=trio.current_time() - started)
            await trio.sleep_until(started + check.interval)

    def record(self, check: Check, ok: bool, detail: str, took: float = 0.0) -> None:
        """Fold one result in; log the node's health when it changed."""
        name = check.spec.name
        state = self.states[name] = fold(check.spec, self.states[name], ok, detail, time.time())
        if self.metrics is not None:
            self.metrics.health_check(name, state.ok, took)
        if not state.ok and state.fails >= check.spec.fall and check.on_failed is not None:
            check.on_failed()
        self._log_change()

    def _log_change(self) -> None:
        if any(st.since is None for st in self.states.values()):
            return  # starting: the first line comes once every check has answered
        v = self.verdict()
        failing = tuple(s.name for s in self.specs if not self.states[s.name].ok)
        if (v.healthy, failing) == self._logged:
            return
        self._logged = (v.healthy, failing)
        if self.metrics is not None:
            self.metrics.node_healthy(v.healthy)
        if v.healthy:
            log.info("%s: healthy (%d checks pass)", self.me, len(self.specs))
        else:
            log.warning("%s: unhealthy: %s", self.me, v.problem)


# -- the checks ----------------------------------------------------------------------

class Restarter(Protocol):
    def answered(self, index: int) -> None: ...
    def restart_hung(self, index: int, why: str) -> None: ...


def worker_check(index: int, state_dir: str, p: ProbeConfig, rise: int,
                 supervisor: Restarter | None) -> Check:
    """Worker ``index`` answers an SMB2 NEGOTIATE on its probe socket."""
    at = probe.address(state_dir, index)
    spec = CheckSpec(f"worker {index}", fall=p.fall, rise=rise)

    async def run() -> Result:
        problem = await probe.ask(at)
        if problem is not None:
            return False, problem
        if supervisor is not None:
            supervisor.answered(index)
        return True, "answers NEGOTIATE"

    def failed() -> None:
        if supervisor is not None:
            supervisor.restart_hung(index, "does not answer its health probe")

    return Check(spec, p.interval, p.timeout, run,
                 on_timeout=(False, f"no NEGOTIATE reply within {p.timeout:g} s"),
                 on_failed=failed)


def marker_check(name: str, path: str, store: Store, p: ProbeConfig, rise: int) -> Check:
    """The share's storage carries the cluster's identity marker (fatal if not).

    A share never initialised (no id in etcd) passes, saying so: a cluster
    upgraded to health checks keeps serving until ``hanode share init``.
    """
    spec = CheckSpec(f"marker {name}", fall=p.fall, rise=rise, fatal=True)
    storage, etcd = Blocking(), Blocking()
    known: list[str | None] = []  # the id last read from etcd (empty: never read)
    outcome: list[str | None] = []

    def read_id() -> None:
        known[:] = [share_storage.stored_id(store, name)]

    async def run() -> Result:
        # A read still waiting for etcd is not joined by another (threads are finite).
        if etcd.busy_for(trio.current_time()) is None:
            try:
                await etcd.call(read_id)
            except StoreUnavailable:
                pass  # keep the id last read; the elector reports etcd
        if not known:
            return None  # nothing to compare with yet
        expected = known[0]
        if expected is None:
            return True, f"not initialised (hanode share init {name}); identity unchecked"
        if storage.busy_for(trio.current_time()) is not None:
            return None  # the storage hangs: the storage check says so
        outcome[:] = []
        await storage.call(lambda: outcome.append(share_storage.marker_problem(path, expected)))
        problem = outcome[0]
        return (True, f"storage id {expected}") if problem is None else (False, problem)

    # A hung filesystem is the storage check's finding, not proof of wrong storage.
    return Check(spec, p.interval, p.timeout, run, on_timeout=None)


def storage_check(name: str, path: str, me: str, p: ProbeConfig, rise: int) -> Check:
    """write + fsync + read + unlink under the share's hidden directory, bounded."""
    spec = CheckSpec(f"storage {name}", fall=p.fall, rise=rise)
    blocking = Blocking()

    async def run() -> Result:
        stuck = blocking.busy_for(trio.current_time())
        if stuck is not None:
            return False, f"storage hung: I/O unanswered for {stuck:.1f} s"
        try:
            await blocking.call(lambda: share_storage.probe_storage(path, me))
        except (OSError, ValueError) as exc:
            return False, f"storage I/O failed: {getattr(exc, 'strerror', None) or exc}"
        return True, "write, fsync, read, unlink ok"

    return Check(spec, p.interval, p.timeout, run,
                 on_timeout=(False, f"storage I/O unanswered within {p.timeout:g} s"))


def read_carrier(interface: str) -> str | None:
    """Why the interface cannot carry the VIP, or None when its link is up (blocking)."""
    try:
        with open(f"/sys/class/net/{interface}/carrier") as f:
            carrier = f.read().strip()
    except FileNotFoundError:
        return "no such interface"
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            return "link down"  # the kernel has no carrier to report for a downed link
        return f"carrier unreadable: {exc.strerror}"
    return None if carrier == "1" else "no carrier"


def link_check(interface: str, p: ProbeConfig, rise: int) -> Check:
    spec = CheckSpec(f"link {interface}", fall=p.fall, rise=rise)

    async def run() -> Result:
        problem = await trio.to_thread.run_sync(read_carrier, interface, abandon_on_cancel=True)
        return (True, "carrier") if problem is None else (False, problem)

    return Check(spec, p.interval, p.timeout, run,
                 on_timeout=(False, f"carrier unreadable within {p.timeout:g} s"))


def command_check(name: str, argv: Sequence[str], interval: float, timeout: float, fall: int,
                  rise: int) -> Check:
    """An operator's command: exit status 0 is healthy (killed at the timeout)."""
    spec = CheckSpec(f"check {name}", fall=fall, rise=rise)

    async def run() -> Result:
        try:
            done = await trio.run_process(list(argv), check=False, capture_stdout=True,
                                          capture_stderr=True, stdin=b"")
        except OSError as exc:
            return False, f"cannot run {argv[0]}: {exc.strerror or exc}"
        if done.returncode == 0:
            return True, "exit 0"
        said = (done.stderr or done.stdout or b"").decode("utf-8", "replace").strip()
        last = said.splitlines()[-1][:200] if said else ""
        return False, f"exit {done.returncode}" + (f": {last}" if last else "")

    return Check(spec, interval, timeout, run,
                 on_timeout=(False, f"no exit within {timeout:g} s"))


def build(cfg: Config, store: Store, supervisor: Restarter | None) -> list[Check]:
    """Every check the config asks for: workers, each share's marker and storage, each
    VIP interface's link, the operator's commands."""
    h = cfg.health
    checks = [worker_check(i, cfg.node.state_dir, h.worker, h.rise, supervisor)
              for i in range(cfg.smb.workers)]
    for share in cfg.shares:
        checks.append(marker_check(share.name, share.path, store, h.marker, h.rise))
        checks.append(storage_check(share.name, share.path, cfg.node.name, h.storage, h.rise))
    for interface in dict.fromkeys(vip.interface for vip in cfg.vips):
        checks.append(link_check(interface, h.link, h.rise))
    checks += [command_check(c.name, c.command, c.interval, c.timeout, c.fall, h.rise)
               for c in h.checks]
    return checks
