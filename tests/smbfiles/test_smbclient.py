"""Samba's smbclient against ``hanode smb``: transfers, namespace operations
and attempts to get out of the share."""

from __future__ import annotations

import hashlib
import os
import subprocess

import pytest



def smbclient(srv, commands: str, *extra: str, protocol: str = "SMB3",
              check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        ["smbclient", "-m", protocol, "-p", str(srv.port), srv.unc,
         "-U", srv.credentials, *extra, "-c", commands],
        capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0 and "NT_STATUS" not in proc.stdout, (
            proc.stdout + proc.stderr)
    return proc


def _sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@pytest.mark.parametrize("protocol, extra", [
    ("SMB3", ()),
    ("SMB3", ("--client-protection=encrypt",)),
    ("SMB2_02", ("--client-protection=sign",)),
])
def test_put_get_64mib_roundtrip(smb_server, tmp_path, protocol, extra):
    src = tmp_path / "src.bin"
    with open(src, "wb") as f:
        f.write(os.urandom(64 << 20))
    back = tmp_path / "back.bin"
    smbclient(smb_server, f"put {src} big.bin; get big.bin {back}", *extra, protocol=protocol)
    want = _sha256(src)
    assert _sha256(smb_server.share / "big.bin") == want
    assert _sha256(back) == want


def test_ls_mkdir_rename_rm_rmdir(smb_server):
    share = smb_server.share
    (share / "hello.txt").write_text("hello")
    out = smbclient(smb_server, "ls").stdout
    assert "hello.txt" in out and " 5 " in out
    smbclient(smb_server, "mkdir Sub; rename hello.txt Sub\\moved.txt")
    assert (share / "Sub" / "moved.txt").read_text() == "hello"
    assert not (share / "hello.txt").exists()
    out = smbclient(smb_server, "ls sub\\*").stdout  # case-insensitive lookup
    assert "moved.txt" in out
    smbclient(smb_server, "rm Sub\\moved.txt; rmdir Sub")
    assert sorted(os.listdir(share)) == []


def test_non_empty_directory_is_not_removed(smb_server):
    (smb_server.share / "d").mkdir()
    (smb_server.share / "d" / "f").write_text("x")
    out = smbclient(smb_server, "rmdir d", check=False).stdout
    assert "NT_STATUS_DIRECTORY_NOT_EMPTY" in out
    assert (smb_server.share / "d" / "f").exists()


def test_symlink_to_etc_cannot_be_read_or_listed(smb_server, tmp_path):
    (smb_server.share / "etc").symlink_to("/etc")
    (smb_server.share / "passwd").symlink_to("/etc/passwd")
    out = smbclient(smb_server, f"get passwd {tmp_path / 'p1'}", check=False).stdout
    assert "NT_STATUS_ACCESS_DENIED" in out
    out = smbclient(smb_server, f"get etc\\passwd {tmp_path / 'p2'}", check=False).stdout
    assert "NT_STATUS_OBJECT_PATH_NOT_FOUND" in out
    out = smbclient(smb_server, "ls etc\\*", check=False).stdout
    assert "NT_STATUS_ACCESS_DENIED" in out
    assert not (tmp_path / "p1").exists() and not (tmp_path / "p2").exists()
    listing = smbclient(smb_server, "ls").stdout
    assert "passwd" not in listing and "etc" not in listing


def test_dotdot_cannot_leave_the_share(smb_server, tmp_path):
    """smbclient folds '..' itself before sending; raw '..' names are sent by
    the smbprotocol tests.  Whatever reaches the server must stay inside."""
    (tmp_path / "outside.txt").write_text("secret")
    out = smbclient(smb_server, f"get ..\\outside.txt {tmp_path / 'got'}", check=False).stdout
    assert "NT_STATUS_OBJECT_NAME_NOT_FOUND" in out
    assert not (tmp_path / "got").exists()
    smbclient(smb_server, "mkdir ..\\escaped", check=False)
    assert not (tmp_path / "escaped").exists()


def test_unknown_share_is_refused(smb_server):
    proc = subprocess.run(
        ["smbclient", "-m", "SMB3", "-p", str(smb_server.port), "//127.0.0.1/nosuch",
         "-U", smb_server.credentials, "-c", "ls"],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "NT_STATUS_BAD_NETWORK_NAME" in proc.stdout + proc.stderr


def test_listing_one_name_exact_other_case_and_symlink(smb_server):
    """A pattern without wildcards is looked up directly when it names an
    entry exactly; another spelling still finds it (the listing fallback), and
    a symlink named exactly stays invisible and undeletable."""
    share = smb_server.share
    for i in range(50):
        (share / f"f{i:02d}.txt").write_text("x" * i)
    (share / "link.txt").symlink_to("/etc/passwd")
    exact = smbclient(smb_server, "ls f07.txt").stdout
    assert "f07.txt" in exact and " 7 " in exact and "f08.txt" not in exact
    other = smbclient(smb_server, "ls F07.TXT").stdout
    assert "f07.txt" in other and "f08.txt" not in other
    out = smbclient(smb_server, "ls link.txt", check=False).stdout
    assert "NT_STATUS_NO_SUCH_FILE" in out
    smbclient(smb_server, "del f07.txt; del F08.TXT")
    assert not (share / "f07.txt").exists() and not (share / "f08.txt").exists()
    out = smbclient(smb_server, "del link.txt", check=False).stdout
    assert "NT_STATUS_NO_SUCH_FILE" in out
    assert (share / "link.txt").is_symlink() and (share / "f09.txt").exists()
