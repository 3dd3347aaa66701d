"""A deliberately small SMB2 client for tests that must send bytes no real client
would: it negotiates 2.1 (no signing required), logs on with NTLMv2 inside
SPNEGO, and then sends whatever it is given on that session.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import socket
import struct

from smb.wire import ntlm, spnego
from smb.wire.header import Command, Header, parse_header
from smb.wire.md4 import nt_hash


class RawClient:
    def __init__(self, port: int, timeout: float = 10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.message_id = 0
        self.session_id = 0
        self.tree_id = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "RawClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- framing ------------------------------------------------------------------------

    def send_frame(self, data: bytes) -> None:
        self.sock.sendall(struct.pack(">I", len(data)) + data)

    def recv_frame(self) -> bytes | None:
        """One frame, or None when the server closed the connection."""
        head = self._recv_exactly(4)
        if head is None:
            return None
        return self._recv_exactly(int.from_bytes(head[1:], "big"))

    def _recv_exactly(self, n: int) -> bytes | None:
        buf = b""
        while len(buf) < n:
            try:
                chunk = self.sock.recv(n - len(buf))
            except ConnectionResetError:
                return None
            if not chunk:
                return None
            buf += chunk
        return buf

    def request(self, command: int, body: bytes, *, credits: int = 64,
                charge: int = 1) -> tuple[Header, bytes]:
        """Send one request and return the final (non-PENDING) response."""
        header = Header(command=command, message_id=self.message_id, credits=credits,
                        session_id=self.session_id, tree_id=self.tree_id,
                        credit_charge=charge)
        self.message_id += max(charge, 1)
        self.send_frame(header.pack() + body)
        while True:
            frame = self.recv_frame()
            if frame is None:
                raise ConnectionError("server closed the connection")
            reply = parse_header(frame)
            if reply.status != 0x103:  # STATUS_PENDING: the real reply follows
                return reply, frame

    # -- logon ----------------------------------------------------------------------------

    def negotiate(self, dialect: int = 0x0210) -> Header:
        body = struct.pack("<HHHHI16sIHH", 36, 1, 1, 0, 0, os.urandom(16), 0, 0, 0) \
            + struct.pack("<H", dialect)
        header, _ = self.request(Command.NEGOTIATE, body)
        return header

    def session_setup(self, user: str, password: str, security_mode: int = 1) -> int:
        """NTLMv2 in SPNEGO; returns the final status.  security_mode 3 requires signing."""
        flags = (ntlm.NegotiateFlags.UNICODE | ntlm.NegotiateFlags.NTLM
                 | ntlm.NegotiateFlags.EXTENDED_SESSIONSECURITY
                 | ntlm.NegotiateFlags.REQUEST_TARGET)
        negotiate = ntlm.SIGNATURE + struct.pack("<II", 1, flags) + b"\x00" * 16
        token = spnego.client_init_token((spnego.NTLMSSP_OID,), negotiate)
        header, frame = self.request(Command.SESSION_SETUP, _setup_body(token, security_mode))
        self.session_id = header.session_id
        if header.status != 0xC0000016:
            return header.status
        blob_offset, blob_len = struct.unpack_from("<HH", frame, 64 + 4)
        challenge = spnego.parse_client_token(frame[blob_offset:blob_offset + blob_len]).mech_token
        auth = _authenticate(challenge, user, password, flags)
        header, _ = self.request(Command.SESSION_SETUP,
                                 _setup_body(spnego.client_response_token(auth), security_mode))
        return header.status

    def tree_connect(self, share: str) -> int:
        path = f"\\\\127.0.0.1\\{share}".encode("utf-16-le")
        body = struct.pack("<HHHH", 9, 0, 64 + 8, len(path)) + path
        header, _ = self.request(Command.TREE_CONNECT, body)
        self.tree_id = header.tree_id
        return header.status


def _setup_body(token: bytes, security_mode: int) -> bytes:
    return struct.pack("<HBBIIHHQ", 25, 0, security_mode, 0, 0, 64 + 24, len(token), 0) + token


def _authenticate(challenge: bytes, user: str, password: str, flags: int) -> bytes:
    server_challenge = challenge[24:32]
    info_len, _, info_offset = struct.unpack_from("<HHI", challenge, 40)
    target_info = challenge[info_offset:info_offset + info_len]
    blob = (b"\x01\x01" + b"\x00" * 6 + struct.pack("<Q", 0) + os.urandom(8) + b"\x00" * 4
            + target_info + b"\x00" * 4)
    key = ntlm.ntowfv2(nt_hash(password), user, "")
    proof = hmac.new(key, server_challenge + blob, hashlib.md5).digest()
    fields = [b"", proof + blob, b"", user.encode("utf-16-le"), b"", b""]
    offset = 64 + 8
    packed = b""
    for f in fields:
        packed += struct.pack("<HHI", len(f), len(f), offset)
        offset += len(f)
    return (ntlm.SIGNATURE + struct.pack("<I", 3) + packed + struct.pack("<I", flags)
            + b"\x00" * 8 + b"".join(fields))
