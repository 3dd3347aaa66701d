"""bench/durable.py (SMB opens, hanode against smbd) and bench/durable_records.py
(the record layer) run end to end against the test etcd."""

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "durable_records.py"


def test_bench_prints_a_row_per_client_count(etcd_server):
    out = subprocess.run(
        [sys.executable, str(BENCH), "--etcd", etcd_server.url, "--seconds", "0.3",
         "--clients", "1,16"],
        capture_output=True, text=True, timeout=60, check=True).stdout
    rows = [line for line in out.splitlines() if re.match(r"\s+\d+ \|", line)]
    assert [int(r.split("|")[0]) for r in rows] == [1, 16]
    for row in rows:
        plain, batched = (float(part.split()[0]) for part in row.split("|")[1:3])
        assert plain > 0 and batched > 0, row


def test_smb_bench_measures_plain_and_durable_opens(etcd_server):
    bench = BENCH.parent / "durable.py"
    out = subprocess.run(
        [sys.executable, str(bench), "--etcd", etcd_server.url, "--seconds", "0.5",
         "--clients", "1,2", "--workers", "1"],
        capture_output=True, text=True, timeout=120, check=True).stdout
    rows = [m.groups() for m in
            re.finditer(r"^\s+(\d+)\s+(\w+)\s+(hanode|smbd) \|\s+(\d+)", out, re.M)]
    assert [(int(n), kind, server) for n, kind, server, _ in rows] == [
        (n, kind, server) for n in (1, 2) for kind in ("plain", "batch", "durable")
        for server in ("hanode", "smbd")], out
    assert all(int(rate) > 0 for *_, rate in rows), out
