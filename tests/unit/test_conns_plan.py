"""Connection-list reconciliation: what to write and delete, pure."""

from hanode.conns import _plain_ip, plan


def test_new_live_clients_are_written_and_gone_ones_deleted():
    listed = [(("10.0.0.9", 5000), "node1"), (("10.0.0.8", 5001), "node1")]
    live = {("10.0.0.9", 5000), ("10.0.0.7", 5002)}
    assert plan(listed, live, "node1") == ({("10.0.0.7", 5002)}, {("10.0.0.8", 5001)})


def test_entries_of_other_nodes_are_left_for_the_successor():
    listed = [(("10.0.0.9", 5000), "node2"), (("10.0.0.8", 5001), None)]
    assert plan(listed, set(), "node1") == (set(), set())


def test_a_client_listed_by_another_node_but_live_here_is_claimed():
    listed = [(("10.0.0.9", 5000), "node2")]
    assert plan(listed, {("10.0.0.9", 5000)}, "node1") == ({("10.0.0.9", 5000)}, set())


def test_ipv4_mapped_addresses_are_listed_as_ipv4():
    assert _plain_ip("::ffff:10.0.0.9") == "10.0.0.9"
    assert _plain_ip("fd00::9") == "fd00::9"
