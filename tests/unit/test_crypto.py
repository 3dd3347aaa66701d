"""Signing, KDF, encryption and the preauth hash, checked against real clients'
recorded messages (smbclient 4.17, smbprotocol) and RFC 4493's AES-CMAC vectors."""

import struct

import pytest

from smb.wire import crypto
from smb.wire.crypto import Cipher, Dialect, SigningAlgorithm
from smb.wire.header import Header, parse_header
from smb_replay import replay_ntlm


def _keys(fixture: str, dialect: int, cipher: int = Cipher.NONE):
    r = replay_ntlm(fixture)
    fr = r.frames
    preauth = crypto.PREAUTH_INITIAL
    # NEGOTIATE request and response, then SESSION_SETUP legs except the final response.
    for _, message in fr[:5]:
        preauth = crypto.preauth_update(preauth, message)
    return r, crypto.derive_keys(r.session_key, dialect, preauth, cipher)


def test_aes_cmac_rfc4493_vectors():
    key = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
    cmac = SigningAlgorithm.AES_CMAC
    assert crypto.signature_of(key, cmac, [b""]).hex() == "bb1d6929e95937287fa37d129b756746"
    msg = bytes.fromhex("6bc1bee22e409f96e93d7e117393172a")
    assert crypto.signature_of(key, cmac, [msg]).hex() == "070a16b46b4d4144f79bdd9dd04a287c"
    # The same bytes split into parts (as large replies are signed) give the same MAC.
    assert crypto.signature_of(key, cmac, [msg[:5], memoryview(msg)[5:]]) == \
        crypto.signature_of(key, cmac, [msg])


def test_kdf_counter_mode_layout():
    # One HMAC-SHA256 block: counter 1, label, 0x00, context, L=128, big-endian.
    import hashlib
    import hmac
    expected = hmac.new(b"k" * 16, b"\x00\x00\x00\x01L\x00\x00C\x00\x00\x00\x00\x80",
                        hashlib.sha256).digest()[:16]
    assert crypto.kdf(b"k" * 16, b"L\x00", b"C\x00") == expected
    assert len(crypto.kdf(b"k" * 16, b"L\x00", b"C\x00", 32)) == 32


def test_smb311_gmac_signatures_of_smbclient():
    """smbclient negotiated AES-GMAC: our keys must verify its signed request and
    must reproduce the signature we sent on the final SESSION_SETUP response."""
    r, (signing, _, _, _) = _keys("smbclient_smb311_signed.json", Dialect.SMB_3_1_1)
    final_response = r.frames[5][1]
    assert parse_header(final_response).is_signed
    assert crypto.verify(signing, SigningAlgorithm.AES_GMAC, final_response)
    tree_connect = r.frames[6][1]
    assert parse_header(tree_connect).command == 3 and parse_header(tree_connect).is_signed
    assert crypto.verify(signing, SigningAlgorithm.AES_GMAC, tree_connect)
    tampered = bytearray(tree_connect)
    tampered[-1] ^= 1
    assert not crypto.verify(signing, SigningAlgorithm.AES_GMAC, tampered)


def test_smb300_cmac_signature_of_smbclient():
    r, (signing, _, _, _) = _keys("smbclient_smb300_signed.json", Dialect.SMB_3_0)
    tree_connect = r.frames[6][1]
    assert parse_header(tree_connect).is_signed
    assert crypto.verify(signing, SigningAlgorithm.AES_CMAC, tree_connect)
    assert not crypto.verify(signing, SigningAlgorithm.HMAC_SHA256, tree_connect)


def test_smb202_hmac_signature_of_smbclient():
    r, (signing, _, _, _) = _keys("smbclient_smb202_signed.json", Dialect.SMB_2_0_2)
    assert signing == r.session_key
    tree_connect = r.frames[6][1]
    assert crypto.verify(signing, SigningAlgorithm.HMAC_SHA256, tree_connect)


def test_smb311_aes128gcm_decrypts_smbprotocol_and_our_reply():
    r, (_, _, c2s, s2c) = _keys("smbprotocol_smb311_encrypted.json", Dialect.SMB_3_1_1,
                                Cipher.AES_128_GCM)
    request = r.frames[6][1]
    session_id, size = crypto.parse_transform(request)
    plain = crypto.decrypt(c2s, Cipher.AES_128_GCM, request)
    assert len(plain) == size and parse_header(plain).command == 3  # TREE_CONNECT
    assert parse_header(plain).session_id == session_id
    reply = crypto.decrypt(s2c, Cipher.AES_128_GCM, r.frames[7][1])
    assert parse_header(reply).is_response
    with pytest.raises(crypto.CryptoError):
        crypto.decrypt(c2s, Cipher.AES_128_GCM, r.frames[7][1])


@pytest.mark.parametrize("cipher", list(Cipher)[1:])
def test_encrypt_round_trip_and_tamper(cipher):
    key = bytes(range(crypto.cipher_key_length(cipher)))
    nonce = b"\x01" * crypto.nonce_size(cipher)
    message = b"\xfeSMB" + b"\x00" * 100
    sealed = b"".join(crypto.encrypt(key, cipher, nonce, 0x1234, message))
    assert crypto.parse_transform(sealed) == (0x1234, len(message))
    assert crypto.decrypt(key, cipher, sealed) == message
    bad = bytearray(sealed)
    bad[60] ^= 0x80
    with pytest.raises(crypto.CryptoError):
        crypto.decrypt(key, cipher, bad)
    bad = bytearray(sealed)
    bad[44] ^= 1  # the session id is authenticated too
    with pytest.raises(crypto.CryptoError):
        crypto.decrypt(key, cipher, bad)


def test_transform_header_lies_are_refused():
    sealed = b"".join(crypto.encrypt(b"k" * 16, Cipher.AES_128_GCM, b"n" * 12, 1,
                                     b"\xfeSMB" + b"x" * 60))
    longer = sealed[:36] + struct.pack("<I", 10_000) + sealed[40:]
    with pytest.raises(crypto.CryptoError):
        crypto.parse_transform(longer)
    with pytest.raises(crypto.CryptoError):
        crypto.parse_transform(sealed[:20])


@pytest.mark.parametrize("algorithm", list(SigningAlgorithm))
def test_sign_header_then_verify(algorithm):
    header = bytearray(Header(command=8, message_id=5).pack())
    body, payload = b"body" * 10, memoryview(b"payload" * 1000)
    crypto.sign_header(b"k" * 16, algorithm, header, [body, payload])
    message = bytes(header) + body + bytes(payload)
    assert parse_header(message).is_signed
    assert crypto.verify(b"k" * 16, algorithm, message)
    assert not crypto.verify(b"j" * 16, algorithm, message)


def test_gmac_nonce_marks_server_and_cancel():
    request = bytearray(64)
    request[:4] = b"\xfeSMB"
    struct.pack_into("<Q", request, 24, 7)
    assert crypto._gmac_nonce(bytes(request)) == struct.pack("<QI", 7, 0)
    struct.pack_into("<H", request, 12, 0x0C)
    assert crypto._gmac_nonce(bytes(request)) == struct.pack("<QI", 7, 2)
    struct.pack_into("<I", request, 16, 1)
    struct.pack_into("<H", request, 12, 0x05)
    assert crypto._gmac_nonce(bytes(request)) == struct.pack("<QI", 7, 1)
