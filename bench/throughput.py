"""Bulk throughput of hanode against Samba's smbd: smbclient put and get of one big file.

    .venv/bin/python bench/throughput.py                    # 512 MiB, 5 runs
    .venv/bin/python bench/throughput.py --size 64M --runs 5 --json
    .venv/bin/python bench/throughput.py --smb max_credits=64   # hanode's [smb] keys

Starts its own etcd, ``hanode smb`` and a private smbd on 127.0.0.1 (share
options as in the tests: kernel oplocks, posix locking and kernel share modes
off).  Per run, per mode (plain = unsigned, signed, encrypted; SMB 3.1.1) and
per server, the servers taking turns, one smbclient session puts the file and
another gets it back and removes it; the rates are smbclient's own (time of
the transfer, not of the logon), and what comes back must have the sha256 of
what went.  Prints the median MB/s (10^6 bytes/s) of each server, the median
of the per-run hanode/smbd ratios, and each server's median CPU seconds per
GB moved (its processes' user + system time over the session, logon
included), which a loaded machine disturbs far less than MB/s; ratios and
CPU figures come with the lowest and highest of the runs.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import statistics
import sys
from pathlib import Path

from smbpair import (
    MODES, BenchError, Pair, bench_main, compare, cpu_seconds, default_tmpdir, process_count,
    smb_lines, smbclient,
)

# smbclient reports KiB/s: "putting file a as \b (1234.5 kb/s) ..." and
# "getting file \b of size N as a (1234.5 KiloBytes/sec) ...".
_PUT = re.compile(r"putting file .* \(([\d.]+) kb/s\)")
_GET = re.compile(r"getting file .* of size (\d+) as .* \(([\d.]+) KiloBytes/sec\)")
REMOTE = "bench.dat"


def parse_size(text: str) -> int:
    """``512M``, ``1G``, ``8388608``: bytes (K, M, G are powers of 1024)."""
    match = re.fullmatch(r"(\d+)([KMG]?)i?B?", text.strip(), re.I)
    if not match or int(match.group(1)) == 0:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 512M)")
    return int(match.group(1)) * 1024 ** " KMG".index(match.group(2).upper() or " ")


def make_source(path: Path, size: int) -> str:
    """Random (incompressible) content; its sha256."""
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        left = size
        while left:
            chunk = os.urandom(min(left, 1 << 20))
            digest.update(chunk)
            out.write(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def transfer(target, mode: str, source: Path, back: Path, size: int,
             expected: str) -> dict[str, float]:
    """One session puts, another gets and removes; each direction's MB/s and
    the server's CPU seconds per GB, after checking the copy."""
    processes = process_count(target)
    cpu0 = cpu_seconds(target, processes)
    out = smbclient(target, mode, "-c", f"put {source} {REMOTE}")
    cpu1 = cpu_seconds(target, processes)
    out += smbclient(target, mode, "-c", f"get {REMOTE} {back}; rm {REMOTE}")
    cpu2 = cpu_seconds(target, processes)
    put, get = _PUT.search(out), _GET.search(out)
    if not put or not get or int(get.group(1)) != size:
        raise BenchError(f"unexpected smbclient output from {target.name}:\n{out[-2000:]}")
    if sha256_of(back) != expected:
        raise BenchError(f"{target.name} ({mode}): the file came back different")
    back.unlink()
    return {"put": float(put.group(1)) * 1024 / 1e6, "get": float(get.group(2)) * 1024 / 1e6,
            "put_cpu": (cpu1 - cpu0) * 1e9 / size, "get_cpu": (cpu2 - cpu1) * 1e9 / size}


def measure(pair: Pair, size: int, runs: int, modes: list[str]) -> dict:
    source, back = pair.work / "source.dat", pair.work / "back.dat"
    expected = make_source(source, size)
    for target in pair.in_turn(0):  # warm-up, not counted: the first transfer pays for
        transfer(target, modes[0], source, back, size, expected)  # the page cache's growth
    rates: dict[tuple[str, str, str], list[float]] = {}
    for run in range(runs):
        for mode in modes:
            for target in pair.in_turn(run):
                for key, value in transfer(target, mode, source, back, size, expected).items():
                    rates.setdefault((mode, key, target.name), []).append(value)
    source.unlink()
    rows = []
    for mode in modes:
        for direction in ("put", "get"):
            ours, theirs = rates[mode, direction, "hanode"], rates[mode, direction, "smbd"]
            cpu = {}
            for name in ("hanode", "smbd"):
                spent = rates[mode, direction + "_cpu", name]
                cpu.update({f"{name}_cpu_s_per_gb": statistics.median(spent),
                            f"{name}_cpu_min": min(spent), f"{name}_cpu_max": max(spent)})
            rows.append({"mode": mode, "direction": direction, **compare(ours, theirs), **cpu})
    return {"rows": rows}


def print_table(result: dict) -> None:
    print(f"size {result['size']} bytes, {result['runs']} runs, hanode workers "
          f"{result['workers']}, hanode [smb] {result['smb'] or 'defaults'}, "
          f"load average before {result['load_before']}, after {result['load_after']}, {result['seconds']:.0f} s")
    print(f"{'mode':<10} {'dir':<4} | {'hanode MB/s':>11} | {'smbd MB/s':>9} | "
          f"{'ratio (lowest-highest)':<22} | CPU s/GB hanode (lowest-highest), smbd (same)")
    for row in result["rows"]:
        ratio = f"{row['ratio']:.2f}x ({row['ratio_min']:.2f}-{row['ratio_max']:.2f})"
        cpu = ", ".join(f"{row[name + '_cpu_s_per_gb']:.2f} ({row[name + '_cpu_min']:.2f}-"
                        f"{row[name + '_cpu_max']:.2f})" for name in ("hanode", "smbd"))
        print(f"{row['mode']:<10} {row['direction']:<4} | {row['hanode_median']:>11.1f} | "
              f"{row['smbd_median']:>9.1f} | {ratio:<22} | {cpu}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=parse_size, default=parse_size("512M"),
                        help="file size, e.g. 512M (default), 8M, 1G")
    parser.add_argument("--runs", type=int, default=5,
                        help="runs per server and mode (default 5: loopback MB/s swing widely)")
    parser.add_argument("--modes", default=",".join(MODES),
                        help="comma-separated subset of " + ",".join(MODES))
    parser.add_argument("--workers", type=int, default=2, help="hanode smb worker processes")
    parser.add_argument("--tmpdir", default=default_tmpdir(),
                        help="where the shares and files go (default: /dev/shm if present)")
    parser.add_argument("--smb", action="append", default=[], metavar="KEY=VALUE",
                        help="a key of hanode's [smb] table, e.g. max_credits=64 (repeatable)")
    parser.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    args = parser.parse_args(argv)
    modes = args.modes.split(",")
    if any(m not in MODES for m in modes) or args.runs < 1:
        parser.error(f"--modes: a subset of {','.join(MODES)}; --runs: at least 1")
    try:
        smb_extra = smb_lines(args.smb)
    except ValueError as exc:
        parser.error(str(exc))

    return bench_main(args.tmpdir, args.workers, args.json,
                      lambda pair: measure(pair, args.size, args.runs, modes),
                      dict(size=args.size, runs=args.runs, smb=args.smb), print_table,
                      smb_extra=smb_extra)


if __name__ == "__main__":
    sys.exit(main())
