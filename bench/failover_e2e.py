"""End-to-end failover figures: how long a file copy stalls when its node goes.

    sudo .venv/bin/python bench/failover_e2e.py --trials 20 --size 16M

Each trial is one ``hanode demo --json`` run (a fresh namespace lab, one
client copying with a durable handle) in each mode: hard death, graceful stop,
switchover, partition from etcd, and (``--modes rolling``, not by default: a
minute per trial) the Ansible handler's rolling restart, whose stall is also
given per step.  The stall is the client's longest wait for
a write to be acknowledged; the copied bytes are compared every time.  Prints,
per mode, p50/p95/max stall, how many trials reclaimed the durable handle,
and how many copies did not match (the goal is none).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from soak import policy  # bench/soak.py: --sched's syntax

MODES = ("hard", "graceful", "switchover", "partition")
# The agents' and etcd's Nice= in their units (deploy/).
UNIT_NICE = -10


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def trial(kill: str, size: str, nodes: int, lease_ttl: int, reconnect: str,
          logs: Path | None, sched: tuple[int, int]) -> dict:
    """One demo run; with logs, its lab's logs are kept there if the trial failed.
    The lab runs at sched (policy, priority) and nice -10, as the units run the
    agents and etcd (the agents put their SMB workers back to the default)."""
    def unit_priority() -> None:
        os.setpriority(os.PRIO_PROCESS, 0, UNIT_NICE)
        os.sched_setscheduler(0, sched[0], os.sched_param(sched[1]))

    proc = subprocess.run(
        [sys.executable, "-m", "hanode.cli", "demo", "--json", "--clients", "1",
         "--nodes", str(nodes), "--size", size, "--kill", kill,
         "--lease-ttl", str(lease_ttl), "--reconnect", reconnect,
         *(["--logs", str(logs)] if logs else [])],
        capture_output=True, text=True, timeout=300, preexec_fn=unit_priority)
    try:
        res = json.loads(proc.stdout)
    except ValueError:
        res = {"ok": False, "error": proc.stderr.strip().splitlines()[-1:]}
    if logs is not None:
        if res.get("ok"):
            shutil.rmtree(logs, ignore_errors=True)
        else:
            res["logs"] = str(logs)
    return res


def print_steps(steps: list[dict]) -> None:
    """A rolling restart's stalls per step, the leader's (switchover, then restart)
    apart from the standbys' (restart only), and how long a node took to be a
    healthy standby again."""
    for leader, what in ((True, "leader"), (False, "standby")):
        stalls = [s["stall_seconds"] for s in steps if s["leader"] is leader]
        back = [s["rejoined_after"] for s in steps
                if s["leader"] is leader and s["rejoined_after"] is not None]
        if stalls:
            print(f"#   restart of a {what:7}: {len(stalls):2d} steps, stall p50 "
                  f"{percentile(stalls, 50):.3f} s p95 {percentile(stalls, 95):.3f} s "
                  f"max {max(stalls):.3f} s; healthy standby again after p50 "
                  + (f"{percentile(back, 50):.1f} s max {max(back):.1f} s" if back else "-"),
                  flush=True)


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages, as /proc/loadavg gives them."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def cause(r: dict) -> str:
    """Why a trial failed, in one line: the step that went wrong and its status."""
    if r.get("error"):
        return f"lab: {r['error']}"
    why = []
    if not r.get("node_to") or r.get("node_to") == r.get("node_from"):
        why.append("no other node took the VIP")
    for c in r.get("clients", []):
        if c.get("error"):
            why.append(f"{c['name']} error: {c['error']}")
        if not c.get("reconnected"):
            why.append(f"{c['name']} never reconnected")
        if not c.get("reclaimed"):
            reopen = next((p for p in r.get("phases", []) if p.get("client") == c["name"]
                           and "could NOT reclaim" in p["event"]), None)
            why.append(f"{c['name']} not reclaimed" + (
                f": reopened at +{reopen['at']} s: {reopen['event']}" if reopen else ""))
        if not c.get("completed"):
            why.append(f"{c['name']} copy incomplete")
        elif not c.get("sha256_match"):
            why.append(f"{c['name']} copy differs")
    switch = r.get("switchover")
    if switch and switch.get("exit"):
        why.append(f"switchover exit {switch['exit']}: {switch.get('output', '')[-200:]}")
    timeline = "; ".join(f"+{p['at']} {p['event']}" for p in r.get("phases", []))
    return "; ".join(why or ["?"]) + (f" | {timeline}" if timeline else "") + (
        f" | logs {r['logs']}" if r.get("logs") else "")


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
    p.add_argument("--logs", type=Path,
                   help="keep the logs of each failed trial under this directory")
    p.add_argument("--sched", default="rr:10",
                   help="CPU policy of the lab (etcd, agents, client): rr:N, fifo:N or other "
                        "(default rr:10, as the units run the agents and etcd)")
    args = p.parse_args()
    try:
        sched = policy(args.sched)
    except ValueError as exc:
        p.error(f"--sched: {exc}")
    print(f"# lease TTL {args.lease_ttl} s, sched {args.sched}, reconnect {args.reconnect}, "
          f"load average {loadavg()}", flush=True)
    print(f"{'MODE':11} {'N':>3} {'P50':>7} {'P95':>7} {'MAX':>7} {'RECLAIMED':>9} "
          f"{'MISMATCH':>8} {'FAILED':>6}", flush=True)
    all_matched = True
    for kill in args.modes.split(","):
        results = [trial(kill, args.size, args.nodes, args.lease_ttl, args.reconnect,
                         args.logs / f"{kill}-{int(time.time())}-{i}" if args.logs else None,
                         sched)
                   for i in range(args.trials)]
        stalls = [r["stall_seconds"] for r in results if r.get("stall_seconds") is not None]
        # A copy that did not finish counts as a mismatch: its bytes are not all there.
        mismatched = sum(1 for r in results if not r.get("sha256_match"))
        reclaimed = sum(1 for r in results
                        if r.get("clients") and all(c["reclaimed"] for c in r["clients"]))
        failed = sum(1 for r in results if not r.get("ok"))
        all_matched = all_matched and mismatched == 0
        figures = (f"{percentile(stalls, 50):6.3f}s {percentile(stalls, 95):6.3f}s "
                   f"{max(stalls):6.3f}s" if stalls else f"{'-':>7} {'-':>7} {'-':>7}")
        print(f"{kill:11} {len(results):3d} {figures} {reclaimed:9d} {mismatched:8d} {failed:6d}"
              f"   (load average now {loadavg()})", flush=True)
        before = [r["stall_before_kill_seconds"] for r in results
                  if r.get("stall_before_kill_seconds") is not None]
        if before:
            print(f"#   longest stall before the kill (the load alone): p50 "
                  f"{percentile(before, 50):.3f} s max {max(before):.3f} s", flush=True)
        if kill == "rolling":
            print_steps([step for r in results for step in r.get("steps", [])])
        for i, r in enumerate(results):
            if not r.get("ok"):  # why, in one line per trial
                print(f"#   {kill} trial {i + 1} failed: {cause(r)}", flush=True)
    return 0 if all_matched else 1


if __name__ == "__main__":
    sys.exit(main())
