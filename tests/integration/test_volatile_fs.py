"""The lab's write-losing storage (hanode.volatile_fs), mounted for real with FUSE by
hanode.lab.start_volatile_fs: what was not synced is gone from the backing
directory once the layer is killed; what was (fsync, fdatasync, O_DSYNC, O_SYNC)
is there, byte for byte."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hanode.lab import LabError, start_volatile_fs, stop_volatile_fs

PAYLOAD = os.urandom(300_000)  # several blocks, the last one partial


@pytest.fixture
def layer(tmp_path):
    """(backing, mountpoint, kill): a layer over backing; kill() is its node's death."""
    backing, mnt = tmp_path / "backing", tmp_path / "mnt"
    backing.mkdir()
    mnt.mkdir()
    proc = start_volatile_fs(backing, mnt, tmp_path / "layer.log")
    try:
        yield backing, mnt, lambda: stop_volatile_fs(proc, mnt)
    finally:
        stop_volatile_fs(proc, mnt)
        assert not os.path.ismount(mnt)


def write(path: Path, data: bytes, flags: int = 0, sync=None) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | flags, 0o644)
    try:
        os.write(fd, data)
        if sync is not None:
            sync(fd)
    finally:
        os.close(fd)


def test_unsynced_write_is_visible_through_the_layer_and_lost_with_it(layer):
    backing, mnt, kill = layer
    write(mnt / "f.bin", PAYLOAD)
    # Closed, and read back whole through the layer: as a local page cache would.
    assert (mnt / "f.bin").read_bytes() == PAYLOAD
    assert os.stat(mnt / "f.bin").st_size == len(PAYLOAD)
    kill()
    assert (backing / "f.bin").exists()  # the create reached the storage,
    assert (backing / "f.bin").read_bytes() == b""  # the data did not


@pytest.mark.parametrize("how", ["fsync", "fdatasync", "O_DSYNC", "O_SYNC"])
def test_synced_write_survives_the_layer(layer, how):
    backing, mnt, kill = layer
    if how.startswith("O_"):
        write(mnt / "f.bin", PAYLOAD, flags=getattr(os, how))
    else:
        write(mnt / "f.bin", PAYLOAD, sync=getattr(os, how))
    # Written after the sync and not synced itself: lost.
    with open(mnt / "f.bin", "r+b") as f:
        f.seek(5)
        f.write(b"LOST")
    assert (mnt / "f.bin").read_bytes()[5:9] == b"LOST"
    kill()
    assert (backing / "f.bin").read_bytes() == PAYLOAD


def test_rename_and_truncate_carry_unsynced_data_until_fsync(layer):
    backing, mnt, kill = layer
    write(backing / "old.bin", b"x" * 200_000)
    with open(mnt / "old.bin", "r+b") as f:
        f.write(b"y" * 1000)
        f.truncate(150_000)
    os.rename(mnt / "old.bin", mnt / "new.bin")
    expected = b"y" * 1000 + b"x" * 149_000
    assert (mnt / "new.bin").read_bytes() == expected
    # Not synced: the storage still holds the file as it was.
    assert (backing / "new.bin").read_bytes() == b"x" * 200_000
    fd = os.open(mnt / "new.bin", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    kill()
    assert (backing / "new.bin").read_bytes() == expected


def test_another_nodes_layer_sees_only_what_was_synced(layer, tmp_path):
    backing, mnt, kill = layer
    other = tmp_path / "other"
    other.mkdir()
    proc = start_volatile_fs(backing, other, tmp_path / "other.log")
    try:
        write(mnt / "a.bin", b"unsynced")
        write(mnt / "b.bin", b"synced", sync=os.fsync)
        assert (other / "a.bin").read_bytes() == b""
        assert (other / "b.bin").read_bytes() == b"synced"
    finally:
        stop_volatile_fs(proc, other)


def test_a_killed_layer_is_cleaned_up(layer, tmp_path):
    _, mnt, kill = layer
    kill()
    kill()  # twice: nothing left to do, no error
    assert not os.path.ismount(mnt)


def test_a_layer_that_cannot_mount_says_why(tmp_path):
    with pytest.raises(LabError, match="did not mount"):
        start_volatile_fs(tmp_path / "missing", tmp_path / "nowhere", tmp_path / "l.log",
                          timeout=5)
