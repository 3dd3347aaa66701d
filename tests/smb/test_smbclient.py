"""Samba's smbclient against ``hanode smb``: transfers, namespace operations
and attempts to get out of the share."""

from __future__ import annotations

import hashlib
import os
import subprocess

import pytest

import harness


def smbclient(srv: harness.Target, commands: str, *extra: str, protocol: str = "SMB3",
              check: bool = True, share: str | None = None) -> subprocess.CompletedProcess:
    """``commands`` over ``protocol``; with ``check``, they must all succeed."""
    proc = harness.smbclient(srv, commands, "-m", protocol, *extra, timeout=300, share=share)
    if check:
        assert proc.returncode == 0 and "NT_STATUS" not in proc.stdout, (
            proc.stdout + proc.stderr)
    return proc


def _sha256(path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


@pytest.mark.parametrize("protocol, extra", [
    ("SMB3", ()),
    ("SMB3", ("--client-protection=encrypt",)),
    ("SMB2_02", ("--client-protection=sign",)),
])
def test_put_get_64mib_roundtrip(two_workers, tmp_path, protocol, extra):
    src = tmp_path / "src.bin"
    with open(src, "wb") as f:
        f.write(os.urandom(64 << 20))
    back = tmp_path / "back.bin"
    smbclient(two_workers, f"put {src} big.bin; get big.bin {back}", *extra, protocol=protocol)
    want = _sha256(src)
    assert _sha256(two_workers.share / "big.bin") == want
    assert _sha256(back) == want


def test_ls_mkdir_rename_rm_rmdir(two_workers):
    share = two_workers.share
    (share / "hello.txt").write_text("hello")
    out = smbclient(two_workers, "ls").stdout
    assert "hello.txt" in out and " 5 " in out
    smbclient(two_workers, "mkdir Sub; rename hello.txt Sub\\moved.txt")
    assert (share / "Sub" / "moved.txt").read_text() == "hello"
    assert not (share / "hello.txt").exists()
    out = smbclient(two_workers, "ls sub\\*").stdout  # case-insensitive lookup
    assert "moved.txt" in out
    smbclient(two_workers, "rm Sub\\moved.txt; rmdir Sub")
    assert sorted(os.listdir(share)) == []


def test_non_empty_directory_is_not_removed(two_workers):
    (two_workers.share / "d").mkdir()
    (two_workers.share / "d" / "f").write_text("x")
    out = smbclient(two_workers, "rmdir d", check=False).stdout
    assert "NT_STATUS_DIRECTORY_NOT_EMPTY" in out
    assert (two_workers.share / "d" / "f").exists()


def test_symlink_to_etc_cannot_be_read_or_listed(two_workers, tmp_path):
    (two_workers.share / "etc").symlink_to("/etc")
    (two_workers.share / "passwd").symlink_to("/etc/passwd")
    out = smbclient(two_workers, f"get passwd {tmp_path / 'p1'}", check=False).stdout
    assert "NT_STATUS_ACCESS_DENIED" in out
    out = smbclient(two_workers, f"get etc\\passwd {tmp_path / 'p2'}", check=False).stdout
    assert "NT_STATUS_OBJECT_PATH_NOT_FOUND" in out
    out = smbclient(two_workers, "ls etc\\*", check=False).stdout
    assert "NT_STATUS_ACCESS_DENIED" in out
    assert not (tmp_path / "p1").exists() and not (tmp_path / "p2").exists()
    listing = smbclient(two_workers, "ls").stdout
    assert "passwd" not in listing and "etc" not in listing


def test_dotdot_cannot_leave_the_share(two_workers, tmp_path):
    """smbclient folds '..' itself before sending; raw '..' names are sent by
    the smbprotocol tests.  Whatever reaches the server must stay inside."""
    (tmp_path / "outside.txt").write_text("secret")
    out = smbclient(two_workers, f"get ..\\outside.txt {tmp_path / 'got'}", check=False).stdout
    assert "NT_STATUS_OBJECT_NAME_NOT_FOUND" in out
    assert not (tmp_path / "got").exists()
    smbclient(two_workers, "mkdir ..\\escaped", check=False)
    assert not (tmp_path / "escaped").exists()


def test_unknown_share_is_refused(two_workers):
    proc = smbclient(two_workers, "ls", check=False, share="nosuch")
    assert proc.returncode != 0
    assert "NT_STATUS_BAD_NETWORK_NAME" in proc.stdout + proc.stderr


def test_listing_one_name_exact_other_case_and_symlink(two_workers):
    """A pattern without wildcards is looked up directly when it names an
    entry exactly; another spelling still finds it (the listing fallback), and
    a symlink named exactly stays invisible and undeletable."""
    share = two_workers.share
    for i in range(50):
        (share / f"f{i:02d}.txt").write_text("x" * i)
    (share / "link.txt").symlink_to("/etc/passwd")
    exact = smbclient(two_workers, "ls f07.txt").stdout
    assert "f07.txt" in exact and " 7 " in exact and "f08.txt" not in exact
    other = smbclient(two_workers, "ls F07.TXT").stdout
    assert "f07.txt" in other and "f08.txt" not in other
    out = smbclient(two_workers, "ls link.txt", check=False).stdout
    assert "NT_STATUS_NO_SUCH_FILE" in out
    smbclient(two_workers, "del f07.txt; del F08.TXT")
    assert not (share / "f07.txt").exists() and not (share / "f08.txt").exists()
    out = smbclient(two_workers, "del link.txt", check=False).stdout
    assert "NT_STATUS_NO_SUCH_FILE" in out
    assert (share / "link.txt").is_symlink() and (share / "f09.txt").exists()
