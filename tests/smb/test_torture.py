"""smbtorture parity: hanode must pass every test a private smbd (configured
as Samba's selftest shares) passes, except those a group lists in its gaps
with the reason they cannot pass yet.  (Durable handles, oplocks and leases
are in test_torture_durable.py.)"""

from __future__ import annotations

import pytest

import harness

pytestmark = pytest.mark.smbtorture

# The connection layer, on one worker: negotiate, session setup (with
# re-authentication and multichannel binding), credits, compounds, async
# compounds, session ids, interim responses, CANCEL.
CONNECTION_SUITES = [
    "smb2.connect", "smb2.credits", "smb2.compound_async", "smb2.session-id", "smb2.session",
    # Interim responses and CANCEL of a waiting request (the lock handler goes async).
    "smb2.lock.async", "smb2.lock.cancel", "smb2.lock.cancel-tdis", "smb2.lock.cancel-logoff",
]

# The file commands, on two workers, so that share modes and byte-range
# locks are held in node-local state across processes.
FILE_SUITES = ["smb2.read", "smb2.rw", "smb2.create", "smb2.getinfo", "smb2.dir", "smb2.rename",
               "smb2.lock", "smb2.ioctl", "smb2.compound", "smb2.credits"]
FILE_GAPS: dict[str, str] = {}


@pytest.mark.parametrize("suite", CONNECTION_SUITES)
def test_connection_parity(hanode_server, smbd_baseline, suite):
    harness.assert_parity(hanode_server, smbd_baseline, suite, timeout=300)


@pytest.mark.parametrize("suite", FILE_SUITES)
def test_file_parity(two_workers, smbd_baseline, suite):
    harness.assert_parity(two_workers, smbd_baseline, suite, FILE_GAPS, timeout=600)
