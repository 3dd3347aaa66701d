"""A dead node's disconnected durable handle that was created delete-on-close:
when a conflicting open on the surviving node purges it, its file is deleted
as its CLOSE would have made it (issue 4).  Two nodes (two ``hanode smb``, one
etcd, one shared storage directory); node 1 is SIGKILLed whole."""

from __future__ import annotations

import os
import signal
import uuid

from smbprotocol.open import (
    CreateDisposition, CreateOptions, FileAttributes, ImpersonationLevel, Open,
    RequestedOplockLevel, ShareAccess,
)

import durable_client as dc
import harness
from test_durable_orphans import _wait_orphans_known
from test_durable_reclaim import _cluster, _durable_records_left

DELETE = 0x00010000


def test_purged_orphan_with_delete_on_close_deletes_the_file(etcd_server, tmp_path):
    n1 = harness.start_hanode(etcd_server.url, tmp_path / "n1", workers=1)
    n2 = None
    try:
        n2 = harness.start_hanode(etcd_server.url, tmp_path / "n2", workers=1,
                                  cluster=_cluster(n1), node="n2", share=n1.share)
        m = dc.mount(n1.port, n1.user, n1.password, n1.share_name, uuid.uuid4())
        op = Open(m.tree, "doc.bin")
        contexts = op.create(ImpersonationLevel.Impersonation, dc.ACCESS | DELETE,
                             FileAttributes.FILE_ATTRIBUTE_NORMAL, ShareAccess.FILE_SHARE_READ,
                             CreateDisposition.FILE_OVERWRITE_IF,
                             CreateOptions.FILE_NON_DIRECTORY_FILE
                             | CreateOptions.FILE_DELETE_ON_CLOSE,
                             [dc.dh2q(uuid.uuid4())], RequestedOplockLevel.SMB2_OPLOCK_LEVEL_BATCH)
        assert any(isinstance(c, dc.SMB2CreateDurableHandleResponseV2) for c in contexts)
        op.write(b"scratch", 0)
        os.killpg(n1.proc.pid, signal.SIGKILL)
        n1.proc.wait()
        _wait_orphans_known(etcd_server.url, n2, "n2")
        assert (n2.share / "doc.bin").exists()
        other = dc.mount(n2.port, n2.user, n2.password, n2.share_name, uuid.uuid4())
        status = dc.conflicting_open_status(other.tree, "doc.bin")
        other.conn.disconnect()
        assert status == dc.OBJECT_NAME_NOT_FOUND  # purged, deleted, then looked up
        assert not (n2.share / "doc.bin").exists()
        assert _durable_records_left(etcd_server.url, n2) == []
    finally:
        harness.stop(n1)
        if n2 is not None:
            harness.stop(n2)
    assert "Traceback" not in n2.log_text(), n2.log_text()[-4000:]
