"""The connection list: which clients this node serves on each VIP, kept in etcd.

When a node dies, its successor reads this list to tickle the dead node's
clients, so the entries carry no lease: they must outlive their writer.  Until
the SMB workers register their own connections, the agent keeps the list
current by comparing it with the kernel's established connections on
VIP:port once a second.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from typing import Callable, Iterable

import psutil
import trio

from hanode.config import VipConfig
from hanode.store import Store, StoreUnavailable

log = logging.getLogger("hanode.conns")

Client = tuple[str, int]

RECONCILE_INTERVAL = 1.0


def _plain_ip(ip: str) -> str:
    """A dual-stack socket shows an IPv4 client as ::ffff:a.b.c.d; the list keys it as a.b.c.d."""
    addr = ipaddress.ip_address(ip)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


def established(vip_ip: str, port: int) -> set[Client]:
    """The clients with an established TCP connection to vip_ip:port in this network namespace.

    Blocking (reads /proc); call through trio.to_thread.
    """
    clients = set()
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status != psutil.CONN_ESTABLISHED or not conn.raddr or not conn.laddr:
            continue
        if conn.laddr.port == port and _plain_ip(conn.laddr.ip) == vip_ip:
            clients.add((_plain_ip(conn.raddr.ip), conn.raddr.port))
    return clients


def plan(listed: Iterable[tuple[Client, str]], live: set[Client],
         me: str) -> tuple[set[Client], set[Client]]:
    """What to write and what to delete so that the list shows exactly our live clients.

    listed: (client, node) pairs now in etcd.  Entries of other nodes stay: a
    successor still has to tickle them.  Returns (to_put, to_delete).
    """
    ours = {client for client, node in listed if node == me}
    return live - ours, ours - live


class ConnList:
    """Reconciles this node's connection entries for the VIPs it holds."""

    def __init__(self, me: str, store: Store, port: int):
        self.me = me
        self.store = store
        self.port = port
        self.count = 0  # established connections at the last reconciliation

    async def _etcd(self, fn: Callable, *args: object):
        return await trio.to_thread.run_sync(fn, *args, abandon_on_cancel=True)

    async def _listed(self, vip: VipConfig) -> list[tuple[str, Client, str | None]]:
        """(key, client, node) of every entry of vip."""
        entries = await self._etcd(self.store.get_prefix, self.store.conn_prefix(vip.ip))
        return [(e.key, Store.parse_conn_key(e.key),
                 e.value.get("node") if isinstance(e.value, dict) else None)
                for e in entries]

    async def others(self, vip: VipConfig) -> list[tuple[str, Client, str | None]]:
        """(key, client, node) of every entry of vip that another node wrote, and of
        every client in another node's hand-off record (the key is then the record's)."""
        found = [entry for entry in await self._listed(vip) if entry[2] != self.me]
        record = await self._etcd(self.store.get, self.store.handoff_key(vip.ip))
        value = record.value if record is not None else None
        if isinstance(value, dict) and value.get("node") != self.me:
            seen = {client for _, client, _ in found}
            for item in value.get("clients") or []:
                if (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)
                        and isinstance(item[1], int) and (item[0], item[1]) not in seen):
                    found.append((record.key, (item[0], item[1]), str(value.get("node"))))
        return found

    async def live(self, vip: VipConfig) -> frozenset[Client]:
        """Our established connections on vip (from the kernel)."""
        return frozenset(await trio.to_thread.run_sync(established, vip.ip, self.port))

    async def hand_off(self, vip: VipConfig, clients: Iterable[Client]) -> None:
        """Record the clients we serve on vip for the successor's tickles.

        Not in the connection list: a worker deletes its entry when its
        connection ends, which the hand-off makes happen before the successor
        reads the list."""
        await self._etcd(self.store.put, self.store.handoff_key(vip.ip),
                         {"node": self.me, "time": time.time(),
                          "clients": sorted([ip, port] for ip, port in clients)})

    async def forget(self, keys: Iterable[str]) -> None:
        for key in set(keys):
            await self._etcd(self.store.delete, key)

    async def add(self, vip: VipConfig, clients: Iterable[Client]) -> None:
        now = time.time()
        for ip, port in clients:
            await self._etcd(self.store.put, self.store.conn_key(vip.ip, ip, port),
                             {"node": self.me, "time": now})

    async def reconcile(self, vip: VipConfig) -> int:
        live = await trio.to_thread.run_sync(established, vip.ip, self.port)
        listed = [(client, node) for _, client, node in await self._listed(vip)]
        to_put, to_delete = plan(listed, live, self.me)
        await self.add(vip, to_put)
        for ip, port in to_delete:
            await self._etcd(self.store.delete, self.store.conn_key(vip.ip, ip, port))
        return len(live)

    async def run(self, held_vips: Callable[[], list[VipConfig]]) -> None:
        """Every second, for each VIP this node holds; etcd trouble only skips a round."""
        while True:
            total = 0
            for vip in held_vips():
                try:
                    total += await self.reconcile(vip)
                except StoreUnavailable:
                    pass  # the elector already reports etcd's state
                except psutil.Error as exc:
                    log.warning("%s: cannot list the connections on %s: %s", self.me, vip.ip, exc)
            self.count = total
            await trio.sleep(RECONCILE_INTERVAL)
