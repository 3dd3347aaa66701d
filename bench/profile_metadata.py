"""Where a hanode worker spends a metadata phase: py-spy on every process of
``hanode smb`` while smbclient runs bench/metadata.py's phases against it.

    .venv/bin/python bench/profile_metadata.py                   # 2000 files, top 25
    .venv/bin/python bench/profile_metadata.py --files 5000 --top 40 --keep /tmp/prof

Only hanode is measured (the shared harness starts smbd beside it, idle):
this is for finding costs, not for ratios.  For
each phase it prints the busiest process's functions by samples (own time,
then including callees) as a share of that process's samples.  py-spy
samples the stack whether or not the process is on a CPU, so on a loaded
machine time spent waiting to be scheduled (often inside ``writev``, which
wakes the client) counts too, and trio's ``get_events`` is time spent
waiting for the client's next request.  ``--keep DIR`` keeps the raw
profiles (py-spy's ``raw`` format, one stack and count per line).
"""

from __future__ import annotations

import argparse
import collections
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from metadata import PHASES, name
from smbpair import BenchError, bench_main, default_tmpdir, smbclient

SAMPLE_RATE = 250  # per second


def py_spy() -> str:
    """The py-spy beside this interpreter (the test extra installs it)."""
    path = Path(sys.executable).with_name("py-spy")
    if not path.exists():
        raise BenchError(f"{path}: not found (pip install -e .[test] installs py-spy)")
    return str(path)


def summary(raw: Path, top: int) -> tuple[int, list[tuple[float, str]], list[tuple[float, str]]]:
    """(samples, top own-time frames, top inclusive frames) of one raw profile."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    share = 100 / total if total else 0
    return (total, [(n * share, f) for f, n in own.most_common(top)],
            [(n * share, f) for f, n in inclusive.most_common(top)])


def profile(pair, files: int, top: int, keep: Path) -> dict:
    small = pair.work / "small.dat"
    small.write_bytes(b"x" * 1024)
    target = pair.hanode
    root = psutil.Process(target.proc.pid)
    pids = [root.pid, *(p.pid for p in root.children(recursive=True))]
    tool = py_spy()
    phases = {}
    for kind in PHASES:
        verb = {"create": f"put {small}", "stat": "allinfo", "delete": "del"}[kind]
        script = "".join(f"{verb} {name(i)}\n" for i in range(files))
        outputs = {pid: keep / f"{kind}-{pid}.txt" for pid in pids}
        spies = [subprocess.Popen([tool, "record", "--rate", str(SAMPLE_RATE), "--pid", str(pid),
                                   "--format", "raw", "--nonblocking", "--output", str(out)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for pid, out in outputs.items()]
        try:
            time.sleep(1)  # py-spy attaches
            started = time.monotonic()
            smbclient(target, "plain", stdin=script)
            elapsed = time.monotonic() - started
        finally:
            for spy in spies:
                spy.send_signal(signal.SIGINT)
            for spy in spies:
                spy.wait()
        profiles = {pid: summary(out, top) for pid, out in outputs.items() if out.exists()}
        if not profiles:
            raise BenchError(f"py-spy wrote no profile for {kind}")
        busiest = max(profiles, key=lambda pid: profiles[pid][0])
        samples, own, inclusive = profiles[busiest]
        phases[kind] = {"ops_per_s": files / elapsed, "pid": busiest, "samples": samples,
                        "own": own, "inclusive": inclusive}
    return {"phases": phases}


def print_profile(result: dict) -> None:
    print(f"{result['files']} files, hanode workers {result['workers']}, load average before "
          f"{result['load_before']}, after {result['load_after']}")
    for kind, p in result["phases"].items():
        print(f"\n== {kind}: {p['ops_per_s']:.0f} ops/s; process {p['pid']}, "
              f"{p['samples']} samples")
        print("-- own time")
        for pct, frame in p["own"]:
            print(f"{pct:5.1f}% {frame}")
        print("-- including callees")
        for pct, frame in p["inclusive"]:
            print(f"{pct:5.1f}% {frame}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000, help="files per phase")
    parser.add_argument("--top", type=int, default=25, help="frames listed per table")
    parser.add_argument("--workers", type=int, default=2, help="hanode smb worker processes")
    parser.add_argument("--keep", type=Path, help="keep the raw profiles in this directory")
    parser.add_argument("--tmpdir", default=default_tmpdir(),
                        help="where the shares and files go (default: /dev/shm if present)")
    parser.add_argument("--json", action="store_true", help="one JSON object instead of tables")
    args = parser.parse_args(argv)
    if args.files < 1 or args.top < 1:
        parser.error("--files and --top: at least 1")

    with tempfile.TemporaryDirectory(prefix="hnprof-") as scratch:
        keep = args.keep or Path(scratch)
        keep.mkdir(parents=True, exist_ok=True)
        return bench_main(args.tmpdir, args.workers, args.json,
                          lambda pair: profile(pair, args.files, args.top, keep),
                          dict(files=args.files), print_profile)


if __name__ == "__main__":
    sys.exit(main())
