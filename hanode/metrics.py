"""The node's Prometheus metrics, and the small HTTP server that exposes them.

Two kinds of process feed one ``/metrics`` page:

- the agent records leadership, VIPs, takeovers, announcements, tickles,
  etcd latency, its workers' memory and the durable handles through
  :class:`Metrics`, in an ordinary in-process registry;
- each SMB worker is its own process, so it records connections and
  operations through :class:`WorkerMetrics` into prometheus_client's
  multiprocess files, in a directory the agent creates and hands to the
  worker in ``$PROMETHEUS_MULTIPROC_DIR`` (:meth:`Metrics.worker_environment`).
  The agent's registry reads those files at scrape time, so nothing has to
  be sent between the processes and a worker that crashes loses nothing it
  had counted.

The agent itself must not have ``$PROMETHEUS_MULTIPROC_DIR`` set: the
client library decides at import time whether every metric of the process
lives in files.

The server is a trio task (:func:`serve`), not prometheus_client's own
thread server: the house rule is no bare threads.  The HTTP it speaks is
the least a Prometheus scraper needs: ``GET /metrics``, one response, close.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator, Mapping

import psutil
import trio
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# etcd answers a healthy request in about a millisecond; the top buckets are
# there to show how close a slow etcd comes to the lease TTL (2 s by default).
ETCD_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0)
# The trio loop's lateness (hanode.looplag): normally well under a millisecond;
# with a 1 s lease the leader fences itself after 0.75 s without a keepalive.
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.0)

# What generate_latest() writes: the classic text format.  Named here because
# newer client libraries call a later version "latest", which older
# Prometheus servers do not know.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

MAX_REQUEST_HEAD = 8192
REQUEST_TIMEOUT = 5.0


class _WorkerMemory:
    """Collects each supervised worker's RSS when scraped, not on a timer."""

    def __init__(self) -> None:
        self.pids: dict[str, int] = {}

    def describe(self) -> list[GaugeMetricFamily]:
        return [self._workers(), self._rss()]

    @staticmethod
    def _workers() -> GaugeMetricFamily:
        return GaugeMetricFamily("hanode_workers", "SMB worker processes running on this node")

    @staticmethod
    def _rss() -> GaugeMetricFamily:
        return GaugeMetricFamily("hanode_worker_rss_bytes",
                                 "Resident memory of each SMB worker", labels=["worker"])

    def collect(self) -> Iterator[GaugeMetricFamily]:
        workers, rss = self._workers(), self._rss()
        alive = 0
        for name, pid in sorted(self.pids.items()):
            try:
                rss.add_metric([name], psutil.Process(pid).memory_info().rss)
            except psutil.Error:
                continue  # exited between set_workers() and this scrape
            alive += 1
        workers.add_metric([], alive)
        yield workers
        yield rss


