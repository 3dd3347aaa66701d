"""hanode status as pure functions: snapshot -> report -> table, and argument handling."""

from __future__ import annotations

import argparse

import pytest

from hanode import config as config_mod
from hanode import status
from hanode.cli import UserError
from hanode.status import NodeSeen, Snapshot, render_table, report

NOW = 1_800_000_000.0
ETCD = ("http://10.0.0.11:2379", "http://10.0.0.12:2379")


def record(name: str, state: str, vips=(), connections=0, durable=0, workers=2,
           persistent=0) -> dict:
    return {"name": name, "state": state, "term": 42 if state == "leader" else None,
            "since": NOW - 120, "updated": NOW - 1, "lease_id": 7, "lease_ttl": 2,
            "vips": list(vips),
            "workers": [{"pid": 100 + i, "rss": 1 << 20, "connections": 0, "open_handles": 0}
                        for i in range(workers)],
            "connections": connections, "durable_handles": durable,
            "persistent_handles": persistent, "version": "0.1.0"}


def node(name: str, rec: dict | None, ttl: int | None = 2, last_seen: float = NOW - 1) -> NodeSeen:
    return NodeSeen(name=name, record=rec, lease_ttl_left=ttl if rec else None,
                    member={"first_seen": NOW - 9000, "last_seen": last_seen})


def healthy(**changes) -> Snapshot:
    base = dict(
        cluster="prod", endpoints=ETCD, etcd_health={url: True for url in ETCD},
        leader={"node": "node1", "since": NOW - 120}, term=42,
        nodes=(node("node1", record("node1", "leader", ["10.0.0.50"], connections=3, durable=1,
                                    persistent=1)),
               node("node2", record("node2", "standby")),
               node("node3", record("node3", "standby"))),
        vips=("10.0.0.50",), connections={"10.0.0.50": 3}, durable_handles=1)
    base.update(changes)
    return Snapshot(**base)


def test_healthy_report_fields():
    rep = report(healthy())
    assert rep["cluster"] == "prod"
    assert rep["leader"] == {"node": "node1", "term": 42, "since": NOW - 120}
    assert rep["vips"] == [{"address": "10.0.0.50", "holder": "node1", "holders": ["node1"],
                            "connections": 3}]
    assert [(n["name"], n["state"]) for n in rep["nodes"]] == [
        ("node1", "leader"), ("node2", "standby"), ("node3", "standby")]
    first = rep["nodes"][0]
    assert first["connections"] == 3 and first["durable_handles"] == 1
    assert first["persistent_handles"] == 1  # of the durable ones, on CA shares
    assert len(first["workers"]) == 2 and first["lease_ttl_left"] == 2
    assert first["last_seen"] == NOW - 1
    assert rep["etcd"] == {"endpoints": list(ETCD), "healthy": True, "error": None,
                           "endpoint_health": {url: True for url in ETCD}}
    assert rep["verdict"] == {"healthy": True, "reasons": []}


def test_no_leader_and_a_down_node():
    snap = healthy(leader=None, term=None,
                   nodes=(node("node1", record("node1", "standby")),
                          node("node2", None, last_seen=NOW - 600),
                          node("node3", record("node3", "standby"))))
    rep = report(snap)
    assert rep["leader"] is None
    down = rep["nodes"][1]
    assert down["state"] == "down" and down["workers"] == [] and down["connections"] is None
    assert down["last_seen"] == NOW - 600 and down["lease_ttl_left"] is None
    assert rep["verdict"] == {"healthy": False,
                              "reasons": ["no leader", "VIP 10.0.0.50 not held", "node2 down"]}
    table = render_table(rep, NOW)
    assert table.splitlines()[-1] == "degraded: no leader; VIP 10.0.0.50 not held; node2 down"
    assert "leader   none" in table


