"""The node's own addresses and links, read (never changed) through netlink:
what the SMB server reports to a multichannel client, and the MAC the
announcements are sent from.

Read-only and free of the agent's logic, so the SMB worker may import it
(the import contracts in pyproject.toml allow this module of hanode.net only).
Blocking: call through ``trio.to_thread.run_sync``.
"""

from __future__ import annotations

import socket

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from hanode.net import NetError


def local_addresses() -> list[tuple[int, str]]:
    """(interface index, address) of every IPv4 and IPv6 address of this host's
    namespace, IPv4 first."""
    out: list[tuple[int, str]] = []
    try:
        with IPRoute() as ipr:
            for family, attr in ((socket.AF_INET, "IFA_LOCAL"), (socket.AF_INET6, "IFA_ADDRESS")):
                for msg in ipr.get_addr(family=family):
                    value = msg.get_attr(attr)
                    if value:
                        out.append((int(msg["index"]), str(value)))
    except (NetlinkError, OSError) as exc:
        raise NetError(f"cannot read the host's addresses: {exc}") from None
    return out


def interface_mac(interface: str) -> bytes:
    """The link-layer address of an interface, as 6 bytes."""
    try:
        with IPRoute() as ipr:
            found = ipr.link_lookup(ifname=interface) if interface else []
            links = ipr.get_links(found[0]) if found else []
    except (NetlinkError, OSError) as exc:
        raise NetError(f"interface {interface!r}: {exc}") from None
    if not links:
        raise NetError(f"interface {interface!r} does not exist")
    text = links[0].get_attr("IFLA_ADDRESS") or ""
    try:
        mac = bytes.fromhex(text.replace(":", ""))
    except ValueError:
        mac = b""
    if len(mac) != 6:
        raise NetError(f"interface {interface!r} has no Ethernet address")
    return mac
