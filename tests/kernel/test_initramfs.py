"""The initramfs builder's pure parts: which modules go in, in which order,
and a newc archive busybox's cpio reads back."""

from __future__ import annotations

import io
import subprocess

import pytest

import initramfs

DEP = """kernel/fs/smb/client/cifs.ko: kernel/fs/smb/common/cifs_md4.ko kernel/fs/netfs/netfs.ko
kernel/fs/smb/common/cifs_md4.ko:
kernel/fs/netfs/netfs.ko: kernel/fs/fscache/fscache.ko
kernel/fs/fscache/fscache.ko:
kernel/crypto/ghash-generic.ko: kernel/crypto/gf128mul.ko
kernel/crypto/gf128mul.ko:
"""


def test_closure_puts_dependencies_first_once():
    assert initramfs.module_closure(DEP, ("cifs", "ghash_generic", "netfs")) == [
        "kernel/fs/smb/common/cifs_md4.ko", "kernel/fs/fscache/fscache.ko",
        "kernel/fs/netfs/netfs.ko", "kernel/fs/smb/client/cifs.ko",
        "kernel/crypto/gf128mul.ko", "kernel/crypto/ghash-generic.ko"]


def test_closure_names_a_missing_module():
    with pytest.raises(initramfs.InitramfsError, match="virtio_net"):
        initramfs.module_closure(DEP, ("virtio_net",))


def test_cpio_is_read_back_by_busybox():
    out = io.BytesIO()
    archive = initramfs.Cpio(out)
    archive.file("etc/a/b.txt", b"hello")
    archive.symlink("bin/sh", "/bin/busybox")
    archive.file("init", b"#!/bin/sh\n", 0o755)
    archive.close()
    listed = subprocess.run(["busybox", "cpio", "-t"], input=out.getvalue(),
                            capture_output=True, check=True).stdout.decode().split()
    assert listed == ["etc", "etc/a", "etc/a/b.txt", "bin/sh", "init"]
