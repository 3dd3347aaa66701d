"""hanode.net.vip and announce against a real kernel, in two namespaces on a veth pair."""

from __future__ import annotations

import pytest

from hanode.config import VipConfig

from nslab import RemoteError

VIPS = ["10.9.0.50/24", "fd09::50/64"]
OLD_MAC = "02:00:00:00:00:99"


def vip_on(lab, ns, iface):
    return {a["local"] for a in lab.addresses(ns, iface)}


@pytest.mark.parametrize("address", VIPS)
def test_add_holds_remove(pair, address):
    lab, (a, if_a), (b, if_b) = pair
    vip = VipConfig(address, if_a)
    assert lab.call(a, "hanode.net.vip.holds_vip", vip) is False
    assert lab.call(a, "hanode.net.vip.add_vip", vip) is True
    assert vip.ip in vip_on(lab, a, if_a)
    assert vip.ip not in vip_on(lab, b, if_b)
    assert lab.call(a, "hanode.net.vip.holds_vip", vip) is True
    assert lab.call(b, "hanode.net.vip.holds_vip", VipConfig(address, if_b)) is False
    assert lab.call(a, "hanode.net.vip.add_vip", vip) is False
    assert lab.call(a, "hanode.net.vip.remove_vip", vip) is True
    assert vip.ip not in vip_on(lab, a, if_a)
    assert lab.call(a, "hanode.net.vip.holds_vip", vip) is False
    assert lab.call(a, "hanode.net.vip.remove_vip", vip) is False


def test_ipv6_vip_is_usable_at_once(pair):
    """No duplicate address detection: the address is not left tentative."""
    lab, (a, if_a), _ = pair
    lab.call(a, "hanode.net.vip.add_vip", VipConfig("fd09::50/64", if_a))
    info = [x for x in lab.addresses(a, if_a) if x["local"] == "fd09::50"]
    assert info and not info[0].get("tentative")


@pytest.mark.parametrize("function", ["add_vip", "remove_vip", "holds_vip"])
def test_missing_interface_is_named(pair, function):
    lab, (a, _), _ = pair
    with pytest.raises(RemoteError) as err:
        lab.call(a, f"hanode.net.vip.{function}", VipConfig("10.9.0.50/24", "hnnosuch0"))
    assert err.value.args[0] == "NetError" and "hnnosuch0" in err.value.args[1]


def test_announce_on_missing_interface_is_named(pair):
    lab, (a, _), _ = pair
    with pytest.raises(RemoteError) as err:
        lab.call(a, "hanode.net.announce.send_announcement", VipConfig("10.9.0.50/24", "hnnosuch0"))
    assert "hnnosuch0" in err.value.args[1]


@pytest.mark.parametrize("address,frames", [("10.9.0.50/24", 2), ("fd09::50/64", 1)])
def test_announcement_moves_peer_neighbour_entry(pair, address, frames):
    """The peer knew the VIP at the old holder's MAC; one round points it at ours."""
    lab, (a, if_a), (b, if_b) = pair
    vip = VipConfig(address, if_a)
    lab.run("ip", "-n", b, "neigh", "replace", vip.ip, "lladdr", OLD_MAC, "dev", if_b,
            "nud", "stale")
    assert lab.neigh(b, vip.ip) == OLD_MAC
    lab.call(a, "hanode.net.vip.add_vip", vip)
    assert lab.call(a, "hanode.net.announce.send_announcement", vip) == frames
    assert lab.neigh(b, vip.ip) == lab.mac(a, if_a)
