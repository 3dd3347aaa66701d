"""Signing and encryption of a message given in parts (no joining of an 8 MiB READ
reply) give exactly the bytes of the one-piece computation, checked against
cryptography's one-shot AEAD as the reference."""

from __future__ import annotations

import os
import struct

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM

from smb.wire import crypto
from smb.wire.crypto import Cipher, SigningAlgorithm

AES_CIPHERS = [Cipher.AES_128_GCM, Cipher.AES_256_GCM, Cipher.AES_128_CCM, Cipher.AES_256_CCM]


def message(payload: int) -> list[bytes]:
    header = bytearray(os.urandom(64))
    header[:4] = b"\xfeSMB"
    header[48:64] = bytes(16)
    return [bytes(header), os.urandom(17), os.urandom(payload)]


@pytest.mark.parametrize("size", [0, 1, 4095, 1 << 20])
def test_gmac_of_parts_is_gmac_of_the_whole(size):
    parts = message(size)
    key = os.urandom(16)
    reference = AESGCM(key).encrypt(crypto._gmac_nonce(parts[0]), b"", b"".join(parts))
    assert crypto.signature_of(key, SigningAlgorithm.AES_GMAC, parts) == reference
    assert crypto.signature_of(key, SigningAlgorithm.AES_GMAC,
                               [memoryview(b"".join(parts))]) == reference


def _key(cipher: int) -> bytes:
    return os.urandom(32 if cipher in (Cipher.AES_256_GCM, Cipher.AES_256_CCM) else 16)


@pytest.mark.parametrize("cipher", AES_CIPHERS)
@pytest.mark.parametrize("size", [0, 1, 1 << 20])
def test_encrypting_parts_matches_the_reference_and_decrypts(cipher, size):
    parts = message(size)
    key, nonce = _key(cipher), os.urandom(crypto.nonce_size(cipher))
    sealed = b"".join(crypto.encrypt(key, cipher, nonce, 0x1234, parts))
    assert sealed == b"".join(crypto.encrypt(key, cipher, nonce, 0x1234, b"".join(parts)))
    aead = AESGCM(key) if cipher in (Cipher.AES_128_GCM, Cipher.AES_256_GCM) \
        else AESCCM(key, tag_length=16)
    aad, tag = sealed[20:52], sealed[4:20]
    assert struct.unpack_from("<I", sealed, 36)[0] == sum(len(p) for p in parts)
    assert aead.decrypt(nonce, sealed[52:] + tag, aad) == b"".join(parts)
    assert crypto.decrypt(key, cipher, sealed) == b"".join(parts)
    assert crypto.decrypt(key, cipher, memoryview(bytearray(sealed))) == b"".join(parts)


@pytest.mark.parametrize("cipher", AES_CIPHERS)
@pytest.mark.parametrize("where", ["signature", "aad", "ciphertext"])
def test_a_changed_byte_does_not_decrypt(cipher, where):
    key, nonce = _key(cipher), os.urandom(crypto.nonce_size(cipher))
    sealed = bytearray(b"".join(crypto.encrypt(key, cipher, nonce, 7, message(100))))
    sealed[{"signature": 10, "aad": 44, "ciphertext": 100}[where]] ^= 0x01
    with pytest.raises(crypto.CryptoError):
        crypto.decrypt(key, cipher, bytes(sealed))


@pytest.mark.parametrize("cipher", AES_CIPHERS)
def test_overwriting_gives_the_same_bytes_and_spares_read_only_parts(cipher):
    parts = message(1 << 20)
    key, nonce = _key(cipher), os.urandom(crypto.nonce_size(cipher))
    reference = b"".join(crypto.encrypt(key, cipher, nonce, 9, parts))
    header, body, payload = bytearray(parts[0]), memoryview(parts[1]), bytearray(parts[2])
    kept = bytearray(parts[1])
    sealed = crypto.encrypt(key, cipher, nonce, 9,
                            [header, memoryview(kept).toreadonly(), memoryview(payload)],
                            overwrite=True)
    assert b"".join(sealed) == reference
    assert kept == body  # a read-only part is copied, never written over
    if cipher in (Cipher.AES_128_GCM, Cipher.AES_256_GCM):  # the writable ones were
        assert sealed[3].obj is payload and bytes(payload) == reference[52 + 64 + 17:]


@pytest.mark.parametrize("cipher", AES_CIPHERS)
def test_decrypting_over_the_ciphertext(cipher):
    parts = message(1 << 20)
    key, nonce = _key(cipher), os.urandom(crypto.nonce_size(cipher))
    frame = bytearray(b"".join(crypto.encrypt(key, cipher, nonce, 9, parts)))
    plain = crypto.decrypt(key, cipher, memoryview(frame), overwrite=True)
    assert plain == b"".join(parts)
    if cipher in (Cipher.AES_128_GCM, Cipher.AES_256_GCM):
        assert isinstance(plain, memoryview) and plain.obj is frame
    sealed = b"".join(crypto.encrypt(key, cipher, nonce, 9, parts))
    assert crypto.decrypt(key, cipher, sealed, overwrite=True) == b"".join(parts)  # bytes: copied
    broken = bytearray(sealed)
    broken[100] ^= 1
    with pytest.raises(crypto.CryptoError):
        crypto.decrypt(key, cipher, broken, overwrite=True)
