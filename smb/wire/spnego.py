"""SPNEGO (RFC 4178) tokens around NTLMSSP, as SMB2 SESSION_SETUP carries them.

Just enough DER to read a client's NegTokenInit/NegTokenResp and to write the
server's: the mechanism list, one inner token, the negotiation state and the
mechListMIC that protects the mechanism list from downgrade.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

SPNEGO_OID = "1.3.6.1.5.5.2"
NTLMSSP_OID = "1.3.6.1.4.1.311.2.2.10"


class NegState(enum.IntEnum):
    ACCEPT_COMPLETED = 0
    ACCEPT_INCOMPLETE = 1
    REJECT = 2
    REQUEST_MIC = 3


class SpnegoError(ValueError):
    """Bytes that are not a SPNEGO token we understand."""


# -- DER --------------------------------------------------------------------------


def _read_tlv(data: bytes, pos: int) -> tuple[int, bytes, int, int]:
    """(tag, value, start of TLV, position after TLV)."""
    start = pos
    if pos + 2 > len(data):
        raise SpnegoError("truncated DER")
    tag = data[pos]
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        if n == 0 or n > 4 or pos + n > len(data):
            raise SpnegoError("bad DER length")
        length = int.from_bytes(data[pos:pos + n], "big")
        pos += n
    if pos + length > len(data):
        raise SpnegoError("DER value runs past its buffer")
    return tag, data[pos:pos + length], start, pos + length


def _children(data: bytes) -> list[tuple[int, bytes, bytes]]:
    """(tag, value, whole TLV) for each element of a constructed value."""
    out = []
    pos = 0
    while pos < len(data):
        tag, value, start, pos = _read_tlv(data, pos)
        out.append((tag, value, data[start:pos]))
    return out


def _tlv(tag: int, value: bytes) -> bytes:
    n = len(value)
    if n < 0x80:
        return bytes([tag, n]) + value
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(raw)]) + raw + value


def _oid_encode(oid: str) -> bytes:
    parts = [int(p) for p in oid.split(".")]
    body = bytes([parts[0] * 40 + parts[1]])
    for p in parts[2:]:
        chunk = [p & 0x7F]
        p >>= 7
        while p:
            chunk.append(0x80 | (p & 0x7F))
            p >>= 7
        body += bytes(reversed(chunk))
    return _tlv(0x06, body)


def _oid_decode(body: bytes) -> str:
    if not body:
        raise SpnegoError("empty OID")
    parts = [body[0] // 40, body[0] % 40]
    value = 0
    for b in body[1:]:
        value = (value << 7) | (b & 0x7F)
        if not b & 0x80:
            parts.append(value)
            value = 0
    return ".".join(map(str, parts))


# -- tokens ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientToken:
    """What a client sent: mechTypes (only in the initial token), an inner token, a MIC."""

    mech_types: tuple[str, ...] = ()
    mech_types_der: bytes = b""  # exactly as sent: the mechListMIC covers these bytes
    mech_token: bytes = b""
    mech_list_mic: bytes = b""
    neg_state: int | None = None


def parse_client_token(data: bytes) -> ClientToken:
    """A NegTokenInit (wrapped in [APPLICATION 0]) or a NegTokenResp ([1])."""
    tag, value, _, _ = _read_tlv(data, 0)
    if tag == 0x60:
        parts = _children(value)
        if len(parts) < 2 or parts[0][0] != 0x06 or _oid_decode(parts[0][1]) != SPNEGO_OID:
            raise SpnegoError("not a SPNEGO token")
        if parts[1][0] != 0xA0:
            raise SpnegoError("not a NegTokenInit")
        return _parse_init(parts[1][1])
    if tag == 0xA1:
        return _parse_resp(value)
    raise SpnegoError("not a SPNEGO token")


def _sequence(value: bytes) -> list[tuple[int, bytes, bytes]]:
    parts = _children(value)
    if len(parts) != 1 or parts[0][0] != 0x30:
        raise SpnegoError("expected a SEQUENCE")
    return _children(parts[0][1])


def _octets(value: bytes) -> bytes:
    parts = _children(value)
    if len(parts) != 1 or parts[0][0] != 0x04:
        raise SpnegoError("expected an OCTET STRING")
    return parts[0][1]


def _parse_init(value: bytes) -> ClientToken:
    mech_types: tuple[str, ...] = ()
    mech_types_der = b""
    token = mic = b""
    for tag, inner, _ in _sequence(value):
        if tag == 0xA0:
            seq = _children(inner)
            if len(seq) != 1 or seq[0][0] != 0x30:
                raise SpnegoError("bad mechTypes")
            mech_types_der = seq[0][2]
            mech_types = tuple(_oid_decode(v) for t, v, _ in _children(seq[0][1]) if t == 0x06)
        elif tag == 0xA2:
            token = _octets(inner)
        elif tag == 0xA3:
            mic = _octets(inner)
    if not mech_types:
        raise SpnegoError("NegTokenInit without mechanisms")
    return ClientToken(mech_types, mech_types_der, token, mic)


def _parse_resp(value: bytes) -> ClientToken:
    state = None
    token = mic = b""
    for tag, inner, _ in _sequence(value):
        if tag == 0xA0:
            parts = _children(inner)
            if len(parts) != 1 or parts[0][0] != 0x0A or len(parts[0][1]) != 1:
                raise SpnegoError("bad negState")
            state = parts[0][1][0]
        elif tag == 0xA2:
            token = _octets(inner)
        elif tag == 0xA3:
            mic = _octets(inner)
    return ClientToken(mech_token=token, mech_list_mic=mic, neg_state=state)


def server_init_token() -> bytes:
    """The NegTokenInit hint in the NEGOTIATE response: we speak NTLMSSP only."""
    mechs = _tlv(0xA0, _tlv(0x30, _oid_encode(NTLMSSP_OID)))
    return _tlv(0x60, _oid_encode(SPNEGO_OID) + _tlv(0xA0, _tlv(0x30, mechs)))


def server_response(state: NegState, token: bytes = b"", mic: bytes = b"",
                    supported_mech: bool = False) -> bytes:
    body = _tlv(0xA0, _tlv(0x0A, bytes([state])))
    if supported_mech:
        body += _tlv(0xA1, _oid_encode(NTLMSSP_OID))
    if token:
        body += _tlv(0xA2, _tlv(0x04, token))
    if mic:
        body += _tlv(0xA3, _tlv(0x04, mic))
    return _tlv(0xA1, _tlv(0x30, body))


def mech_types_der(mechs: tuple[str, ...]) -> bytes:
    """DER of a mechTypes list, for tests that build client tokens."""
    return _tlv(0x30, b"".join(_oid_encode(m) for m in mechs))


def client_init_token(mechs: tuple[str, ...], token: bytes) -> bytes:
    """A client NegTokenInit; used by unit tests and the fuzzer to drive the server."""
    body = _tlv(0xA0, mech_types_der(mechs)) + _tlv(0xA2, _tlv(0x04, token))
    return _tlv(0x60, _oid_encode(SPNEGO_OID) + _tlv(0xA0, _tlv(0x30, body)))


def client_response_token(token: bytes, mic: bytes = b"") -> bytes:
    body = _tlv(0xA2, _tlv(0x04, token))
    if mic:
        body += _tlv(0xA3, _tlv(0x04, mic))
    return _tlv(0xA1, _tlv(0x30, body))
