"""One named-pipe open's DCE/RPC association, sans-IO.

Bytes the client writes go in through :meth:`RpcPipe.receive`, which
answers binds and alter_contexts itself, reassembles request fragments and
hands back the complete calls; the driver runs each call through its
service and passes the stub (or a fault) to :meth:`RpcPipe.answer`, which
fragments the response.  What the client reads comes out of
:meth:`RpcPipe.read`, one PDU per message as a message-mode pipe delivers
it.

A client that breaks the protocol (bad header, lying frag_length, a request
before any bind, fragments of two calls interleaved) gets a fault where the
call can be named and the pipe stops taking input: ``broken`` tells the SMB
side to answer STATUS_PIPE_DISCONNECTED from then on, as Samba does.
"""

from __future__ import annotations

import collections
import secrets
from dataclasses import dataclass

from smb.rpc import pdu
from smb.rpc.ndr import NDR64_SYNTAX, NDR_SYNTAX
from smb.rpc.pdu import Fault, PduError, PType

# Our fragment size limit, both ways (what Samba offers).
MAX_FRAG = 5840
# The least fragment size MS-RPCE lets either side announce (2.2.2.5).
MIN_FRAG = 1432
# A request's stub, all fragments together, may not exceed this (Samba's default).
MAX_REQUEST = 4 << 20
# Written but not yet whole PDUs or unread responses beyond this end the pipe.
MAX_BUFFERED = 2 * MAX_REQUEST
_RESPONSE_OVERHEAD = pdu.HEADER_SIZE + 8
_FEATURE_NEGOTIATION = bytes.fromhex("2c1cb76c12984045")  # 6cb71c2c-9812-4540-...
_SYNTAXES = {NDR_SYNTAX: False, NDR64_SYNTAX: True}


@dataclass(frozen=True)
class PendingCall:
    """A complete request the driver must run and answer."""

    call_id: int
    context_id: int
    opnum: int
    stub: bytes
    ndr64: bool


