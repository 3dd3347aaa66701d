"""bench/throughput.py and bench/metadata.py run end to end on tiny sizes, report a
ratio for every row, and leave no process or file behind, also when interrupted."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def leftovers(tmp: Path) -> list[str]:
    """Processes whose command line mentions ``tmp`` (hanode's config and smbd's
    smb.conf live there), and files still in it."""
    procs = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if str(tmp) in " ".join(proc.info["cmdline"] or []):
            procs.append(f"{proc.info['pid']}: {' '.join(proc.info['cmdline'])}")
    return procs + [str(p) for p in tmp.iterdir()]


def run_bench(script: str, tmp: Path, *args: str) -> dict:
    done = subprocess.run([sys.executable, str(BENCH / script), "--tmpdir", str(tmp),
                           "--runs", "1", "--json", *args],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert leftovers(tmp) == []
    return json.loads(done.stdout)


@pytest.fixture
def short_tmp(tmp_path_factory) -> Path:
    """A short dir: smbd's unix socket paths must fit in 108 bytes (tmp_path is long)."""
    return tmp_path_factory.mktemp("b")


def test_throughput_reports_each_mode_and_direction(short_tmp):
    result = run_bench("throughput.py", short_tmp, "--size", "8M")
    assert result["size"] == 8 * 1024 * 1024
    assert [(r["mode"], r["direction"]) for r in result["rows"]] == [
        (m, d) for m in ("plain", "signed", "encrypted") for d in ("put", "get")]
    for row in result["rows"]:
        assert row["hanode_median"] > 0 and row["smbd_median"] > 0, row
        assert row["ratio"] == row["hanode_median"] / row["smbd_median"], row


def test_metadata_reports_each_phase(short_tmp):
    result = run_bench("metadata.py", short_tmp, "--files", "200")
    assert [r["phase"] for r in result["rows"]] == ["create", "stat", "delete"]
    for row in result["rows"]:
        assert row["hanode_median"] > 0 and row["smbd_median"] > 0, row
        assert row["ratio"] > 0, row
    assert "smbclient" in result["client"]


def test_ctrl_c_stops_the_servers_and_removes_the_temp_dir(short_tmp):
    proc = subprocess.Popen([sys.executable, str(BENCH / "metadata.py"), "--tmpdir",
                             str(short_tmp), "--files", "100000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        # Both servers are up once the bench runs smbclient against one of them.
        while not any(child.name() == "smbclient"
                      for child in psutil.Process(proc.pid).children(recursive=True)):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, leftovers(short_tmp)
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err
    assert leftovers(short_tmp) == []


def test_ca_write_reports_both_modes_and_the_cost(short_tmp):
    result = run_bench("ca_write.py", short_tmp, "--size", "4M")
    assert [r["mode"] for r in result["rows"]] == ["plain", "write-through"]
    for row in result["rows"]:
        assert row["hanode_median"] > 0 and row["smbd_median"] > 0, row
        assert row["ratio"] == row["hanode_median"] / row["smbd_median"], row
    assert set(result["write_through_over_plain"]) == {"hanode", "smbd"}
