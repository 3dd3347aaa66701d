"""Share-mode and signing rules, checked against hanode and smbd alike (both
found with bench/openload.py, whose logon and frames the signing test reuses)."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest
from smbprotocol.open import (
    CreateDisposition, CreateOptions, FileAttributes, FilePipePrinterAccessMask,
    ImpersonationLevel, Open, RequestedOplockLevel, ShareAccess,
)

import durable_client as dc

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import openload  # noqa: E402


@pytest.fixture(params=["hanode", "smbd"])
def server(request):
    return request.getfixturevalue("hanode_server" if request.param == "hanode"
                                   else "smbd_server")


def _open(m: dc.Mount, name: str, access: int, share: int, level: int) -> Open:
    op = Open(m.tree, name)
    op.create(ImpersonationLevel.Impersonation, access, FileAttributes.FILE_ATTRIBUTE_NORMAL,
              share, CreateDisposition.FILE_OVERWRITE_IF, CreateOptions.FILE_NON_DIRECTORY_FILE,
              None, level)
    return op


def test_reader_that_overwrote_does_not_deny_a_writer(server):
    """Share modes weigh the access asked for: a read-only open that truncated
    the file holds no write access, so a writer sharing only reads gets in
    (with a level II oplock: the reader is still there)."""
    a = dc.mount(server.port, server.user, server.password, server.share_name, uuid.uuid4())
    b = dc.mount(server.port, server.user, server.password, server.share_name, uuid.uuid4())
    try:
        reader = _open(a, "overwritten.dat", FilePipePrinterAccessMask.GENERIC_READ, dc.SHARE_ALL,
                       RequestedOplockLevel.SMB2_OPLOCK_LEVEL_NONE)
        writer = _open(b, "overwritten.dat", dc.ACCESS, ShareAccess.FILE_SHARE_READ,
                       RequestedOplockLevel.SMB2_OPLOCK_LEVEL_BATCH)
        assert writer.oplock_level == RequestedOplockLevel.SMB2_OPLOCK_LEVEL_II
        writer.close()
        reader.close()
    finally:
        a.conn.disconnect()
        b.conn.disconnect()


def test_unsigned_tree_connect_on_311_is_refused(server, monkeypatch):
    """MS-SMB2 3.3.5.7: on 3.1.1 a user's TREE_CONNECT must be signed, even on a
    session that does not require signing; smbd answers ACCESS_DENIED."""
    def unsigned_tree_connect(command, session_id=0, tree_id=0, flags=0):
        if command == openload.TREE_CONNECT:
            flags &= ~openload.FLAG_SIGNED
        return real(command, session_id, tree_id, flags)

    real = openload._header
    monkeypatch.setattr(openload, "_header", unsigned_tree_connect)
    target = openload.Server(server.port, server.user, server.password, server.share_name,
                             server.name)
    with pytest.raises(openload.OpenLoadError, match="TREE_CONNECT .* status 0xc0000022"):
        openload.Conn(target)
    monkeypatch.setattr(openload, "_header", real)
    openload.Conn(target).close()  # signed, as every 3.1.1 client sends it: accepted
