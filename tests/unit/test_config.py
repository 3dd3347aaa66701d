"""Config validation: good files load, bad ones give one message naming file and key."""

import pytest

from hanode import cli
from hanode.config import ConfigError, load, parse

GOOD = """
[cluster]
name = "prod"
etcd = ["http://10.0.0.11:2379"]

[node]
name = "node1"

[[vip]]
address = "10.0.0.50/24"
interface = "eth0"

[[share]]
name = "test"
path = "/srv/hanode/test"
"""


def write(tmp_path, text):
    p = tmp_path / "hanode.toml"
    p.write_text(text)
    return p


def test_good_config_and_defaults(tmp_path):
    cfg = load(write(tmp_path, GOOD))
    assert cfg.cluster.name == "prod" and cfg.cluster.lease_ttl == 2
    assert cfg.node.name == "node1"
    assert cfg.vips[0].ip == "10.0.0.50" and cfg.vips[0].prefixlen == 24
    assert cfg.smb.port == 445 and cfg.smb.workers == 2
    assert cfg.share("TEST").path == "/srv/hanode/test"


def test_one_second_lease_accepted_with_a_margin_that_fits():
    """etcd with --election-timeout 500 grants 1 s leases; the default margin
    shrinks with the TTL so a 1 s leader still has 0.75 s for its keepalives."""
    one = parse({"node": {"name": "n1"}, "cluster": {"lease_ttl": 1}})
    assert one.cluster.lease_ttl == 1 and one.cluster.fence_margin == 0.25
    two = parse({"node": {"name": "n1"}})
    assert two.cluster.lease_ttl == 2 and two.cluster.fence_margin == 0.5
    assert parse({"node": {"name": "n1"},
                  "cluster": {"lease_ttl": 10}}).cluster.fence_margin == 0.5
    explicit = parse({"node": {"name": "n1"}, "cluster": {"lease_ttl": 1, "fence_margin": 0.4}})
    assert explicit.cluster.fence_margin == 0.4


def test_minimal_config_only_node_name():
    cfg = parse({"node": {"name": "n1"}})
    assert cfg.cluster.etcd == () and cfg.vips == () and cfg.shares == ()


@pytest.mark.parametrize("text, key, problem", [
    ("[node]\nname='n1'\nbogus=1\n", "node.bogus", "unknown key"),
    ("[node]\n", "node.name", "is required"),
    ("[node]\nname='n1'\n[[vip]]\naddress='10.0.0.500/24'\n", "vip[0].address", "not an IP"),
    ("[node]\nname='n1'\n[[vip]]\naddress='10.0.0.5'\n", "vip[0].address", "prefix length"),
    ("[node]\nname='n1'\n[cluster]\netcd=['ftp://x']\n", "cluster.etcd[0]", "not an etcd URL"),
    ("[node]\nname='n1'\n[smb]\nport=70000\n", "smb.port", "out of range"),
    ("[node]\nname='n1'\n[smb]\nworkers='two'\n", "smb.workers", "must be an integer"),
    ("[node]\nname='n1'\n[smb]\nmax_credits=8\n", "smb.max_credits", "out of range"),
    ("[node]\nname='n1'\n[smb]\ndrain_timeout=10\n", "smb.drain_timeout", "out of range"),
    ("[node]\nname='n1'\n[cluster]\nlease_ttl=0\n", "cluster.lease_ttl", "out of range"),
    ("[node]\nname='n1'\n[cluster]\nlease_ttl=0.5\n", "cluster.lease_ttl",
     "0.5 is not whole seconds (etcd grants leases in whole seconds"),
    ("[node]\nname='n1'\n[cluster]\nlease_ttl=1\nfence_margin=1\n", "cluster.fence_margin",
     "must be smaller than cluster.lease_ttl"),
    ("[node]\nname='n1'\n[[share]]\nname='a'\npath='rel'\n", "share[0].path", "absolute"),
    ("[node]\nname='n1'\nfoo=1\n", "foo", "unknown key"),
    ("[node\n", "", "not valid TOML"),
])
def test_bad_config_names_file_key_problem(tmp_path, text, key, problem):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load(path)
    message = str(exc.value)
    assert message.startswith(str(path) + ": ")
    assert key in message and problem in message


def test_config_check_cli_exit_codes(tmp_path, capsys):
    assert cli.main(["config", "check", "--config", str(write(tmp_path, GOOD))]) == 0
    assert "ok" in capsys.readouterr().out
    bad = write(tmp_path, "[node]\nname='n1'\n[smb]\nport=0\n")
    assert cli.main(["config", "check", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "smb.port" in err and "Traceback" not in err
    assert cli.main(["config", "check", "--config", str(tmp_path / "nope.toml")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_netbios_name_default_and_validation():
    cfg = parse({"node": {"name": "n1"}, "cluster": {"name": "production-cluster-a"}})
    assert cfg.cluster.server_name == "PRODUCTION-CLUS" and cfg.cluster.workgroup == "WORKGROUP"
    cfg = parse({"node": {"name": "n1"}, "cluster": {"netbios_name": "Files"}})
    assert cfg.cluster.server_name == "FILES"
    with pytest.raises(ConfigError, match=r"cluster\.netbios_name: .*at most 15"):
        parse({"node": {"name": "n1"}, "cluster": {"netbios_name": "much-too-long-a-name"}},
              "t.toml")
    with pytest.raises(ConfigError, match=r"share\[0\]\.name: IPC\$ is the server's named-pipe"):
        parse({"node": {"name": "n1"}, "share": [{"name": "ipc$", "path": "/srv/x"}]}, "t.toml")


def test_continuous_availability_is_off_unless_asked():
    plain = parse({"node": {"name": "n1"}, "share": [{"name": "a", "path": "/srv/a"}]}, "t.toml")
    assert plain.share("a").continuous_availability is False
    ca = parse({"node": {"name": "n1"},
                "share": [{"name": "a", "path": "/srv/a", "continuous_availability": True}]}, "t.toml")
    assert ca.share("a").continuous_availability is True
    with pytest.raises(ConfigError, match=r"share\[0\]\.continuous_availability"):
        parse({"node": {"name": "n1"},
               "share": [{"name": "a", "path": "/srv/a", "continuous_availability": "yes"}]}, "t.toml")


def test_credit_cap_and_drain_timeout_default_and_set():
    plain = parse({"node": {"name": "n1"}}, "t.toml")
    assert (plain.smb.max_credits, plain.smb.drain_timeout) == (8192, 2.0)
    tuned = parse({"node": {"name": "n1"}, "smb": {"max_credits": 128, "drain_timeout": 2}},
                  "t.toml")
    assert (tuned.smb.max_credits, tuned.smb.drain_timeout) == (128, 2)