class Metrics:
    """The agent's metrics; each method is one fact the agent just learnt."""

    def __init__(self, worker_dir: str | Path | None = None, *, own_worker_dir: bool = False):
        """worker_dir: where workers write their files; own_worker_dir: close() removes it."""
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self._leader = Gauge("hanode_leader", "1 while this node holds the leader key",
                             registry=r)
        self._term = Gauge("hanode_leader_term",
                           "Create revision of the leader key this node holds (0: not leader)",
                           registry=r)
        self._vip = Gauge("hanode_vip_held", "1 while this node has the VIP on its interface",
                          ["address"], registry=r)
        self._takeovers = Counter("hanode_takeovers", "VIP takeovers by this node", registry=r)
        self._garps = Counter("hanode_garps_sent",
                              "Gratuitous ARPs and unsolicited neighbour advertisements sent",
                              registry=r)
        self._tickles = Counter("hanode_tickles_sent", "Tickle ACKs sent to clients of a VIP",
                                registry=r)
        self._etcd = Histogram("hanode_etcd_request_duration_seconds",
                               "Time etcd took to answer one request of the agent",
                               buckets=ETCD_BUCKETS, registry=r)
        # The lease keepalive's round trip, through the thread hop and etcd: what
        # the fencing rule (let go at sent + TTL - margin) depends on.
        self._keepalive = Histogram("hanode_lease_keepalive_seconds",
                                    "Round trip of one lease keepalive that succeeded",
                                    buckets=LAG_BUCKETS, registry=r)
        self._keepalive_max = Gauge("hanode_lease_keepalive_max_seconds",
                                    "Longest lease keepalive round trip since the agent started",
                                    registry=r)
        self._lag = Histogram("hanode_event_loop_lag_seconds",
                              "How late the agent's trio loop woke a sleeping task",
                              buckets=LAG_BUCKETS, registry=r)
        self._lag_max = Gauge("hanode_event_loop_lag_max_seconds",
                              "Longest event-loop lag since the agent started", registry=r)
        self._longest_keepalive = self._longest_lag = 0.0
        self._durable = Gauge("hanode_durable_handles",
                              "Durable handles recorded in etcd for the cluster", registry=r)
        self._node_handles = Gauge(
            "hanode_node_durable_handles",
            "Durable handles this node's workers hold, by kind (persistent: on a continuously "
            "available share, kept whatever they cache; durable: the others)", ["kind"],
            registry=r)
        self._check = Gauge("hanode_health_check",
                            "1 while this node's health check passes", ["check"], registry=r)
        self._check_seconds = Histogram("hanode_health_check_duration_seconds",
                                        "Time one round of a health check took", ["check"],
                                        buckets=ETCD_BUCKETS, registry=r)
        self._healthy = Gauge("hanode_node_healthy",
                              "1 while every health check of this node passes", registry=r)
        self._handovers = Counter("hanode_handovers",
                                  "VIP handovers this node made for health, by cause",
                                  ["cause"], registry=r)
        self._memory = _WorkerMemory()
        r.register(self._memory)
        self.worker_dir = Path(worker_dir) if worker_dir is not None else None
        self._own_worker_dir = own_worker_dir
        if self.worker_dir is not None:
            self.worker_dir.mkdir(parents=True, exist_ok=True)
            for stale in self.worker_dir.glob("*.db"):
                stale.unlink()  # a previous agent's workers; counters restart with us
            MultiProcessCollector(r, path=str(self.worker_dir))

    @classmethod
    def for_agent(cls, environ: Mapping[str, str] | None = None) -> "Metrics":
        """The agent's metrics, its workers' files under systemd's RuntimeDirectory
        (which systemd empties) or else in a private temporary directory that
        close() removes."""
        env = os.environ if environ is None else environ
        runtime = env.get("RUNTIME_DIRECTORY", "").split(":")[0]
        if runtime:
            return cls(Path(runtime) / "metrics")
        return cls(tempfile.mkdtemp(prefix="hanode-metrics-"), own_worker_dir=True)

    def close(self) -> None:
        if self._own_worker_dir and self.worker_dir is not None:
            shutil.rmtree(self.worker_dir, ignore_errors=True)

    def set_leader(self, term: int | None) -> None:
        """term: the leadership term this node now holds, or None when it is not leader."""
        self._leader.set(0 if term is None else 1)
        self._term.set(term or 0)

    def vip_held(self, address: str, held: bool) -> None:
        self._vip.labels(address=address).set(1 if held else 0)

    def takeover(self) -> None:
        self._takeovers.inc()

    def garps(self, n: int = 1) -> None:
        self._garps.inc(n)

    def tickles(self, n: int = 1) -> None:
        self._tickles.inc(n)

    def observe_etcd(self, seconds: float) -> None:
        self._etcd.observe(seconds)

    def observe_keepalive(self, seconds: float) -> None:
        self._keepalive.observe(seconds)
        if seconds > self._longest_keepalive:
            self._longest_keepalive = seconds
            self._keepalive_max.set(seconds)

    def observe_loop_lag(self, seconds: float) -> None:
        self._lag.observe(seconds)
        if seconds > self._longest_lag:
            self._longest_lag = seconds
            self._lag_max.set(seconds)

    def set_durable_handles(self, n: int) -> None:
        self._durable.set(n)

    def set_node_handles(self, durable: int, persistent: int) -> None:
        """durable: every durable handle of this node's workers, persistent ones included."""
        self._node_handles.labels(kind="durable").set(durable - persistent)
        self._node_handles.labels(kind="persistent").set(persistent)

    def health_check(self, name: str, ok: bool, seconds: float) -> None:
        self._check.labels(check=name).set(1 if ok else 0)
        self._check_seconds.labels(check=name).observe(seconds)

    def node_healthy(self, healthy: bool) -> None:
        self._healthy.set(1 if healthy else 0)

    def handover(self, cause: str) -> None:
        """cause: the kind of check that made the leader hand over (worker, storage, ...)."""
        self._handovers.labels(cause=cause).inc()

    def set_workers(self, pids: Mapping[str, int]) -> None:
        """The supervisor's current workers, name -> pid.

        A pid that has left the set is a worker that exited: its share of the
        live connection gauge is dropped, its counters stay.
        """
        gone = set(self._memory.pids.values()) - set(pids.values())
        self._memory.pids = dict(pids)
        if self.worker_dir is not None:
            for pid in gone:
                mark_process_dead(pid, str(self.worker_dir))

    def worker_environment(self) -> dict[str, str]:
        """What to add to a worker's environment so its WorkerMetrics reach this page."""
        return {MULTIPROC_ENV: str(self.worker_dir)} if self.worker_dir is not None else {}

    def render(self) -> bytes:
        return generate_latest(self.registry)


