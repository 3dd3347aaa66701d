"""Signing, key derivation, encryption and the 3.1.1 preauth hash (MS-SMB2 3.1.4, 2.2.41).

Everything takes keys and bytes and returns bytes; the caller (the connection
layer) owns the keys, nonces and which algorithm a session negotiated.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import struct
from typing import TypeGuard, cast

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import ciphers, cmac
from cryptography.hazmat.primitives.ciphers import algorithms, modes
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


def _gmac_nonce(header: bytes | bytearray | memoryview) -> bytes:
    (message_id,) = struct.unpack_from("<Q", header, 24)
    (flags,) = struct.unpack_from("<I", header, 16)
    role = 1 if flags & Flags.SERVER_TO_REDIR else 0
    # A CANCEL request (command 0x0C) marks bit 1.
    (command,) = struct.unpack_from("<H", header, 12)
    cancel = 2 if command == 0x0C and not role else 0
    return struct.pack("<QI", message_id, role | cancel)


Buffer = bytes | bytearray | memoryview


def signature_of(key: bytes, algorithm: int, parts: list[Buffer]) -> bytes:
    """The 16-byte signature of a message given as consecutive ``parts``.

    The first part must start with the 64-byte header whose signature field is
    already zeroed.  Taking parts lets a large READ reply or WRITE request be
    signed without first copying it into one buffer (HMAC and CMAC are
    incremental, and so is GMAC when fed to GCM as associated data part by part).
    """
    if algorithm == SigningAlgorithm.HMAC_SHA256:
        mac = hmac.new(key, digestmod=hashlib.sha256)
        for part in parts:
            mac.update(part)
        return mac.digest()[:SIGNATURE_SIZE]
    if algorithm == SigningAlgorithm.AES_CMAC:
        cm = cmac.CMAC(algorithms.AES(key))
        for part in parts:
            cm.update(cast(bytes, part))  # any buffer, not copied
        return cm.finalize()
    if algorithm == SigningAlgorithm.AES_GMAC:
        gmac = ciphers.Cipher(algorithms.AES(key), modes.GCM(_gmac_nonce(parts[0]))).encryptor()
        for part in parts:
            gmac.authenticate_additional_data(part)
        gmac.finalize()
        return gmac.tag
    raise CryptoError(f"unknown signing algorithm {algorithm}")


def sign_header(key: bytes, algorithm: int, header: bytearray, rest: list[Buffer]) -> None:
    """Set SIGNED in ``header`` (the message's first 64 bytes) and fill in its
    signature over header + rest."""
    (flags,) = struct.unpack_from("<I", header, 16)
    struct.pack_into("<I", header, 16, flags | Flags.SIGNED)
    header[SIGNATURE_OFFSET:SIGNATURE_OFFSET + SIGNATURE_SIZE] = bytes(SIGNATURE_SIZE)
    header[SIGNATURE_OFFSET:SIGNATURE_OFFSET + SIGNATURE_SIZE] = signature_of(
        key, algorithm, [header, *rest])


def verify(key: bytes, algorithm: int, message: Buffer) -> bool:
    """Whether a received message's signature is right (its bytes are not copied)."""
    if len(message) < HEADER_SIZE:
        return False
    view = memoryview(message)
    parts: list[Buffer] = [view[:SIGNATURE_OFFSET], bytes(SIGNATURE_SIZE), view[HEADER_SIZE:]]
    expected = signature_of(key, algorithm, parts)
    return hmac.compare_digest(expected, bytes(view[SIGNATURE_OFFSET:HEADER_SIZE]))


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


def encrypt(key: bytes, cipher: int, nonce: bytes, session_id: int,
            plaintext: Buffer | list[Buffer], *, overwrite: bool = False) -> tuple[Buffer, ...]:
    """(TRANSFORM_HEADER, ciphertext part, ...) for ``plaintext``, given whole or as
    consecutive parts; ``nonce`` must never repeat.

    Header and ciphertext come apart so an 8 MiB READ reply is not copied once
    more just to put its header in front; with GCM the parts are encrypted
    where they lie, not joined first (CCM needs them in one piece).  With
    ``overwrite`` the caller gives up the writable parts (bytearray, writable
    memoryview): GCM writes their ciphertext over them, which spares a fresh
    8 MiB buffer per READ reply and the page faults of filling it.
    """
    n = nonce_size(cipher)
    if len(nonce) != n:
        raise CryptoError(f"nonce must be {n} bytes")
    parts = plaintext if isinstance(plaintext, list) else [plaintext]
    nonce_field = nonce + b"\x00" * (16 - n)
    aad = _TRANSFORM.pack(TRANSFORM_PROTOCOL_ID, b"\x00" * 16, nonce_field,
                          sum(len(p) for p in parts), 0, ENCRYPTED_FLAG, session_id)[20:]
    if cipher in (Cipher.AES_128_GCM, Cipher.AES_256_GCM):
        sealer = ciphers.Cipher(algorithms.AES(key), modes.GCM(nonce)).encryptor()
        sealer.authenticate_additional_data(aad)
        sealed_parts = [_update_in_place(sealer, p) if overwrite and _writable(p)
                        else sealer.update(p) for p in parts]
        sealer.finalize()
        return (TRANSFORM_PROTOCOL_ID + sealer.tag + aad, *sealed_parts)
    sealed = _aead(cipher, key).encrypt(nonce, b"".join(parts), aad)
    return TRANSFORM_PROTOCOL_ID + sealed[-16:] + aad, memoryview(sealed)[:-16]


def _writable(part: Buffer) -> TypeGuard[bytearray | memoryview]:
    return isinstance(part, bytearray) or (isinstance(part, memoryview) and not part.readonly)


def _update_in_place(context: ciphers.CipherContext, part: bytearray | memoryview) -> memoryview:
    """GCM output over its own input (OpenSSL allows exactly this overlap)."""
    view = memoryview(part)
    try:
        context.update_into(view, view)
    except ValueError:  # older cryptography wants room for a block more: copy instead
        view[:] = context.update(view)
    return view


def parse_transform(data: Buffer) -> tuple[int, int]:
    """(session id, original message size) of a TRANSFORM_HEADER message."""
    if len(data) < TRANSFORM_HEADER_SIZE or bytes(data[:4]) != TRANSFORM_PROTOCOL_ID:
        raise CryptoError("not a transform header")
    _, _, _, size, _, flags, session_id = _TRANSFORM.unpack_from(data)
    if flags != ENCRYPTED_FLAG:
        raise CryptoError("transform header without the encrypted flag")
    if size != len(data) - TRANSFORM_HEADER_SIZE:
        raise CryptoError("transform header size disagrees with the message")
    return session_id, size


def decrypt(key: bytes, cipher: int, data: Buffer, *,
            overwrite: bool = False) -> bytes | memoryview:
    """The plaintext of a TRANSFORM_HEADER message; CryptoError if it does not authenticate.

    With ``overwrite`` (``data`` writable, the caller gives it up) GCM writes
    the plaintext over the ciphertext and returns a view of it: an 8 MiB WRITE
    is then decrypted without a fresh buffer.  Data that does not authenticate
    leaves garbage behind, which the caller must drop with the message.
    """
    parse_transform(data)
    view = memoryview(data)
    body = len(view) - TRANSFORM_HEADER_SIZE
    aad = bytes(view[20:TRANSFORM_HEADER_SIZE])
    nonce, tag = aad[:nonce_size(cipher)], bytes(view[4:20])
    try:
        if cipher in (Cipher.AES_128_GCM, Cipher.AES_256_GCM):
            # GCM streams: the ciphertext is read where it lies, not copied first.
            opener = ciphers.Cipher(algorithms.AES(key), modes.GCM(nonce, tag)).decryptor()
            opener.authenticate_additional_data(aad)
            sealed = view[TRANSFORM_HEADER_SIZE:]
            plain = _update_in_place(opener, sealed) if overwrite and not view.readonly \
                else opener.update(sealed)
            opener.finalize()
            return plain
        # CCM wants ciphertext and tag in one buffer: one copy, not two.
        joined = bytearray(body + 16)
        joined[:body] = view[TRANSFORM_HEADER_SIZE:]
        joined[body:] = tag
        return _aead(cipher, key).decrypt(nonce, joined, aad)
    except InvalidTag:
        raise CryptoError("message does not decrypt") from None


# -- 3.1.1 preauth integrity -------------------------------------------------------


def preauth_update(previous: bytes, message: bytes | memoryview) -> bytes:
    """One link of the SHA-512 preauth hash chain (MS-SMB2 3.3.5.4, 3.3.5.5)."""
    return hashlib.sha512(previous + bytes(message)).digest()


PREAUTH_INITIAL = b"\x00" * 64
