"""Putting the VIP on the node's interface and taking it off again (netlink).

Each call opens its own short-lived netlink socket: the agent calls these a
few times per state change, and a fresh socket never carries stale state
from a namespace or interface that changed under it.
"""

from __future__ import annotations

import errno
import ipaddress
import socket

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from hanode.config import VipConfig
from hanode.net import NetError

# Tell the kernel not to run duplicate address detection on an IPv6 VIP:
# DAD would keep the address unusable ("tentative") for a second or more
# right when clients need it, and the election already guarantees one holder.
IFA_F_NODAD = 0x02


def _family(vip: VipConfig) -> int:
    return socket.AF_INET if vip.version == 4 else socket.AF_INET6


def _index(ipr: IPRoute, vip: VipConfig) -> int:
    found = ipr.link_lookup(ifname=vip.interface)
    if not found:
        raise NetError(f"interface {vip.interface!r} does not exist (VIP {vip.address})")
    return found[0]


def _fail(action: str, vip: VipConfig, exc: BaseException) -> NetError:
    reason = exc.args[1] if isinstance(exc, NetlinkError) and len(exc.args) > 1 else exc
    return NetError(f"cannot {action} {vip.address} on {vip.interface}: {reason}")


def holds_vip(vip: VipConfig) -> bool:
    """Whether the VIP's address is on its interface now (any prefix length)."""
    wanted = ipaddress.ip_address(vip.ip)
    attr = "IFA_LOCAL" if vip.version == 4 else "IFA_ADDRESS"
    try:
        with IPRoute() as ipr:
            index = _index(ipr, vip)
            for msg in ipr.get_addr(index=index, family=_family(vip)):
                value = msg.get_attr(attr)
                if value is not None and ipaddress.ip_address(value) == wanted:
                    return True
    except (NetlinkError, OSError) as exc:
        raise _fail("read addresses for", vip, exc) from None
    return False


def add_vip(vip: VipConfig) -> bool:
    """Add the VIP to its interface; True if added now, False if it was already there."""
    flags = IFA_F_NODAD if vip.version == 6 else 0
    try:
        with IPRoute() as ipr:
            ipr.addr("add", index=_index(ipr, vip), family=_family(vip),
                     address=vip.ip, prefixlen=vip.prefixlen, flags=flags)
    except NetlinkError as exc:
        if exc.code == errno.EEXIST:
            return False
        raise _fail("add", vip, exc) from None
    except OSError as exc:
        raise _fail("add", vip, exc) from None
    return True


def remove_vip(vip: VipConfig) -> bool:
    """Remove the VIP from its interface; True if removed now, False if it was not there."""
    try:
        with IPRoute() as ipr:
            ipr.addr("del", index=_index(ipr, vip), family=_family(vip),
                     address=vip.ip, prefixlen=vip.prefixlen)
    except NetlinkError as exc:
        if exc.code in (errno.EADDRNOTAVAIL, errno.ESRCH, errno.ENOENT):
            return False
        raise _fail("remove", vip, exc) from None
    except OSError as exc:
        raise _fail("remove", vip, exc) from None
    return True
