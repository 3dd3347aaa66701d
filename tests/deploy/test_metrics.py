"""/metrics: the agent's facts and a real worker process's counters, scraped over loopback."""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from hanode import metrics


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """Every sample of an exposition, keyed by (name, sorted labels)."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def scrape(port: int, path: str = "/metrics") -> tuple[int, str, str]:
    def get():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                return r.status, r.headers["Content-Type"], r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.headers["Content-Type"], e.read().decode()
    return await trio.to_thread.run_sync(get)


WORKER = """
import sys
from hanode.metrics import WorkerMetrics
w = WorkerMetrics()
w.connection_opened(); w.connection_opened(); w.connection_closed(); w.connection_opened()
for _ in range(3):
    w.operation("READ", 49, 65536 + 80)
w.operation("WRITE", 4096 + 112, 64)
print("ready", flush=True)
sys.stdin.read()
"""


def start_worker(env_extra: dict[str, str]) -> subprocess.Popen:
    import os
    proc = subprocess.Popen([sys.executable, "-c", WORKER], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, env={**os.environ, **env_extra}, text=True)
    assert proc.stdout.readline() == "ready\n"
    return proc


def stop_worker(proc: subprocess.Popen) -> None:
    proc.stdin.close()
    proc.wait(10)


async def test_agent_and_worker_series_are_served(tmp_path):
    m = metrics.Metrics(worker_dir=tmp_path / "w")
    worker = start_worker(m.worker_environment())
    try:
        m.set_leader(42)
        m.vip_held("10.0.0.50", True)
        m.takeover()
        m.garps(6)
        m.tickles(3)
        m.observe_etcd(0.003)
        m.observe_etcd(0.01)
        m.set_durable_handles(5)
        m.set_node_handles(durable=4, persistent=1)
        m.set_workers({"w0": worker.pid})

        async with trio.open_nursery() as nursery:
            port = await nursery.start(metrics.serve, m, "127.0.0.1", 0)
            status, ctype, text = await scrape(port)
            assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
            s = samples(text)
            assert s[("hanode_leader", ())] == 1
            assert s[("hanode_leader_term", ())] == 42
            assert s[("hanode_vip_held", (("address", "10.0.0.50"),))] == 1
            assert s[("hanode_takeovers_total", ())] == 1
            assert s[("hanode_garps_sent_total", ())] == 6
            assert s[("hanode_tickles_sent_total", ())] == 3
            assert s[("hanode_etcd_request_duration_seconds_count", ())] == 2
            assert s[("hanode_etcd_request_duration_seconds_bucket", (("le", "0.005"),))] == 1
            assert s[("hanode_etcd_request_duration_seconds_sum", ())] >= 0.013
            assert s[("hanode_durable_handles", ())] == 5
            assert s[("hanode_node_durable_handles", (("kind", "durable"),))] == 3
            assert s[("hanode_node_durable_handles", (("kind", "persistent"),))] == 1
            assert s[("hanode_workers", ())] == 1
            assert s[("hanode_worker_rss_bytes", (("worker", "w0"),))] > 1_000_000
            # from the worker process, through the multiprocess files
            assert s[("hanode_connections", ())] == 2
            assert s[("hanode_smb_operations_total", (("command", "READ"),))] == 3
            assert s[("hanode_smb_operations_total", (("command", "WRITE"),))] == 1
            assert s[("hanode_smb_bytes_total", (("command", "READ"), ("direction", "in")))] == 147
            assert s[("hanode_smb_bytes_total", (("command", "READ"), ("direction", "out")))] == 3 * 65616
            assert s[("hanode_smb_bytes_total", (("command", "WRITE"), ("direction", "in")))] == 4208

            # the worker exits: its connections go, its counts stay
            stop_worker(worker)
            m.set_workers({})
            m.set_leader(None)
            m.vip_held("10.0.0.50", False)
            s = samples((await scrape(port))[2])
            assert ("hanode_connections", ()) not in s  # no live worker, no gauge
            assert s[("hanode_workers", ())] == 0
            assert ("hanode_worker_rss_bytes", (("worker", "w0"),)) not in s
            assert s[("hanode_smb_operations_total", (("command", "READ"),))] == 3
            assert s[("hanode_leader", ())] == 0 and s[("hanode_leader_term", ())] == 0
            assert s[("hanode_vip_held", (("address", "10.0.0.50"),))] == 0

            status, _, body = await scrape(port, "/")
            assert status == 404 and body == "Not Found\n"
            nursery.cancel_scope.cancel()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


async def test_bad_requests_get_an_answer_not_a_hang(tmp_path):
    m = metrics.Metrics()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(metrics.serve, m, "127.0.0.1", 0)
        for request, expected in [
            (b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n", b"HTTP/1.1 405 "),
            (b"garbage\r\n\r\n", b"HTTP/1.1 400 "),
            (b"GET /metrics?name[]=x HTTP/1.0\r\n\r\n", b"HTTP/1.1 200 "),
        ]:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            with trio.fail_after(5):
                await stream.send_all(request)
                reply = b""
                while chunk := await stream.receive_some():
                    reply += chunk
            await stream.aclose()
            assert reply.startswith(expected)
        # a client that connects and says nothing does not hold the server
        idle = await trio.open_tcp_stream("127.0.0.1", port)
        status, _, _ = await scrape(port)
        assert status == 200
        await idle.aclose()
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("head, status", [
    (b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n", 200),
    (b"GET /metrics?x=1 HTTP/1.1\r\n\r\n", 200),
    (b"GET /other HTTP/1.1\r\n\r\n", 404),
    (b"PUT /metrics HTTP/1.1\r\n\r\n", 405),
    (b"GET /metrics\r\n\r\n", 400),
    (b"GET /metrics SPDY/3\r\n\r\n", 400),
])
def test_route(head, status):
    assert metrics.route(head) == status


def test_response_framing():
    r = metrics.response(200, b"abc", "text/x")
    assert r == (b"HTTP/1.1 200 OK\r\nContent-Type: text/x\r\nContent-Length: 3\r\n"
                 b"Connection: close\r\n\r\nabc")
    assert metrics.response(404).endswith(b"\r\n\r\nNot Found\n")


def test_agent_worker_dir_prefers_systemd_runtime_directory(tmp_path):
    m = metrics.Metrics.for_agent({"RUNTIME_DIRECTORY": f"{tmp_path}:/run/other"})
    assert m.worker_dir == tmp_path / "metrics" and m.worker_dir.is_dir()
    m.close()
    assert m.worker_dir.is_dir()  # systemd's to clean
    m = metrics.Metrics.for_agent({})
    assert m.worker_dir.is_dir() and m.worker_dir.name.startswith("hanode-metrics-")
    assert m.worker_environment() == {"PROMETHEUS_MULTIPROC_DIR": str(m.worker_dir)}
    m.close()
    assert not m.worker_dir.exists()


def test_stale_worker_files_are_cleared(tmp_path):
    (tmp_path / "counter_1.db").write_bytes(b"x")
    metrics.Metrics(worker_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_keepalive_and_loop_lag_series_keep_their_longest():
    m = metrics.Metrics()
    for seconds in (0.004, 0.6, 0.02):
        m.observe_keepalive(seconds)
    m.observe_loop_lag(0.3)
    m.observe_loop_lag(0.001)
    s = samples(m.render().decode())
    assert s[("hanode_lease_keepalive_seconds_count", ())] == 3
    assert s[("hanode_lease_keepalive_seconds_bucket", (("le", "0.5"),))] == 2
    assert s[("hanode_lease_keepalive_max_seconds", ())] == 0.6
    assert s[("hanode_event_loop_lag_seconds_count", ())] == 2
    assert s[("hanode_event_loop_lag_max_seconds", ())] == 0.3


def test_store_reports_each_etcd_request_to_the_histogram(store):
    m = metrics.Metrics()
    store.on_request = m.observe_etcd
    store.put(store.key("a"), 1)
    assert store.get(store.key("a")).value == 1
    s = samples(m.render().decode())
    assert s[("hanode_etcd_request_duration_seconds_count", ())] == 2
    assert 0 < s[("hanode_etcd_request_duration_seconds_sum", ())] < 2


async def test_a_taken_port_is_logged_not_raised(caplog):
    m = metrics.Metrics()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(metrics.serve, m, "127.0.0.1", 0)
        assert await nursery.start(metrics.serve, m, "127.0.0.1", port) is None
        nursery.cancel_scope.cancel()
    assert f"cannot listen on 127.0.0.1 port {port}" in caplog.text
