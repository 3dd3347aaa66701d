"""Per-share rules through real clients: ``read_only``, ``users`` and
``encrypt`` of ``[[share]]``."""

from __future__ import annotations

import pytest

import harness


@pytest.fixture
def shares_server(etcd_server, tmp_path):
    """One server with the main share plus a read-only, a private and an encrypted one."""
    extra = ""
    for name, rule in (("ro", "read_only = true"), ("private", 'users = ["nobody-else"]'),
                       ("secret", "encrypt = true")):
        (tmp_path / name).mkdir()
        extra += f'\n[[share]]\nname = "{name}"\npath = "{tmp_path / name}"\n{rule}\n'
    with harness.running_hanode(etcd_server.url, tmp_path / "hanode",
                                share_extra=extra) as target:
        yield target, tmp_path


def test_read_only_share_serves_reads_and_refuses_changes(shares_server, tmp_path):
    target, base = shares_server
    (base / "ro" / "doc.txt").write_text("read me")
    got = harness.smbclient(target, f"get doc.txt {tmp_path / 'doc.txt'}", share="ro")
    assert got.returncode == 0, got.stdout + got.stderr
    assert (tmp_path / "doc.txt").read_text() == "read me"
    (tmp_path / "up.txt").write_text("x")
    for commands in (f"put {tmp_path / 'up.txt'} up.txt", "mkdir newdir", "rm doc.txt",
                     "rename doc.txt other.txt"):
        out = harness.smbclient(target, commands, share="ro").stdout
        assert "NT_STATUS_ACCESS_DENIED" in out, (commands, out)
    assert sorted(p.name for p in (base / "ro").iterdir()) == ["doc.txt"]


def test_share_user_list_refuses_others(shares_server):
    target, _ = shares_server
    out = harness.smbclient(target, "ls", share="private")
    assert out.returncode != 0
    assert "NT_STATUS_ACCESS_DENIED" in out.stdout + out.stderr


def test_encrypted_share_requires_smb3(shares_server, tmp_path):
    target, base = shares_server
    (tmp_path / "s.txt").write_text("secret data")
    ok = harness.smbclient(target, f"put {tmp_path / 's.txt'} s.txt; ls", "-m", "SMB3",
                          share="secret")
    assert ok.returncode == 0 and "s.txt" in ok.stdout, ok.stdout + ok.stderr
    assert (base / "secret" / "s.txt").read_text() == "secret data"
    old = harness.smbclient(target, "ls", "-m", "SMB2_10", "--option=clientmaxprotocol=SMB2_10",
                           share="secret")
    assert old.returncode != 0
    assert "NT_STATUS_ACCESS_DENIED" in old.stdout + old.stderr


def test_encrypted_share_refuses_plaintext_after_tree_connect(shares_server):
    """The share's encrypt flag reaches the client, and the session then
    refuses an unencrypted request (the connection layer enforces it)."""
    import uuid

    from smbprotocol.connection import Connection
    from smbprotocol.exceptions import SMBResponseException
    from smbprotocol.open import CreateDisposition, ImpersonationLevel, Open
    from smbprotocol.session import Session
    from smbprotocol.tree import TreeConnect

    target, _ = shares_server
    conn = Connection(uuid.uuid4(), "127.0.0.1", target.port)
    conn.connect()
    try:
        session = Session(conn, target.user, target.password, require_encryption=False)
        session.connect()
        assert not session.encrypt_data
        plain = TreeConnect(session, f"\\\\127.0.0.1\\{target.share_name}")
        plain.connect()
        assert not plain.encrypt_data
        secret = TreeConnect(session, "\\\\127.0.0.1\\secret")
        secret.connect()
        assert secret.encrypt_data  # SHAREFLAG_ENCRYPT_DATA came back
        op = Open(secret, "enc.txt")
        op.create(ImpersonationLevel.Impersonation, 0x12019F, 0, 0x7,
                  CreateDisposition.FILE_OVERWRITE_IF, 0)
        op.write(b"sealed", 0)
        op.close()
        secret.encrypt_data = False  # now send in the clear on purpose
        with pytest.raises(SMBResponseException) as info:
            Open(secret, "enc.txt").create(ImpersonationLevel.Impersonation, 0x80, 0, 0x7,
                                           CreateDisposition.FILE_OPEN, 0)
        assert info.value.status == 0xC0000022  # STATUS_ACCESS_DENIED
        secret.encrypt_data = True
        # The session itself is not encrypted: the plain share still works in the clear.
        Open(plain, "clear.txt").create(ImpersonationLevel.Impersonation, 0x12019F, 0, 0x7,
                                        CreateDisposition.FILE_OVERWRITE_IF, 0)
    finally:
        conn.disconnect(True)
