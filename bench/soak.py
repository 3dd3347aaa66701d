"""Soak: does a 3-node cluster with 1 s leases keep its leader on a busy machine?

    sudo .venv/bin/python bench/soak.py --duration 600

A namespace lab (hanode.lab: three agents with SMB workers, etcd in its own
namespace) runs with ``cluster.lease_ttl = 1``, etcd and the agents at the
CPU priority their systemd units give them (``--sched``, default ``rr:10``:
SCHED_RR priority 10, and ``--nice``, default -10), while
other processes at the default priority keep the machine busy: one busy loop per core at normal priority, a writer that
writes and fsyncs a file on the disk etcd's WAL lives on, and (``--copy``)
an smbclient copying files through the VIP.  Nothing is supposed to happen:
the first leader should still lead at the end.

Counted from etcd (a watcher polls the leader key every 0.1 s from the
client namespace), from the agents' logs and from their /metrics: leader
changes, self-fencing (the leader letting go for want of a keepalive), lost
leases, etcd unreachable, event-loop stalls, keepalive round trips (p99 from
the histogram's buckets, max exact), and the VIP holders sampled every
second.  Prints a summary (``--json`` for one JSON object) and exits 1 on
any false failover: a leader change, a fence, a takeover after the first,
or a moment with no or two VIP holders.

Run as ``bench/soak.py watch URL CLUSTER`` it is the watcher itself.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from hanode.lab import Lab

WATCH_INTERVAL = 0.1
SAMPLE_INTERVAL = 1.0
METRICS_PORT = 9464
USER, PASSWORD = "soak", "soak-Pass1"

# What the agents' logs say when something that must not happen happens.
LOG_EVENTS = {
    "fenced": re.compile(r": fenced \(term"),
    "lease_expired": re.compile(r"lease \w+ expired in etcd"),
    "etcd_unreachable": re.compile(r"etcd unreachable"),
    "vip_released": re.compile(r"VIP released"),
    "health_handover": re.compile(r"handing over to"),
    "loop_stalls": re.compile(r"event loop stalled"),
}

CPU_HOG = "while True: pass"
# Writes 16 MiB and fsyncs it, then 64 small writes each fsynced (a database's
# pattern), over and over: the journal etcd's WAL fsyncs must queue behind.
DISK_HOG = """
import os, sys
path, big = sys.argv[1], os.urandom(1 << 20)
while True:
    with open(path, "wb") as f:
        for _ in range(16):
            f.write(big)
        os.fsync(f.fileno())
        for _ in range(64):
            f.write(big[:4096])
            os.fsync(f.fileno())
"""
SCRAPE = """
import sys, urllib.request
with urllib.request.urlopen(f"http://{sys.argv[1]}:%d/metrics", timeout=5) as r:
    sys.stdout.write(r.read().decode())
""" % METRICS_PORT


def watch(url: str, cluster: str) -> int:
    """Print one JSON line per change of the leader key (node, term) or of etcd's
    reachability, until killed."""
    from hanode.store import Store, StoreUnavailable
    store = Store([url], cluster)
    last: object = ()
    while True:
        started = time.monotonic()
        try:
            entry = store.get(store.leader_key)
            seen: object = (None if entry is None else
                            (entry.value.get("node") if isinstance(entry.value, dict) else "?",
                             entry.create_revision))
        except StoreUnavailable as exc:
            seen = ("error", str(exc))
        if seen != last:
            line = ({"t": started, "leader": None} if seen is None else
                    {"t": started, "error": seen[1]} if seen[0] == "error" else
                    {"t": started, "leader": seen[0], "term": seen[1]})
            print(json.dumps(line), flush=True)
            last = seen
        time.sleep(max(0.0, started + WATCH_INTERVAL - time.monotonic()))


def leader_sequence(seen: list[dict]) -> list[tuple[str | None, int | None]]:
    """The watcher's leader readings, (node, term) or (None, None) for no leader,
    without read errors and without repeats: a change of term is a new leader."""
    out: list[tuple[str | None, int | None]] = []
    for s in seen:
        if "error" in s:
            continue
        reading = (s.get("leader"), s.get("term"))
        if not out or out[-1] != reading:
            out.append(reading)
    return out


def bucket_quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """The upper bound of the histogram bucket holding quantile q: cumulative
    (bound, count) pairs, +Inf last.  None for an empty histogram."""
    total = buckets[-1][1] if buckets else 0
    if total == 0:
        return None
    rank = math.ceil(q * total)
    return next(bound for bound, count in buckets if count >= rank)


def scrape(lab: Lab, name: str) -> dict[str, object]:
    """The node's keepalive and loop-lag figures from its /metrics."""
    proc = lab.popen(lab.client_ns, "-c", SCRAPE, lab.nodes[name].ip)
    text, _ = proc.communicate(timeout=15)
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(text) for s in f.samples}

    def buckets(metric: str) -> list[tuple[float, float]]:
        found = [(float(dict(labels)["le"]), value) for (n, labels), value in samples.items()
                 if n == metric + "_bucket"]
        return sorted(found)

    return {
        "keepalives": samples.get(("hanode_lease_keepalive_seconds_count", ()), 0),
        "keepalive_buckets": buckets("hanode_lease_keepalive_seconds"),
        "keepalive_max": samples.get(("hanode_lease_keepalive_max_seconds", ()), 0.0),
        "lag_buckets": buckets("hanode_event_loop_lag_seconds"),
        "lag_max": samples.get(("hanode_event_loop_lag_max_seconds", ()), 0.0),
        "takeovers": samples.get(("hanode_takeovers_total", ()), 0),
    }


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def merged(per_node: list[list[tuple[float, float]]]) -> list[tuple[float, float]]:
    """The sum of several nodes' cumulative buckets (same bounds)."""
    if not per_node:
        return []
    return [(bound, sum(b[i][1] for b in per_node)) for i, (bound, _) in enumerate(per_node[0])]


