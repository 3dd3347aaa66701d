"""A worker started by an agent that runs ahead of ordinary processes (the unit's
Nice=-10) is put back to the default priority; at nice 0 or above nothing changes."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import os, subprocess, sys
from hanode.supervisor import _default_priority
os.setpriority(os.PRIO_PROCESS, 0, int(sys.argv[1]))
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
try:
    _default_priority(child.pid)
    print(os.getpriority(os.PRIO_PROCESS, child.pid))
finally:
    child.kill()
    child.wait()
"""


@pytest.mark.parametrize("agent_nice, worker_nice", [(-10, 0), (0, 0), (5, 5)])
def test_worker_priority(agent_nice, worker_nice):
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(agent_nice)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == worker_nice
