"""smbtorture parity: hanode must pass every test a private smbd (configured
as Samba's selftest shares) passes, except those a group lists in its gaps
with the reason they cannot pass yet.  (Durable handles, oplocks and leases
are in test_torture_durable.py.)  The suites run several at once, each on a
fresh server (see the ``parity_runs`` fixture)."""

from __future__ import annotations

import pytest

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
# locks are held in node-local state across processes.  smb2.compound comes
# first: it waits longest (a 35 s break, interim2's 60 s), so it starts first.
FILE_SUITES = ["smb2.compound", "smb2.read", "smb2.rw", "smb2.create", "smb2.getinfo",
               "smb2.dir", "smb2.rename", "smb2.lock", "smb2.ioctl", "smb2.credits"]
FILE_GAPS: dict[str, str] = {}

PARITY = {"test_connection_parity": {"workers": 1, "timeout": 300},
          "test_file_parity": {"workers": 2, "timeout": 600}}


@pytest.mark.parametrize("suite", CONNECTION_SUITES)
def test_connection_parity(parity_runs, suite):
    parity_runs.check(suite, **PARITY["test_connection_parity"])


@pytest.mark.parametrize("suite", FILE_SUITES)
def test_file_parity(parity_runs, suite):
    parity_runs.check(suite, FILE_GAPS, **PARITY["test_file_parity"])
