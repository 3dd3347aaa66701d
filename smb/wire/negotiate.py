"""SMB2 NEGOTIATE request and response (MS-SMB2 2.2.3, 2.2.4) with 3.1.1 contexts,
and recognition of the SMB1 multi-protocol NEGOTIATE that offers SMB2 (3.3.5.3).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field

from smb.wire.crypto import Cipher, Dialect, HashAlgorithm, SigningAlgorithm
from smb.wire.header import HEADER_SIZE, SMB1_PROTOCOL_ID


class SecurityMode(enum.IntFlag):
    SIGNING_ENABLED = 0x0001
    SIGNING_REQUIRED = 0x0002


class Capabilities(enum.IntFlag):
    DFS = 0x01
    LEASING = 0x02
    LARGE_MTU = 0x04
    MULTI_CHANNEL = 0x08
    PERSISTENT_HANDLES = 0x10
    DIRECTORY_LEASING = 0x20
    ENCRYPTION = 0x40


class ContextType(enum.IntEnum):
    PREAUTH_INTEGRITY = 0x0001
    ENCRYPTION = 0x0002
    COMPRESSION = 0x0003
    NETNAME = 0x0005
    TRANSPORT = 0x0006
    RDMA_TRANSFORM = 0x0007
    SIGNING = 0x0008


class NegotiateError(ValueError):
    """A NEGOTIATE request that breaks the rules (answered INVALID_PARAMETER)."""


SUPPORTED_DIALECTS = (Dialect.SMB_2_0_2, Dialect.SMB_2_1, Dialect.SMB_3_0,
                      Dialect.SMB_3_0_2, Dialect.SMB_3_1_1)
# Server preference, best first.
CIPHER_PREFERENCE = (Cipher.AES_128_GCM, Cipher.AES_128_CCM, Cipher.AES_256_GCM,
                     Cipher.AES_256_CCM)
SIGNING_PREFERENCE = (SigningAlgorithm.AES_GMAC, SigningAlgorithm.AES_CMAC,
                      SigningAlgorithm.HMAC_SHA256)


@dataclass(frozen=True)
class NegotiateRequest:
    dialects: tuple[int, ...]
    security_mode: int
    capabilities: int
    client_guid: bytes
    # 3.1.1 contexts, when the client offered 3.1.1.
    hash_algorithms: tuple[int, ...] = ()
    salt: bytes = b""
    ciphers: tuple[int, ...] | None = None  # None: no ENCRYPTION context
    signing_algorithms: tuple[int, ...] | None = None
    context_types: tuple[int, ...] = ()


def _u16_list(data: bytes, pos: int, count: int) -> tuple[int, ...]:
    if pos + 2 * count > len(data):
        raise NegotiateError("list runs past its context")
    return struct.unpack_from(f"<{count}H", data, pos)


def parse_request(body: bytes | memoryview, message: bytes | memoryview) -> NegotiateRequest:
    """Parse a NEGOTIATE request body; offsets in it count from ``message``'s start."""
    body = bytes(body)
    message = bytes(message)
    if len(body) < 36:
        raise NegotiateError("NEGOTIATE body too short")
    (size, count, security_mode, _, capabilities, client_guid, ctx_offset, ctx_count,
     _) = struct.unpack_from("<HHHHI16sIHH", body)
    if size != 36 or count == 0:
        raise NegotiateError("bad NEGOTIATE StructureSize or DialectCount")
    dialects = _u16_list(body, 36, count)
    req = NegotiateRequest(dialects, security_mode, capabilities, client_guid)
    if Dialect.SMB_3_1_1 not in dialects:
        return req
    return _parse_contexts(req, message, ctx_offset, ctx_count)


def _parse_contexts(req: NegotiateRequest, message: bytes, offset: int,
                    count: int) -> NegotiateRequest:
    hashes: tuple[int, ...] = ()
    salt = b""
    ciphers = signing = None
    types = []
    pos = offset
    for i in range(count):
        if i:
            pos = (pos + 7) & ~7
        if pos + 8 > len(message):
            raise NegotiateError("negotiate context runs past the message")
        ctype, length = struct.unpack_from("<HH", message, pos)
        data = message[pos + 8:pos + 8 + length]
        if len(data) != length:
            raise NegotiateError("negotiate context runs past the message")
        pos += 8 + length
        if ctype in types and ctype in (ContextType.PREAUTH_INTEGRITY, ContextType.ENCRYPTION,
                                        ContextType.SIGNING, ContextType.COMPRESSION):
            raise NegotiateError("duplicate negotiate context")
        types.append(ctype)
        if ctype == ContextType.PREAUTH_INTEGRITY:
            if length < 4:
                raise NegotiateError("short PREAUTH context")
            n, salt_len = struct.unpack_from("<HH", data)
            hashes = _u16_list(data, 4, n)
            salt = data[4 + 2 * n:4 + 2 * n + salt_len]
        elif ctype == ContextType.ENCRYPTION:
            if length < 2:
                raise NegotiateError("short ENCRYPTION context")
            (n,) = struct.unpack_from("<H", data)
            if n == 0:
                raise NegotiateError("ENCRYPTION context without ciphers")
            ciphers = _u16_list(data, 2, n)
        elif ctype == ContextType.SIGNING:
            if length < 2:
                raise NegotiateError("short SIGNING context")
            (n,) = struct.unpack_from("<H", data)
            if n == 0:
                raise NegotiateError("SIGNING context without algorithms")
            signing = _u16_list(data, 2, n)
    if not hashes:
        raise NegotiateError("3.1.1 without a PREAUTH_INTEGRITY context")
    return NegotiateRequest(req.dialects, req.security_mode, req.capabilities, req.client_guid,
                            hashes, salt, ciphers, signing, tuple(types))


