"""Connection-layer rules that no well-behaved client exercises, checked with
the raw test client against ``hanode smb``."""

from __future__ import annotations

import struct

import pytest

from rawclient import RawClient
from smb.wire.header import Command, Status

ECHO = struct.pack("<HH", 4, 0)
READ_1MIB = struct.pack("<HBBIQ16sIIIHH", 49, 0, 0, 1 << 20, 0, b"\x11" * 16, 1, 0, 0, 0, 0) \
    + b"\x00"


def _logged_on(target, **kwargs) -> RawClient:
    client = RawClient(target.port)
    assert client.negotiate().status == 0
    assert client.session_setup(target.user, target.password, **kwargs) == 0
    assert client.tree_connect(target.share_name) == 0
    return client


def test_unsigned_request_on_a_signing_session_is_refused(hanode_server):
    client = _logged_on(hanode_server)  # signing not required: unsigned works
    header, _ = client.request(Command.TREE_CONNECT, _tree_body(hanode_server))
    assert header.status == Status.SUCCESS
    client.close()
    client = RawClient(hanode_server.port)
    client.negotiate()
    assert client.session_setup(hanode_server.user, hanode_server.password,
                                security_mode=3) == 0
    header, _ = client.request(Command.TREE_CONNECT, _tree_body(hanode_server))
    assert header.status == Status.ACCESS_DENIED
    client.close()
    assert "unsigned TREE_CONNECT on a signed session" in hanode_server.log_text()


def _tree_body(target) -> bytes:
    path = f"\\\\127.0.0.1\\{target.share_name}".encode("utf-16-le")
    return struct.pack("<HHHH", 9, 0, 64 + 8, len(path)) + path


def test_credit_charge_must_cover_large_payloads(hanode_server):
    with _logged_on(hanode_server) as client:
        header, _ = client.request(Command.READ, READ_1MIB, charge=1)
        assert header.status == Status.INVALID_PARAMETER
        header, _ = client.request(Command.READ, READ_1MIB, charge=16)
        assert header.status == Status.FILE_CLOSED  # past the charge check, unknown handle


def test_message_id_not_granted_closes_the_connection(hanode_server):
    with RawClient(hanode_server.port) as client:
        client.negotiate()
        client.message_id += 10_000
        with pytest.raises(ConnectionError):  # not answered: the connection is gone
            client.request(Command.ECHO, ECHO)


def test_replayed_message_id_closes_the_connection(hanode_server):
    with RawClient(hanode_server.port) as client:
        client.negotiate()
        header, _ = client.request(Command.ECHO, ECHO)
        assert header.status == 0 and header.credits >= 1
        client.message_id -= 1
        with pytest.raises(ConnectionError):  # a spent MessageId is not accepted
            client.request(Command.ECHO, ECHO)


def test_sessions_per_connection_are_bounded(hanode_server):
    with RawClient(hanode_server.port) as client:
        client.negotiate()
        from smb.wire import ntlm, spnego
        negotiate = ntlm.SIGNATURE + struct.pack("<II", 1, 0x00088207) + b"\x00" * 16
        token = spnego.client_init_token((spnego.NTLMSSP_OID,), negotiate)
        body = struct.pack("<HBBIIHHQ", 25, 0, 1, 0, 0, 64 + 24, len(token), 0) + token
        statuses = []
        for _ in range(70):
            client.session_id = 0
            header, _ = client.request(Command.SESSION_SETUP, body)
            statuses.append(header.status)
        assert statuses[:64] == [Status.MORE_PROCESSING_REQUIRED] * 64
        assert set(statuses[64:]) == {Status.INSUFFICIENT_RESOURCES}


def test_logoff_ends_the_session(hanode_server):
    with _logged_on(hanode_server) as client:
        header, _ = client.request(Command.LOGOFF, ECHO)
        assert header.status == Status.SUCCESS
        header, _ = client.request(Command.TREE_CONNECT, _tree_body(hanode_server))
        assert header.status == Status.USER_SESSION_DELETED
        # ECHO needs no session (Samba answers it the same way).
        header, _ = client.request(Command.ECHO, ECHO)
        assert header.status == Status.SUCCESS


def test_frames_beyond_the_negotiated_maximum_are_refused(hanode_server):
    with RawClient(hanode_server.port) as client:
        client.negotiate()
        client.sock.sendall(struct.pack(">I", 9 * 1024 * 1024) + b"\xfeSMB")
        assert client.recv_frame() is None
    assert "exceeds" in hanode_server.log_text()


def test_reauthentication_keeps_the_session(hanode_server):
    with _logged_on(hanode_server) as client:
        first = client.session_id
        # Both legs of a second NTLM exchange on the same SessionId.
        assert client.session_setup(hanode_server.user, hanode_server.password) == 0
        assert client.session_id == first
        header, _ = client.request(Command.ECHO, ECHO)
        assert header.status == Status.SUCCESS
        assert client.tree_connect(hanode_server.share_name) == 0
        # A failed re-authentication ends the session.
        assert client.session_setup(hanode_server.user, "wrong") == Status.LOGON_FAILURE
        header, _ = client.request(Command.TREE_CONNECT, _tree_body(hanode_server))
        assert header.status == Status.USER_SESSION_DELETED
