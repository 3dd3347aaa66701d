"""The seed's experiment with the Linux kernel client, many trials:

    sudo .venv/bin/python bench/kernel_failover.py --trials 5 --mb 256 \
        --modes switchover,sigterm,hard,reset-hanode,reset-smbd

Each trial is a fresh lab and a fresh guest (tests/kernel/failover_trial.py):
the guest's ``dd conv=fsync`` to //VIP/test of a 3-node cluster across
``hanode switchover``, a SIGTERM of the leader's agent or a hard kill of the
serving node; and, for reference, the same copy to one server of the
kernel-client lab (``reset-hanode``: one node, ``reset-smbd``: Samba's smbd)
whose side of the connection is destroyed mid-copy (``ss -K``: the client
gets a RST no move prepared).  Prints per mode how many copies ended intact,
the stall p50/max (how long the file did not grow on the server's disk
across the move) and the first error dd reported, with the load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "kernel"))

import failover_trial  # noqa: E402
from smbpair import smb_lines  # noqa: E402

# The reference modes: one server, its connection destroyed under the copy.
RESETS = ("reset-hanode", "reset-smbd")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=5)
    p.add_argument("--mb", type=int, default=256)
    p.add_argument("--modes", default=",".join(failover_trial.MODES))
    p.add_argument("--verbose", action="store_true", help="print each trial's guest report")
    p.add_argument("--read", action="store_true",
                   help="sha256sum a file on //VIP/test across the move instead of copying")
    p.add_argument("--smb", action="append", default=[], metavar="KEY=VALUE",
                   help="a key of the nodes' [smb] table, e.g. max_credits=128 or "
                        "drain_timeout=4 (repeatable; cluster copy trials only)")
    args = p.parse_args()
    try:
        smb_config = smb_lines(args.smb)
    except ValueError as exc:
        p.error(str(exc))
    modes = args.modes.split(",")
    for mode in modes:
        if mode not in failover_trial.MODES + RESETS or (args.read and mode in RESETS):
            p.error(f"--modes: unknown mode {mode!r}")
    print(f"{'MODE':12} {'N':>3} {'INTACT':>6} {'P50':>7} {'MAX':>7} {'LOAD':>5}  FIRST ERROR",
          flush=True)
    for mode in modes:
        results = []
        for _ in range(args.trials):
            with tempfile.TemporaryDirectory(prefix="hkf-") as work:
                if mode in RESETS:
                    results.append(failover_trial.run_reset_trial(mode.split("-")[1], args.mb))
                elif args.read:
                    results.append(failover_trial.run_read_trial(mode, args.mb, Path(work)))
                else:
                    results.append(failover_trial.run_trial(mode, args.mb, Path(work),
                                                            smb_config=smb_config))
            if args.verbose:
                r = results[-1]
                print(f"# {mode}: dd rc {r.dd_rc}, intact {r.matched}, stall {r.stall_seconds}"
                      f"\n{r.error}{r.guest_report}\n{r.moves}", flush=True)
        stalls = [r.stall_seconds for r in results if r.stall_seconds is not None]
        errors = [r.error or r.dd_error for r in results if not r.ok]
        p50 = f"{statistics.median(stalls):6.2f}s" if stalls else "     -"
        worst = f"{max(stalls):6.2f}s" if stalls else "     -"
        print(f"{mode:12} {len(results):3} {sum(r.ok for r in results):6} {p50:>7} {worst:>7} "
              f"{os.getloadavg()[0]:5.1f}  "
              f"{(errors[0].splitlines() or [''])[0][:80] if errors else ''}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