def ordinary() -> None:
    """In a load process before exec: the default policy and priority, whatever the
    soak runs at."""
    os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    os.setpriority(os.PRIO_PROCESS, 0, 0)


def policy(text: str) -> tuple[int, int]:
    """``rr:N``, ``fifo:N`` or ``other``: (policy, priority) for os.sched_setscheduler."""
    name, _, prio = text.partition(":")
    policies = {"rr": os.SCHED_RR, "fifo": os.SCHED_FIFO, "other": os.SCHED_OTHER}
    if name not in policies or (name == "other") != (prio == ""):
        raise ValueError(f"{text!r}: expected rr:N, fifo:N or other")
    try:
        return policies[name], int(prio or 0)
    except ValueError:
        raise ValueError(f"{text!r}: the priority is not a number") from None


def start_load(lab: Lab, cpu_hogs: int, disk: bool, copy: bool) -> list[subprocess.Popen]:
    procs = [subprocess.Popen([sys.executable, "-c", CPU_HOG], preexec_fn=ordinary)
             for _ in range(cpu_hogs)]
    if disk:
        # In the lab's workdir: the same file system as etcd's data directory.
        procs.append(subprocess.Popen([sys.executable, "-c", DISK_HOG,
                                       str(lab.workdir / "disk-hog.bin")], preexec_fn=ordinary))
    if copy:
        src = lab.workdir / "copy-src.bin"
        src.write_bytes(os.urandom(8 << 20))
        loop = (f"while true; do smbclient //{lab.vip_ip}/test -U {USER}%{PASSWORD} "
                f"-m SMB3 -c 'put {src} soak.bin; get soak.bin /dev/null' "
                f">>{lab.workdir / 'copy.log'} 2>&1; done")
        procs.append(subprocess.Popen(["ip", "netns", "exec", lab.client_ns, "sh", "-c", loop],
                                      start_new_session=True, preexec_fn=ordinary))
    return procs


def stop(procs: list[subprocess.Popen]) -> None:
    """Kill the load; the copy loop with its smbclient (its own session)."""
    for proc in procs:
        if proc.poll() is None:
            try:
                if proc.args[0] == "ip":
                    os.killpg(proc.pid, signal.SIGKILL)
                else:
                    proc.kill()
            except ProcessLookupError:
                pass
        proc.wait()


