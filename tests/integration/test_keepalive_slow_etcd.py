"""A leader with a 1 s lease keeps it while every etcd request takes half a second.

A real agent talks to a real etcd through a TCP relay that holds each chunk
from the agent back 0.4 s (as a slow network or a starved client thread
would), so a keepalive takes about 0.45 s.  The leader fences itself 0.75 s
after the last keepalive that succeeded was sent.  Sent one after another,
each waiting for the one before, the second succeeded about 1 s after the
first was sent and the leader let go over and over; sent every 0.125 s
without waiting, one succeeds every 0.125 s, about 0.45 s after it left.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import trio
from prometheus_client.parser import text_string_to_metric_families

from hanode import embedded_etcd

DELAY = 0.4
HOLD = 6.0
UNIT_NICE = -10  # deploy/systemd/hanode-agent.service


class SlowRelay:
    """Relays TCP to upstream; bytes towards upstream leave `delay` seconds after
    they arrived (in order), bytes back pass at once."""

    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self.delay = 0.0

    async def serve(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        task_status.started(listeners[0].socket.getsockname()[1])
        await trio.serve_listeners(self._relay, listeners)

    async def _relay(self, client: trio.SocketStream) -> None:
        async with client, await trio.open_tcp_stream(*self.upstream) as server:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._pipe, client, server, True, nursery.cancel_scope)
                nursery.start_soon(self._pipe, server, client, False, nursery.cancel_scope)

    async def _pipe(self, src: trio.SocketStream, dst: trio.SocketStream, delayed: bool,
                    done: trio.CancelScope) -> None:
        send, receive = trio.open_memory_channel[tuple[float, bytes]](math.inf)

        async def forward() -> None:
            async for due, data in receive:
                await trio.sleep_until(due)
                await dst.send_all(data)

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(forward)
                while data := await src.receive_some(65536):
                    await send.send((trio.current_time() + (self.delay if delayed else 0), data))
                await send.aclose()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        done.cancel()


def start_agent(cfg: Path, log: Path, runtime: Path) -> subprocess.Popen:
    """The agent at the priority its unit gives it (Nice=-10), so that what this
    test measures is the relay's delay, not other processes' load."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "hanode.cli", "agent", "--config", str(cfg)],
            env={**os.environ, "RUNTIME_DIRECTORY": str(runtime)},
            stdout=out, stderr=subprocess.STDOUT,
            preexec_fn=lambda: os.setpriority(os.PRIO_PROCESS, 0, UNIT_NICE))


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {s.name: s.value for f in text_string_to_metric_families(text)
            for s in f.samples if not s.labels}


async def test_leader_keeps_a_one_second_lease_when_each_request_takes_half_a_second(
        etcd_server, tmp_path):
    cluster = f"t{uuid.uuid4().hex[:8]}"
    url = etcd_server.url.removeprefix("http://")
    host, port = url.rsplit(":", 1)
    relay = SlowRelay((host, int(port)))
    metrics_port = embedded_etcd.free_port()
    async with trio.open_nursery() as nursery:
        relay_port = await nursery.start(relay.serve)
        cfg = tmp_path / "hanode.toml"
        cfg.write_text(f"""
[cluster]
name = "{cluster}"
etcd = ["http://127.0.0.1:{relay_port}"]
lease_ttl = 1

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
        log = tmp_path / "agent.log"
        agent = start_agent(cfg, log, tmp_path / "run")
        try:
            async def metric(name: str) -> float | None:
                try:
                    return (await trio.to_thread.run_sync(scrape, metrics_port)).get(name)
                except OSError:
                    return None

            with trio.fail_after(30):
                while await metric("hanode_leader") != 1:
                    await trio.sleep(0.2)
            term = await metric("hanode_leader_term")
            relay.delay = DELAY
            await trio.sleep(HOLD)
            s = await trio.to_thread.run_sync(scrape, metrics_port)
            seen = " ".join(f"{k}={v:g}" for k, v in sorted(s.items())
                            if k.startswith(("hanode_lease", "hanode_event", "hanode_leader",
                                             "hanode_takeovers")) and not k.endswith("created"))
            assert s["hanode_leader"] == 1 and s["hanode_leader_term"] == term, seen
            assert s["hanode_takeovers_total"] == 1, seen
            # The relay did slow the keepalives down as much as it should.
            assert DELAY <= s["hanode_lease_keepalive_max_seconds"] < 0.75, seen
            relay.delay = 0.0
        finally:
            agent.terminate()
            try:
                await trio.to_thread.run_sync(agent.wait, 10)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait()
            nursery.cancel_scope.cancel()
            store = etcd_server.store(cluster)
            store.delete_prefix(store.prefix)
            store.close()
    text = log.read_text()
    assert "fenced" not in text and "expired in etcd" not in text, text