class RpcPipe:
    def __init__(self, pipe_name: str, abstract: pdu.Syntax) -> None:
        self._address = "\\PIPE\\" + pipe_name
        self._abstract = abstract
        self._contexts: dict[int, bool] = {}  # context id -> NDR64?
        self._bound = False
        self._max_xmit = MAX_FRAG
        self._max_recv = MAX_FRAG
        self._assoc_group = 0
        self._inbuf = bytearray()
        self._partial: tuple[pdu.Request, int, bytearray] | None = None
        self._out: collections.deque[bytes] = collections.deque()
        self._out_bytes = 0
        self.broken = False

    # -- input --------------------------------------------------------------------

    def receive(self, data: bytes | memoryview) -> list[PendingCall]:
        """Take bytes the client wrote; the calls now complete, in order."""
        if self.broken:
            return []
        if self._out_bytes > MAX_BUFFERED:
            # Requests written and their answers never read: take no more.
            self._break(None)
            return []
        self._inbuf += data
        calls: list[PendingCall] = []
        while not self.broken:
            length = pdu.peek_length(self._inbuf)
            if length is None or len(self._inbuf) < length:
                if len(self._inbuf) > MAX_BUFFERED:
                    self._break(None)
                break
            if length < pdu.HEADER_SIZE or length > self._max_recv:
                self._break(self._call_id_of(self._inbuf))
                break
            frame = bytes(self._inbuf[:length])
            del self._inbuf[:length]
            call = self._pdu(frame)
            if call is not None:
                calls.append(call)
        return calls

    @staticmethod
    def _call_id_of(data: bytes | bytearray) -> int | None:
        return int.from_bytes(data[12:16], "little") if len(data) >= 16 else None

    def _break(self, call_id: int | None) -> None:
        """A protocol error: fault the call if it can be named, then take nothing more."""
        if call_id is not None:
            self._queue(pdu.fault(call_id, 0, Fault.PROTO_ERROR, did_not_execute=True))
        self.broken = True
        self._inbuf.clear()
        self._partial = None

    def _pdu(self, frame: bytes) -> PendingCall | None:
        try:
            header = pdu.parse_header(frame)
        except PduError:
            self._break(self._call_id_of(frame))
            return None
        try:
            if header.ptype == PType.BIND:
                self._bind(frame, header)
            elif header.ptype == PType.ALTER_CONTEXT:
                self._alter_context(frame, header)
            elif header.ptype == PType.REQUEST:
                return self._request(frame, header)
            elif header.ptype in (PType.AUTH3, PType.CO_CANCEL, PType.ORPHANED):
                pass  # nothing to answer: no auth is offered, calls run to completion
            else:
                self._break(header.call_id)
        except PduError:
            self._break(header.call_id)
        return None

    # -- bind, alter_context --------------------------------------------------------

    def _results(self, bind: pdu.Bind) -> list[pdu.ContextResult]:
        """NDR is chosen wherever the client offers it for the interface (Windows
        offers NDR beside NDR64), which is what Samba's clients and servers
        speak; NDR64 serves a client that offers nothing else (checked with
        smbtorture over ``[ndr64]`` and Samba's ndrdump)."""
        ndr_offered = any(ctx.abstract == self._abstract and NDR_SYNTAX in ctx.transfers
                          for ctx in bind.contexts)
        return [self._context(ctx, ndr_offered) for ctx in bind.contexts]

    def _context(self, ctx: pdu.ContextElem, ndr_offered: bool) -> pdu.ContextResult:
        if any(t[0][:8] == _FEATURE_NEGOTIATION for t in ctx.transfers):
            # Bind time feature negotiation: none of its features is offered.
            return pdu.ContextResult(pdu.Result.NEGOTIATE_ACK, 0, pdu.NULL_SYNTAX)
        if ctx.abstract != self._abstract:
            return pdu.ContextResult(pdu.Result.PROVIDER_REJECTION,
                                     pdu.Reason.ABSTRACT_SYNTAX_NOT_SUPPORTED, pdu.NULL_SYNTAX)
        offered = [t for t in ctx.transfers if t == NDR_SYNTAX
                   or (t == NDR64_SYNTAX and not ndr_offered)]
        if not offered or ctx.context_id in self._contexts:
            return pdu.ContextResult(pdu.Result.PROVIDER_REJECTION,
                                     pdu.Reason.TRANSFER_SYNTAXES_NOT_SUPPORTED, pdu.NULL_SYNTAX)
        chosen = offered[0]
        self._contexts[ctx.context_id] = _SYNTAXES[chosen]
        return pdu.ContextResult(pdu.Result.ACCEPTANCE, 0, chosen)

    def _bind(self, frame: bytes, header: pdu.Header) -> None:
        if self._bound:
            self._queue(pdu.bind_nak(header.call_id, 0))
            return
        if header.auth_length:
            # RPC-level authentication is not offered: the SMB session already
            # authenticated the caller (and signs or seals its traffic).
            self._queue(pdu.bind_nak(header.call_id, 8))  # authentication type not recognized
            return
        bind = pdu.parse_bind(frame, header)
        if bind.max_xmit_frag < MIN_FRAG or bind.max_recv_frag < MIN_FRAG:
            self._queue(pdu.bind_nak(header.call_id, 2))  # local limit exceeded
            return
        self._max_xmit = min(bind.max_recv_frag, MAX_FRAG)
        self._max_recv = min(bind.max_xmit_frag, MAX_FRAG)
        self._assoc_group = bind.assoc_group_id or (secrets.randbits(31) | 0x1000)
        self._bound = True
        self._queue(pdu.bind_ack(
            header.call_id, PType.BIND_ACK, self._max_xmit, self._max_recv, self._assoc_group,
            self._address, self._results(bind), header.flags & pdu.FLAG_SUPPORT_HEADER_SIGN))

    def _alter_context(self, frame: bytes, header: pdu.Header) -> None:
        if not self._bound or header.auth_length:
            self._break(header.call_id)
            return
        bind = pdu.parse_bind(frame, header)
        self._queue(pdu.bind_ack(
            header.call_id, PType.ALTER_CONTEXT_RESP, self._max_xmit, self._max_recv,
            self._assoc_group, "", self._results(bind), 0))

    # -- requests -------------------------------------------------------------------

    def _request(self, frame: bytes, header: pdu.Header) -> PendingCall | None:
        if not self._bound or header.auth_length:
            self._break(header.call_id)
            return None
        req = pdu.parse_request(frame, header)
        first = bool(header.flags & pdu.FLAG_FIRST)
        if self._partial is None:
            if not first:
                self._break(header.call_id)
                return None
            if req.alloc_hint > MAX_REQUEST:
                self._break(header.call_id)
                return None
            self._partial = (req, header.call_id, bytearray())
        else:
            started, call_id, _ = self._partial
            if first or call_id != header.call_id or req.opnum != started.opnum \
                    or req.context_id != started.context_id:
                self._break(header.call_id)
                return None
        started, call_id, stub = self._partial
        stub += req.stub
        if len(stub) > MAX_REQUEST:
            self._break(call_id)
            return None
        if not header.flags & pdu.FLAG_LAST:
            return None
        self._partial = None
        ndr64 = self._contexts.get(started.context_id)
        if ndr64 is None:
            self._queue(pdu.fault(call_id, started.context_id, Fault.UNKNOWN_IF,
                                       did_not_execute=True))
            return None
        return PendingCall(call_id, started.context_id, started.opnum, bytes(stub), ndr64)

    def answer(self, call: PendingCall, stub: bytes | None, fault_status: int = 0) -> None:
        """Queue the response to ``call`` in fragments, or its fault when ``stub`` is None."""
        if stub is None:
            self._queue(pdu.fault(call.call_id, call.context_id, fault_status))
            return
        room = (self._max_xmit - _RESPONSE_OVERHEAD) & ~7
        pos = 0
        while True:
            chunk = stub[pos:pos + room]
            flags = (pdu.FLAG_FIRST if pos == 0 else 0)
            if pos + room >= len(stub):
                flags |= pdu.FLAG_LAST
            self._queue(pdu.response(call.call_id, call.context_id, len(stub) - pos,
                                          chunk, flags))
            pos += room
            if pos >= len(stub):
                break

    # -- output ---------------------------------------------------------------------

    def _queue(self, message: bytes) -> None:
        self._out.append(message)
        self._out_bytes += len(message)

    def pending(self) -> bool:
        return bool(self._out)

    def read(self, limit: int) -> tuple[bytes, bool]:
        """The next message, at most ``limit`` bytes; True when some of it is left
        for the next read (the SMB side answers STATUS_BUFFER_OVERFLOW)."""
        if not self._out:
            return b"", False
        head = self._out[0]
        if len(head) <= limit:
            self._out.popleft()
            self._out_bytes -= len(head)
            return head, False
        self._out[0] = head[limit:]
        self._out_bytes -= limit
        return head[:limit], True
