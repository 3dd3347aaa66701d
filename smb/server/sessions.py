"""Sessions of one connection: the SPNEGO/NTLM exchange and the keys it yields.

The exchange is a small state machine fed by SESSION_SETUP security buffers;
the only outside dependency is the user lookup, passed in.
"""

from __future__ import annotations

import logging
import os
import struct
import time
from dataclasses import dataclass, field

from smb.server.handler import SessionInfo
from smb.server.userdb import UserLookup
from smb.wire import ntlm, spnego
from smb.wire.crypto import Cipher, Dialect, derive_keys, nonce_size
from smb.wire.header import Status

log = logging.getLogger(__name__)

FILETIME_EPOCH_OFFSET = 116444736000000000


def filetime_now() -> int:
    return int(time.time() * 10_000_000) + FILETIME_EPOCH_OFFSET


@dataclass
class Session:
    id: int
    info: SessionInfo
    preauth: bytes = b""
    valid: bool = False
    is_anonymous: bool = False
    signing_required: bool = False
    session_key: bytes = field(default=b"", repr=False)
    signing_key: bytes = field(default=b"", repr=False)
    app_key: bytes = field(default=b"", repr=False)
    encrypt_key: bytes = field(default=b"", repr=False)  # server-to-client
    decrypt_key: bytes = field(default=b"", repr=False)  # client-to-server
    # A re-authentication in progress on this (valid) session.
    reauth: "Session | None" = field(default=None, repr=False)
    # What the first connection negotiated: a binding connection must match it.
    dialect: int = 0
    signing_alg: int = 0
    cipher: int = 0
    # Ended by a failed re-authentication, but kept on its channels so that
    # what its client still sends is answered USER_SESSION_DELETED, signed.
    deleted: bool = False
    # The connections this session is bound to (its channels), first one first.
    connections: list = field(default_factory=list, repr=False)
    _ntlm: ntlm.NtlmServer | None = field(default=None, repr=False)
    _spnego: bool = True
    _mech_types_der: bytes = b""
    _nonce_prefix: bytes = field(default_factory=lambda: os.urandom(4), repr=False)
    _nonce_counter: int = 0

    @property
    def can_sign(self) -> bool:
        return bool(self.signing_key)

    @property
    def can_encrypt(self) -> bool:
        return bool(self.encrypt_key)

    def next_nonce(self, cipher: int) -> bytes:
        """A nonce never used with this session's key: fixed random prefix and a counter."""
        self._nonce_counter += 1
        return self._nonce_prefix[:nonce_size(cipher) - 8] + struct.pack("<Q", self._nonce_counter)


@dataclass(frozen=True)
class AuthResult:
    status: int
    token: bytes = b""


async def authenticate(session: Session, token: bytes, users: UserLookup, *,
                       allow_guest: bool, dialect: int, cipher: int,
                       client_signing_required: bool) -> AuthResult:
    """Feed one security buffer; returns the status and the token to send back.

    On SUCCESS the session is valid and its keys are derived (from
    ``session.preauth`` for 3.1.1, which must already include this request).
    """
    try:
        return await _step(session, token, users, allow_guest, dialect, cipher,
                           client_signing_required)
    except (ntlm.NtlmError, spnego.SpnegoError) as exc:
        log.info("session setup refused: %s", exc)
        return AuthResult(Status.INVALID_PARAMETER)


async def _step(session: Session, token: bytes, users: UserLookup, allow_guest: bool,
                dialect: int, cipher: int, client_signing_required: bool) -> AuthResult:
    client_mic = b""
    if token.startswith(ntlm.SIGNATURE):
        session._spnego = False
        inner = token
    elif not token:
        # An empty buffer asks for our mechanisms (as in the NEGOTIATE response).
        return AuthResult(Status.MORE_PROCESSING_REQUIRED, spnego.server_init_token())
    else:
        parsed = spnego.parse_client_token(token)
        if parsed.mech_types:
            session._mech_types_der = parsed.mech_types_der
            if spnego.NTLMSSP_OID not in parsed.mech_types:
                return AuthResult(Status.LOGON_FAILURE,
                                  spnego.server_response(spnego.NegState.REJECT))
            if parsed.mech_types[0] != spnego.NTLMSSP_OID or not parsed.mech_token:
                # Their optimistic token is for another mechanism: ask for NTLMSSP.
                return AuthResult(Status.MORE_PROCESSING_REQUIRED, spnego.server_response(
                    spnego.NegState.ACCEPT_INCOMPLETE, supported_mech=True))
        inner = parsed.mech_token
        client_mic = parsed.mech_list_mic

    kind = ntlm.message_type(inner)
    if kind == ntlm.NEGOTIATE_MESSAGE:
        session._ntlm = ntlm.NtlmServer(os.urandom(8), filetime_now())
        challenge = session._ntlm.challenge(inner)
        return AuthResult(Status.MORE_PROCESSING_REQUIRED, _wrap(
            session, spnego.NegState.ACCEPT_INCOMPLETE, challenge, supported_mech=True))
    if kind != ntlm.AUTHENTICATE_MESSAGE or session._ntlm is None:
        raise ntlm.NtlmError("unexpected NTLMSSP message")

    server = session._ntlm
    auth = server.parse(inner)
    if auth.is_anonymous:
        if not allow_guest:
            return AuthResult(Status.LOGON_FAILURE)
        return _guest(session, anonymous=True)
    nt_hash = await users.nt_hash(auth.user)
    if nt_hash is None:
        if allow_guest:
            return _guest(session, anonymous=False)
        log.info("logon failure: unknown user %r", auth.user)
        return AuthResult(Status.LOGON_FAILURE)
    try:
        key = server.verify(nt_hash)
    except ntlm.AuthenticationFailed as exc:
        log.info("logon failure for %r: %s", auth.user, exc)
        return AuthResult(Status.LOGON_FAILURE)

    server_mic = b""
    if session._spnego and session._mech_types_der and (client_mic or auth.mic is not None):
        if not client_mic or server.client_mac(session._mech_types_der) != client_mic:
            log.info("logon failure for %r: SPNEGO mechListMIC missing or wrong", auth.user)
            return AuthResult(Status.LOGON_FAILURE)
        server_mic = server.server_mac(session._mech_types_der)

    session.session_key = (key + b"\x00" * 16)[:16]
    (session.signing_key, session.app_key, session.decrypt_key,
     session.encrypt_key) = derive_keys(session.session_key, dialect, session.preauth, cipher)
    if cipher == Cipher.NONE or dialect < Dialect.SMB_3_0:
        session.encrypt_key = session.decrypt_key = b""
    session.signing_required = client_signing_required
    session.info.user = auth.user
    session.valid = True
    session._ntlm = None
    return AuthResult(Status.SUCCESS, _wrap(session, spnego.NegState.ACCEPT_COMPLETED, b"",
                                            mic=server_mic))


def _guest(session: Session, anonymous: bool) -> AuthResult:
    session.info.user = "" if anonymous else "guest"
    session.info.is_guest = True
    session.is_anonymous = anonymous
    session.valid = True
    session._ntlm = None
    return AuthResult(Status.SUCCESS, _wrap(session, spnego.NegState.ACCEPT_COMPLETED, b""))


def _wrap(session: Session, state: spnego.NegState, token: bytes, *, mic: bytes = b"",
          supported_mech: bool = False) -> bytes:
    if not session._spnego:
        return token
    return spnego.server_response(state, token, mic, supported_mech)
