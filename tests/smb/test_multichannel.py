"""Multichannel across the workers of one ``hanode smb``.

SO_REUSEPORT spreads a client's connections over the workers; its sessions
live in one.  A worker that reads the NEGOTIATE of a client another worker
serves hands the connection over, so a binding always finds its session.
The fixtures check that no traceback reached the log.
"""

from __future__ import annotations

import pytest

import harness

pytestmark = pytest.mark.smbtorture

RUNS = 12
HANDED = "handed to the worker that serves its client"


def test_binding_lands_on_the_sessions_worker(two_workers):
    """bind1 again and again: its second connection reaches either worker first."""
    for _ in range(RUNS):
        run = harness.run_smbtorture(two_workers, "smb2.session.bind1", timeout=60)
        assert run.results.get("bind1") == "success", run.output[-3000:]
    # Half the second connections land on the other worker first (all twelve
    # on the right one: a chance of 1 in 4096), so hand-offs must have happened.
    assert HANDED in two_workers.log_text(), two_workers.log_text()[-3000:]


def test_multichannel_can_be_turned_off(etcd_server, tmp_path):
    """``multichannel = false``: no SMB2_CAP_MULTI_CHANNEL, so clients do not bind."""
    with harness.running_hanode(etcd_server.url, tmp_path / "hanode",
                                smb_extra="multichannel = false") as target:
        run = harness.run_smbtorture(target, "smb2.session.bind1", timeout=60)
    assert run.results.get("bind1") == "skip", run.output[-3000:]
    assert "doesn't support SMB2_CAP_MULTI_CHANNEL" in run.output, run.output[-3000:]
