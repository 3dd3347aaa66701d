"""Per-share rules through real clients: ``read_only``, ``users`` and
``encrypt`` of ``[[share]]``."""

from __future__ import annotations

import subprocess

import pytest

from tests.smb import harness


@pytest.fixture
def shares_server(etcd_server, tmp_path):
    """One server with the main share plus a read-only, a private and an encrypted one."""
    extra = ""
    for name, rule in (("ro", "read_only = true"), ("private", 'users = ["nobody-else"]'),
                       ("secret", "encrypt = true")):
        (tmp_path / name).mkdir()
        extra += f'\n[[share]]\nname = "{name}"\npath = "{tmp_path / name}"\n{rule}\n'
    target = harness.start_hanode(etcd_server.url, tmp_path / "hanode", share_extra=extra)
    try:
        yield target, tmp_path
    finally:
        harness.stop(target)
    assert "Traceback" not in target.log_text()


def _run(target, share: str, commands: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["smbclient", "-p", str(target.port), f"//127.0.0.1/{share}", "-U", target.credentials,
         *extra, "-c", commands], capture_output=True, text=True, timeout=60)


def test_read_only_share_serves_reads_and_refuses_changes(shares_server, tmp_path):
    target, base = shares_server
    (base / "ro" / "doc.txt").write_text("read me")
    got = _run(target, "ro", f"get doc.txt {tmp_path / 'doc.txt'}")
    assert got.returncode == 0, got.stdout + got.stderr
    assert (tmp_path / "doc.txt").read_text() == "read me"
    (tmp_path / "up.txt").write_text("x")
    for commands in (f"put {tmp_path / 'up.txt'} up.txt", "mkdir newdir", "rm doc.txt",
                     "rename doc.txt other.txt"):
        out = _run(target, "ro", commands).stdout
        assert "NT_STATUS_ACCESS_DENIED" in out, (commands, out)
    assert sorted(p.name for p in (base / "ro").iterdir()) == ["doc.txt"]


def test_share_user_list_refuses_others(shares_server):
    target, _ = shares_server
    out = _run(target, "private", "ls")
    assert out.returncode != 0
    assert "NT_STATUS_ACCESS_DENIED" in out.stdout + out.stderr


def test_encrypted_share_requires_smb3(shares_server, tmp_path):
    target, base = shares_server
    (tmp_path / "s.txt").write_text("secret data")
    ok = _run(target, "secret", f"put {tmp_path / 's.txt'} s.txt; ls", "-m", "SMB3")
    assert ok.returncode == 0 and "s.txt" in ok.stdout, ok.stdout + ok.stderr
    assert (base / "secret" / "s.txt").read_text() == "secret data"
    old = _run(target, "secret", "ls", "-m", "SMB2_10", "--option=clientmaxprotocol=SMB2_10")
    assert old.returncode != 0
    assert "NT_STATUS_ACCESS_DENIED" in old.stdout + old.stderr
