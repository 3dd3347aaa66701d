"""Durable opens per second over real SMB: hanode against Samba's smbd, in the same run.

Both servers come from bench/smbpair.py (own etcd, ``hanode smb`` with
--workers workers, a private smbd, all on 127.0.0.1).  The client is
bench/openload.py: one process, one connection (own session and tree) per
client, each doing CREATE then CLOSE back to back on its own file (--depth
such pairs outstanding per connection), three kinds: plain (no oplock),
batch (a batch oplock, no durability: what the oplock alone costs) and
durable (DH2Q with a batch oplock; hanode stores each open's record in etcd
before answering the CREATE).  Every response is checked; a server that
answers wrong stops the bench with an error instead of a rate.

Prints opens/s, p50/p99 of open+close, the CPU ms per open of the server (all
its processes), of etcd and of the load generator, and hanode/smbd ratios of
the rate and of the server CPU per open (the steadier figure on a shared
machine).  The CPU is taken between connect and disconnect, so logons are
not in it.

    .venv/bin/python bench/durable.py                          # 1,8,64 clients, 3 s
    .venv/bin/python bench/durable.py --clients 8 --kinds durable --sign --runs 3

bench/durable_records.py measures the record layer alone (etcd writes).
"""

from __future__ import annotations

import argparse
import statistics
import sys

import psutil

from openload import DIALECTS, KINDS, OpenLoadError, Server, connect, drive
from smbpair import BenchError, Pair, bench_main, compare, default_tmpdir, process_cpu

def _procs(root_pid: int | None) -> list[psutil.Process]:
    """A process and all its children as they are now (smbd's per-connection ones
    included: they all live while the load's connections are open)."""
    if root_pid is None:
        return []
    root = psutil.Process(root_pid)
    return [root, *root.children(recursive=True)]


def measure(target, etcd_pid: int | None, clients: int, kind: str,
            args: argparse.Namespace) -> dict:
    """One load run against ``target``: rate, latency and CPU per open."""
    server = Server(target.port, target.user, target.password, target.share_name, target.name)
    conns = []
    try:
        conns = connect(server, clients, dialect=args.dialect, sign=args.sign)
        watched, etcd = _procs(target.proc.pid), _procs(etcd_pid)
        s0, e0 = process_cpu(watched), process_cpu(etcd)
        result = drive(conns, kind, args.seconds, depth=args.depth)
        s1, e1 = process_cpu(watched), process_cpu(etcd)
    except OpenLoadError as exc:
        raise BenchError(f"{kind}, {clients} clients: {exc}") from None
    finally:
        for conn in conns:
            conn.close()
    if not result.opens:
        raise BenchError(f"{target.name} {kind}, {clients} clients: no open completed")
    per_open = 1000 / result.opens
    ordered = sorted(result.latencies)
    return {"rate": result.rate, "opens": result.opens,
            "p50_ms": statistics.median(ordered) * 1000,
            "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
            "server_ms": (s1 - s0) * per_open,
            "etcd_ms": (e1 - e0) * per_open if etcd else None,
            "load_ms": result.cpu * per_open}


def measure_pair(pair: Pair, counts: list[int], kinds: list[str],
                 args: argparse.Namespace) -> dict:
    cells = []
    for clients in counts:
        for kind in kinds:
            runs: dict[str, list[dict]] = {"hanode": [], "smbd": []}
            for run in range(args.runs):
                for target in pair.in_turn(run):
                    etcd = pair.etcd_pid if target is pair.hanode else None
                    runs[target.name].append(measure(target, etcd, clients, kind, args))
            cell = {"clients": clients, "kind": kind, "runs": runs,
                    "rate": compare([r["rate"] for r in runs["hanode"]],
                                    [r["rate"] for r in runs["smbd"]]),
                    "server_ms": compare([r["server_ms"] for r in runs["hanode"]],
                                         [r["server_ms"] for r in runs["smbd"]])}
            cells.append(cell)
            if not args.json:
                print_cell(cell)
    return {"cells": cells}


