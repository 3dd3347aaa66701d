"""Letting an open go (smb.server.opens.release_open) outside a worker: its
node-table rows, its delete-on-close, its descriptor."""

from __future__ import annotations

import logging
import os

from smb import vfs
from smb.server.nodelocal import NodeLocal
from smb.server.opens import Open, TreeConnect, release_open


def _open_dir_deleting_on_close(tmp_path, name):
    share = tmp_path / "share"
    (share / name).mkdir(parents=True)
    node = NodeLocal(str(tmp_path / "node.sqlite"))
    tree = TreeConnect(tree_id=1, share=None, root=vfs.Share(str(share)), read_only=False,
                       encrypt_data=False, maximal_access=0x1F01FF, node=node)
    fd = os.open(share / name, os.O_RDONLY | os.O_DIRECTORY)
    st = os.fstat(fd)
    op = Open(file_id=b"\x01" * 16, tree=tree, fd=fd, parts=(name,), is_dir=True,
              access=0x10000, dev=st.st_dev, ino=st.st_ino)
    node.register_open(op.key, st.st_dev, st.st_ino, op.access, 7, delete_on_close=True)
    tree.opens[op.file_id] = op
    return share, op


async def test_a_delete_on_close_that_fails_is_logged_not_dropped(tmp_path, caplog):
    share, op = _open_dir_deleting_on_close(tmp_path, "d")
    (share / "d" / "filled-meanwhile").write_bytes(b"x")  # rmdir will fail: not empty
    with caplog.at_level(logging.WARNING, logger="smb.server.opens"):
        await release_open(op)
    assert (share / "d").is_dir()
    failed = [r for r in caplog.records if "delete-on-close" in r.getMessage()]
    assert failed and "d" in failed[0].getMessage() and failed[0].levelno == logging.WARNING
    try:
        os.fstat(op.fd)
    except OSError:
        pass  # closed, as it must be
    else:
        raise AssertionError("descriptor left open")


async def test_a_delete_on_close_that_works_logs_nothing(tmp_path, caplog):
    share, op = _open_dir_deleting_on_close(tmp_path, "e")
    with caplog.at_level(logging.WARNING, logger="smb.server.opens"):
        await release_open(op)
    assert not (share / "e").exists()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
