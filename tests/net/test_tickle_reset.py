"""Tickles and local resets against a real kernel: idle clients learn at once.

The tickle test is a takeover in miniature: three namespaces on a bridge, a
client holding an idle connection to a listener on the VIP in namespace s1,
then the VIP moves to s2, which never saw that connection.  Only s2's
announcement and tickle can make the client notice.
"""

from __future__ import annotations

import pytest

from hanode.config import VipConfig

PORT = 4455
CASES = [("10.9.0.50/24", "10.9.0.{}/24"), ("fd09::50/64", "fd09::{}/64")]


def client_ip(host_pattern: str) -> str:
    return host_pattern.format(3).split("/")[0]


@pytest.mark.parametrize("address,hosts", CASES)
def test_client_of_moved_vip_is_reset_by_tickle(lab, address, hosts):
    nodes = lab.bridged(["s1", "s2", "c"])
    for host, role in enumerate(["s1", "s2", "c"], start=1):
        lab.addr(*nodes[role], hosts.format(host))
    (s1, if1), (s2, if2), (c, _) = nodes["s1"], nodes["s2"], nodes["c"]
    vip1, vip2 = VipConfig(address, if1), VipConfig(address, if2)

    assert lab.call(s1, "hanode.net.vip.add_vip", vip1) is True
    server = lab.peer(s1, "serve", vip1.ip, str(PORT))
    assert server.line() == "listening"
    client = lab.peer(c, "connect", vip1.ip, str(PORT), "12")
    client_port = int(client.line())
    assert server.line() == "accepted"

    # s1 lets go (crashed, say: its socket stays, but the address is gone);
    # s2 takes the VIP without knowing anything of the connection.
    assert lab.call(s1, "hanode.net.vip.remove_vip", vip1) is True
    assert lab.call(s2, "hanode.net.vip.add_vip", vip2) is True
    with pytest.raises(TimeoutError):
        client.line(timeout=0.5)  # nothing has told the client yet

    fate = None
    for _ in range(3):  # the agent's takeover rounds
        assert lab.call(s2, "hanode.net.announce.send_announcement", vip2) >= 1
        sent = lab.call(s2, "hanode.net.tickle.send_tickles", vip2.ip, PORT,
                        [(client_ip(hosts), client_port)])
        assert sent == 1
        try:
            fate = client.line(timeout=1.0)
            break
        except TimeoutError:
            continue
    assert fate is not None and fate.split()[0] == "reset", fate
    assert lab.neigh(c, vip2.ip) == lab.mac(s2, if2)


@pytest.mark.parametrize("address,hosts", CASES)
def test_reset_local_connections_resets_only_the_vip_port(pair, address, hosts):
    lab, (a, if_a), (b, _) = pair
    vip = VipConfig(address, if_a)
    lab.call(a, "hanode.net.vip.add_vip", vip)
    on_vip = lab.peer(a, "serve", vip.ip, str(PORT))
    other = lab.peer(a, "serve", vip.ip, str(PORT + 1))
    assert on_vip.line() == "listening" and other.line() == "listening"
    victim = lab.peer(b, "connect", vip.ip, str(PORT), "5")
    bystander = lab.peer(b, "connect", vip.ip, str(PORT + 1), "2")
    victim.line(), bystander.line()
    assert on_vip.line() == "accepted" and other.line() == "accepted"

    assert lab.call(a, "hanode.net.tickle.reset_local_connections", vip.ip, PORT) == 1
    assert victim.line(timeout=3).split()[0] == "reset"
    assert bystander.line(timeout=5).split()[0] == "alive"
    assert lab.call(a, "hanode.net.tickle.reset_local_connections", vip.ip, PORT) == 0
