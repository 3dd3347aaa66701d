"""``hanode smb``: N worker processes on one port, bounded connections,
restart of a dead worker, and a clean stop on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

import psutil
import pytest

import harness
from rawclient import RawClient


def _workers(target: harness.Target) -> list[psutil.Process]:
    return psutil.Process(target.proc.pid).children(recursive=True)


def _listening(target: harness.Target) -> int:
    """How many worker processes have their listening socket bound."""
    count = 0
    for w in _workers(target):
        try:
            conns = w.net_connections(kind="tcp")
        except psutil.NoSuchProcess:
            continue
        count += any(c.status == psutil.CONN_LISTEN and c.laddr.port == target.port
                     for c in conns)
    return count


def _wait_for(predicate, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


@pytest.fixture
def two_workers(etcd_server, tmp_path):
    target = harness.start_hanode(etcd_server.url, tmp_path / "h", workers=2)
    try:
        _wait_for(lambda: _listening(target) == 2)
        yield target
    finally:
        harness.stop(target)


def test_connections_spread_over_workers(two_workers):
    clients = [RawClient(two_workers.port) for _ in range(40)]
    try:
        for c in clients:
            assert c.negotiate().status == 0
        ports = {c.sock.getsockname()[1] for c in clients}
        served = {}
        for w in _workers(two_workers):
            served[w.pid] = {conn.raddr.port for conn in w.net_connections(kind="tcp")
                             if conn.raddr and conn.raddr.port in ports}
        assert sum(len(p) for p in served.values()) == 40
        assert all(served.values()), "SO_REUSEPORT left a worker idle"
    finally:
        for c in clients:
            c.close()


def test_dead_worker_is_restarted(two_workers):
    victim = _workers(two_workers)[0]
    victim.send_signal(signal.SIGKILL)
    _wait_for(lambda: _listening(two_workers) == 2 and
              victim.pid not in {w.pid for w in _workers(two_workers)})
    result = harness.smbclient(two_workers, "ls", "-m", "SMB3")
    assert result.returncode == 0, result.stdout + result.stderr


def test_sigterm_stops_parent_and_workers(two_workers):
    workers = _workers(two_workers)
    os.kill(two_workers.proc.pid, signal.SIGTERM)  # the parent only, not the group
    assert two_workers.proc.wait(15) == 0
    gone, alive = psutil.wait_procs(workers, timeout=5)
    assert not alive
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", two_workers.port)) != 0


def test_connections_per_worker_are_bounded(etcd_server, tmp_path):
    target = harness.start_hanode(etcd_server.url, tmp_path / "h", workers=1,
                                  smb_extra="max_connections_per_worker = 2")
    clients = []
    try:
        # The harness's readiness probe may still hold a slot for a moment.
        _wait_for(lambda: not any(c.status == psutil.CONN_ESTABLISHED
                                  and c.laddr.port == target.port
                                  for w in _workers(target)
                                  for c in w.net_connections(kind="tcp")))
        clients = [RawClient(target.port) for _ in range(2)]
        for c in clients:
            assert c.negotiate().status == 0
        extra = RawClient(target.port)
        clients.append(extra)
        extra.sock.settimeout(5)
        assert extra.recv_frame() is None  # closed at once
        clients[0].close()
        _wait_for(lambda: _negotiates(target.port))  # the freed slot is usable again
    finally:
        for c in clients:
            c.close()
        harness.stop(target)
    assert "refusing 127.0.0.1: 2 connections already" in target.log_text()


def _negotiates(port: int) -> bool:
    client = RawClient(port)
    try:
        return client.negotiate().status == 0
    except ConnectionError:
        return False
    finally:
        client.close()


def test_smb_without_etcd_is_a_config_error(tmp_path):
    config = tmp_path / "h.toml"
    config.write_text('[node]\nname = "n1"\n[smb]\nport = 4455\n')
    result = subprocess.run(harness.hanode_command() + ["smb", "--config", str(config)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"hanode: {config}: cluster.etcd: is empty; hanode smb needs etcd endpoints "
        "(the agent starts an embedded one)")