def soak(args: argparse.Namespace) -> dict[str, object]:
    # The lab's agents and etcd inherit this policy and priority, as systemd
    # gives them (CPUSchedulingPolicy= and Nice= of
    # deploy/systemd/hanode-agent.service and of the Ansible etcd drop-in); the
    # agents put their SMB workers back to the default.
    os.setpriority(os.PRIO_PROCESS, 0, args.nice)
    os.sched_setscheduler(0, args.policy[0], os.sched_param(args.policy[1]))
    with Lab(3, lease_ttl=1, workers=args.workers, workdir=args.workdir) as lab:
        first = lab.start_agents()
        if args.copy:
            lab.add_user(USER, PASSWORD)
        watcher = lab.popen(lab.client_ns, os.path.abspath(__file__), "watch",
                            lab.etcd_url, lab.cluster)
        load = start_load(lab, args.cpu_hogs, args.disk, args.copy)
        loads: list[float] = []
        holder_faults = 0
        try:
            end = time.monotonic() + args.duration
            while (now := time.monotonic()) < end:
                holders = lab.holders()
                if len(holders) != 1:
                    holder_faults += 1
                    print(f"  {args.duration - (end - now):6.1f}s VIP holders: {holders}",
                          file=sys.stderr, flush=True)
                loads.append(float(Path("/proc/loadavg").read_text().split()[0]))
                time.sleep(max(0.0, now + SAMPLE_INTERVAL - time.monotonic()))
        finally:
            stop(load)
        figures = {name: scrape(lab, name) for name in lab.nodes}
        cpu = {name: cpu_seconds(node.agent.pid) for name, node in lab.nodes.items()
               if node.agent is not None}
        watcher.terminate()
        out, _ = watcher.communicate(timeout=10)
        seen = [json.loads(line) for line in out.splitlines() if line.strip()]
        leaders = leader_sequence(seen)
        logs = "".join(node.log.read_text(errors="replace") for node in lab.nodes.values())
        events = {k: len(p.findall(logs)) for k, p in LOG_EVENTS.items()}
        keepalive = merged([f["keepalive_buckets"] for f in figures.values()])
        lag = merged([f["lag_buckets"] for f in figures.values()])
        return {
            "duration_s": args.duration,
            "nodes": len(lab.nodes),
            "lease_ttl_s": 1,
            "load": {"cpu_hogs": args.cpu_hogs, "disk": args.disk, "copy": args.copy},
            "nice": args.nice,
            "sched": args.sched,
            "loadavg_1m_mean": round(sum(loads) / len(loads), 2) if loads else None,
            "loadavg_1m_max": max(loads, default=None),
            "first_leader": first,
            "leader_changes": max(0, len(leaders) - 1),
            "leader_seen": seen,
            "etcd_read_errors": sum(1 for s in seen if "error" in s),
            "takeovers": sum(f["takeovers"] for f in figures.values()),
            "vip_holder_faults": holder_faults,
            "log_events": events,
            "keepalives": sum(f["keepalives"] for f in figures.values()),
            "keepalive_p99_le_s": bucket_quantile(keepalive, 0.99),
            "keepalive_max_s": round(max(f["keepalive_max"] for f in figures.values()), 4),
            "loop_lag_p99_le_s": bucket_quantile(lag, 0.99),
            "loop_lag_max_s": round(max(f["lag_max"] for f in figures.values()), 4),
            "per_node": {n: {"agent_cpu_s": round(cpu.get(n, 0.0), 1),
                             "keepalive_max_s": round(f["keepalive_max"], 4),
                             "loop_lag_max_s": round(f["lag_max"], 4)}
                         for n, f in figures.items()},
        }


def false_failovers(r: dict) -> int:
    events = r["log_events"]
    return (r["leader_changes"] + events["fenced"] + events["lease_expired"]
            + events["health_handover"] + max(0, r["takeovers"] - 1) + r["vip_holder_faults"])


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "watch":
        return watch(sys.argv[2], sys.argv[3])
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=600.0, help="seconds (default 600)")
    p.add_argument("--workers", type=int, default=1, help="SMB workers per node")
    p.add_argument("--cpu-hogs", type=int, default=os.cpu_count() or 2,
                   help="busy loops at normal priority (default: one per core)")
    p.add_argument("--no-disk", dest="disk", action="store_false",
                   help="no fsync writer on etcd's disk")
    p.add_argument("--copy", action="store_true", help="an smbclient copying through the VIP")
    p.add_argument("--nice", type=int, default=-10,
                   help="CPU priority of etcd and the agents (default -10, as the units set it)")
    p.add_argument("--sched", default="rr:10",
                   help="CPU policy of etcd and the agents: rr:N, fifo:N or other "
                        "(default rr:10, as the units set it)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--workdir", type=Path, help="keep the lab's files (logs) here")
    args = p.parse_args()
    try:
        args.policy = policy(args.sched)
    except ValueError as exc:
        p.error(f"--sched: {exc}")
    if args.copy and args.workers < 1:
        p.error("--copy needs --workers 1 or more")
    r = soak(args)
    if args.json:
        print(json.dumps(r))
    else:
        ev = r["log_events"]
        print(f"duration {r['duration_s']:.0f} s, {r['nodes']} nodes, lease TTL 1 s, "
              f"etcd and agents at nice {r['nice']} sched {r['sched']}, "
              f"load: {r['load']}; load average (1 min) mean {r['loadavg_1m_mean']}, "
              f"max {r['loadavg_1m_max']}")
        print(f"leader changes {r['leader_changes']} (first leader {r['first_leader']}), "
              f"takeovers {r['takeovers']}, VIP holder faults {r['vip_holder_faults']}, "
              f"etcd read errors (watcher) {r['etcd_read_errors']}")
        print(f"fences {ev['fenced']}, leases expired {ev['lease_expired']}, "
              f"etcd unreachable {ev['etcd_unreachable']}, VIP releases {ev['vip_released']}, "
              f"health handovers {ev['health_handover']}, loop stalls >= 0.25 s "
              f"{ev['loop_stalls']}")
        print(f"keepalives {r['keepalives']:.0f}: p99 <= {r['keepalive_p99_le_s']} s, "
              f"max {r['keepalive_max_s']} s; event-loop lag p99 <= {r['loop_lag_p99_le_s']} s, "
              f"max {r['loop_lag_max_s']} s")
        print("per node: " + ", ".join(f"{n} agent CPU {v['agent_cpu_s']} s, "
                                       f"keepalive max {v['keepalive_max_s']} s, "
                                       f"lag max {v['loop_lag_max_s']} s"
                                       for n, v in r["per_node"].items()))
    bad = false_failovers(r)
    print(f"false failovers: {bad}" + ("" if bad == 0 else "  FAIL"))
    return 0 if bad == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
