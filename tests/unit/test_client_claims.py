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


def test_a_released_client_is_free_for_the_next_worker(tmp_path):
    code = textwrap.dedent(f"""
        import sys
        from smb.server.nodelocal import NodeLocal
        t = NodeLocal({str(tmp_path / "node.sqlite")!r})
        assert t.claim_client({GUID!r}, b"other") is None
        print("claimed", flush=True)
        sys.stdin.readline()
        t.release_client({GUID!r})
        print("released", flush=True)
        sys.stdin.readline()
    """)
    other = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    table = NodeLocal(tmp_path / "node.sqlite")
    try:
        assert other.stdout.readline().strip() == "claimed"
        table.release_client(GUID)  # not this worker's claim: it stays
        assert table.claim_client(GUID, b"me") == b"other"
        other.stdin.write("\n")
        other.stdin.flush()
        assert other.stdout.readline().strip() == "released"
        assert table.claim_client(GUID, b"me") is None  # its worker lives, but let it go
    finally:
        other.kill()
        other.wait()
        table.close()