class WorkerMetrics:
    """An SMB worker's counters.

    With ``$PROMETHEUS_MULTIPROC_DIR`` set (by the agent) they land in files
    the agent serves; without it (a worker run on its own) they stay in this
    process and cost next to nothing.
    """

    def __init__(self) -> None:
        r = CollectorRegistry(auto_describe=False)
        self._operations = Counter("hanode_smb_operations", "SMB2 requests handled, by command",
                                   ["command"], registry=r)
        self._bytes = Counter("hanode_smb_bytes",
                              "SMB2 message bytes by command and direction (in: from clients)",
                              ["command", "direction"], registry=r)
        self._connections = Gauge("hanode_connections", "Client TCP connections open",
                                  registry=r, multiprocess_mode="livesum")
        # The labelled children of each command, looked up once: labels() on
        # every request was a measurable part of a small request's cost.
        self._children: dict[str, tuple[Counter, Counter, Counter]] = {}

    def operation(self, command: str, received: int, sent: int) -> None:
        """One request and its response; command is its name, e.g. ``"READ"``."""
        children = self._children.get(command)
        if children is None:
            children = self._children[command] = (
                self._operations.labels(command=command),
                self._bytes.labels(command=command, direction="in"),
                self._bytes.labels(command=command, direction="out"))
        ops, bytes_in, bytes_out = children
        ops.inc()
        bytes_in.inc(received)
        bytes_out.inc(sent)

    def connection_opened(self) -> None:
        self._connections.inc()

    def connection_closed(self) -> None:
        self._connections.dec()


# --------------------------------------------------------------------------
# HTTP, sans-IO: request head in, status out; status and body in, bytes out.

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            503: "Service Unavailable"}
# /livez: the agent's trio loop turns (it answers at all); /readyz: the node is
# healthy (lease alive and every check passing), for Kubernetes probes.
PATHS = (b"/metrics", b"/livez", b"/readyz")


def target(head: bytes) -> bytes:
    """The path a request head asks for, without its query."""
    parts = head.split(b"\r\n", 1)[0].split(b" ")
    return parts[1].split(b"?", 1)[0] if len(parts) > 1 else b""


def route(head: bytes) -> int:
    """The status to answer a request head with; 200 means: serve its PATHS entry."""
    line = head.split(b"\r\n", 1)[0]
    parts = line.split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        return 400
    if target(head) not in PATHS:
        return 404
    if parts[0] != b"GET":
        return 405
    return 200


def response(status: int, body: bytes = b"", content_type: str = "text/plain; charset=utf-8") -> bytes:
    if status != 200 and not body:
        body = f"{_REASONS[status]}\n".encode()
    head = (f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
            f"Content-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n")
    return head.encode("ascii") + body


async def _read_head(stream: trio.SocketStream) -> bytes | None:
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) > MAX_REQUEST_HEAD:
            return data  # route() answers 400 or 404; the rest is not read
        chunk = await stream.receive_some(4096)
        if not chunk:
            return None
        data += chunk
    return data


async def serve(metrics: Metrics, address: str, port: int,
                unready: Callable[[], str | None] = lambda: None, *,
                task_status: trio.TaskStatus[int | None] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve ``/metrics``, ``/livez`` and ``/readyz`` until cancelled; reports the bound
    port when started, None when it cannot listen (logged, not raised).

    unready: None while the node is ready, else why not (the body of the 503).
    """

    async def handle(stream: trio.SocketStream) -> None:
        try:
            with trio.move_on_after(REQUEST_TIMEOUT):
                head = await _read_head(stream)
                if head is None:
                    return
                status = route(head)
                path = target(head)
                if status != 200:
                    await stream.send_all(response(status))
                elif path == b"/livez":
                    await stream.send_all(response(200, b"alive\n"))
                elif path == b"/readyz":
                    why = unready()
                    await stream.send_all(response(200, b"ready\n") if why is None
                                          else response(503, (why + "\n").encode()))
                else:
                    body = await trio.to_thread.run_sync(metrics.render)
                    await stream.send_all(response(200, body, CONTENT_TYPE))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            log.debug("metrics client went away: %s", exc)
        finally:
            await trio.aclose_forcefully(stream)

    try:
        listeners = await trio.open_tcp_listeners(port, host=address)
    except OSError as exc:
        # The node's real work goes on without its metrics; the log says why.
        log.error("metrics: cannot listen on %s port %d: %s; serving no metrics",
                  address, port, exc.strerror or exc)
        task_status.started(None)
        return
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(handle, listeners)
