"""``hanode share init`` and the marker rules, against a real etcd and real directories."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hanode import share_storage
from hanode.config import ShareConfig
from hanode.share_storage import ShareInitError, init, marker_path, marker_problem, read_marker


def test_init_once_then_idempotent_then_refuses_an_empty_mount_point(etcd_server, tmp_path):
    store = etcd_server.store()
    share = ShareConfig("test", str(tmp_path / "shared"))
    (tmp_path / "shared").mkdir()
    first = init(store, share)
    share_id = read_marker(share.path)
    assert share_id and share_storage.stored_id(store, "TEST") == share_id
    assert first.startswith(f"share test: id {share_id} written to")
    assert marker_problem(share.path, share_id) is None
    assert init(store, share) == f"share test: already initialised (id {share_id})"

    # The storage is not mounted here: an empty directory in its place.
    empty = ShareConfig("test", str(tmp_path / "empty"))
    (tmp_path / "empty").mkdir()
    assert marker_problem(empty.path, share_id) == "storage marker missing (not mounted?)"
    with pytest.raises(ShareInitError) as err:
        init(store, empty)
    assert str(err.value) == (f"share test: etcd has id {share_id} but {empty.path} has no "
                              f"marker: is the shared storage mounted here? "
                              f"(--force makes a new id)")
    assert not marker_path(empty.path).exists()

    # Another volume with a marker of its own.
    share_storage.write_marker(empty.path, "other-id")
    assert marker_problem(empty.path, share_id) == (
        f"storage marker other-id is not the cluster's {share_id} (wrong storage?)")
    assert init(store, empty, force=True).startswith("share test: id ")
    assert share_storage.stored_id(store, "test") == read_marker(empty.path) != share_id


def test_probe_storage_leaves_nothing_but_the_hidden_directory(tmp_path):
    share_storage.probe_storage(str(tmp_path), "n1")
    assert [p.name for p in tmp_path.iterdir()] == [".hanode"]
    assert list((tmp_path / ".hanode").iterdir()) == []


def test_cli_verb_names_an_unknown_share_in_one_line(etcd_server, tmp_path):
    config = tmp_path / "hanode.toml"
    config.write_text(f'[cluster]\netcd = ["{etcd_server.url}"]\n[node]\nname = "n1"\n'
                      f'[[share]]\nname = "test"\npath = "{tmp_path}"\n')
    proc = subprocess.run([sys.executable, "-m", "hanode.cli", "share", "init", "nope",
                           "--config", str(config)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr == f"hanode: {config}: no share 'nope' (shares: test)\n"
    proc = subprocess.run([sys.executable, "-m", "hanode.cli", "share", "init", "test",
                           "--config", str(config)], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("share test: id ")
