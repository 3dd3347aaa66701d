"""Durable opens per second over real SMB: smbprotocol clients against ``hanode smb``.

Each client is its own process (smbprotocol is synchronous) with its own
connection and session, doing CREATE+CLOSE back to back on its own file for
``--seconds``: once plain (no oplock, no durability) and once durable (DH2Q
with a batch oplock, so every open's record is stored in etcd before the
CREATE is answered and deleted on CLOSE).  Prints opens/s and the p50/p99
latency of open+close for 1 and several clients.

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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "smb"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import durable_client as dc  # noqa: E402  (the tests' smbprotocol client)
import harness  # noqa: E402  (starts hanode smb with a user and a share)
from smbprotocol.open import (  # noqa: E402
    CreateDisposition, CreateOptions, FileAttributes, ImpersonationLevel, Open,
    RequestedOplockLevel, ShareAccess,
)

from durable import etcd_endpoint  # noqa: E402
from lifecycle import run_main  # noqa: E402


def _client(args: tuple[int, str, str, str, bool, float, int]) -> tuple[int, list[float]]:
    port, user, password, share, durable, seconds, index = args
    m = dc.mount(port, user, password, share, uuid.uuid4())
    name = f"bench-{index}-{'d' if durable else 'p'}.dat"
    latencies: list[float] = []
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            if durable:
                op, contexts = dc.open_durable(m, name, uuid.uuid4())
                if op.oplock_level != RequestedOplockLevel.SMB2_OPLOCK_LEVEL_BATCH or \
                        not contexts:
                    raise RuntimeError("the open was not made durable")
            else:
                op = Open(m.tree, name)
                op.create(ImpersonationLevel.Impersonation, dc.ACCESS,
                          FileAttributes.FILE_ATTRIBUTE_NORMAL, ShareAccess.FILE_SHARE_READ,
                          CreateDisposition.FILE_OVERWRITE_IF,
                          CreateOptions.FILE_NON_DIRECTORY_FILE)
            op.close()
            latencies.append(time.perf_counter() - t0)
    finally:
        m.conn.disconnect()
    return len(latencies), latencies


def run(target: harness.Target, clients: int, durable: bool,
        seconds: float) -> tuple[float, float, float]:
    jobs = [(target.port, target.user, target.password, target.share_name, durable, seconds, i)
            for i in range(clients)]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(clients) as pool:
        results = pool.map(_client, jobs)
    latencies = sorted(x for _, lat in results for x in lat)
    n = sum(c for c, _ in results)
    if not latencies:
        return 0.0, float("nan"), float("nan")
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return n / seconds, statistics.median(latencies) * 1000, p99 * 1000


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
    with etcd_endpoint(args.etcd) as url, tempfile.TemporaryDirectory(prefix="hn-bench-") as tmp:
        target = harness.start_hanode(url, Path(tmp), workers=args.workers, log_level="warning")
        try:
            print(f"hanode smb, {args.workers} workers, etcd {url}; op = CREATE + CLOSE")
            print(f"{'clients':>7} | {'plain opens/s':>13} {'p50 ms':>7} {'p99 ms':>7} | "
                  f"{'durable opens/s':>15} {'p50 ms':>7} {'p99 ms':>7}")
            for clients in counts:
                pr, p50, p99 = run(target, clients, False, args.seconds)
                dr, d50, d99 = run(target, clients, True, args.seconds)
                print(f"{clients:>7} | {pr:>13.0f} {p50:>7.2f} {p99:>7.2f} | "
                      f"{dr:>15.0f} {d50:>7.2f} {d99:>7.2f}", flush=True)
        finally:
            harness.stop(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
