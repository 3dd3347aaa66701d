"""hanode.container's pure parts: the capability check and the config it writes."""

from __future__ import annotations

import tomllib

import pytest

from hanode import container

STATUS = "Name:\tpython3\nCapInh:\t0000000000000000\nCapEff:\t{eff}\nCapBnd:\t{eff}\n"


def test_capabilities_from_proc_status():
    all_three = (1 << 10) | (1 << 12) | (1 << 13)
    assert container.missing_capabilities(STATUS.format(eff=f"{all_three:016x}")) == []
    assert container.missing_capabilities(STATUS.format(eff=f"{1 << 10:016x}")) == \
        ["NET_ADMIN", "NET_RAW"]
    # podman's default set (CHOWN ... NET_BIND_SERVICE ... SYS_CHROOT), without NET_RAW
    assert container.missing_capabilities(STATUS.format(eff="00000000800405fb")) == \
        ["NET_ADMIN", "NET_RAW"]


def test_merge_sets_node_name_and_password(tmp_path):
    (tmp_path / "pw").write_text("  p@ss \"word\"\n")
    data = {"cluster": {"name": "c", "user": "u"}, "node": {"name": "x", "state_dir": "/s"}}
    merged = container.merge(data, {"HANODE_NODE_NAME": "k8s-node-1",
                                    "HANODE_ETCD_PASSWORD_FILE": str(tmp_path / "pw")})
    assert merged["node"] == {"name": "k8s-node-1", "state_dir": "/s"}
    assert merged["cluster"]["password"] == 'p@ss "word"'
    assert data["node"]["name"] == "x"  # the input is left alone


def test_merge_errors_are_one_line(tmp_path):
    with pytest.raises(container.ContainerError, match=r"HANODE_ETCD_PASSWORD_FILE .*/nope: "
                                                       r"cannot read: No such file"):
        container.merge({}, {"HANODE_ETCD_PASSWORD_FILE": str(tmp_path / "nope")})
    with pytest.raises(container.ContainerError, match=r"node: must be a table"):
        container.merge({"node": "n1"}, {"HANODE_NODE_NAME": "n2"})


def test_dumps_round_trips_what_tomllib_reads():
    text = """
top = 1
[cluster]
name = "quote \\" backslash \\\\ tab \\t ünï 😀"
etcd = ["http://a:2379", "http://b:2379"]
lease_ttl = 1.5
[node]
name = "n1"
[health]
interval = 2
[health.storage]
enabled = true
[[health.check]]
command = ["/bin/true", "x y"]
[[vip]]
address = "10.0.0.50/24"
[[vip]]
address = "fd00::50/64"
[smb]
"odd key" = false
inline = {a = 1, b = [1, 2]}
empty = []
"""
    data = tomllib.loads(text)
    assert tomllib.loads(container.dumps(data)) == data