def _median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def print_header(args: argparse.Namespace, counts: list[int]) -> None:
    print(f"op = CREATE + CLOSE on a file per connection; SMB {args.dialect}"
          f"{', signed' if args.sign else ''}; depth {args.depth}; {args.seconds:g} s x "
          f"{args.runs} run(s); hanode {args.workers} workers; {psutil.cpu_count()} CPUs; "
          f"CPU in ms per open; ratios hanode/smbd")
    print(f"{'clients':>7} {'kind':>7} {'server':>6} | {'opens/s':>7} {'p50 ms':>7} "
          f"{'p99 ms':>7} | {'server':>6} {'etcd':>6} {'load':>6} | {'rate':>6} {'cpu':>6}",
          flush=True)


def print_cell(cell: dict) -> None:
    for name in ("hanode", "smbd"):
        runs = cell["runs"][name]
        ratios = (f"{cell['rate']['ratio']:>5.2f}x {cell['server_ms']['ratio']:>5.2f}x"
                  if name == "hanode" else "")
        etcd = [r["etcd_ms"] for r in runs if r["etcd_ms"] is not None]
        etcd_ms = f"{statistics.median(etcd):.3f}" if etcd else "-"
        print(f"{cell['clients']:>7} {cell['kind']:>7} {name:>6} | "
              f"{_median(runs, 'rate'):>7.0f} {_median(runs, 'p50_ms'):>7.2f} "
              f"{_median(runs, 'p99_ms'):>7.2f} | {_median(runs, 'server_ms'):>6.3f} "
              f"{etcd_ms:>6} {_median(runs, 'load_ms'):>6.3f} | "
              f"{ratios}", flush=True)


def add_load_options(parser: argparse.ArgumentParser) -> None:
    """The options of an open-rate bench (this one and bench/persistent.py)."""
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--clients", default="1,8,64", help="comma-separated connection counts")
    parser.add_argument("--depth", type=int, default=1,
                        help="CREATE+CLOSE pairs outstanding per connection")
    parser.add_argument("--dialect", choices=sorted(DIALECTS), default="3.1.1")
    parser.add_argument("--sign", action="store_true", help="sessions that require signing")
    parser.add_argument("--runs", type=int, default=1,
                        help="runs per cell, the servers' order swapped each run")
    parser.add_argument("--workers", type=int, default=2, help="hanode smb workers")
    parser.add_argument("--etcd", help="etcd endpoint for hanode (default: an embedded etcd, "
                                       "whose CPU is counted)")
    parser.add_argument("--tmpdir", default=default_tmpdir(),
                        help="where the shares live (default /dev/shm)")
    parser.add_argument("--json", action="store_true", help="one JSON line instead of a table")


def load_counts(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[int]:
    """The connection counts asked for, once the options are checked (else exit 2)."""
    try:
        counts = [int(c) for c in args.clients.split(",")]
    except ValueError:
        parser.error("--clients: comma-separated integers expected")
    if min(counts) < 1 or args.depth < 1 or args.runs < 1 or args.seconds <= 0:
        parser.error("--clients, --depth, --runs and --seconds must be positive")
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_load_options(parser)
    parser.add_argument("--kinds", default=",".join(KINDS),
                        help=f"comma-separated, of {', '.join(KINDS)}")
    args = parser.parse_args(argv)
    counts = load_counts(parser, args)
    kinds = args.kinds.split(",")
    if any(k not in KINDS for k in kinds):
        parser.error(f"--kinds: each of {', '.join(KINDS)}")

    if not args.json:
        print_header(args, counts)
    facts = {"bench": "durable", "clients": counts, "kinds": kinds,
             "seconds_per_run": args.seconds, "runs": args.runs, "depth": args.depth,
             "dialect": args.dialect, "signed": args.sign, "cpus": psutil.cpu_count()}
    return bench_main(args.tmpdir, args.workers, args.json,
                      lambda pair: measure_pair(pair, counts, kinds, args), facts,
                      lambda result: print(f"load average {result['load_before']} before, "
                                           f"{result['load_after']} after; "
                                           f"{result['seconds']:.0f} s in all"), args.etcd)


if __name__ == "__main__":
    sys.exit(main())
