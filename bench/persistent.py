"""Persistent opens per second on a continuously available share, against
durable and plain opens on a plain share of the same server, and smbd's durable
opens, all in the same run.

``hanode smb`` serves one directory as two shares: ``test`` (plain) and
``ca`` (continuous_availability = true).  The client is bench/openload.py
(CREATE then CLOSE back to back, one file per connection): ``persistent`` is
DH2Q with the persistent flag and no oplock on ``ca`` (each open's record is
committed to etcd before the CREATE is answered, as for a durable open; its
CLOSE deletes it); ``durable`` is DH2Q with a batch oplock on ``test``;
``plain`` is no oplock, no context on ``test``.  smbd has no persistent
handles: its ``durable`` (batch oplock, DH2Q) is the nearest thing it has, and
the ratio printed is hanode persistent / smbd durable.

    .venv/bin/python bench/persistent.py                    # 1,8,64 clients, 3 s
    .venv/bin/python bench/persistent.py --clients 8 --runs 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import replace

import psutil

from durable import add_load_options, load_counts, measure
from openload import PERSISTENT
from smbpair import Pair, bench_main

CA_SHARE = "ca"
# The CA share: the same directory as the plain share ``test``.
EXTRA_SHARES = f'[[share]]\nname = "{CA_SHARE}"\npath = "{{base}}/hanode/share"\n' \
               'continuous_availability = true\n'
# (label, server, share, openload kind)
CELLS = (("plain", "hanode", None, "plain"), ("durable", "hanode", None, "durable"),
         ("persistent", "hanode", CA_SHARE, PERSISTENT), ("durable", "smbd", None, "durable"))


def measure_all(pair: Pair, counts: list[int], args: argparse.Namespace) -> dict:
    cells = []
    for clients in counts:
        runs: dict[str, list[dict]] = {}
        for run in range(args.runs):
            order = CELLS if run % 2 == 0 else CELLS[::-1]
            for label, name, share, kind in order:
                target = pair.hanode if name == "hanode" else pair.smbd
                if share is not None:  # the same server, its clients on ``share``
                    target = replace(target, share_name=share)
                etcd = pair.etcd_pid if name == "hanode" else None
                runs.setdefault(f"{name} {label}", []).append(
                    measure(target, etcd, clients, kind, args))
        cell = {"clients": clients, "runs": runs,
                "rates": {k: statistics.median(r["rate"] for r in v) for k, v in runs.items()}}
        cells.append(cell)
        if not args.json:
            print_cell(cell)
    return {"cells": cells}


def print_cell(cell: dict) -> None:
    rates = cell["rates"]
    for key, runs in cell["runs"].items():
        server_ms = statistics.median(r["server_ms"] for r in runs)
        p50 = statistics.median(r["p50_ms"] for r in runs)
        print(f"{cell['clients']:>7} {key:>18} | {rates[key]:>7.0f} {p50:>7.2f} | "
              f"{server_ms:>6.3f}", flush=True)
    persistent = rates["hanode persistent"]
    print(f"{'':>7} ratios: persistent/durable {persistent / rates['hanode durable']:.2f}x, "
          f"persistent/plain {persistent / rates['hanode plain']:.2f}x, "
          f"persistent/smbd durable {persistent / rates['smbd durable']:.2f}x", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_load_options(parser)
    args = parser.parse_args(argv)
    counts = load_counts(parser, args)
    if not args.json:
        print(f"op = CREATE + CLOSE on a file per connection; SMB {args.dialect}; "
              f"{args.seconds:g} s x {args.runs} run(s); hanode {args.workers} workers; "
              f"{psutil.cpu_count()} CPUs; server CPU in ms per open")
        print(f"{'clients':>7} {'server kind':>18} | {'opens/s':>7} {'p50 ms':>7} | {'cpu':>6}")
    facts = {"bench": "persistent", "clients": counts, "seconds_per_run": args.seconds,
             "runs": args.runs, "depth": args.depth, "dialect": args.dialect,
             "signed": args.sign, "cpus": psutil.cpu_count()}
    return bench_main(args.tmpdir, args.workers, args.json,
                      lambda pair: measure_all(pair, counts, args), facts,
                      lambda result: print(f"load average {result['load_before']} before, "
                                           f"{result['load_after']} after; "
                                           f"{result['seconds']:.0f} s in all"), args.etcd,
                      EXTRA_SHARES)


if __name__ == "__main__":
    sys.exit(main())
