"""Signing, key derivation, encryption and the 3.1.1 preauth hash (MS-SMB2 3.1.4, 2.2.41).

Everything takes keys and bytes and returns bytes; the caller (the connection
layer) owns the keys, nonces and which algorithm a session negotiated.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM

from smb.wire.header import (
    HEADER_SIZE, SIGNATURE_OFFSET, SIGNATURE_SIZE, TRANSFORM_PROTOCOL_ID, Flags,
)


class Dialect(enum.IntEnum):
    SMB_2_0_2 = 0x0202
    SMB_2_1 = 0x0210
    SMB_3_0 = 0x0300
    SMB_3_0_2 = 0x0302
    SMB_3_1_1 = 0x0311
    WILDCARD = 0x02FF


class Cipher(enum.IntEnum):
    NONE = 0
    AES_128_CCM = 1
    AES_128_GCM = 2
    AES_256_CCM = 3
    AES_256_GCM = 4


class SigningAlgorithm(enum.IntEnum):
    HMAC_SHA256 = 0
    AES_CMAC = 1
    AES_GMAC = 2


class HashAlgorithm(enum.IntEnum):
    SHA_512 = 1


class CryptoError(ValueError):
    """A message that does not authenticate or decrypt."""


# -- key derivation -----------------------------------------------------------


def kdf(key: bytes, label: bytes, context: bytes, length: int = 16) -> bytes:
    """SP800-108 counter-mode KDF with HMAC-SHA256 (MS-SMB2 3.1.4.2).

    ``label`` and ``context`` must already carry their trailing NUL where the
    spec's strings do; a separator 0x00 follows the label as SP800-108 asks.
    """
    out = b""
    counter = 1
    while len(out) < length:
        data = (struct.pack(">I", counter) + label + b"\x00" + context
                + struct.pack(">I", length * 8))
        out += hmac.new(key, data, hashlib.sha256).digest()
        counter += 1
    return out[:length]


def cipher_key_length(cipher: int) -> int:
    return 32 if cipher in (Cipher.AES_256_CCM, Cipher.AES_256_GCM) else 16


def derive_keys(session_key: bytes, dialect: int, preauth_hash: bytes,
                cipher: int) -> tuple[bytes, bytes, bytes, bytes]:
    """(signing, application, client-to-server cipher, server-to-client cipher) keys.

    Below 3.0 only signing exists and it is the session key itself.
    """
    if dialect < Dialect.SMB_3_0:
        return session_key, session_key, b"", b""
    klen = cipher_key_length(cipher)
    if dialect == Dialect.SMB_3_1_1:
        return (kdf(session_key, b"SMBSigningKey\x00", preauth_hash),
                kdf(session_key, b"SMBAppKey\x00", preauth_hash),
                kdf(session_key, b"SMBC2SCipherKey\x00", preauth_hash, klen),
                kdf(session_key, b"SMBS2CCipherKey\x00", preauth_hash, klen))
    return (kdf(session_key, b"SMB2AESCMAC\x00", b"SmbSign\x00"),
            kdf(session_key, b"SMB2APP\x00", b"SmbRpc\x00"),
            kdf(session_key, b"SMB2AESCCM\x00", b"ServerIn \x00", klen),
            kdf(session_key, b"SMB2AESCCM\x00", b"ServerOut\x00", klen))


# -- signing ---------------------------------------------------------------------


def _aes_cmac(key: bytes, data: bytes) -> bytes:
    mac = cmac.CMAC(algorithms.AES(key))
    mac.update(data)
    return mac.finalize()


def _gmac_nonce(message: bytes) -> bytes:
    (message_id,) = struct.unpack_from("<Q", message, 24)
    (flags,) = struct.unpack_from("<I", message, 16)
    role = 1 if flags & Flags.SERVER_TO_REDIR else 0
    # A CANCEL request (command 0x0C) marks bit 1.
    (command,) = struct.unpack_from("<H", message, 12)
    cancel = 2 if command == 0x0C and not role else 0
    return struct.pack("<QI", message_id, role | cancel)


def compute_signature(key: bytes, algorithm: int, message: bytes | memoryview) -> bytes:
    """The 16-byte signature of one SMB2 message (its signature field is ignored)."""
    data = bytes(message[:SIGNATURE_OFFSET]) + b"\x00" * SIGNATURE_SIZE + bytes(
        message[SIGNATURE_OFFSET + SIGNATURE_SIZE:])
    if algorithm == SigningAlgorithm.HMAC_SHA256:
        return hmac.new(key, data, hashlib.sha256).digest()[:SIGNATURE_SIZE]
    if algorithm == SigningAlgorithm.AES_CMAC:
        return _aes_cmac(key, data)
    if algorithm == SigningAlgorithm.AES_GMAC:
        return AESGCM(key).encrypt(_gmac_nonce(data), b"", data)
    raise CryptoError(f"unknown signing algorithm {algorithm}")


def sign(key: bytes, algorithm: int, message: bytes | bytearray) -> bytes:
    """``message`` with SIGNED set and its signature filled in."""
    buf = bytearray(message)
    (flags,) = struct.unpack_from("<I", buf, 16)
    struct.pack_into("<I", buf, 16, flags | Flags.SIGNED)
    buf[SIGNATURE_OFFSET:SIGNATURE_OFFSET + SIGNATURE_SIZE] = compute_signature(
        key, algorithm, buf)
    return bytes(buf)


def verify(key: bytes, algorithm: int, message: bytes | memoryview) -> bool:
    if len(message) < HEADER_SIZE:
        return False
    expected = compute_signature(key, algorithm, message)
    return hmac.compare_digest(expected, bytes(message[SIGNATURE_OFFSET:SIGNATURE_OFFSET + 16]))


# -- encryption (TRANSFORM_HEADER) -------------------------------------------------

TRANSFORM_HEADER_SIZE = 52
_TRANSFORM = struct.Struct("<4s16s16sIHHQ")
assert _TRANSFORM.size == TRANSFORM_HEADER_SIZE
ENCRYPTED_FLAG = 0x0001


def nonce_size(cipher: int) -> int:
    return 11 if cipher in (Cipher.AES_128_CCM, Cipher.AES_256_CCM) else 12


def _aead(cipher: int, key: bytes) -> AESGCM | AESCCM:
    if cipher in (Cipher.AES_128_GCM, Cipher.AES_256_GCM):
        return AESGCM(key)
    if cipher in (Cipher.AES_128_CCM, Cipher.AES_256_CCM):
        return AESCCM(key, tag_length=16)
    raise CryptoError(f"unknown cipher {cipher}")


def encrypt(key: bytes, cipher: int, nonce: bytes, session_id: int, plaintext: bytes) -> bytes:
    """A TRANSFORM_HEADER followed by ``plaintext`` encrypted; ``nonce`` must never repeat."""
    n = nonce_size(cipher)
    if len(nonce) != n:
        raise CryptoError(f"nonce must be {n} bytes")
    nonce_field = nonce + b"\x00" * (16 - n)
    aad = _TRANSFORM.pack(TRANSFORM_PROTOCOL_ID, b"\x00" * 16, nonce_field, len(plaintext),
                          0, ENCRYPTED_FLAG, session_id)[20:]
    sealed = _aead(cipher, key).encrypt(nonce, plaintext, aad)
    body, tag = sealed[:-16], sealed[-16:]
    return TRANSFORM_PROTOCOL_ID + tag + aad + body


def parse_transform(data: bytes | memoryview) -> tuple[int, int]:
    """(session id, original message size) of a TRANSFORM_HEADER message."""
    if len(data) < TRANSFORM_HEADER_SIZE or bytes(data[:4]) != TRANSFORM_PROTOCOL_ID:
        raise CryptoError("not a transform header")
    _, _, _, size, _, flags, session_id = _TRANSFORM.unpack_from(data)
    if flags != ENCRYPTED_FLAG:
        raise CryptoError("transform header without the encrypted flag")
    if size != len(data) - TRANSFORM_HEADER_SIZE:
        raise CryptoError("transform header size disagrees with the message")
    return session_id, size


def decrypt(key: bytes, cipher: int, data: bytes | memoryview) -> bytes:
    """The plaintext of a TRANSFORM_HEADER message; CryptoError if it does not authenticate."""
    parse_transform(data)
    data = bytes(data)
    tag = data[4:20]
    aad = data[20:TRANSFORM_HEADER_SIZE]
    nonce = data[20:20 + nonce_size(cipher)]
    try:
        return _aead(cipher, key).decrypt(nonce, data[TRANSFORM_HEADER_SIZE:] + tag, aad)
    except InvalidTag:
        raise CryptoError("message does not decrypt") from None


# -- 3.1.1 preauth integrity -------------------------------------------------------


def preauth_update(previous: bytes, message: bytes | memoryview) -> bytes:
    """One link of the SHA-512 preauth hash chain (MS-SMB2 3.3.5.4, 3.3.5.5)."""
    return hashlib.sha512(previous + bytes(message)).digest()


PREAUTH_INITIAL = b"\x00" * 64
