"""Claiming and letting go of the VIPs: netlink, announcements, tickles, resets.

Claiming adds the addresses at once; the announce/tickle rounds and the
periodic refresh run in a cancel scope that release() cancels, so nothing
announces a VIP this node no longer holds.
"""

from __future__ import annotations

import ipaddress
import logging
from contextlib import AsyncExitStack
from typing import Awaitable, Callable, TypeVar

import psutil
import trio

from hanode import handoff
from hanode.config import Config, VipConfig
from hanode.conns import Client, ConnList
from hanode.net import NetError, announce, farreset, tickle
from hanode.net import vip as netvip
from hanode.store import Entry, StoreUnavailable
from smb.durable import live_of, owners_digest
from smb import drainctl

log = logging.getLogger("hanode.takeover")

T = TypeVar("T")

ANNOUNCE_ROUNDS = 3
ROUND_INTERVAL = 1.0
# How long releasing may spend resetting clients before it removes the address anyway.
RESET_BUDGET = 0.25
# How often a leader handing over reads the leader key for its successor's claim.
CLAIM_POLL = 0.02
# How long a new leader waits, before it adds the VIP, for its workers to have
# loaded the opens of the workers that died (so that the first request the VIP
# brings already meets the persistent opens of a dead node), and how often it
# looks.  Past the bound it claims anyway (a hung worker must not keep the VIP
# away); the workers then still hold requests until their load is done.
OWNERS_WAIT = 2.0
OWNERS_POLL = 0.02


