"""Connection-oriented DCE/RPC PDUs (C706 chapter 12, MS-RPCE 2.2.2): the
common header, and the bodies of bind, alter_context, request and the
server's answers (bind_ack, bind_nak, alter_context_resp, response, fault).

Bytes in, dataclasses out, and back; nothing here knows a pipe or a service.
Only little-endian, ASCII, IEEE data representation is accepted (every
client in use sends it); anything else is a :class:`PduError`.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

HEADER = struct.Struct("<BBBB4sHHI")
HEADER_SIZE = HEADER.size  # 16
DREP_LE = b"\x10\x00\x00\x00"

FLAG_FIRST = 0x01
FLAG_LAST = 0x02
FLAG_SUPPORT_HEADER_SIGN = 0x04  # in bind/bind_ack (PFC_PENDING_CANCEL elsewhere)
FLAG_OBJECT_UUID = 0x80


class PType(enum.IntEnum):
    REQUEST = 0
    RESPONSE = 2
    FAULT = 3
    BIND = 11
    BIND_ACK = 12
    BIND_NAK = 13
    ALTER_CONTEXT = 14
    ALTER_CONTEXT_RESP = 15
    AUTH3 = 16
    SHUTDOWN = 17
    CO_CANCEL = 18
    ORPHANED = 19


class Fault(enum.IntEnum):
    """Fault statuses (C706 appendix E, MS-RPCE 3.1.1.5.5, MS-ERREF)."""

    ACCESS_DENIED = 0x00000005
    NDR = 0x000006F7  # nca_s_fault_ndr / RPC_X_BAD_STUB_DATA
    OP_RNG_ERROR = 0x1C010002
    UNKNOWN_IF = 0x1C010003
    PROTO_ERROR = 0x1C01000B
    UNSPEC_REJECT = 0x1C000011  # nca_s_fault_unspec_reject
    CONTEXT_MISMATCH = 0x1C00001A  # nca_s_fault_context_mismatch: a stale context handle


class PduError(ValueError):
    """Bytes that are no PDU this server can take; the pipe answers with a
    fault where it can name the call, and then stops serving."""


@dataclass(frozen=True)
class Header:
    ptype: int
    flags: int
    frag_length: int
    auth_length: int
    call_id: int


def peek_length(data: bytes | bytearray | memoryview) -> int | None:
    """The frag_length of the PDU at the start of ``data``, once 16 bytes are in."""
    if len(data) < HEADER_SIZE:
        return None
    return struct.unpack_from("<H", data, 8)[0]


def parse_header(pdu: bytes) -> Header:
    if len(pdu) < HEADER_SIZE:
        raise PduError("PDU shorter than its header")
    vers, minor, ptype, flags, drep, frag, auth, call_id = HEADER.unpack_from(pdu)
    if vers != 5 or minor not in (0, 1):
        raise PduError(f"RPC version {vers}.{minor}")
    if drep[0] != 0x10 or drep[1] != 0:
        raise PduError("only little-endian ASCII/IEEE data representation is served")
    if frag != len(pdu):
        raise PduError("frag_length does not match the PDU")
    if auth and auth + 8 > frag - HEADER_SIZE:
        raise PduError("auth_length larger than the PDU")
    return Header(ptype, flags, frag, auth, call_id)


def _header(ptype: int, flags: int, call_id: int, body: bytes) -> bytes:
    return HEADER.pack(5, 0, ptype, flags, DREP_LE, HEADER_SIZE + len(body), 0, call_id) + body


# -- bind and alter_context -------------------------------------------------------

Syntax = tuple[bytes, int]  # (uuid as on the wire, version: major | minor << 16)


@dataclass(frozen=True)
class ContextElem:
    context_id: int
    abstract: Syntax
    transfers: tuple[Syntax, ...]


@dataclass(frozen=True)
class Bind:
    max_xmit_frag: int
    max_recv_frag: int
    assoc_group_id: int
    contexts: tuple[ContextElem, ...]


_BIND = struct.Struct("<HHIB3x")
_CTX = struct.Struct("<HBx")
_SYNTAX = struct.Struct("<16sI")


def parse_bind(pdu: bytes, header: Header) -> Bind:
    """A bind or alter_context body (12.6.4.3, 12.6.4.1); any auth trailer is ignored."""
    end = header.frag_length - (header.auth_length + 8 if header.auth_length else 0)
    try:
        xmit, recv, group, n = _BIND.unpack_from(pdu, HEADER_SIZE)
        pos = HEADER_SIZE + _BIND.size
        contexts = []
        for _ in range(n):
            cid, n_transfer = _CTX.unpack_from(pdu, pos)
            abstract = _SYNTAX.unpack_from(pdu, pos + 4)
            pos += 4 + _SYNTAX.size
            transfers = []
            for _ in range(n_transfer):
                transfers.append(_SYNTAX.unpack_from(pdu, pos))
                pos += _SYNTAX.size
            contexts.append(ContextElem(cid, abstract, tuple(transfers)))
    except struct.error:
        raise PduError("bind body ends early") from None
    if pos > end:
        raise PduError("bind body overlaps its auth trailer")
    return Bind(xmit, recv, group, tuple(contexts))


class Result(enum.IntEnum):
    ACCEPTANCE = 0
    USER_REJECTION = 1
    PROVIDER_REJECTION = 2
    NEGOTIATE_ACK = 3  # bind time feature negotiation (MS-RPCE 2.2.2.14)


class Reason(enum.IntEnum):
    NOT_SPECIFIED = 0
    ABSTRACT_SYNTAX_NOT_SUPPORTED = 1
    TRANSFER_SYNTAXES_NOT_SUPPORTED = 2


@dataclass(frozen=True)
class ContextResult:
    result: int
    reason: int
    transfer: Syntax


NULL_SYNTAX: Syntax = (bytes(16), 0)


def bind_ack(call_id: int, ptype: int, max_xmit: int, max_recv: int, assoc_group: int,
             secondary_address: str, results: list[ContextResult], flags: int) -> bytes:
    """bind_ack or alter_context_resp (12.6.4.4, 12.6.4.2)."""
    addr = (secondary_address.encode("ascii") + b"\x00") if secondary_address else b""
    body = bytearray(struct.pack("<HHIH", max_xmit, max_recv, assoc_group, len(addr)) + addr)
    body += bytes(-(HEADER_SIZE + len(body)) % 4)
    body += struct.pack("<B3x", len(results))
    for r in results:
        body += struct.pack("<HH", r.result, r.reason) + _SYNTAX.pack(*r.transfer)
    return _header(ptype, FLAG_FIRST | FLAG_LAST | flags, call_id, bytes(body))


def bind_nak(call_id: int, reason: int) -> bytes:
    """bind_nak (12.6.4.5) offering protocol version 5.0."""
    return _header(PType.BIND_NAK, FLAG_FIRST | FLAG_LAST, call_id,
                   struct.pack("<HBBB3x", reason, 1, 5, 0))


# -- request, response, fault -----------------------------------------------------


@dataclass(frozen=True)
class Request:
    alloc_hint: int
    context_id: int
    opnum: int
    stub: bytes


_REQUEST = struct.Struct("<IHH")
_RESPONSE = struct.Struct("<IHBx")


def parse_request(pdu: bytes, header: Header) -> Request:
    pos = HEADER_SIZE + _REQUEST.size
    end = header.frag_length - (header.auth_length + 8 if header.auth_length else 0)
    if header.flags & FLAG_OBJECT_UUID:
        pos += 16
    if end < pos:
        raise PduError("request body ends early")
    hint, cid, opnum = _REQUEST.unpack_from(pdu, HEADER_SIZE)
    return Request(hint, cid, opnum, pdu[pos:end])


def response(call_id: int, context_id: int, alloc_hint: int, stub: bytes, flags: int) -> bytes:
    return _header(PType.RESPONSE, flags, call_id,
                   _RESPONSE.pack(alloc_hint, context_id, 0) + stub)


def fault(call_id: int, context_id: int, status: int, *, did_not_execute: bool = False) -> bytes:
    """fault (12.6.4.7); did_not_execute sets PFC_DID_NOT_EXECUTE."""
    flags = FLAG_FIRST | FLAG_LAST | (0x20 if did_not_execute else 0)
    return _header(PType.FAULT, flags, call_id,
                   _RESPONSE.pack(0, context_id, 0) + struct.pack("<II", status, 0))