def test_vip_on_two_nodes_is_named():
    snap = healthy(nodes=(node("node1", record("node1", "leader", ["10.0.0.50"])),
                          node("node2", record("node2", "standby", ["10.0.0.50"]))))
    rep = report(snap)
    assert rep["vips"][0]["holder"] is None and rep["vips"][0]["holders"] == ["node1", "node2"]
    assert rep["verdict"]["reasons"] == ["VIP 10.0.0.50 held by node1 and node2"]


def test_vip_held_by_a_node_that_does_not_lead():
    snap = healthy(nodes=(node("node1", record("node1", "leader")),
                          node("node2", record("node2", "standby", ["10.0.0.50"]))))
    assert report(snap)["verdict"]["reasons"] == ["VIP 10.0.0.50 held by node2, not by leader node1"]


def test_fenced_node_and_a_stale_leader_claim():
    snap = healthy(nodes=(node("node1", record("node1", "leader", ["10.0.0.50"])),
                          node("node2", record("node2", "fenced")),
                          node("node3", record("node3", "leader"))))
    rep = report(snap)
    assert [n["state"] for n in rep["nodes"]] == ["leader", "standby", "leader"]
    assert rep["nodes"][1]["role"] == "fenced"
    assert rep["verdict"]["reasons"] == [
        "node3 claims to lead but node1 holds the leader key", "node2 fenced"]
    assert "standby (fenced)" in render_table(rep, NOW)


def test_one_etcd_endpoint_down():
    snap = healthy(etcd_health={ETCD[0]: True, ETCD[1]: False})
    rep = report(snap)
    assert rep["etcd"]["healthy"] is False
    assert rep["verdict"]["reasons"] == [f"etcd {ETCD[1]} down"]
    assert f"{ETCD[1]} DOWN" in render_table(rep, NOW)


def test_etcd_unreachable():
    snap = Snapshot(cluster="prod", endpoints=ETCD, etcd_health={url: False for url in ETCD},
                    error="etcd unreachable at " + ", ".join(ETCD), vips=("10.0.0.50",))
    rep = report(snap)
    assert rep["leader"] is None and rep["nodes"] == []
    assert rep["vips"][0]["holder"] is None
    assert rep["etcd"]["healthy"] is False and rep["etcd"]["error"].startswith("etcd unreachable")
    assert rep["verdict"] == {"healthy": False, "reasons": ["etcd unreachable"]}
    table = render_table(rep, NOW)
    assert "etcd unreachable at http://10.0.0.11:2379" in table
    assert table.splitlines()[-1] == "degraded: etcd unreachable"


def test_empty_cluster_is_degraded():
    rep = report(healthy(leader=None, term=None, nodes=(), vips=(), connections={}))
    assert rep["verdict"]["reasons"] == ["no leader", "no nodes"]


def test_malformed_record_fields_do_not_break_the_table():
    rec = {"state": "standby", "vips": None, "workers": None}
    rep = report(healthy(nodes=(node("node1", record("node1", "leader", ["10.0.0.50"])),
                                NodeSeen("node2", rec, None, None))))
    assert rep["nodes"][1]["workers"] == [] and rep["nodes"][1]["last_seen"] is None
    assert "node2" in render_table(rep, NOW)


def test_table_is_aligned_and_ends_with_the_verdict():
    table = render_table(report(healthy()), NOW)
    lines = table.splitlines()
    assert lines[0] == "cluster  prod"
    assert lines[2] == "leader   node1 (term 42) since 2027-01-15 07:58:00Z (2m ago)"
    header = next(i for i, line in enumerate(lines) if line.startswith("NODE"))
    rows = lines[header:header + 4]
    for column in ("STATE", "LEASE", "WORKERS", "CONNECTIONS", "DURABLE", "PERSISTENT",
                   "LAST SEEN"):
        at = rows[0].index(column)
        assert all(row[at - 2:at] == "  " and row[at] != " " for row in rows[1:]), column
    assert rows[1].split() == ["node1", "leader", "unknown", "2s", "2", "3", "1", "1", "1s",
                               "ago"]
    assert lines[-1] == "healthy"


