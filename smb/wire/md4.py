"""MD4 (RFC 1320), needed for the NT hash that NTLM is built on.

Debian 12's OpenSSL 3 moves MD4 to the legacy provider, so ``hashlib.new("md4")``
fails there; the NT hash of a password is all we need it for, and the inputs
are short, so a small pure-Python version is fast enough.
"""

from __future__ import annotations

import struct

_MASK = 0xFFFFFFFF


def _rotl(x: int, n: int) -> int:
    x &= _MASK
    return ((x << n) | (x >> (32 - n))) & _MASK


def _f(x: int, y: int, z: int) -> int:
    return (x & y) | (~x & z)


def _g(x: int, y: int, z: int) -> int:
    return (x & y) | (x & z) | (y & z)


def _h(x: int, y: int, z: int) -> int:
    return x ^ y ^ z


_ROUND1 = [(0, 3), (1, 7), (2, 11), (3, 19)] * 4
_ORDER1 = list(range(16))
_ORDER2 = [0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15]
_SHIFT2 = [3, 5, 9, 13]
_ORDER3 = [0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15]
_SHIFT3 = [3, 9, 11, 15]


def _compress(state: list[int], block: bytes) -> list[int]:
    x = struct.unpack("<16I", block)
    a, b, c, d = state
    for i, k in enumerate(_ORDER1):
        s = _ROUND1[i][1]
        a, b, c, d = d, _rotl(a + _f(b, c, d) + x[k], s), b, c
    for i, k in enumerate(_ORDER2):
        a, b, c, d = d, _rotl(a + _g(b, c, d) + x[k] + 0x5A827999, _SHIFT2[i % 4]), b, c
    for i, k in enumerate(_ORDER3):
        a, b, c, d = d, _rotl(a + _h(b, c, d) + x[k] + 0x6ED9EBA1, _SHIFT3[i % 4]), b, c
    return [(v + w) & _MASK for v, w in zip(state, (a, b, c, d))]


def md4(data: bytes) -> bytes:
    """The 16-byte MD4 digest of ``data``."""
    length_bits = (len(data) * 8) & 0xFFFFFFFFFFFFFFFF
    padded = data + b"\x80" + b"\x00" * ((55 - len(data)) % 64) + struct.pack("<Q", length_bits)
    state = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476]
    for offset in range(0, len(padded), 64):
        state = _compress(state, padded[offset:offset + 64])
    return struct.pack("<4I", *state)


def nt_hash(password: str) -> bytes:
    """NTOWFv1: MD4 of the UTF-16LE password (MS-NLMP 3.3.1)."""
    return md4(password.encode("utf-16-le"))
