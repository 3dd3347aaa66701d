"""Health failover figures: from a fault on the leader to the VIP served by another node.

    sudo .venv/bin/python bench/health_failover.py --trials 10

A namespace lab (hanode.lab): 2 nodes, 2 SMB workers each, the share seen
by each node through its own bind mount of one directory (a FUSE passthrough,
bindfs, for the hung-storage kind, in a lab of its own), the VIP on a public
interface apart from the cluster network, default [health] settings except
the hold-down (1 s, so that trials can follow each other).
Per trial and failure kind, the fault is made on the current leader; the
clock runs from the fault to

- claimed: the first 10 ms poll that sees the VIP on the other node;
- served: the first ``smbclient //VIP/test -c ls`` that succeeds after that.

Then the fault is repaired and the old leader must report healthy again
before the next trial (it stays standby: no take-back).  Prints p50/p95/max
per kind, or JSON with --json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import time
from typing import Callable

import psutil

from hanode.lab import Lab, LabError, wait_for

POLL = 0.01
USER, PASSWORD = "bench", "Bench-pass-1"


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def healthy(lab: Lab, name: str) -> bool:
    rec = lab.read_etcd(f"nodes/{name}").get(f"nodes/{name}") or {}
    return bool((rec.get("health") or {}).get("healthy"))


def listing(lab: Lab) -> bool:
    try:
        return subprocess.run(
            ["ip", "netns", "exec", lab.client_ns, "smbclient", f"//{lab.vip_ip}/test",
             "-U", f"{USER}%{PASSWORD}", "-t", "1", "-c", "ls"],
            capture_output=True, timeout=2).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def workers(lab: Lab, name: str) -> list[int]:
    agent = lab.nodes[name].agent
    assert agent is not None
    return [c.pid for c in psutil.Process(agent.pid).children(recursive=True)
            if "smb.worker" in " ".join(c.cmdline())]


def signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


class Faults:
    """Each kind: make(leader) does the damage and returns how to repair it."""

    def __init__(self, lab: Lab):
        self.lab = lab

    def hung_workers(self, node: str) -> Callable[[], None]:
        pids = workers(self.lab, node)
        signal_all(pids, signal.SIGSTOP)
        return lambda: signal_all(pids, signal.SIGCONT)  # the supervisor has killed them

    def crash_loop(self, node: str) -> Callable[[], None]:
        config = self.lab.nodes[node].config
        good = config.read_text()
        config.write_text(good + "\n[bogus]\n")
        signal_all(workers(self.lab, node), signal.SIGKILL)
        return lambda: config.write_text(good)

    def storage_gone(self, node: str) -> Callable[[], None]:
        self.lab.unmount_share(node)
        return lambda: self.lab.remount_share(node)

    def storage_hung(self, node: str) -> Callable[[], None]:
        self.lab.hang_share(node)
        return lambda: self.lab.resume_share(node)

    def link_down(self, node: str) -> Callable[[], None]:
        self.lab.public_link(node, up=False)
        return lambda: self.lab.public_link(node, up=True)


KINDS = ("hung_workers", "crash_loop", "storage_gone", "link_down", "storage_hung")
# The kinds that need the share behind FUSE; the others use bind mounts.
FUSE_KINDS = ("storage_hung",)


def trial(lab: Lab, faults: Faults, kind: str) -> tuple[float, float]:
    leader = wait_for(lab.sole_holder, 15, "a sole holder")
    other = next(n for n in lab.nodes if n != leader)
    wait_for(lambda: healthy(lab, leader) and healthy(lab, other), 60, "both nodes healthy",
             interval=0.1)
    time.sleep(1.2)  # the hold-down since the last claim
    start = time.monotonic()
    repair = getattr(faults, kind)(leader)
    try:
        wait_for(lambda: lab.holders() == [other], 20, f"{other} holding the VIP", interval=POLL)
        claimed = time.monotonic() - start
        wait_for(lambda: listing(lab), 20, "a listing through the VIP", interval=0)
        served = time.monotonic() - start
    finally:
        repair()
    return claimed, served


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    kinds = [k for k in args.kinds.split(",") if k]
    if unknown := set(kinds) - set(KINDS):
        parser.error(f"unknown kinds: {', '.join(sorted(unknown))}")
    results: dict[str, dict[str, list[float]]] = {}
    try:
        for mounts in ("bind", "bindfs"):
            group = [k for k in kinds if (k in FUSE_KINDS) == (mounts == "bindfs")]
            if not group:
                continue
            with Lab(2, workers=2, share_mounts=mounts, public_net=True,
                     extra_config="\n[health]\nhold_down = 1\n") as lab:
                lab.add_user(USER, PASSWORD)
                lab.start_agents()
                faults = Faults(lab)
                for kind in group:
                    claimed, served = [], []
                    for _ in range(args.trials):
                        c, s = trial(lab, faults, kind)
                        claimed.append(c)
                        served.append(s)
                        if not args.json:
                            print(f"{kind}: claimed {c:.2f} s, served {s:.2f} s", flush=True)
                    results[kind] = {"claimed": claimed, "served": served}
    except LabError as exc:
        print(f"health_failover: {exc}", file=sys.stderr)
        return 1
    summary = {kind: {what: {"p50": percentile(v, 50), "p95": percentile(v, 95), "max": max(v)}
                      for what, v in r.items()} for kind, r in results.items()}
    if args.json:
        print(json.dumps({"trials": args.trials, "results": results, "summary": summary}))
        return 0
    print(f"\n{'kind':<14} {'claimed p50/p95/max (s)':<26} served p50/p95/max (s)")
    for kind, s in summary.items():
        c, v = s["claimed"], s["served"]
        print(f"{kind:<14} {c['p50']:.2f} / {c['p95']:.2f} / {c['max']:.2f}{'':<8} "
              f"{v['p50']:.2f} / {v['p95']:.2f} / {v['max']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
