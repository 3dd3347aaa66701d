"""``hanode smb``: N worker processes on one port, bounded connections,
restart of a dead worker, and a clean stop on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

import psutil

import harness
from hanode.lab import wait_for
from rawclient import RawClient


def test_connections_spread_over_workers(two_workers):
    clients = [RawClient(two_workers.port) for _ in range(40)]
    try:
        for c in clients:
            assert c.negotiate().status == 0
        ports = {c.sock.getsockname()[1] for c in clients}
        served = {}
        for w in harness.worker_processes(two_workers):
            served[w.pid] = {conn.raddr.port for conn in w.net_connections(kind="tcp")
                             if conn.raddr and conn.raddr.port in ports}
        assert sum(len(p) for p in served.values()) == 40
        assert all(served.values()), "SO_REUSEPORT left a worker idle"
    finally:
        for c in clients:
            c.close()


def _new_worker(target: harness.Target, known: set[int]) -> psutil.Process | None:
    return next((w for w in harness.worker_processes(target) if w.pid not in known), None)


def test_dead_worker_is_restarted_within_a_second_then_backing_off(two_workers):
    """The supervisor's policy, as under the agent: a crash is restarted at
    once, the next one in a row after a longer wait; the other worker is left
    alone throughout."""
    victim, survivor = harness.worker_processes(two_workers)
    for limit, delay in ((1.0, "0.2"), (5.0, "0.4")):
        victim.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        victim = wait_for(lambda: _new_worker(two_workers, {victim.pid, survivor.pid}), 5,
                          "a replacement worker", interval=0.01)
        assert time.monotonic() - killed < limit
        assert f"restarting in {delay} s" in two_workers.log_text()
        wait_for(lambda: harness.listening_workers(two_workers) == 2, 15,
                 "the replacement to listen")
    assert survivor.is_running()
    result = harness.smbclient(two_workers, "ls", "-m", "SMB3")
    assert result.returncode == 0, result.stdout + result.stderr


def test_sigterm_stops_parent_and_workers(two_workers):
    workers = harness.worker_processes(two_workers)
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
        # The harness's readiness probe may still hold a slot for a moment (a
        # slot is free again once the worker has unregistered the connection
        # in etcd): a client the worker closed at once is tried again.
        for _ in range(2):
            clients.append(wait_for(lambda: _held(target.port), 15, "a connection slot"))
        extra = RawClient(target.port)
        clients.append(extra)
        extra.sock.settimeout(5)
        assert extra.recv_frame() is None  # closed at once
        clients[0].close()
        # The freed slot is usable again.
        wait_for(lambda: _negotiates(target.port), 15, "a NEGOTIATE in the freed slot")
    finally:
        for c in clients:
            c.close()
        harness.stop(target)
    assert "refusing 127.0.0.1: 2 connections already" in target.log_text()


def _held(port: int) -> RawClient | None:
    """A connection that negotiated and stays open, or None if the worker closed it."""
    client = RawClient(port)
    try:
        if client.negotiate().status == 0:
            return client
    except ConnectionError:
        pass
    client.close()
    return None


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
