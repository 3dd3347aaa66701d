"""Two smbprotocol clients of one file through the VIP, for the persistent-lock
failover test (tests/cluster/test_ca_failover.py), driven one command a line.

The owner holds a persistent handle (DH2Q with the persistent flag, no oplock,
no lease; shares only reads) and an exclusive byte-range lock on it; another
client, on a fresh connection each time, tries what the owner's open must
refuse.  Answers one JSON line per command:

- ``hold``: the owner opens NAME, writes DATA, locks [0, LOCKED);
  {"persistent": flag granted}
- ``probe``: another client tries a read/write open sharing only reads
  ({"open": status}), then opens for reading sharing all and tries an exclusive
  LOCK of [0, LOCKED) ({"lock": status}) and a READ in it ({"read": status})
- ``rapid``: another client, on one connection made as soon as the VIP answers
  (retried from the moment the command comes), tries the conflicting open
  RAPID times back to back, closing any it was wrongly granted;
  {"opens": [status, ...], "waited": seconds until the VIP answered}
- ``reclaim``: the owner on a new connection (same client GUID) sends DH2C with
  the persistent flag; {"reclaim": status, "data": whether it reads DATA back}
- ``release``: the owner closes its handle; {"closed": true}

A status is the NTSTATUS as an int, 0 for success.

Usage: python lock_client.py SERVER USER SHARE NAME  (password on stdin)
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path

from smbprotocol.connection import Dialects
from smbprotocol.exceptions import SMBResponseException
from smbprotocol.open import (
    CreateDisposition, CreateOptions, FileAttributes, FilePipePrinterAccessMask,
    ImpersonationLevel, LockFlags, Open, RequestedOplockLevel, ShareAccess,
)

# The SMB tests' client helpers (mount, DH2Q/DH2C contexts), not a package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "smb"))
import durable_client as dc  # noqa: E402
from test_persistent import dh2c, persistent_open  # noqa: E402

DATA = b"held through the failover"
LOCKED = 4096
RAPID = 20
EXCLUSIVE_NOW = LockFlags.SMB2_LOCKFLAG_EXCLUSIVE_LOCK | LockFlags.SMB2_LOCKFLAG_FAIL_IMMEDIATELY


def status_of(call) -> int:
    try:
        call()
    except SMBResponseException as exc:
        return exc.status
    return 0


class Clients:
    def __init__(self, server: str, user: str, password: str, share: str, name: str):
        self.server, self.user, self.password, self.share, self.name = \
            server, user, password, share, name
        self.client_guid, self.create_guid = uuid.uuid4(), uuid.uuid4()
        self.owner: dc.Mount | None = None
        self.handle: Open | None = None

    def _mount(self, client_guid: uuid.UUID, connect_timeout: float = 5,
               dialect: int | None = None) -> dc.Mount:
        return dc.mount(445, self.user, self.password, self.share, client_guid, self.server,
                        connect_timeout, dialect)

    def hold(self) -> dict:
        self.owner = self._mount(self.client_guid)
        self.handle, granted = persistent_open(self.owner.tree, self.name, self.create_guid)
        self.handle.write(DATA, 0)
        self.handle.lock([dc.lock_element(0, LOCKED, EXCLUSIVE_NOW)])
        return {"persistent": granted.get("flags", 0)}

    def probe(self) -> dict:
        """What another 3.x client meets: a writer the owner's share mode excludes
        ("open") and a reader it allows ("share_reader", refused too while the
        owner's persistent open is disconnected, MS-SMB2 3.3.5.9); and what a
        2.1 reader, let in either way, meets at the locked range."""
        other = self._mount(uuid.uuid4())
        old = self._mount(uuid.uuid4(), dialect=Dialects.SMB_2_1_0)
        try:
            answer = {"open": dc.conflicting_open_status(other.tree, self.name)}
            sharing = Open(other.tree, self.name)
            answer["share_reader"] = status_of(lambda: sharing.create(
                ImpersonationLevel.Impersonation, FilePipePrinterAccessMask.GENERIC_READ,
                FileAttributes.FILE_ATTRIBUTE_NORMAL, dc.SHARE_ALL, CreateDisposition.FILE_OPEN,
                CreateOptions.FILE_NON_DIRECTORY_FILE, None,
                RequestedOplockLevel.SMB2_OPLOCK_LEVEL_NONE))
            reader = Open(old.tree, self.name)
            reader.create(ImpersonationLevel.Impersonation, FilePipePrinterAccessMask.GENERIC_READ,
                          FileAttributes.FILE_ATTRIBUTE_NORMAL, dc.SHARE_ALL,
                          CreateDisposition.FILE_OPEN, CreateOptions.FILE_NON_DIRECTORY_FILE,
                          None, RequestedOplockLevel.SMB2_OPLOCK_LEVEL_NONE)
            answer["read"] = status_of(lambda: reader.read(0, len(DATA)))
            answer["lock"] = status_of(
                lambda: reader.lock([dc.lock_element(0, LOCKED, EXCLUSIVE_NOW)]))
            return answer
        finally:
            other.conn.disconnect()
            old.conn.disconnect()

    def rapid(self) -> dict:
        began = time.monotonic()
        while True:
            try:
                other = self._mount(uuid.uuid4(), connect_timeout=0.3)
                break
            except Exception:  # nobody answers on the VIP yet (or the dead node did)
                if time.monotonic() - began > 20:
                    raise
                time.sleep(0.02)
        waited = time.monotonic() - began
        try:
            opens = []
            for _ in range(RAPID):
                attempt = Open(other.tree, self.name)
                opens.append(status_of(lambda: attempt.create(
                    ImpersonationLevel.Impersonation, dc.ACCESS,
                    FileAttributes.FILE_ATTRIBUTE_NORMAL, ShareAccess.FILE_SHARE_READ,
                    CreateDisposition.FILE_OPEN, CreateOptions.FILE_NON_DIRECTORY_FILE, None,
                    RequestedOplockLevel.SMB2_OPLOCK_LEVEL_NONE)))
                if opens[-1] == 0:  # wrongly granted: let the next attempt meet only the owner
                    attempt.close()
            return {"opens": opens, "waited": round(waited, 3)}
        finally:
            other.conn.disconnect()

    def reclaim(self) -> dict:
        self.owner = self._mount(self.client_guid)  # the old connection died with its node
        assert self.handle is not None
        handle = Open(self.owner.tree, "")
        status = status_of(lambda: handle.create(
            ImpersonationLevel.Impersonation, dc.ACCESS, FileAttributes.FILE_ATTRIBUTE_NORMAL,
            ShareAccess.FILE_SHARE_READ, CreateDisposition.FILE_OPEN,
            CreateOptions.FILE_NON_DIRECTORY_FILE, [dh2c(self.handle.file_id, self.create_guid)],
            RequestedOplockLevel.SMB2_OPLOCK_LEVEL_NONE))
        if status:
            return {"reclaim": status, "data": False}
        self.handle = handle
        return {"reclaim": 0, "data": handle.read(0, len(DATA)) == DATA}

    def release(self) -> dict:
        assert self.handle is not None and self.owner is not None
        self.handle.close()
        self.owner.conn.disconnect()
        return {"closed": True}


def main() -> int:
    server, user, share, name = sys.argv[1:5]
    clients = Clients(server, user, sys.stdin.readline().rstrip("\n"), share, name)
    for line in sys.stdin:
        command = line.strip()
        try:
            answer = getattr(clients, command)()
        except Exception as exc:  # reported to the test, which fails on it
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(answer), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
