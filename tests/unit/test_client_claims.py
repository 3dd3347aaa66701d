"""Which worker serves a multichannel client: the node table between real processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from smb.server.nodelocal import NodeLocal

GUID = bytes(range(16))


def test_a_client_stays_with_the_live_worker_that_claimed_it(tmp_path):
    path = tmp_path / "node.sqlite"
    code = textwrap.dedent(f"""
        import time
        from smb.server.nodelocal import NodeLocal
        t = NodeLocal({str(path)!r})
        assert t.claim_client({GUID!r}, b"other") is None
        print("ready", flush=True)
        time.sleep(600)
    """)
    other = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    table = NodeLocal(path)
    try:
        assert other.stdout.readline().strip() == "ready"
        assert table.claim_client(GUID, b"me") == b"other"
        assert table.claim_client(bytes(16 * [7]), b"me") is None  # nobody serves that one
        other.kill()
        other.wait()
        # Its worker died: the client is this worker's from now on.
        assert table.claim_client(GUID, b"me") is None
        assert table.claim_client(GUID, b"me") is None
    finally:
        other.kill()
        other.wait()
        table.close()
