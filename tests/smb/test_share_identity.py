"""A worker serves a share only from the cluster's storage, and keeps
hanode's own directory of the share away from clients (smbclient, real etcd)."""

from __future__ import annotations

import shutil
import subprocess

import harness
from hanode import share_storage


def _init(target: harness.Target) -> subprocess.CompletedProcess:
    return subprocess.run([*harness.hanode_command(), "share", "init", harness.SHARE,
                           "--config", str(target.config)], capture_output=True, text=True)


def test_tree_connect_refused_once_the_marker_is_gone(hanode_server, tmp_path):
    done = _init(hanode_server)
    assert done.returncode == 0, done.stderr
    (tmp_path / "up.txt").write_text("data")
    ok = harness.smbclient(hanode_server, f"put {tmp_path / 'up.txt'} up.txt")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # The storage goes away: the share path is an empty local directory now.
    share = hanode_server.share
    saved = tmp_path / "saved"
    shutil.move(str(share), saved)
    share.mkdir()
    try:
        # etcd's id is cached for a few seconds; the marker is read at every connect.
        out = harness.smbclient(hanode_server, f"put {tmp_path / 'up.txt'} lost.txt")
        assert out.returncode != 0
        assert "NT_STATUS_BAD_NETWORK_NAME" in out.stdout + out.stderr
        assert list(share.iterdir()) == [], "a write landed outside the shared storage"
    finally:
        share.rmdir()
        shutil.move(str(saved), share)
    back = harness.smbclient(hanode_server, "ls")
    assert back.returncode == 0 and "up.txt" in back.stdout, back.stdout + back.stderr


def test_hanode_directory_is_hidden_and_closed(hanode_server, tmp_path):
    assert _init(hanode_server).returncode == 0
    assert share_storage.marker_path(str(hanode_server.share)).exists()
    listing = harness.smbclient(hanode_server, "ls")
    assert listing.returncode == 0, listing.stdout + listing.stderr
    assert ".hanode" not in listing.stdout.lower()
    for commands in ("ls .hanode\\*", "ls .HANODE", "get .hanode\\share-id " + str(tmp_path / "x"),
                     "rm .hanode\\share-id", "deltree .hanode", "mkdir .Hanode"):
        out = harness.smbclient(hanode_server, commands)
        text = out.stdout + out.stderr
        assert "NT_STATUS_OBJECT_NAME_NOT_FOUND" in text or "NT_STATUS_NO_SUCH_FILE" in text, \
            (commands, text)
    assert share_storage.marker_path(str(hanode_server.share)).exists()
