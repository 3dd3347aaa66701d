"""What a binding SESSION_SETUP must match, and the status that refuses it."""

from __future__ import annotations

import pytest

from smb.server.channels import BindingConnection, BindTarget, refusal_before_auth
from smb.wire.crypto import Cipher, Dialect, SigningAlgorithm as Sign
from smb.wire.header import Status

SESSION = BindTarget(Dialect.SMB_3_1_1, Sign.AES_CMAC, Cipher.AES_128_GCM, is_guest=False)
SAME = BindingConnection(Dialect.SMB_3_1_1, Sign.AES_CMAC, Cipher.AES_128_GCM)


def refusal(target: BindTarget | None = SESSION, conn: BindingConnection = SAME, *,
            session_id: int = 7, signed: bool = True, multichannel: bool = True) -> int | None:
    return refusal_before_auth(target, conn, session_id=session_id, signed=signed,
                               multichannel=multichannel)


def test_a_matching_signed_binding_goes_on():
    assert refusal() is None


@pytest.mark.parametrize("dialect", [Dialect.SMB_2_0_2, Dialect.SMB_2_1])
def test_an_smb2_connection_cannot_bind(dialect):
    conn = BindingConnection(dialect, Sign.HMAC_SHA256, Cipher.NONE)
    assert refusal(conn=conn) == Status.REQUEST_NOT_ACCEPTED


def test_multichannel_off_refuses_every_binding():
    assert refusal(multichannel=False) == Status.REQUEST_NOT_ACCEPTED


def test_session_id_zero_and_unknown_sessions():
    assert refusal(session_id=0) == Status.INVALID_PARAMETER
    assert refusal(target=None) == Status.USER_SESSION_DELETED


def test_an_unsigned_binding_is_refused():
    assert refusal(signed=False) == Status.INVALID_PARAMETER


@pytest.mark.parametrize("target_dialect,conn_dialect", [
    (Dialect.SMB_2_1, Dialect.SMB_3_1_1),     # bind_negative_smb2to3
    (Dialect.SMB_3_0_2, Dialect.SMB_3_1_1),   # bind_negative_smb3to3
])
def test_the_dialect_must_be_the_sessions(target_dialect, conn_dialect):
    target = BindTarget(target_dialect, Sign.AES_CMAC, Cipher.AES_128_GCM, False)
    conn = BindingConnection(conn_dialect, Sign.AES_CMAC, Cipher.AES_128_GCM)
    assert refusal(target, conn) == Status.INVALID_PARAMETER


def test_the_cipher_must_be_the_sessions():
    conn = BindingConnection(Dialect.SMB_3_1_1, Sign.AES_CMAC, Cipher.AES_128_CCM)
    assert refusal(conn=conn) == Status.INVALID_PARAMETER


def test_cmac_and_hmac_channels_may_mix():
    """bind_negative_smb3signCtoH / HtoC: each channel signs with its own algorithm."""
    conn = BindingConnection(Dialect.SMB_3_1_1, Sign.HMAC_SHA256, Cipher.AES_128_GCM)
    assert refusal(conn=conn) is None


def test_gmac_must_be_on_both_sides_or_neither():
    gmac_session = BindTarget(Dialect.SMB_3_1_1, Sign.AES_GMAC, Cipher.AES_128_GCM, False)
    gmac_conn = BindingConnection(Dialect.SMB_3_1_1, Sign.AES_GMAC, Cipher.AES_128_GCM)
    assert refusal(gmac_session, SAME) == Status.REQUEST_OUT_OF_SEQUENCE
    assert refusal(SESSION, gmac_conn) == Status.NOT_SUPPORTED
    assert refusal(gmac_session, gmac_conn) is None


def test_gmac_mismatch_is_told_before_the_dialect():
    """bind_negative_smb3signGtoH2X: a GMAC session, an SMB 2.1 connection."""
    gmac_session = BindTarget(Dialect.SMB_3_1_1, Sign.AES_GMAC, Cipher.AES_128_GCM, False)
    conn = BindingConnection(Dialect.SMB_2_1, Sign.HMAC_SHA256, Cipher.NONE)
    assert refusal(gmac_session, conn) == Status.REQUEST_OUT_OF_SEQUENCE


def test_guest_sessions_cannot_gain_channels():
    guest = BindTarget(Dialect.SMB_3_1_1, Sign.AES_CMAC, Cipher.AES_128_GCM, is_guest=True)
    assert refusal(guest) == Status.NOT_SUPPORTED
