"""Failover figures: how long until the VIP is claimed and the idle client is reset.

    sudo .venv/bin/python bench/failover.py --trials 5

Runs one namespace lab (hanode.lab) and, per trial, once a hard death (cable
pulled, every process SIGKILLed; the node is then rebooted) and once a SIGTERM
to the leader (then restarted).  Times count from the fault to the first 10 ms
poll that sees the VIP on a survivor, and to the client seeing its idle TCP
connection reset.  Prints p50/p95/max per scenario.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

from hanode.lab import Lab, LabError, wait_for

POLL = 0.01


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def settle(lab: Lab) -> str:
    """Wait until one node holds the VIP and every node's record is in etcd; the leader."""
    leader = wait_for(lab.sole_holder, 15, "a sole holder")
    wait_for(lambda: len(lab.read_etcd("nodes/")) == len(lab.nodes), 15, "every node record")
    return leader


def trial(lab: Lab, kind: str) -> tuple[float, float]:
    leader = settle(lab)
    survivors = [n for n in lab.nodes if n != leader]
    client = lab.hold_connection()
    try:
        start = time.monotonic()
        if kind == "hard":
            lab.kill_node(leader)
        else:
            lab.terminate_agent(leader)
        wait_for(lambda: any(lab.holds_vip(n) for n in survivors), 10, "a new holder",
                 interval=POLL)
        claimed = time.monotonic() - start
        reset = client.wait_reset(10) - start
    finally:
        client.close()
    if kind == "hard":
        lab.reboot_node(leader)
    else:
        lab.nodes[leader].agent.wait(timeout=5)
        lab.start_agent(leader)
    return claimed, reset


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5, help="trials per scenario")
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--ttl", type=int, default=2, help="cluster.lease_ttl")
    args = parser.parse_args()
    results: dict[str, dict[str, list[float]]] = {}
    try:
        with Lab(args.nodes, lease_ttl=args.ttl) as lab:
            lab.start_agents()
            for i in range(args.trials):
                for kind in ("hard", "sigterm"):
                    claimed, reset = trial(lab, kind)
                    got = results.setdefault(kind, {"VIP claimed": [], "client reset": []})
                    got["VIP claimed"].append(claimed)
                    got["client reset"].append(reset)
                    print(f"trial {i + 1} {kind:8} claimed {claimed:6.3f}s  reset {reset:6.3f}s",
                          file=sys.stderr)
    except LabError as exc:
        print(f"failover: {exc}", file=sys.stderr)
        return 1
    names = {"hard": "hard death", "sigterm": "SIGTERM"}
    print(f"\nlease_ttl {args.ttl} s, {args.nodes} nodes, {args.trials} trials per scenario")
    print(f"{'scenario':12} {'measure':13} {'p50':>7} {'p95':>7} {'max':>7}")
    for kind, measures in results.items():
        for measure, values in measures.items():
            print(f"{names[kind]:12} {measure:13} {percentile(values, 50):6.3f}s "
                  f"{percentile(values, 95):6.3f}s {max(values):6.3f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
