"""Node health in ``hanode status``: the HEALTH column, the reasons of the verdict, --json."""

from __future__ import annotations

from hanode.status import render_table, report
from tests.unit.test_status_render import NOW, healthy, node, record


def with_health(rec: dict, *failing: tuple[str, str]) -> dict:
    checks = [{"name": "worker 0", "ok": True, "detail": "answers NEGOTIATE", "since": NOW - 60}]
    checks += [{"name": name, "ok": False, "detail": detail, "since": NOW - 5}
               for name, detail in failing]
    return {**rec, "health": {"healthy": not failing, "checks": checks}}


def test_unhealthy_standby_and_leader_serving_unhealthy_are_reasons_of_degraded():
    snap = healthy(nodes=(
        node("node1", with_health(record("node1", "leader", ["10.0.0.50"]),
                                  ("worker 1", "no NEGOTIATE reply within 1 s"))),
        node("node2", with_health(record("node2", "standby"),
                                  ("marker test", "storage marker missing (not mounted?)"))),
        node("node3", with_health(record("node3", "standby")))))
    rep = report(snap)
    assert rep["verdict"] == {"healthy": False, "reasons": [
        "node1: unhealthy (serving while unhealthy): worker 1: no NEGOTIATE reply within 1 s",
        "node2: unhealthy: marker test: storage marker missing (not mounted?)"]}
    assert rep["nodes"][1]["health"] == {"healthy": False, "checks": [
        {"name": "worker 0", "ok": True, "detail": "answers NEGOTIATE", "since": NOW - 60},
        {"name": "marker test", "ok": False,
         "detail": "storage marker missing (not mounted?)", "since": NOW - 5}]}
    table = render_table(rep, NOW).splitlines()
    header = next(i for i, line in enumerate(table) if line.startswith("NODE"))
    assert [row.split()[2] for row in table[header:header + 4]] == [
        "HEALTH", "unhealthy", "unhealthy", "healthy"]
    assert table[-1].startswith("degraded: node1: unhealthy (serving while unhealthy)")


def test_all_healthy_stays_healthy_and_garbage_health_is_unknown():
    snap = healthy(nodes=(
        node("node1", with_health(record("node1", "leader", ["10.0.0.50"]))),
        node("node2", {**record("node2", "standby"), "health": "yes"}),
        node("node3", None)))
    rep = report(snap)
    assert rep["nodes"][0]["health"]["healthy"] is True
    assert rep["nodes"][1]["health"] is None and rep["nodes"][2]["health"] is None
    assert rep["verdict"]["reasons"] == ["node3 down"]
