"""A worker started by an agent that runs ahead of ordinary processes (the unit's
SCHED_RR and Nice=-10) is put back to the default policy and priority; at nice 0
or above nothing changes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SCRIPT = """
import os, subprocess, sys
from hanode.supervisor import _default_priority
os.setpriority(os.PRIO_PROCESS, 0, int(sys.argv[1]))
if sys.argv[2] == "rr":
    os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(10))
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
try:
    _default_priority(child.pid)
    print(os.getpriority(os.PRIO_PROCESS, child.pid), os.sched_getscheduler(child.pid))
finally:
    child.kill()
    child.wait()
"""


@pytest.mark.parametrize("agent_nice, policy, worker_nice", [
    (-10, "other", 0), (-10, "rr", 0), (0, "rr", 0), (0, "other", 0), (5, "other", 5)])
def test_worker_priority(agent_nice, policy, worker_nice):
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(agent_nice), policy],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    nice, sched = done.stdout.split()
    assert int(nice) == worker_nice
    assert int(sched) == os.SCHED_OTHER
