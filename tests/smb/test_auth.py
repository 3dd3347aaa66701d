"""Real clients authenticate against ``hanode smb``: smbclient in every dialect
and protection level, smbprotocol with encryption; wrong passwords fail."""

from __future__ import annotations

import hashlib
import os

import pytest

import harness

@pytest.fixture(scope="module")
def payload(tmp_path_factory):
    """9 MiB and a bit: more than one 8 MiB WRITE, so multi-credit charges are exercised."""
    path = tmp_path_factory.mktemp("payload") / "payload.bin"
    path.write_bytes(os.urandom(9 * 1024 * 1024 + 12345))
    return path


@pytest.mark.parametrize("options", [
    ["-m", "SMB2_02"],
    ["-m", "SMB2_10"],
    ["-m", "SMB3_00"],
    ["-m", "SMB3_02"],
    ["-m", "SMB3"],
    ["-m", "SMB3", "--client-protection=sign"],
    ["-m", "SMB3", "--client-protection=encrypt"],
    ["-m", "SMB3_00", "--client-protection=encrypt"],
    ["-m", "SMB2_02", "--client-protection=sign"],
    # An SMB1 multi-protocol NEGOTIATE first, upgraded to SMB2 (MS-SMB2 3.3.5.3).
    ["--option=client min protocol=NT1", "-m", "SMB3"],
    ["--option=client min protocol=NT1", "-m", "SMB2_02"],
], ids=lambda o: " ".join(o))
def test_smbclient_put_get_ls(hanode_server, payload, tmp_path, options):
    back = tmp_path / "back.bin"
    result = harness.smbclient(hanode_server, f"put {payload} p.bin; get p.bin {back}; ls",
                               *options)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "p.bin" in result.stdout
    assert _sha256(back) == _sha256(payload)
    assert _sha256(hanode_server.share / "p.bin") == _sha256(payload)


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("options", [["-m", "SMB3"], ["-m", "SMB2_02"]], ids=" ".join)
def test_wrong_password_is_logon_failure(hanode_server, options):
    result = harness.smbclient(hanode_server, "ls", *options, password="not-the-password")
    assert result.returncode != 0
    assert "NT_STATUS_LOGON_FAILURE" in result.stdout + result.stderr


def test_unknown_user_is_logon_failure(hanode_server):
    hanode_server.user = "nosuchuser"
    result = harness.smbclient(hanode_server, "ls", "-m", "SMB3")
    assert "NT_STATUS_LOGON_FAILURE" in result.stdout + result.stderr


def test_anonymous_refused_without_allow_guest(hanode_server):
    result = harness.smbclient(hanode_server, "ls", "-m", "SMB3", anonymous=True)
    assert "NT_STATUS_LOGON_FAILURE" in result.stdout + result.stderr


def test_smbprotocol_encrypted_session(hanode_server):
    import smbclient
    from smbprotocol.header import Commands

    try:
        session = smbclient.register_session(
            "127.0.0.1", username=hanode_server.user, password=hanode_server.password,
            port=hanode_server.port, encrypt=True, connection_timeout=20)
        assert session.encrypt_data
        assert session.connection.dialect == 0x0311
        # An encrypted ECHO goes through and its encrypted reply decrypts.
        from smbprotocol.connection import SMB2Echo
        request = session.connection.send(SMB2Echo(), sid=session.session_id)
        response = session.connection.receive(request)
        assert response["command"].get_value() == Commands.SMB2_ECHO
        assert response["status"].get_value() == 0
        # And files, over the encrypted session (smbprotocol uses related compounds).
        path = rf"\\127.0.0.1\{hanode_server.share_name}\sp.bin"
        data = os.urandom(3 * 1024 * 1024)
        with smbclient.open_file(path, mode="wb", port=hanode_server.port) as f:
            f.write(data)
        with smbclient.open_file(path, mode="rb", port=hanode_server.port) as f:
            assert f.read() == data
        assert "sp.bin" in smbclient.listdir(rf"\\127.0.0.1\{hanode_server.share_name}",
                                             port=hanode_server.port)
    finally:
        smbclient.reset_connection_cache()


@pytest.fixture
def encrypted_share(etcd_server, tmp_path):
    target = harness.start_hanode(etcd_server.url, tmp_path / "enc", share_extra="encrypt = true")
    try:
        yield target
    finally:
        harness.stop(target)


def test_share_that_requires_encryption(encrypted_share, payload, tmp_path):
    """A plain SMB3 client switches to encryption when the share asks (the server
    refuses unencrypted requests on that session); SMB 2.x cannot encrypt."""
    back = tmp_path / "back.bin"
    result = harness.smbclient(encrypted_share, f"put {payload} e.bin; get e.bin {back}",
                               "-m", "SMB3")
    assert result.returncode == 0, result.stdout + result.stderr
    assert _sha256(back) == _sha256(payload)
    old = harness.smbclient(encrypted_share, "ls", "-m", "SMB2_10")
    assert "NT_STATUS_ACCESS_DENIED" in old.stdout + old.stderr


def test_anonymous_allowed_with_allow_guest(etcd_server, tmp_path):
    target = harness.start_hanode(etcd_server.url, tmp_path / "guest",
                                  smb_extra="allow_guest = true")
    try:
        result = harness.smbclient(target, "ls", "-m", "SMB3", anonymous=True)
        assert result.returncode == 0, result.stdout + result.stderr
        wrong = harness.smbclient(target, "ls", "-m", "SMB3", password="wrong")
        assert "NT_STATUS_LOGON_FAILURE" in wrong.stdout + wrong.stderr  # a known user
    finally:
        harness.stop(target)
    assert "for 'anonymous'" in target.log_text()


@pytest.mark.parametrize("option", [
    "client smb3 encryption algorithms=AES-128-CCM",
    "client smb3 encryption algorithms=AES-128-GCM",
    "client smb3 encryption algorithms=AES-256-CCM",
    "client smb3 encryption algorithms=AES-256-GCM",
    "client smb3 signing algorithms=HMAC-SHA256",
    "client smb3 signing algorithms=AES-128-CMAC",
    "client smb3 signing algorithms=AES-128-GMAC",
])
def test_each_311_cipher_and_signing_algorithm(hanode_server, payload, tmp_path, option):
    """The client offers exactly one algorithm, so the server must pick that one."""
    protection = "--client-protection=encrypt" if "encryption" in option else \
        "--client-protection=sign"
    back = tmp_path / "back.bin"
    result = harness.smbclient(hanode_server, f"put {payload} a.bin; get a.bin {back}",
                               "-m", "SMB3", protection, f"--option={option}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert _sha256(back) == _sha256(payload)
