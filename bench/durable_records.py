"""Durable-record writes per second: the batched writer against one etcd put per record.

Every durable grant must be in etcd before the CREATE response leaves, so
the write rate bounds the durable opens a node can serve.  This measures, for
1 and several concurrent openers, the rate and latency of "open" (store a
record) plus "close" (delete it) through DurableWriter, against a plain put
and delete per record, and prints the ratio.

    .venv/bin/python bench/durable_records.py              # embedded etcd in a temp dir
    .venv/bin/python bench/durable_records.py --etcd http://127.0.0.1:2379 --seconds 5

Against --etcd, everything is written under /hanode/bench-<random>/ and
removed afterwards.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from typing import Awaitable, Callable, Iterator

import trio

from hanode import embedded_etcd
from hanode.store import Store
from smb.durable import DurableRecord, DurableWriter, EtcdDurableStore, new_persistent_id
from smb.oplocks import OPLOCK_BATCH

from lifecycle import run_main


def make_record(worker: str) -> DurableRecord:
    pid = new_persistent_id()
    return DurableRecord(
        persistent_id=pid, version=2, create_guid=uuid.uuid4().bytes,
        client_guid=b"\xc1" * 16, owner="bench", share="test", path=f"dir/{pid:016x}.dat",
        desired_access=0x12019F, share_access=7, create_options=0x40,
        oplock_level=OPLOCK_BATCH, lease=None, timeout_ms=60_000, worker=worker)


Op = Callable[[DurableRecord], Awaitable[None]]


async def run_load(open_op: Op, close_op: Op, worker: str, clients: int,
                   seconds: float) -> tuple[int, list[float], float]:
    """clients tasks doing open+close back to back for ``seconds``;
    (ops, latencies, this process's CPU seconds: the etcd client's cost)."""
    latencies: list[float] = []
    cpu0 = time.process_time()
    deadline = trio.current_time() + seconds

    async def client() -> None:
        while trio.current_time() < deadline:
            rec = make_record(worker)
            t0 = time.perf_counter()
            await open_op(rec)
            await close_op(rec)
            latencies.append(time.perf_counter() - t0)

    async with trio.open_nursery() as nursery:
        for _ in range(clients):
            nursery.start_soon(client)
    return len(latencies), latencies, time.process_time() - cpu0


async def measure(store: Store, clients: int,
                  seconds: float) -> dict[str, tuple[float, float, float, float]]:
    worker = store.worker_key("bench", "w0")
    limiter = trio.CapacityLimiter(max(clients, 1))

    async def plain_open(rec: DurableRecord) -> None:
        await trio.to_thread.run_sync(store.put, store.durable_key(rec.persistent_id),
                                      rec.to_json(), limiter=limiter)

    async def plain_close(rec: DurableRecord) -> None:
        await trio.to_thread.run_sync(store.delete, store.durable_key(rec.persistent_id),
                                      limiter=limiter)

    results = {}
    results["plain"] = _summary(*await run_load(plain_open, plain_close, worker, clients,
                                                seconds), seconds)

    writer = DurableWriter(EtcdDurableStore(store))

    async def batched_close(rec: DurableRecord) -> None:
        writer.discard(rec.persistent_id)  # as CLOSE does: rides in the next put's round

    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        results["batched"] = _summary(*await run_load(writer.put, batched_close, worker,
                                                      clients, seconds), seconds)
        nursery.cancel_scope.cancel()
    return results


def _summary(n: int, latencies: list[float], cpu: float,
             seconds: float) -> tuple[float, float, float, float]:
    """(ops/s, p50 ms, p99 ms, client CPU ms per op)."""
    if not latencies:
        return 0.0, float("nan"), float("nan"), float("nan")
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return n / seconds, statistics.median(ordered) * 1000, p99 * 1000, cpu * 1000 / n


@contextmanager
def etcd_endpoint(url: str | None) -> Iterator[str]:
    with etcd_process(url) as (endpoint, _):
        yield endpoint


@contextmanager
def etcd_process(url: str | None) -> Iterator[tuple[str, int | None]]:
    """An etcd to bench against, and its pid when it is the embedded one (whose CPU
    the SMB bench counts); an external --etcd has no pid here."""
    if url:
        yield url, None
        return
    with tempfile.TemporaryDirectory(prefix="hanode-bench-") as tmp:
        client = f"http://127.0.0.1:{embedded_etcd.free_port()}"
        peer = f"http://127.0.0.1:{embedded_etcd.free_port()}"
        proc = embedded_etcd.start(tmp, client, peer, log_path=f"{tmp}/etcd.log")
        try:
            yield client, proc.pid
        finally:
            embedded_etcd.stop(proc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--etcd", help="etcd endpoint (default: an embedded etcd)")
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--clients", default="1,8,64",
                        help="comma-separated numbers of concurrent openers")
    args = parser.parse_args(argv)
    try:
        counts = [int(c) for c in args.clients.split(",")]
    except ValueError:
        parser.error("--clients: comma-separated integers expected")

    return run_main(lambda: _bench(args.etcd, counts, args.seconds))


def _bench(etcd: str | None, counts: list[int], seconds: float) -> int:
    with etcd_endpoint(etcd) as url:
        store = Store([url], f"bench-{uuid.uuid4().hex[:8]}", timeout=5.0)
        try:
            print(f"etcd {url}; each op = store a durable record + delete it (open + close)")
            print("plain: a put and a delete per record; batched: DurableWriter.put, and "
                  "discard as CLOSE does; cpu = this process's CPU ms per op")
            print(f"{'clients':>7} | {'plain ops/s':>11} {'p50 ms':>7} {'p99 ms':>7} {'cpu':>5} | "
                  f"{'batched ops/s':>13} {'p50 ms':>7} {'p99 ms':>7} {'cpu':>5} | {'ratio':>6}")
            for clients in counts:
                r = trio.run(measure, store, clients, seconds)
                (pr, p50, p99, pc), (br, b50, b99, bc) = r["plain"], r["batched"]
                ratio = br / pr if pr else float("inf")
                print(f"{clients:>7} | {pr:>11.0f} {p50:>7.2f} {p99:>7.2f} {pc:>5.2f} | "
                      f"{br:>13.0f} {b50:>7.2f} {b99:>7.2f} {bc:>5.2f} | {ratio:>5.1f}x",
                      flush=True)
        finally:
            store.delete_prefix(store.prefix)
            store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
