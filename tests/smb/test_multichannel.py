"""Multichannel across the workers of one ``hanode smb``.

A binding SESSION_SETUP is served by the worker its connection landed on
(SO_REUSEPORT spreads connections); the session may live in the other one.
Until connections are handed to the worker that owns their client, such a
binding is refused cleanly: USER_SESSION_DELETED at once, the session left as
it was on its first channel, no traceback in the log (the fixture checks).
smbtorture reports that refusal as ACCESS_DENIED: the answer cannot be signed
with a key only the other worker holds, and its client wants it signed.
"""

from __future__ import annotations

import re

import pytest

import harness

pytestmark = pytest.mark.smbtorture

RUNS = 12
BIND_FAILED = re.compile(r"status was NT_STATUS_\w+, expected NT_STATUS_OK: "
                         r"smb2_session_setup_spnego failed")
REFUSED = re.compile(r"binding of session (0x[0-9a-f]+) from \S+ refused: USER_SESSION_DELETED")
SESSION = re.compile(r"(worker\d+) INFO smb\.server\.connection: session (0x[0-9a-f]+) for ")


def test_binding_on_another_worker_is_refused_cleanly(two_workers):
    """bind1 again and again: its second connection lands on either worker."""
    same = other = 0
    for _ in range(RUNS):
        run = harness.run_smbtorture(two_workers, "smb2.session.bind1", timeout=60)
        assert run.returncode != -1, "smbtorture hung:\n" + run.output[-3000:]
        if run.results.get("bind1") == "success":
            same += 1
        else:
            assert BIND_FAILED.search(run.output), run.output[-3000:]
            other += 1
    log = two_workers.log_text()
    owner = {sid: worker for worker, sid in SESSION.findall(log)}
    refused = REFUSED.findall(log)
    # Every refusal named a session of the other worker, and every failed
    # binding was such a refusal (not a hang, a drop or an error of ours).
    assert len(refused) == other, log[-4000:]
    for line in re.findall(r"(worker\d+) INFO smb\.server\.connection: binding of session "
                           r"(0x[0-9a-f]+)", log):
        worker, sid = line
        assert owner[sid] != worker, line
    # Both cases must have come up (all twelve on one side: a chance of 1 in 2048).
    assert same and other, (same, other)


def test_multichannel_can_be_turned_off(etcd_server, tmp_path):
    """``multichannel = false``: no SMB2_CAP_MULTI_CHANNEL, so clients do not bind."""
    with harness.running_hanode(etcd_server.url, tmp_path / "hanode",
                                smb_extra="multichannel = false") as target:
        run = harness.run_smbtorture(target, "smb2.session.bind1", timeout=60)
    assert run.results.get("bind1") == "skip", run.output[-3000:]
    assert "doesn't support SMB2_CAP_MULTI_CHANNEL" in run.output, run.output[-3000:]
