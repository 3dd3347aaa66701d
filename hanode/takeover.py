"""Claiming and letting go of the VIPs: netlink, announcements, tickles, resets.

Claiming adds the addresses at once; the announce/tickle rounds and the
periodic refresh run in a cancel scope that release() cancels, so nothing
announces a VIP this node no longer holds.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Callable, TypeVar

import trio

from hanode.config import Config, VipConfig
from hanode.conns import Client, ConnList
from hanode.net import NetError, announce, tickle
from hanode.net import vip as netvip
from hanode.store import StoreUnavailable

log = logging.getLogger("hanode.takeover")

T = TypeVar("T")

ANNOUNCE_ROUNDS = 3
ROUND_INTERVAL = 1.0
# How long releasing may spend resetting clients before it removes the address anyway.
RESET_BUDGET = 0.25


class VipOwner:
    """The VIP side of the elector (implements election.VipEffects)."""

    def __init__(self, me: str, cfg: Config, conns: ConnList, nursery: trio.Nursery):
        self.me = me
        self.vips = cfg.vips
        self.port = cfg.smb.port
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
        self._held = [vip for vip in self.vips
                      if await self._net(f"adding {vip.address} to {vip.interface}",
                                         netvip.add_vip, vip) is not None]
        self._rounds = trio.CancelScope()
        self._nursery.start_soon(self._announce, self._rounds, term)

    async def _round(self, clients: dict[VipConfig, list[tuple[str, Client, str | None]]]
                     ) -> tuple[int, int]:
        """One announcement per VIP, then one tickle to each client others served;
        returns (announcement frames, tickles) sent."""
        tickled = frames = 0
        for vip in self._held:
            frames += await self._net(f"announcing {vip.ip}", announce.send_announcement,
                                      vip) or 0
            family = ipaddress.ip_address(vip.ip).version
            targets = [c for _, c, _ in clients.get(vip, [])
                       if ipaddress.ip_address(c[0]).version == family]
            if targets:
                tickled += await self._net(f"tickling clients of {vip.ip}", tickle.send_tickles,
                                           vip.ip, self.port, targets) or 0
        self.announced += frames
        self.tickled += tickled
        return frames, tickled

    async def _announce(self, scope: trio.CancelScope, term: int) -> None:
        """Three rounds about a second apart, then a refresh every announce_refresh s."""
        with scope:
            await trio.lowlevel.checkpoint()  # release() may have come before this task ran
            clients: dict[VipConfig, list[tuple[str, Client, str | None]]] = {}
            for vip in self._held:
                try:
                    clients[vip] = await self.conns.others(vip)
                except StoreUnavailable as exc:
                    log.warning("%s: cannot read the connection list of %s: %s",
                                self.me, vip.ip, exc)
            await self._release_opens_of_gone_nodes(
                {node for entries in clients.values() for _, _, node in entries if node})
            frames, tickled = await self._round(clients)
            ips = ", ".join(v.ip for v in self._held) or "(none)"
            log.info("%s: leader (term %d), VIP %s claimed, %d announcement frames "
                     "(GARP/NA) per round, %d clients tickled", self.me, term, ips, frames, tickled)
            for _ in range(ANNOUNCE_ROUNDS - 1):
                await trio.sleep(ROUND_INTERVAL)
                await self._round(clients)
            try:
                await self.conns.forget(key for entries in clients.values()
                                        for key, _, _ in entries)
            except StoreUnavailable:
                pass  # the next leader tickles them once more; harmless
            if self.refresh <= 0:
                return
            while True:
                await trio.sleep(self.refresh)
                await self._round({})

    async def _release_opens_of_gone_nodes(self, nodes: set[str]) -> None:
        """Let the clients about to be tickled reclaim their durable opens here at once.

        A node whose agent lease has expired (no node record) is dead or cut
        off from etcd, and by the fencing rule it let go of the VIP and reset
        its clients there before this node could claim it.  Its workers'
        liveness keys would still linger until their own leases run out (up to
        a TTL later), and until then every reclaim of their opens is refused
        as "still attached".  Deleting those keys marks the opens disconnected
        now.  A node that handed over cleanly (switchover) keeps its record,
        and its workers mark their opens themselves.
        """
        store = self.conns.store
        for node in sorted(nodes):
            try:
                if await trio.to_thread.run_sync(store.get, store.node_key(node),
                                                 abandon_on_cancel=True) is not None:
                    continue
                await trio.to_thread.run_sync(store.delete_prefix,
                                              store.key("workers", node) + "/",
                                              abandon_on_cancel=True)
            except StoreUnavailable as exc:
                log.warning("%s: cannot release the durable opens of %s: %s", self.me, node, exc)
                continue
            log.info("%s: %s is gone; its workers' opens are now disconnected", self.me, node)

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

    async def _remove(self, vip: VipConfig) -> None:
        await self._net(f"removing {vip.address} from {vip.interface}", netvip.remove_vip, vip)
