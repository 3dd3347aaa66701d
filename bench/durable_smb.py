"""Durable opens per second over real SMB: smbprotocol clients against ``hanode smb``.

Each client is its own process (smbprotocol is synchronous) with its own
connection and session, doing CREATE+CLOSE back to back on its own file for
``--seconds``, three ways in the same run: plain (no oplock, no durability),
batch (a batch oplock, no durability: what the oplock alone costs) and
durable (DH2Q with a batch oplock, so every open's record is stored in etcd
before the CREATE is answered and deleted on CLOSE).  Prints opens/s and the
p50/p99 latency of open+close, and the CPU time per open of the server's
workers, of etcd and of the clients: on a small machine the Python clients
take much of it, and the CPU per open says what the server would do alone.

    .venv/bin/python bench/durable_smb.py                  # embedded etcd, 2 workers
    .venv/bin/python bench/durable_smb.py --clients 1,4,16 --workers 2 --seconds 5
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "smb"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import durable_client as dc  # noqa: E402  (the tests' smbprotocol client)
import harness  # noqa: E402  (starts hanode smb with a user and a share)
from smbpair import process_cpu  # noqa: E402
from smbprotocol.open import (  # noqa: E402
    CreateDisposition, CreateOptions, FileAttributes, ImpersonationLevel, Open,
    RequestedOplockLevel, ShareAccess,
)

from durable import etcd_process  # noqa: E402
from lifecycle import run_main  # noqa: E402

KINDS = ("plain", "batch", "durable")


def _open(m: dc.Mount, name: str, kind: str) -> Open:
    if kind == "durable":
        op, contexts = dc.open_durable(m, name, uuid.uuid4())
        if op.oplock_level != RequestedOplockLevel.SMB2_OPLOCK_LEVEL_BATCH or not contexts:
            raise RuntimeError("the open was not made durable")
        return op
    op = Open(m.tree, name)
    level = (RequestedOplockLevel.SMB2_OPLOCK_LEVEL_BATCH if kind == "batch"
             else RequestedOplockLevel.SMB2_OPLOCK_LEVEL_NONE)
    op.create(ImpersonationLevel.Impersonation, dc.ACCESS, FileAttributes.FILE_ATTRIBUTE_NORMAL,
              ShareAccess.FILE_SHARE_READ, CreateDisposition.FILE_OVERWRITE_IF,
              CreateOptions.FILE_NON_DIRECTORY_FILE, oplock_level=level)
    if kind == "batch" and op.oplock_level != RequestedOplockLevel.SMB2_OPLOCK_LEVEL_BATCH:
        raise RuntimeError("no batch oplock granted")
    return op


def _client(args: tuple[int, str, str, str, str, float, int]) -> tuple[list[float], float]:
    """One client process: (latencies, its own CPU seconds while opening)."""
    port, user, password, share, kind, seconds, index = args
    m = dc.mount(port, user, password, share, uuid.uuid4())
    name = f"bench-{index}-{kind}.dat"
    latencies: list[float] = []
    cpu0 = time.process_time()
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            _open(m, name, kind).close()
            latencies.append(time.perf_counter() - t0)
    finally:
        cpu = time.process_time() - cpu0
        m.conn.disconnect()
    return latencies, cpu


@dataclass(frozen=True)
class Result:
    rate: float          # opens (CREATE+CLOSE) per second, all clients together
    p50_ms: float
    p99_ms: float
    server_ms: float     # CPU ms per open: hanode smb and its workers
    etcd_ms: float       # CPU ms per open: etcd (nan for an external one)
    client_ms: float     # CPU ms per open: the smbprotocol client processes


def run(target: harness.Target, etcd_pid: int | None, clients: int, kind: str,
        seconds: float) -> Result:
    jobs = [(target.port, target.user, target.password, target.share_name, kind, seconds, i)
            for i in range(clients)]
    server = [psutil.Process(target.proc.pid)]
    server += server[0].children(recursive=True)
    etcd = [psutil.Process(etcd_pid)] if etcd_pid is not None else []
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(clients) as pool:
        s0, e0 = process_cpu(server), process_cpu(etcd)
        results = pool.map(_client, jobs)
        s1, e1 = process_cpu(server), process_cpu(etcd)
    latencies = sorted(x for lat, _ in results for x in lat)
    n = len(latencies)
    if not n:
        nan = float("nan")
        return Result(0.0, nan, nan, nan, nan, nan)
    per_open = 1000 / n
    p99 = latencies[min(n - 1, int(n * 0.99))]
    return Result(n / seconds, statistics.median(latencies) * 1000, p99 * 1000,
                  (s1 - s0) * per_open, (e1 - e0) * per_open if etcd else float("nan"),
                  sum(cpu for _, cpu in results) * per_open)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--etcd", help="etcd endpoint (default: an embedded etcd)")
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--clients", default="1,8", help="comma-separated client counts")
    parser.add_argument("--workers", type=int, default=2, help="hanode smb workers")
    args = parser.parse_args(argv)
    try:
        counts = [int(c) for c in args.clients.split(",")]
    except ValueError:
        parser.error("--clients: comma-separated integers expected")
    return run_main(lambda: _bench(args, counts))


def _bench(args: argparse.Namespace, counts: list[int]) -> int:
    with etcd_process(args.etcd) as (url, etcd_pid), \
            tempfile.TemporaryDirectory(prefix="hn-bench-") as tmp:
        target = harness.start_hanode(url, Path(tmp), workers=args.workers, log_level="warning")
        try:
            print(f"hanode smb, {args.workers} workers, etcd {url}; op = CREATE + CLOSE; "
                  f"{psutil.cpu_count()} CPUs; CPU is ms per open")
            print(f"{'clients':>7} {'kind':>7} | {'opens/s':>7} {'p50 ms':>7} {'p99 ms':>7} | "
                  f"{'server':>6} {'etcd':>6} {'client':>6}")
            for clients in counts:
                for kind in KINDS:
                    r = run(target, etcd_pid, clients, kind, args.seconds)
                    print(f"{clients:>7} {kind:>7} | {r.rate:>7.0f} {r.p50_ms:>7.2f} "
                          f"{r.p99_ms:>7.2f} | {r.server_ms:>6.2f} {r.etcd_ms:>6.2f} "
                          f"{r.client_ms:>6.2f}", flush=True)
        finally:
            harness.stop(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
