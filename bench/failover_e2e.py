"""End-to-end failover figures: how long a file copy stalls when its node goes.

    sudo .venv/bin/python bench/failover_e2e.py --trials 20 --size 16M

Each trial is one ``hanode demo --json`` run (a fresh namespace lab, one
client copying with a durable handle) in each mode: hard death, graceful stop,
switchover, partition from etcd.  The stall is the client's longest wait for
a write to be acknowledged; the copied bytes are compared every time.  Prints,
per mode, p50/p95/max stall, how many trials reclaimed the durable handle,
and how many copies did not match (the goal is none).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys

MODES = ("hard", "graceful", "switchover", "partition")


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def trial(kill: str, size: str, nodes: int, lease_ttl: int, reconnect: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "hanode.cli", "demo", "--json", "--clients", "1",
         "--nodes", str(nodes), "--size", size, "--kill", kill,
         "--lease-ttl", str(lease_ttl), "--reconnect", reconnect],
        capture_output=True, text=True, timeout=300)
    try:
        return json.loads(proc.stdout)
    except ValueError:
        return {"ok": False, "error": proc.stderr.strip().splitlines()[-1:]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--size", default="16M")
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--lease-ttl", type=int, default=2, help="cluster.lease_ttl of the nodes")
    p.add_argument("--reconnect", choices=["eager", "kernel"], default="eager",
                   help="kernel: the client reconnects as the Linux kernel does (one connect, "
                        "the kernel's SYN retransmission) instead of retrying from 50 ms up")
    args = p.parse_args()
    print(f"{'MODE':11} {'N':>3} {'P50':>7} {'P95':>7} {'MAX':>7} {'RECLAIMED':>9} "
          f"{'MISMATCH':>8} {'FAILED':>6}", flush=True)
    all_matched = True
    for kill in args.modes.split(","):
        results = [trial(kill, args.size, args.nodes, args.lease_ttl, args.reconnect)
                   for _ in range(args.trials)]
        stalls = [r["stall_seconds"] for r in results if r.get("stall_seconds") is not None]
        # A copy that did not finish counts as a mismatch: its bytes are not all there.
        mismatched = sum(1 for r in results if not r.get("sha256_match"))
        reclaimed = sum(1 for r in results
                        if r.get("clients") and all(c["reclaimed"] for c in r["clients"]))
        failed = sum(1 for r in results if not r.get("ok"))
        all_matched = all_matched and mismatched == 0
        figures = (f"{percentile(stalls, 50):6.3f}s {percentile(stalls, 95):6.3f}s "
                   f"{max(stalls):6.3f}s" if stalls else f"{'-':>7} {'-':>7} {'-':>7}")
        print(f"{kill:11} {len(results):3d} {figures} {reclaimed:9d} {mismatched:8d} {failed:6d}",
              flush=True)
        for r in results:
            if not r.get("ok"):  # why, in one line per trial
                why = r.get("error") or [c.get("error") for c in r.get("clients", [])] or \
                    r.get("switchover")
                print(f"#   {kill} failed: {why}", flush=True)
    return 0 if all_matched else 1


if __name__ == "__main__":
    sys.exit(main())
