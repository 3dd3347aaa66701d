"""deploy/systemd: the units pass `systemd-analyze verify` and stay hardened."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

UNITS = Path(__file__).resolve().parents[2] / "deploy" / "systemd"


def analyze(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    assert shutil.which("systemd-analyze"), "systemd-analyze missing (package systemd)"
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=60)


def test_every_unit_verifies_clean(tmp_path):
    """Each unit as shipped, with a drop-in pointing ExecStart at this checkout's
    hanode (the shipped path, /opt/hanode/venv, exists only on a node)."""
    hanode = Path(sys.executable).with_name("hanode")
    assert hanode.exists()
    units = sorted(UNITS.glob("*.service"))
    assert units
    for unit in units:
        shutil.copy(unit, tmp_path / unit.name)
        dropin = tmp_path / f"{unit.name}.d"
        dropin.mkdir()
        (dropin / "test.conf").write_text(f"[Service]\nExecStart=\nExecStart={hanode} agent\n")
        result = analyze("verify", str(tmp_path / unit.name), cwd=tmp_path)
        assert (result.returncode, result.stdout + result.stderr) == (0, ""), unit.name


def test_a_broken_unit_is_caught(tmp_path):
    """The check above can fail: a typo'd key and a missing binary are reported."""
    unit = tmp_path / "broken.service"
    unit.write_text("[Service]\nExecStart=/nonexistent/hanode\nRestartSecs=1\n")
    result = analyze("verify", str(unit), cwd=tmp_path)
    out = result.stdout + result.stderr
    assert "RestartSecs" in out and "/nonexistent/hanode" in out


def test_agent_unit_exposure_stays_low(tmp_path):
    result = analyze("security", "--offline=true", str(UNITS / "hanode-agent.service"),
                     cwd=tmp_path)
    match = re.search(r"Overall exposure level for hanode-agent.service: ([0-9.]+)",
                      result.stdout + result.stderr)
    assert match, result.stdout + result.stderr
    assert float(match[1]) <= 2.5


def test_agent_unit_has_what_the_issue_asks():
    text = (UNITS / "hanode-agent.service").read_text()
    keys = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            keys.setdefault(key, []).append(value)
    assert keys["Type"] == ["notify"] and keys["WatchdogSec"] == ["5"]
    assert keys["Restart"] == ["always"] and keys["RestartSec"] == ["1"]
    caps = {"CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_NET_BIND_SERVICE"}
    assert set(keys["CapabilityBoundingSet"][0].split()) == caps
    assert set(keys["AmbientCapabilities"][0].split()) == caps
    assert keys["User"] == ["hanode"] and keys["NoNewPrivileges"] == ["yes"]
    assert keys["ProtectSystem"] == ["strict"] and keys["PrivateTmp"] == ["yes"]
    assert int(keys["LimitNOFILE"][0]) >= 65536
    # ahead of ordinary processes, or a busy machine costs the leader its 1 s lease
    assert int(keys["Nice"][0]) < 0
    # and real time (the agent puts its SMB workers back to SCHED_OTHER)
    assert keys["CPUSchedulingPolicy"] == ["rr"] and 1 <= int(keys["CPUSchedulingPriority"][0]) <= 99
    assert "etcd.service" in keys["After"][0] and "network-online.target" in keys["Wants"][0]
