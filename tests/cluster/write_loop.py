"""A client (smbprotocol) writing CHUNK-byte requests back to back through the
VIP, one at a time, for tests/cluster/test_drain_move.py.

Prints ``ready`` once the file is open, then one line per WRITE:
``ok N`` when its reply came, and at the first one that did not, ``no-credit``
(the server left too few credits to send it: nothing went on the wire) or
``broken`` (the connection failed under it), and exits.

Usage: python write_loop.py SERVER PORT USER NAME CHUNK  (password on stdin)
"""

from __future__ import annotations

import os
import sys
import time
import uuid

from smbprotocol.connection import Connection
from smbprotocol.exceptions import SMBException
from smbprotocol.open import (
    CreateDisposition, CreateOptions, FileAttributes, FilePipePrinterAccessMask,
    ImpersonationLevel, Open, ShareAccess,
)
from smbprotocol.session import Session
from smbprotocol.tree import TreeConnect


def main() -> int:
    server, port, user, name, chunk = sys.argv[1:6]
    password = sys.stdin.readline().rstrip("\n")
    conn = Connection(uuid.uuid4(), server, int(port))
    conn.connect(timeout=5)
    session = Session(conn, user, password, require_encryption=False)
    session.connect()
    tree = TreeConnect(session, rf"\\{server}\test")
    tree.connect()
    f = Open(tree, name)
    f.create(ImpersonationLevel.Impersonation, FilePipePrinterAccessMask.GENERIC_WRITE,
             FileAttributes.FILE_ATTRIBUTE_NORMAL, ShareAccess.FILE_SHARE_READ,
             CreateDisposition.FILE_OVERWRITE_IF, CreateOptions.FILE_NON_DIRECTORY_FILE)
    print("ready", flush=True)
    data = os.urandom(int(chunk))
    n = 0
    while True:
        message, _ = f.write(data, n * len(data), send=False)
        try:
            request = conn.send(message, session.session_id, tree.tree_connect_id)
        except SMBException as exc:
            word = "no-credit" if "credits are available" in str(exc) else "broken"
            print(word, exc, flush=True)
            return 0
        try:
            response = conn.receive(request, timeout=5)
        except Exception as exc:  # noqa: BLE001 - any failure here is the connection's
            print("broken", type(exc).__name__, exc, flush=True)
            return 0
        if response["status"].get_value() != 0:
            print("broken", f"status {response['status'].get_value():#x}", flush=True)
            return 0
        n += 1
        print("ok", n, f"{time.monotonic():.3f}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
