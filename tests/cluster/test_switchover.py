"""``hanode switchover`` in the namespace lab: the VIP moves where it is told, at once."""

from __future__ import annotations

import time

import pytest

from hanode.lab import Lab, wait_for

pytestmark = pytest.mark.cluster


@pytest.fixture
def lab(tmp_path):
    with Lab(3, workdir=tmp_path) as lab:
        yield lab


def test_switchover_moves_vip_to_named_then_healthiest_node_and_refuses_bad_targets(lab):
    leader = lab.start_agents()
    client = lab.hold_connection()
    try:
        target = next(n for n in lab.nodes if n != leader)
        wait_for(lambda: len(lab.read_etcd("nodes/")) == 3, 10, "three node records")
        sent = time.monotonic()
        proc = lab.cli("switchover", "--to", target)
        assert proc.returncode == 0, proc.stderr
        assert f"switchover {leader} -> {target}: {target} leads" in proc.stdout
        assert lab.holders() == [target]
        # The old leader reset its client right away.
        assert client.wait_reset(1) - sent < 1.0
        # The request is gone once done, so the election is back to normal.
        assert "switchover" not in lab.read_etcd("switchover")
    finally:
        client.close()

    # Without --to: one of the standbys, not the leader.
    proc = lab.cli("switchover")
    assert proc.returncode == 0, proc.stderr
    now = lab.sole_holder()
    assert now is not None and now != target

    unknown = lab.cli("switchover", "--to", "n9")
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == "hanode: switchover: unknown node 'n9' (nodes: n1, n2, n3)"

    down = next(n for n in lab.nodes if n != now)
    lab.kill_node(down)
    wait_for(lambda: f"nodes/{down}" not in lab.read_etcd("nodes/"), 10, f"{down}'s record gone")
    refused = lab.cli("switchover", "--to", down)
    assert refused.returncode == 2
    assert refused.stderr.strip() == f"hanode: switchover: node {down!r} is down"
    assert lab.holders() == [now]


def test_switchover_clients_reconnect_to_the_new_holder_with_their_first_syn(lab):
    """The planned-move order: the old leader lists its clients (one connected an
    instant ago, before any reconciliation), lets go of the address and its
    sockets without telling the clients, resigns; the target claims, announces
    and tickles.  A client that reconnects the moment it is reset then finds the
    new holder with its first SYN: no SYN sent again (Linux would wait 1 s)."""
    leader = lab.start_agents()
    wait_for(lambda: len(lab.read_etcd("nodes/")) == 3, 10, "three node records")
    listed = lab.hold_connection(reconnect=True)
    fresh = lab.hold_connection(reconnect=True, listed=False)
    try:
        target = next(n for n in lab.nodes if n != leader)
        proc = lab.cli("switchover", "--to", target)
        assert proc.returncode == 0, proc.stderr
        for client in (listed, fresh):
            client.wait_reset(3)
            _, syns_again = client.wait_reconnected(3)
            assert syns_again == 0
        for client in (listed, fresh):
            assert client.kept(), "the reconnect reached a node that was letting go"
        assert lab.holders() == [target]
        assert lab.client_arp() == lab.mac(target)
    finally:
        listed.close()
        fresh.close()
