"""hanode status against a real etcd holding records shaped as the agent writes them."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hanode import embedded_etcd
from hanode.cli import main

# The console script pip installed: the real entry point, as operators run it.
HANODE = [str(Path(sys.executable).with_name("hanode"))]


class Cluster:
    """Writes leader, node, member, connection and durable records like the agents do."""

    def __init__(self, store):
        self.store = store
        self.leases: dict[str, int] = {}

    def node(self, name: str, state: str, vips=(), connections=0, durable=0) -> None:
        now = time.time()
        lease = self.leases.get(name) or self.store.grant_lease(10)
        self.leases[name] = lease
        self.store.put(self.store.node_key(name), {
            "name": name, "state": state, "term": None, "since": now - 60, "updated": now,
            "lease_id": lease, "lease_ttl": 10, "vips": list(vips),
            "workers": [{"pid": 4000, "rss": 30 << 20, "connections": connections,
                         "open_handles": durable}],
            "connections": connections, "durable_handles": durable, "version": "0.1.0"},
            lease=lease)
        self.store.put(self.store.member_key(name), {"first_seen": now - 3600, "last_seen": now})

    def lead(self, name: str) -> int:
        won, term = self.store.create(self.store.leader_key,
                                      {"node": name, "since": time.time() - 30},
                                      lease=self.leases[name])
        assert won
        return term

    def crash(self, name: str) -> None:
        """What a node's death leaves in etcd: its lease expires, its member record stays."""
        self.store.revoke_lease(self.leases.pop(name))


@pytest.fixture
def cluster(store):
    c = Cluster(store)
    yield c
    for lease in c.leases.values():
        store.revoke_lease(lease)


def status(store, etcd_url, capsys, *extra) -> tuple[int, str]:
    code = main(["status", "--etcd", etcd_url, "--cluster", store.cluster, *extra])
    return code, capsys.readouterr().out


def healthy_cluster(cluster) -> int:
    cluster.node("node1", "standby")
    cluster.node("node2", "standby")
    term = cluster.lead("node1")
    cluster.node("node1", "leader", vips=["10.0.0.50"], connections=2, durable=1)
    store = cluster.store
    for port in (50001, 50002):
        store.put(store.conn_key("10.0.0.50", "10.0.0.9", port), {"node": "node1", "time": 0})
    store.put(store.durable_key(0x1234), {"share": "test"})
    return term


def test_healthy(cluster, store, etcd_server, capsys):
    term = healthy_cluster(cluster)
    code, out = status(store, etcd_server.url, capsys, "--json")
    rep = json.loads(out)
    assert code == 0, rep["verdict"]
    assert rep["cluster"] == store.cluster
    assert rep["leader"]["node"] == "node1" and rep["leader"]["term"] == term
    assert rep["vips"] == [{"address": "10.0.0.50", "holder": "node1", "holders": ["node1"],
                            "connections": 2}]
    nodes = {n["name"]: n for n in rep["nodes"]}
    assert nodes["node1"]["state"] == "leader" and nodes["node2"]["state"] == "standby"
    assert 0 < nodes["node1"]["lease_ttl_left"] <= 10
    assert nodes["node1"]["connections"] == 2 and nodes["node1"]["durable_handles"] == 1
    assert len(nodes["node1"]["workers"]) == 1
    assert rep["durable_handles"] == 1
    assert rep["etcd"]["healthy"] is True and rep["etcd"]["endpoints"] == [etcd_server.url]
    assert rep["verdict"] == {"healthy": True, "reasons": []}

    code, out = status(store, etcd_server.url, capsys)
    assert code == 0 and out.rstrip().splitlines()[-1] == "healthy"
    assert f"leader   node1 (term {term})" in out


def test_vips_come_from_the_config_when_given(cluster, store, etcd_server, capsys, tmp_path):
    healthy_cluster(cluster)
    path = tmp_path / "hanode.toml"
    path.write_text(f'[cluster]\nname = "{store.cluster}"\netcd = ["{etcd_server.url}"]\n'
                    '[node]\nname = "node1"\n'
                    '[[vip]]\naddress = "10.0.0.50/24"\n[[vip]]\naddress = "10.0.0.51/24"\n')
    code = main(["status", "--config", str(path), "--json"])
    rep = json.loads(capsys.readouterr().out)
    assert code == 1
    assert [(v["address"], v["holder"]) for v in rep["vips"]] == [("10.0.0.50", "node1"),
                                                                 ("10.0.0.51", None)]
    assert rep["verdict"]["reasons"] == ["VIP 10.0.0.51 not held"]


def test_no_leader(cluster, store, etcd_server, capsys):
    cluster.node("node1", "standby")
    cluster.node("node2", "standby")
    code, out = status(store, etcd_server.url, capsys)
    assert code == 1
    assert "leader   none" in out
    assert out.rstrip().splitlines()[-1] == "degraded: no leader"


def test_node_down_after_its_lease_ends(cluster, store, etcd_server, capsys):
    healthy_cluster(cluster)
    cluster.node("node3", "standby")
    cluster.crash("node3")
    code, out = status(store, etcd_server.url, capsys, "--json")
    rep = json.loads(out)
    assert code == 1
    node3 = [n for n in rep["nodes"] if n["name"] == "node3"][0]
    assert node3["state"] == "down" and node3["last_seen"] is not None
    assert rep["verdict"]["reasons"] == ["node3 down"]


def test_leader_death_leaves_no_leader(cluster, store, etcd_server, capsys):
    """Without a config the VIPs are what live records list: the dead leader's is gone too."""
    healthy_cluster(cluster)
    cluster.crash("node1")
    code, out = status(store, etcd_server.url, capsys)
    assert code == 1
    assert out.rstrip().splitlines()[-1] == "degraded: no leader; node1 down"


def test_etcd_unreachable_is_a_message_and_exit_1():
    """A real command line, so nothing (gRPC included) can slip a traceback past it."""
    url = f"http://127.0.0.1:{embedded_etcd.free_port()}"
    started = time.monotonic()
    result = subprocess.run([*HANODE, "status", "--etcd", url, "--cluster", "x"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    assert f"etcd unreachable at {url}" in result.stdout
    assert result.stdout.rstrip().splitlines()[-1] == "degraded: etcd unreachable"
    assert time.monotonic() - started < 10


def test_usage_and_config_errors_exit_2(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[node]\nname = "n1"\n[cluster]\netcd = "nope"\n')
    cases = [
        (["--config", str(bad)], f"hanode: {bad}: cluster.etcd: must be a list of URLs"),
        (["--etcd", "localhost:2379", "--cluster", "x"], "hanode: --etcd: 'localhost:2379'"),
        (["--config", str(tmp_path / "absent.toml")], "absent.toml: no such file"),
    ]
    for argv, message in cases:
        result = subprocess.run([*HANODE, "status", *argv], capture_output=True, text=True,
                                timeout=30)
        assert result.returncode == 2, argv
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert message in result.stderr


def test_watch_redraws_until_ctrl_c(cluster, store, etcd_server):
    healthy_cluster(cluster)
    proc = subprocess.Popen([*HANODE, "status", "--etcd", etcd_server.url, "--cluster",
                             store.cluster, "--watch", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = json.loads(proc.stdout.readline())
        assert first["verdict"]["healthy"] is True
        cluster.crash("node2")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            frame = json.loads(proc.stdout.readline())
            if not frame["verdict"]["healthy"]:
                break
        assert frame["verdict"]["reasons"] == ["node2 down"]
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
    assert "Traceback" not in err