class VipOwner:
    """The VIP side of the elector (implements election.VipEffects)."""

    def __init__(self, me: str, cfg: Config, conns: ConnList, nursery: trio.Nursery):
        self.me = me
        self.vips = cfg.vips
        self.port = cfg.smb.port
        self._drain_at = [drainctl.address(cfg.node.state_dir, i) for i in range(cfg.smb.workers)]
        self._drain_bound = cfg.smb.drain_timeout
        self.refresh = cfg.cluster.announce_refresh
        self.conns = conns
        self._nursery = nursery
        self._rounds = trio.CancelScope()
        self._held: list[VipConfig] = []
        self._held_error: str | None = None
        # Running totals of frames sent, read by the agent's metrics.
        self.announced = 0
        self.tickled = 0

    def held_vips(self) -> list[VipConfig]:
        """The VIPs this node added and has not released (for the connection list)."""
        return list(self._held)

    async def _net(self, what: str, fn: Callable[..., T], *args: object,
                   abandon: bool = False) -> T | None:
        """A failed netlink or raw-socket call is logged and skipped, never fatal."""
        try:
            return await trio.to_thread.run_sync(fn, *args, abandon_on_cancel=abandon)
        except NetError as exc:
            log.warning("%s: %s failed: %s", self.me, what, exc)
            return None

    async def held(self) -> bool:
        """Whether any VIP is on its interface; asked every second, so a failure
        (a missing interface, say) is logged once, not every time."""
        errors = []
        held = False
        for vip in self.vips:
            try:
                # Every VIP is read, also after one found held: the others' errors count.
                held = await trio.to_thread.run_sync(netvip.holds_vip, vip) or held
            except NetError as exc:
                errors.append(str(exc))
        error = "; ".join(errors) or None
        if error != self._held_error:
            if error:
                log.warning("%s: %s", self.me, error)
            else:
                log.info("%s: VIP interfaces readable again", self.me)
            self._held_error = error
        return held

    async def claim(self, term: int) -> None:
        """Add the VIPs now; announcing and tickling continue in the background.

        Returns as soon as netlink is done, so that the elector keeps watching
        the fencing deadline even if etcd stalls while the list is read.
        """
        self._rounds.cancel()
        with trio.move_on_after(OWNERS_WAIT) as waiting:
            await self._hand_over_opens_of_gone_nodes()
        if waiting.cancelled_caught:
            log.warning("%s: workers did not load the dead workers' opens within %.1f s; "
                        "claiming the VIP anyway", self.me, OWNERS_WAIT)
        self._held = [vip for vip in self.vips
                      if await self._net(f"adding {vip.address} to {vip.interface}",
                                         netvip.add_vip, vip) is not None]
        self._rounds = trio.CancelScope()
        self._nursery.start_soon(self._announce, self._rounds, term)

    async def _announce_all(self) -> int:
        """One announcement per VIP; returns the frames sent."""
        frames = 0
        for vip in self._held:
            frames += await self._net(f"announcing {vip.ip}", announce.send_announcement,
                                      vip) or 0
        self.announced += frames
        return frames

    async def _tickle(self, clients: dict[VipConfig, list[tuple[str, Client, str | None]]]
                      ) -> int:
        """One tickle to each client others served; returns how many were sent."""
        tickled = 0
        for vip in self._held:
            family = ipaddress.ip_address(vip.ip).version
            targets = [c for _, c, _ in clients.get(vip, [])
                       if ipaddress.ip_address(c[0]).version == family]
            if targets:
                tickled += await self._net(f"tickling clients of {vip.ip}", tickle.send_tickles,
                                           vip.ip, self.port, targets) or 0
        self.tickled += tickled
        return tickled

    async def _announce(self, scope: trio.CancelScope, term: int) -> None:
        """Three rounds about a second apart, then a refresh every announce_refresh s.

        The first announcement goes before the connection list is read: a
        client's answer to a tickle must find this node, and every client
        sending meanwhile is better off reaching it a round trip to etcd sooner.
        """
        with scope:
            await trio.lowlevel.checkpoint()  # release() may have come before this task ran
            frames = await self._announce_all()
            clients: dict[VipConfig, list[tuple[str, Client, str | None]]] = {}
            for vip in self._held:
                try:
                    clients[vip] = await self.conns.others(vip)
                except StoreUnavailable as exc:
                    log.warning("%s: cannot read the connection list of %s: %s",
                                self.me, vip.ip, exc)
            tickled = await self._tickle(clients)
            ips = ", ".join(v.ip for v in self._held) or "(none)"
            log.info("%s: leader (term %d), VIP %s claimed, %d announcement frames "
                     "(GARP/NA) per round, %d clients tickled", self.me, term, ips, frames, tickled)
            for _ in range(ANNOUNCE_ROUNDS - 1):
                await trio.sleep(ROUND_INTERVAL)
                await self._announce_all()
                await self._tickle(clients)
            try:
                await self.conns.forget(key for entries in clients.values()
                                        for key, _, _ in entries)
            except StoreUnavailable:
                pass  # the next leader tickles them once more; harmless
            if self.refresh <= 0:
                return
            while True:
                await trio.sleep(self.refresh)
                await self._announce_all()

    async def _hand_over_opens_of_gone_nodes(self) -> None:
        """Before the VIP comes here: mark the opens of the nodes that died
        disconnected, and wait until this node's workers know them.

        A node without a node record (its agent lease expired) is dead or cut
        off from etcd, and by the fencing rule it let go of the VIP and reset
        its clients before this node could claim it.  Its workers' liveness
        keys would linger until their own leases run out (up to a TTL later):
        until then every reclaim of their opens is refused as "still
        attached", and this node's workers do not count their persistent
        opens, so a conflicting open from another client would be granted.
        Deleting the keys marks the opens disconnected now; each worker here
        sees that through its watch, loads them, and publishes the set of
        live workers it loaded from (``owners``), which is what is waited
        for.  A node that hands over cleanly (switchover) keeps its record,
        and its workers mark their opens themselves.  The caller bounds this.
        """
        store = self.conns.store
        prefix = store.key("workers") + "/"
        try:
            entries = await trio.to_thread.run_sync(store.get_prefix, prefix,
                                                    abandon_on_cancel=True)
            for node in sorted({e.key[len(prefix):].split("/", 1)[0] for e in entries}
                               - {self.me}):
                if await trio.to_thread.run_sync(store.get, store.node_key(node),
                                                 abandon_on_cancel=True) is not None:
                    continue
                await trio.to_thread.run_sync(store.delete_prefix, f"{prefix}{node}/",
                                              abandon_on_cancel=True)
                log.info("%s: %s is gone; its workers' opens are now disconnected",
                         self.me, node)
            while not workers_loaded(
                    await trio.to_thread.run_sync(store.get_prefix, prefix,
                                                  abandon_on_cancel=True),
                    f"{prefix}{self.me}/"):
                await trio.sleep(OWNERS_POLL)
        except StoreUnavailable as exc:
            log.warning("%s: cannot hand the opens of gone nodes to the workers: %s",
                        self.me, exc)

    async def release(self, urgent: bool) -> int:
        """Let go of every VIP and reset our clients on it; returns how many were reset.

        urgent: take the address off first (another node may claim it now);
        the reset then only drops our sockets, and the successor's tickles
        reach the clients.  Otherwise reset first, so the RSTs can be routed.
        """
        self._rounds.cancel()
        self._held = []
        total = 0
        for vip in self.vips:
            if urgent:
                await self._remove(vip)
            # Bounded: a stuck reset must never hold up the address removal.
            with trio.move_on_after(RESET_BUDGET):
                total += await self._net(f"resetting clients of {vip.ip}",
                                         tickle.reset_local_connections, vip.ip, self.port,
                                         abandon=True) or 0
            if not urgent:
                await self._remove(vip)
        return total

    async def hand_off(self, resign: Callable[[], Awaitable[object]],
                       successor: Callable[[], Awaitable[str | None]]) -> str:
        """Let go of the VIPs in a planned move, in the order of hanode.handoff.

        resign deletes our leader key; successor reads it and names the node
        that claimed since (None: nobody yet, or unreadable).  Returns a note
        for the log line.
        """
        self._rounds.cancel()
        self._held = []
        by_ip = {vip.ip: vip for vip in self.vips}
        address_held, clients, recording_tried = True, None, False
        drained: tuple[int, int] | None = None
        dropped: int | None = None
        reset: int | None = None
        resigned, released_at, claimed = False, None, None
        # The workers keep the drained connections without credits while the
        # channels are held open, until the move has cut them.
        async with AsyncExitStack() as draining:
            try:
                while True:
                    facts = handoff.HandOffFacts(
                        now=trio.current_time(), address_held=address_held, clients=clients,
                        recording_tried=recording_tried, drained=drained is not None,
                        sockets_dropped=dropped is not None,
                        resigned=resigned, released_at=released_at, claimed_by=claimed,
                        clients_reset=reset is not None)
                    step = handoff.next_step(facts, drain_bound=self._drain_bound)
                    if isinstance(step, handoff.ReadClients):
                        clients = await self._live_clients()
                    elif isinstance(step, handoff.RecordClients):
                        recording_tried = True
                        await self._record(by_ip, step.clients)
                    elif isinstance(step, handoff.Drain):
                        drained = await draining.enter_async_context(
                            drainctl.drained(self._drain_at, list(by_ip), step.bound))
                    elif isinstance(step, handoff.RemoveAddress):
                        for vip in self.vips:
                            await self._remove(vip)
                        address_held, released_at = False, trio.current_time()
                    elif isinstance(step, handoff.DropSockets):
                        dropped = 0
                        for vip in self.vips:
                            with trio.move_on_after(RESET_BUDGET):
                                dropped += await self._net(f"dropping connections on {vip.ip}",
                                                           tickle.reset_local_connections, vip.ip,
                                                           self.port, abandon=True) or 0
                    elif isinstance(step, handoff.Resign):
                        await resign()
                        resigned = True
                    elif isinstance(step, handoff.WaitForClaim):
                        await trio.sleep(max(0.0, min(CLAIM_POLL,
                                                      step.until - trio.current_time())))
                        claimed = await successor()
                    elif isinstance(step, handoff.ResetClients):
                        reset = await self._reset_unclaimed(by_ip, step)
                    else:
                        break
            finally:
                if address_held:
                    # Cut short (the stop budget of a SIGTERM ran out, say, during
                    # the drain): the address goes all the same, or it would outlive
                    # the agent while a successor claims it.
                    with trio.CancelScope(shield=True), trio.move_on_after(RESET_BUDGET):
                        for vip in self.vips:
                            await self._remove(vip)
        assert isinstance(step, handoff.Done) and released_at is not None
        took = trio.current_time() - released_at
        who = (f"{step.claimed_by} claimed it {took:.2f} s later and tickles them"
               if step.claimed_by else
               f"no node claimed it within {took:.2f} s, {reset or 0} clients reset from here")
        drain_note = (f"{drained[0]} connections drained ({drained[1]} not quiet in time), "
                      if drained else "")
        return (f"VIP released, {len(clients or ())} clients recorded for the "
                f"successor, {drain_note}{dropped or 0} connections dropped; {who}")

    async def _reset_unclaimed(self, by_ip: dict[str, VipConfig],
                               step: handoff.ResetClients) -> int:
        """Reset the clients ourselves (hanode.net.farreset); how many answered."""
        done = 0
        for vip_ip, vip in by_ip.items():
            mine = [(ip, port) for v, ip, port in step.clients if v == vip_ip]
            if mine:
                done += await self._net(f"resetting the clients of {vip_ip} nobody claimed",
                                        farreset.reset_clients, vip_ip, self.port,
                                        vip.interface, mine, step.wait, abandon=True) or 0
        return done

    async def _live_clients(self) -> frozenset[handoff.Client]:
        """Our established connections on the VIPs (none where the kernel cannot say)."""
        found: set[handoff.Client] = set()
        for vip in self.vips:
            try:
                found.update((vip.ip, ip, port) for ip, port in await self.conns.live(vip))
            except psutil.Error as exc:
                log.warning("%s: cannot list the connections on %s: %s", self.me, vip.ip, exc)
        return frozenset(found)

    async def _record(self, by_ip: dict[str, VipConfig],
                      clients: frozenset[handoff.Client]) -> None:
        for vip_ip, vip in by_ip.items():
            try:
                await self.conns.hand_off(vip, [(ip, port) for v, ip, port in clients
                                                if v == vip_ip])
            except StoreUnavailable as exc:
                log.warning("%s: cannot record the clients of %s for the successor: %s",
                            self.me, vip_ip, exc)

    async def _remove(self, vip: VipConfig) -> None:
        await self._net(f"removing {vip.address} from {vip.interface}", netvip.remove_vip, vip)


def workers_loaded(entries: list[Entry], mine: str) -> bool:
    """Whether every worker whose liveness key (of ``entries``, every worker's)
    starts with ``mine`` has loaded the dead workers' opens from the set of
    live workers these keys name.  A worker that publishes no ``owners``
    (an older version) is not waited for."""
    digest = owners_digest(live_of(entries))
    return all(e.value["owners"] == digest for e in entries
               if e.key.startswith(mine) and isinstance(e.value, dict) and "owners" in e.value)
