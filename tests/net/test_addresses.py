"""hanode.net.addresses against a real kernel, in a namespace: the addresses a
multichannel client is told about, and the MAC announcements are sent from."""

from __future__ import annotations

import json
import sys

import pytest

from nslab import RemoteError


def test_local_addresses_lists_every_address_with_its_interface_index(pair):
    lab, (a, if_a), _ = pair
    lab.addr(a, if_a, "10.9.0.60/24")  # a second address on the same link
    index = json.loads(lab.run("ip", "-n", a, "-j", "link", "show", if_a))[0]["ifindex"]
    found = {(i, addr) for i, addr in lab.call(a, "hanode.net.addresses.local_addresses")}
    assert {(index, "10.9.0.1"), (index, "10.9.0.60"), (index, "fd09::1")} <= found
    assert (1, "127.0.0.1") in found  # lo, as before (any interface is listed)


def test_interface_mac_is_the_links(pair):
    lab, (a, if_a), _ = pair
    mac = lab.run("ip", "netns", "exec", a, sys.executable, "-c",
                  "import sys; from hanode.net.addresses import interface_mac; "
                  "print(interface_mac(sys.argv[1]).hex(':'))", if_a).strip()
    assert mac == lab.mac(a, if_a)
    with pytest.raises(RemoteError) as err:
        lab.call(a, "hanode.net.addresses.interface_mac", "hnnosuch0")
    assert err.value.args[0] == "NetError" and "hnnosuch0" in err.value.args[1]
