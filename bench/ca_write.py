"""What write-through costs: writes to a continuously available share against a plain
one, hanode beside Samba's smbd doing the same.

    .venv/bin/python bench/ca_write.py                    # 64 MiB, 3 runs
    .venv/bin/python bench/ca_write.py --size 16M --runs 5 --json

A CA share answers a WRITE only once its data is on stable storage (fdatasync);
a plain share answers once it is in the page cache.  smbd has no CA shares; its
way to the same promise is ``strict sync = yes`` with ``sync always = yes`` (a
sync after every write), so that is what hanode's CA share is compared with.

Starts its own etcd, ``hanode smb`` (shares ``test``, plain, and ``ca``) and a
private smbd (shares ``test`` and ``sync``) on 127.0.0.1, their shares on disk
(default: the system's temp dir, not tmpfs, where a sync costs nothing).  Per
run, the four shares taking turns (the order rotated every run), one smbclient
session (SMB 3.1.1, unsigned) puts the file (8 MiB WRITEs, several in flight);
the rate is smbclient's own.  With ``--write-size N`` an smbprotocol client
writes the file instead, one WRITE of N bytes at a time (as an application
writing small blocks does), timed from open to close.  Either way the stored
file must have the sha256 of what was sent.  Prints each share's
median MB/s (10^6 bytes/s), the median hanode/smbd ratio per mode, and what
write-through costs each server (its write-through MB/s over its plain MB/s),
all with the lowest and highest of the runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import smbclient as smbclient_py
from smbprotocol.exceptions import SMBException

from smbpair import BenchError, compare, load_average, run_main, servers, smbclient
from throughput import _PUT, make_source, parse_size, sha256_of

REMOTE = "ca-bench.dat"
# (server, share) in the order of run 0; later runs rotate it.
SHARES = [("hanode", "test"), ("hanode", "ca"), ("smbd", "test"), ("smbd", "sync")]
MODE_OF = {"test": "plain", "ca": "write-through", "sync": "write-through"}


def put(target, share_dir: Path, source: Path, size: int, expected: str,
        write_size: int) -> float:
    """One copy of source to the share; its MB/s, after checking what landed there."""
    if write_size:
        rate = small_writes(target, source, write_size)
    else:
        out = smbclient(target, "plain", "-c", f"put {source} {REMOTE}")
        found = _PUT.search(out)
        if not found:
            raise BenchError(f"{target.name} {target.share_name}: smbclient said:\n{out[-2000:]}")
        rate = float(found.group(1)) * 1024 / 1e6
    stored = share_dir / REMOTE
    if stored.stat().st_size != size or sha256_of(stored) != expected:
        raise BenchError(f"{target.name} {target.share_name}: the copy stored other bytes")
    stored.unlink()
    return rate


def small_writes(target, source: Path, write_size: int) -> float:
    """smbprotocol writes source in write_size WRITEs, one at a time; MB/s open to close."""
    cache: dict = {}
    kw = {"port": target.port, "connection_cache": cache}
    try:
        smbclient_py.register_session(target.host, username=target.user,
                                      password=target.password, **kw)
        path = rf"\\{target.host}\{target.share_name}\{REMOTE}"
        with open(source, "rb") as src:
            started = time.perf_counter()
            with smbclient_py.open_file(path, mode="wb", buffering=0, **kw) as dst:
                while block := src.read(write_size):
                    dst.write(block)
            seconds = time.perf_counter() - started
    except SMBException as exc:
        raise BenchError(f"{target.name} {target.share_name}: {exc}") from None
    finally:
        smbclient_py.reset_connection_cache(connection_cache=cache)
    return source.stat().st_size / seconds / 1e6


def measure(pair, dirs: dict[tuple[str, str], Path], size: int, runs: int,
            write_size: int) -> dict:
    targets = {(name, share): dataclasses.replace(getattr(pair, name), share_name=share)
               for name, share in SHARES}
    source = pair.work / "source.dat"
    expected = make_source(source, size)
    for key in SHARES:  # warm-up, not counted (the page cache grows, smbd forks)
        put(targets[key], dirs[key], source, size, expected, write_size)
    rates: dict[tuple[str, str], list[float]] = {key: [] for key in SHARES}
    for run in range(runs):
        for key in SHARES[run % 4:] + SHARES[:run % 4]:
            rates[key].append(put(targets[key], dirs[key], source, size, expected, write_size))
    source.unlink()
    rows = [{"mode": "plain", **compare(rates["hanode", "test"], rates["smbd", "test"])},
            {"mode": "write-through",
             **compare(rates["hanode", "ca"], rates["smbd", "sync"])}]
    cost = {}
    for name, through in (("hanode", "ca"), ("smbd", "sync")):
        ratios = [a / b for a, b in zip(rates[name, through], rates[name, "test"])]
        cost[name] = {"ratio": statistics.median(ratios), "ratio_min": min(ratios),
                      "ratio_max": max(ratios)}
    return {"rows": rows, "write_through_over_plain": cost}


def print_table(result: dict) -> None:
    how = (f"{result['write_size']}-byte WRITEs one at a time (smbprotocol)"
           if result["write_size"] else "smbclient put")
    print(f"{how}, size {result['size']} bytes, {result['runs']} runs, hanode workers "
          f"{result['workers']}, shares on {result['tmpdir']}, load average before "
          f"{result['load_before']}, after {result['load_after']}, {result['seconds']:.0f} s")
    print(f"{'mode':<14} | {'hanode MB/s':>11} | {'smbd MB/s':>9} | ratio (lowest-highest)")
    for row in result["rows"]:
        print(f"{row['mode']:<14} | {row['hanode_median']:>11.1f} | {row['smbd_median']:>9.1f} | "
              f"{row['ratio']:.2f}x ({row['ratio_min']:.2f}-{row['ratio_max']:.2f})")
    for name, c in result["write_through_over_plain"].items():
        print(f"write-through / plain, {name}: {c['ratio']:.2f}x "
              f"({c['ratio_min']:.2f}-{c['ratio_max']:.2f})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=parse_size, default=parse_size("64M"),
                        help="file size, e.g. 64M (default), 8M, 1G")
    parser.add_argument("--runs", type=int, default=3, help="runs per share (default 3)")
    parser.add_argument("--write-size", type=parse_size, default=0,
                        help="write with smbprotocol in WRITEs of this size, one at a time "
                             "(e.g. 64K) instead of smbclient's put")
    parser.add_argument("--workers", type=int, default=2, help="hanode smb worker processes")
    parser.add_argument("--tmpdir", default=tempfile.gettempdir(),
                        help="where the shares go; on a disk, or the syncs cost nothing "
                             "(default: the system's temp dir)")
    parser.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs: at least 1")

    def body() -> int:
        started, load_before = time.monotonic(), load_average()
        with tempfile.TemporaryDirectory(prefix="hnca-", dir=args.tmpdir) as extra:
            ca, sync = Path(extra) / "ca", Path(extra) / "sync"
            ca.mkdir()
            sync.mkdir()
            hanode_shares = f'[[share]]\nname = "ca"\npath = "{ca}"\ncontinuous_availability = true\n'
            # smbd's config puts this at the end of [global]: a share section of its own.
            smbd_share = (f"[sync]\n  path = {sync}\n  read only = no\n  strict sync = yes\n"
                          f"  sync always = yes\n")
            with servers(args.tmpdir, args.workers, hanode_options={"extra_shares": hanode_shares},
                         smbd_options={"global_extra": smbd_share}) as pair:
                dirs = {("hanode", "test"): pair.hanode.share, ("hanode", "ca"): ca,
                        ("smbd", "test"): pair.smbd.share, ("smbd", "sync"): sync}
                result = measure(pair, dirs, args.size, args.runs, args.write_size)
        result.update(size=args.size, runs=args.runs, write_size=args.write_size,
                      workers=args.workers, tmpdir=args.tmpdir, load_before=load_before, load_after=load_average(),
                      seconds=time.monotonic() - started)
        if args.json:
            print(json.dumps(result))
        else:
            print_table(result)
        return 0

    return run_main(body)


if __name__ == "__main__":
    sys.exit(main())
