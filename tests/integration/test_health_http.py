"""/livez, /readyz and the health series on the agent's metrics port (loopback only)."""

from __future__ import annotations

import trio

from hanode import metrics
from hanode.checks import Check, Monitor
from hanode.node_health import CheckSpec
from tests.deploy.test_metrics import samples, scrape


async def test_livez_always_readyz_only_while_ready_with_the_reasons(tmp_path):
    m = metrics.Metrics(worker_dir=tmp_path / "w")
    why: list[str | None] = ["worker 0: no NEGOTIATE reply within 1 s"]
    async with trio.open_nursery() as nursery:
        port = await nursery.start(metrics.serve, m, "127.0.0.1", 0, lambda: why[0])
        assert await scrape(port, "/livez") == (200, "text/plain; charset=utf-8", "alive\n")
        status, _, body = await scrape(port, "/readyz")
        assert (status, body) == (503, "worker 0: no NEGOTIATE reply within 1 s\n")
        why[0] = None
        status, _, body = await scrape(port, "/readyz?verbose")
        assert (status, body) == (200, "ready\n")
        assert (await scrape(port, "/ready"))[0] == 404
        nursery.cancel_scope.cancel()


async def test_monitor_runs_checks_on_their_interval_and_feeds_the_series(tmp_path):
    m = metrics.Metrics(worker_dir=tmp_path / "w")
    rounds = {"fine": 0, "slow": 0}

    async def fine():
        rounds["fine"] += 1
        return True, "ok"

    async def slow():
        rounds["slow"] += 1
        await trio.sleep(10)
        return True, "never"

    checks = [Check(CheckSpec("check fine"), 0.05, 0.05, fine),
              Check(CheckSpec("check slow", fall=1), 0.1, 0.05, slow,
                    on_timeout=(False, "no exit within 0.05 s"))]
    monitor = Monitor("n1", checks, m)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(monitor.run)
        await trio.sleep(0.5)
        nursery.cancel_scope.cancel()
    assert rounds["fine"] >= 5 and rounds["slow"] >= 3
    v = monitor.verdict()
    assert not v.healthy and v.problem == "check slow: no exit within 0.05 s"
    s = samples(m.render().decode())
    assert s[("hanode_health_check", (("check", "check fine"),))] == 1
    assert s[("hanode_health_check", (("check", "check slow"),))] == 0
    assert s[("hanode_health_check_duration_seconds_count", (("check", "check fine"),))] >= 5
    assert s[("hanode_node_healthy", ())] == 0
    m.handover("worker")
    assert samples(m.render().decode())[("hanode_handovers_total", (("cause", "worker"),))] == 1
