"""The agent's SMB workers: real worker processes in a namespace lab node."""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest

from hanode.lab import Lab, wait_for

pytestmark = pytest.mark.cluster


@pytest.fixture
def lab(tmp_path):
    with Lab(1, workdir=tmp_path, workers=2) as lab:
        yield lab


def worker_pid(agent_pid: int, index: int) -> int | None:
    """The running worker `index` of the agent, if any."""
    for child in psutil.Process(agent_pid).children():
        try:
            argv = child.cmdline()
        except psutil.Error:
            continue
        if "smb.worker" in argv and argv[-1] == str(index):
            return child.pid
    return None


def respawned(agent_pid: int, index: int, old: int, timeout: float) -> tuple[int, float]:
    pid = wait_for(lambda: (p := worker_pid(agent_pid, index)) not in (None, old) and p,
                   timeout, f"worker {index} restarted", interval=0.01)
    return pid, time.monotonic()


def test_workers_published_restarted_fast_then_backing_off_and_stopped(lab):
    lab.start_agents()
    agent = lab.nodes["n1"].agent
    assert agent is not None

    # Both workers show in the node record with pid, RSS and (none yet) connections;
    # a round that measured a worker while it was still starting up is followed
    # by the next one (every 2 s).
    def published():
        rec = lab.read_etcd("nodes/n1").get("nodes/n1") or {}
        workers = rec.get("workers") or []
        return len(workers) == 2 and all(w["pid"] and w["rss"] and w["connections"] == 0
                                         for w in workers) and workers
    workers = wait_for(published, 15, "two workers in the node record", interval=0.2)
    assert {w["pid"] for w in workers} == {worker_pid(agent.pid, 0), worker_pid(agent.pid, 1)}
    assert all(w["rss"] > 1_000_000 for w in workers), workers

    # A killed worker is back within a second; crashing again at once, it waits longer each time.
    gaps = []
    pid = worker_pid(agent.pid, 0)
    for _ in range(4):
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        pid, back = respawned(agent.pid, 0, pid, 10)
        gaps.append(back - killed)
    assert gaps[0] < 1.0
    assert gaps[1] > gaps[0] and gaps[2] > gaps[1] and gaps[3] > gaps[2]
    assert gaps[3] > 1.5  # 0.2, 0.4, 0.8, 1.6 s
    rec = wait_for(lambda: (r := lab.read_etcd("nodes/n1")["nodes/n1"])["workers"][0]["restarts"]
                   == 4 and r, 5, "4 restarts published", interval=0.2)
    assert rec["workers"][0]["pid"] == pid

    # The other worker never noticed.
    assert worker_pid(agent.pid, 1) == workers[1]["pid"]
    # hanode status lists both, the restarted one with its restarts.
    table = lab.status().stdout
    row = next(line.split() for line in table.splitlines() if line.startswith("n1/w0"))
    assert row[1] == str(pid) and row[-1] == "4"
    assert any(line.startswith("n1/w1 ") for line in table.splitlines())

    # SIGTERM: the agent stops its workers and exits within two seconds.
    children = psutil.Process(agent.pid).children()
    sent = time.monotonic()
    agent.send_signal(signal.SIGTERM)
    assert agent.wait(timeout=3) == 0
    assert time.monotonic() - sent < 2.0
    assert not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children)
