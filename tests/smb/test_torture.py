"""smbtorture parity: hanode must pass every test a private smbd passes.

The suites here exercise the connection layer (negotiate, session setup,
credits, compounds, async compounds, session ids, interim responses, CANCEL).
The rest of smb2.session is not here yet: each of those tests opens its file
with a batch oplock and checks the grant, and oplocks are not implemented yet.
"""

from __future__ import annotations

import pytest

import harness

pytestmark = pytest.mark.smbtorture


@pytest.mark.parametrize("suite", [
    "smb2.connect", "smb2.credits", "smb2.compound_async", "smb2.session-id",
    # The two smb2.session tests that open no file with an oplock.
    "smb2.session.two_logoff", "smb2.session.ntlmssp_bug14932",
    # Interim responses and CANCEL of a waiting request (the lock handler goes async).
    "smb2.lock.async", "smb2.lock.cancel", "smb2.lock.cancel-tdis", "smb2.lock.cancel-logoff",
])
def test_parity_with_smbd(hanode_server, smbd_server, suite):
    ours, theirs, missing = harness.compare_suite(hanode_server, smbd_server, suite,
                                                  timeout=300)
    assert theirs.results, f"smbd ran no test of {suite}:\n{theirs.output[-3000:]}"
    assert not missing, "\n".join(missing) + "\n" + ours.output[-4000:]
