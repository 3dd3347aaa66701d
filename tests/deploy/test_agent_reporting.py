"""The real agent under a fake systemd: READY=1 and WATCHDOG=1 arrive on a
test socket, /metrics is scraped over loopback, SIGTERM brings STOPPING=1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hanode import embedded_etcd
from hanode.lab import Lab, wait_for


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {s.name: s.value for f in text_string_to_metric_families(text)
            for s in f.samples if not s.labels}


def test_agent_notifies_systemd_and_serves_metrics(etcd_server, tmp_path):
    cluster = f"t{uuid.uuid4().hex[:8]}"
    metrics_port = embedded_etcd.free_port()
    cfg = tmp_path / "hanode.toml"
    cfg.write_text(f"""
[cluster]
name = "{cluster}"
etcd = ["{etcd_server.url}"]

[node]
name = "n1"
state_dir = "{tmp_path}"

[smb]
listen = "127.0.0.1"
port = {embedded_etcd.free_port()}
workers = 1

[metrics]
address = "127.0.0.1"
port = {metrics_port}
""")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(15)
    log = open(tmp_path / "agent.log", "wb")
    agent = subprocess.Popen(
        [sys.executable, "-m", "hanode.cli", "agent", "--config", str(cfg)],
        env={**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify"),
             "WATCHDOG_USEC": "1000000", "RUNTIME_DIRECTORY": str(tmp_path / "run")},
        stdout=log, stderr=subprocess.STDOUT)
    try:
        messages = []
        while not any(m.startswith(b"READY=1") for m in messages):
            messages.append(notify.recv(4096))
        ready = next(m for m in messages if m.startswith(b"READY=1"))
        assert f"MAINPID={agent.pid}".encode() in ready
        assert b"STATUS=n1: joined etcd" in ready

        pets_before = sum(m == b"WATCHDOG=1" for m in messages)
        deadline = time.monotonic() + 2.2  # a pet every 0.5 s
        while time.monotonic() < deadline:
            notify.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                messages.append(notify.recv(4096))
            except TimeoutError:
                break
        assert sum(m == b"WATCHDOG=1" for m in messages) - pets_before >= 3

        # the only node becomes leader
        deadline = time.monotonic() + 10
        while (s := scrape(metrics_port)).get("hanode_leader") != 1:
            assert time.monotonic() < deadline, s
            time.sleep(0.2)
        assert s["hanode_leader_term"] > 0
        assert s["hanode_takeovers_total"] == 1
        assert s["hanode_etcd_request_duration_seconds_count"] > 3
        assert s["hanode_lease_keepalive_seconds_count"] > 0
        assert 0 < s["hanode_lease_keepalive_max_seconds"] < 1
        assert s["hanode_event_loop_lag_seconds_count"] > 10  # a turn every 50 ms
        assert "hanode_durable_handles" in s and "hanode_workers" in s

        agent.send_signal(signal.SIGTERM)
        assert agent.wait(10) == 0
        notify.settimeout(1)
        rest = []
        try:
            while True:
                rest.append(notify.recv(4096))
        except TimeoutError:
            pass
        assert any(m.startswith(b"STOPPING=1") for m in rest), rest
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
        log.close()
        notify.close()
        store = etcd_server.store(cluster)
        store.delete_prefix(store.prefix)
        store.close()


SCRAPE = """
import sys, urllib.request
with urllib.request.urlopen(f"http://{sys.argv[1]}:9464/metrics", timeout=5) as r:
    sys.stdout.write(r.read().decode())
"""


@pytest.mark.cluster
def test_leader_with_a_vip_reports_it(tmp_path, monkeypatch):
    """One node of the lab (namespaces, bridge, etcd): it claims the VIP on its
    eth0, announces it, and its /metrics, scraped from the lab's client
    namespace, says so; sd_notify goes to a path socket the test holds."""
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(15)
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    try:
        with Lab(1, workdir=tmp_path) as lab:
            assert lab.start_agents() == "n1"
            messages = [notify.recv(4096) for _ in range(3)]
            assert any(m.startswith(b"READY=1") for m in messages), messages

            def announced() -> dict | None:
                proc = lab.popen(lab.client_ns, "-c", SCRAPE, lab.nodes["n1"].ip)
                text, _ = proc.communicate(timeout=10)
                s = {(x.name, tuple(sorted(x.labels.items()))): x.value
                     for f in text_string_to_metric_families(text) for x in f.samples}
                # three announcement rounds, a GARP request and reply in each
                return s if s.get(("hanode_garps_sent_total", ())) == 6 else None

            s = wait_for(announced, 10, "three announcement rounds")
            assert s[("hanode_vip_held", (("address", lab.vip_ip),))] == 1
            assert s[("hanode_leader", ())] == 1 and s[("hanode_takeovers_total", ())] == 1
            assert s[("hanode_tickles_sent_total", ())] == 0  # nobody to tickle
    finally:
        notify.close()
