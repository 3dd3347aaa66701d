"""Metadata rate of hanode against Samba's smbd: create, stat and delete many small files.

    .venv/bin/python bench/metadata.py                      # 10,000 files, 3 runs
    .venv/bin/python bench/metadata.py --files 2000 --runs 1 --json

Same servers as bench/throughput.py (own etcd, ``hanode smb``, private smbd,
all on 127.0.0.1).  The client is smbclient fed a script on stdin, one
session per phase: ``put`` of a small file per name (create), ``allinfo`` per
name (stat: open, query the file's information, its alternate name and its
streams, close), ``del`` per name (delete).  smbclient is C and sends one
request at a time, so a phase's time is the servers' latency, not the
client's Python; it includes one logon (a few ms).  The effect of each phase
is checked on the share's directory itself.  Prints ops/s per server and
phase, the median of the per-run hanode/smbd ratios, and each server's CPU
time per op (all its processes; steadier than ops/s on a shared machine).
"""

from __future__ import annotations

import argparse
import sys
import time

from smbpair import (
    MODES, BenchError, Pair, bench_main, compare, cpu_seconds, default_tmpdir, process_count,
    smbclient,
)

PHASES = ("create", "stat", "delete")
CLIENT = ("smbclient, one session per phase, one request at a time: create = put of a "
          "small file, stat = allinfo, delete = del")


def name(i: int) -> str:
    return f"m{i:06d}.txt"


def phase(target, mode: str, kind: str, files: int, small: str) -> tuple[float, float]:
    """Run one phase against ``target``; its rate in ops/s and the server's CPU
    time per op in microseconds, after checking its effect."""
    verb = {"create": f"put {small}", "stat": "allinfo", "delete": "del"}[kind]
    script = "".join(f"{verb} {name(i)}\n" for i in range(files))
    processes = process_count(target)
    cpu_before = cpu_seconds(target, processes)
    started = time.monotonic()
    out = smbclient(target, mode, stdin=script)
    elapsed = time.monotonic() - started
    cpu = cpu_seconds(target, processes) - cpu_before
    present = sum(1 for p in target.share.iterdir() if p.name.startswith("m"))
    if kind == "stat":
        done = out.count("attributes:")
        ok = done == files and present == files
    else:
        done = present if kind == "create" else files - present
        ok = done == files
    if not ok:
        raise BenchError(f"{target.name} {kind}: {done} of {files} done:\n{out[-2000:]}")
    return files / elapsed, cpu * 1e6 / files


def measure(pair: Pair, files: int, runs: int, mode: str, size: int) -> dict:
    small = pair.work / "small.dat"
    small.write_bytes(b"x" * size)
    rates: dict[tuple[str, str], list[float]] = {}
    cpu: dict[tuple[str, str], list[float]] = {}
    for run in range(runs):
        for target in pair.in_turn(run):
            for kind in PHASES:
                rate, us = phase(target, mode, kind, files, str(small))
                rates.setdefault((kind, target.name), []).append(rate)
                cpu.setdefault((kind, target.name), []).append(us)
    rows = []
    for kind in PHASES:
        ours, theirs = rates[kind, "hanode"], rates[kind, "smbd"]
        rows.append({"phase": kind, **compare(ours, theirs),
                     "cpu_us_per_op": compare(cpu[kind, "hanode"], cpu[kind, "smbd"])})
    return {"rows": rows}


def print_table(result: dict) -> None:
    print(f"{result['files']} files of {result['file_size']} bytes, {result['runs']} runs, "
          f"mode {result['mode']}, hanode workers {result['workers']}, load average before "
          f"{result['load_before']}, after {result['load_after']}, {result['seconds']:.0f} s")
    print(f"client: {result['client']}")
    print(f"{'phase':<7} | {'hanode ops/s':>12} | {'smbd ops/s':>10} | ratio (lowest-highest) | "
          f"server CPU us/op hanode, smbd")
    for row in result["rows"]:
        cpu = row["cpu_us_per_op"]
        ratio = f"{row['ratio']:.2f}x ({row['ratio_min']:.2f}-{row['ratio_max']:.2f})"
        print(f"{row['phase']:<7} | {row['hanode_median']:>12.0f} | "
              f"{row['smbd_median']:>10.0f} | {ratio:<22} | "
              f"{cpu['hanode_median']:.0f}, {cpu['smbd_median']:.0f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000, help="files per phase")
    parser.add_argument("--file-size", type=int, default=1024, help="bytes per file")
    parser.add_argument("--runs", type=int, default=3, help="runs per server")
    parser.add_argument("--mode", choices=list(MODES), default="plain",
                        help="smbclient protection (default plain)")
    parser.add_argument("--workers", type=int, default=2, help="hanode smb worker processes")
    parser.add_argument("--tmpdir", default=default_tmpdir(),
                        help="where the shares and files go (default: /dev/shm if present)")
    parser.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    args = parser.parse_args(argv)
    if args.files < 1 or args.runs < 1 or args.file_size < 0:
        parser.error("--files and --runs: at least 1; --file-size: not negative")

    return bench_main(
        args.tmpdir, args.workers, args.json,
        lambda pair: measure(pair, args.files, args.runs, args.mode, args.file_size),
        dict(files=args.files, file_size=args.file_size, runs=args.runs, mode=args.mode,
             client=CLIENT),
        print_table)


if __name__ == "__main__":
    sys.exit(main())