@dataclass(frozen=True)
class Choice:
    """What the server picked for this connection."""

    dialect: int
    cipher: int = Cipher.NONE
    signing: int = SigningAlgorithm.HMAC_SHA256
    # 3.1.1: whether to answer with ENCRYPTION / SIGNING contexts.
    answer_cipher: bool = False
    answer_signing: bool = False


def choose(req: NegotiateRequest) -> Choice | None:
    """The dialect and algorithms for ``req``; None when nothing is in common."""
    common = [d for d in req.dialects if d in SUPPORTED_DIALECTS]
    if not common:
        return None
    dialect = max(common)
    if dialect < Dialect.SMB_3_0:
        return Choice(dialect)
    if dialect < Dialect.SMB_3_1_1:
        cipher = Cipher.AES_128_CCM if req.capabilities & Capabilities.ENCRYPTION else Cipher.NONE
        return Choice(dialect, cipher, SigningAlgorithm.AES_CMAC)
    if HashAlgorithm.SHA_512 not in req.hash_algorithms:
        raise NegotiateError("no common preauth hash algorithm")
    cipher = Cipher.NONE
    if req.ciphers is not None:
        cipher = next((c for c in CIPHER_PREFERENCE if c in req.ciphers), Cipher.NONE)
    signing = SigningAlgorithm.AES_CMAC
    if req.signing_algorithms is not None:
        signing = next((s for s in SIGNING_PREFERENCE if s in req.signing_algorithms),
                       SigningAlgorithm.AES_CMAC)
    return Choice(dialect, cipher, signing, req.ciphers is not None,
                  req.signing_algorithms is not None)


def _context(ctype: int, data: bytes) -> bytes:
    return struct.pack("<HHI", ctype, len(data), 0) + data


@dataclass(frozen=True)
class NegotiateResponse:
    security_mode: int
    dialect: int
    server_guid: bytes
    capabilities: int
    max_transact_size: int
    max_read_size: int
    max_write_size: int
    system_time: int
    security_buffer: bytes
    salt: bytes = b""
    cipher: int | None = None
    signing: int | None = None
    contexts: list[bytes] = field(default_factory=list)

    def pack(self) -> bytes:
        """The response body; contexts only when the dialect is 3.1.1."""
        sec_offset = HEADER_SIZE + 64
        ctx_blobs = []
        if self.dialect == Dialect.SMB_3_1_1:
            ctx_blobs.append(_context(ContextType.PREAUTH_INTEGRITY, struct.pack(
                "<HHH", 1, len(self.salt), HashAlgorithm.SHA_512) + self.salt))
            if self.cipher is not None:
                ctx_blobs.append(_context(ContextType.ENCRYPTION,
                                          struct.pack("<HH", 1, self.cipher)))
            if self.signing is not None:
                ctx_blobs.append(_context(ContextType.SIGNING, struct.pack("<HH", 1, self.signing)))
        body_end = sec_offset + len(self.security_buffer)
        ctx_offset = (body_end + 7) & ~7 if ctx_blobs else 0
        fixed = struct.pack(
            "<HHHH16sIIIIQQHHI", 65, self.security_mode, self.dialect, len(ctx_blobs),
            self.server_guid, self.capabilities, self.max_transact_size, self.max_read_size,
            self.max_write_size, self.system_time, 0, sec_offset, len(self.security_buffer),
            ctx_offset)
        out = fixed + self.security_buffer
        for blob in ctx_blobs:
            pad = (-(HEADER_SIZE + len(out))) % 8
            out += b"\x00" * pad + blob
        return out


# -- SMB1 upgrade ------------------------------------------------------------------------

SMB1_NEGOTIATE = 0x72


def smb1_dialects(message: bytes | memoryview) -> list[str] | None:
    """The dialect strings of an SMB1 NEGOTIATE, or None if ``message`` is not one."""
    message = bytes(message)
    if len(message) < 35 or message[:4] != SMB1_PROTOCOL_ID or message[4] != SMB1_NEGOTIATE:
        return None
    word_count = message[32]
    pos = 33 + 2 * word_count
    if pos + 2 > len(message):
        return None
    (byte_count,) = struct.unpack_from("<H", message, pos)
    data = message[pos + 2:pos + 2 + byte_count]
    names = []
    for chunk in data.split(b"\x00"):
        if chunk.startswith(b"\x02"):
            names.append(chunk[1:].decode("ascii", "replace"))
    return names


def smb1_upgrade_dialect(names: list[str]) -> int | None:
    """The SMB2 dialect to answer an SMB1 NEGOTIATE with (MS-SMB2 3.3.5.3.1)."""
    if "SMB 2.???" in names:
        return Dialect.WILDCARD
    if "SMB 2.002" in names:
        return Dialect.SMB_2_0_2
    return None