# -- where status looks: --config, --etcd/--cluster ---------------------------------


def args(**kw) -> argparse.Namespace:
    base = dict(config=None, etcd=None, cluster=None, json=False, watch=False)
    base.update(kw)
    return argparse.Namespace(**base)


@pytest.fixture
def no_default_config(monkeypatch, tmp_path):
    monkeypatch.setattr(config_mod, "DEFAULT_PATH", tmp_path / "absent.toml")


def test_flags_alone(no_default_config):
    cluster, endpoints, vips = status._target(args(etcd=["http://e1:2379"], cluster="lab"))
    assert (cluster.name, endpoints, vips) == ("lab", ("http://e1:2379",), None)


@pytest.mark.parametrize("kw,problem", [
    ({}, "give --config FILE"),
    ({"etcd": ["http://e1:2379"]}, "give --config FILE"),
    ({"cluster": "lab"}, "give --etcd URL"),
    ({"etcd": ["e1:2379"], "cluster": "lab"}, "--etcd: 'e1:2379' is not an etcd URL"),
    ({"etcd": ["http://e1:2379"], "cluster": "a b"}, "--cluster: 'a b'"),
])
def test_usage_errors(no_default_config, kw, problem):
    with pytest.raises(UserError) as err:
        status._target(args(**kw))
    assert problem in str(err.value)


def test_config_then_flags_override(no_default_config, tmp_path):
    path = tmp_path / "hanode.toml"
    path.write_text('[cluster]\nname = "prod"\netcd = ["http://10.0.0.11:2379"]\n'
                    '[node]\nname = "node1"\n'
                    '[[vip]]\naddress = "10.0.0.50/24"\n[[vip]]\naddress = "fd00::50/64"\n')
    cluster, endpoints, vips = status._target(args(config=str(path)))
    assert (cluster.name, endpoints, vips) == ("prod", ("http://10.0.0.11:2379",),
                                               ("10.0.0.50", "fd00::50"))
    cluster, endpoints, _ = status._target(args(config=str(path), cluster="other",
                                                etcd=["http://127.0.0.1:2379"]))
    assert (cluster.name, endpoints) == ("other", ("http://127.0.0.1:2379",))


def test_config_without_etcd_means_the_embedded_one(no_default_config, tmp_path):
    path = tmp_path / "hanode.toml"
    path.write_text('[node]\nname = "node1"\n')
    _, endpoints, vips = status._target(args(config=str(path)))
    assert endpoints == (status.EMBEDDED_ETCD_URL,) and vips is None


def test_bad_config_is_a_config_error(no_default_config, tmp_path):
    path = tmp_path / "hanode.toml"
    path.write_text('[node]\nname = "node1"\nbogus = 1\n')
    with pytest.raises(config_mod.ConfigError, match="node.bogus: unknown key"):
        status._target(args(config=str(path)))


def test_table_lists_each_worker_with_its_figures():
    workers = [{"index": 0, "pid": 4242, "rss": 48 << 20, "connections": 3, "open_handles": 5,
                "durable_handles": 2, "restarts": 0},
               {"index": 1, "pid": None, "rss": None, "connections": None, "open_handles": None,
                "durable_handles": None, "restarts": 4}]
    rec = {**record("node1", "leader", ["10.0.0.50"]), "workers": workers}
    table = render_table(report(healthy(nodes=(node("node1", rec),))), NOW)
    rows = [line.split() for line in table.splitlines() if line.startswith(("WORKER", "node1/"))]
    assert rows == [["WORKER", "PID", "RSS", "CONNECTIONS", "OPEN", "DURABLE", "RESTARTS"],
                    ["node1/w0", "4242", "48", "MiB", "3", "5", "2", "0"],
                    ["node1/w1", "restarting", "-", "-", "-", "-", "4"]]
