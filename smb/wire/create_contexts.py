"""CREATE contexts (MS-SMB2 2.2.13.2, 2.2.14.2): the chain and the ones durability needs.

Sans-IO: bytes in, typed values out.  The chain arrives from the network, so
every length and offset in it is checked against the bytes actually present
before anything is sliced; a lying length yields a :class:`ContextError`
value, never an exception, an over-read or an allocation sized by the client.

Besides the chain codec this module knows the durable-handle contexts (DHnQ,
DHnC, DH2Q, DH2C), the lease contexts (RqLs v1 and v2) and their responses,
and :func:`durability_request` turns a parsed chain into the one durability
intent the CREATE handler has to act on, applying the combination rules of
3.3.5.9.6, 3.3.5.9.7, 3.3.5.9.10 and 3.3.5.9.12.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from smb.wire.header import Status

DHNQ = b"DHnQ"
DHNC = b"DHnC"
DH2Q = b"DH2Q"
DH2C = b"DH2C"
RQLS = b"RqLs"
QFID = b"QFid"

# Next, NameOffset, NameLength, Reserved, DataOffset, DataLength.
_CONTEXT_HEADER = struct.Struct("<IHHHHI")
CONTEXT_HEADER_SIZE = _CONTEXT_HEADER.size  # 16

DHANDLE_FLAG_PERSISTENT = 0x00000002
LEASE_FLAG_BREAK_IN_PROGRESS = 0x00000002
LEASE_FLAG_PARENT_LEASE_KEY_SET = 0x00000004

_FILE_ID = struct.Struct("<QQ")
_DH2Q = struct.Struct("<II8s16s")          # Timeout, Flags, Reserved, CreateGuid
_DH2C = struct.Struct("<QQ16sI")           # FileId, CreateGuid, Flags
_DH2Q_RESPONSE = struct.Struct("<II")      # Timeout, Flags
_LEASE_V1 = struct.Struct("<16sIIQ")       # Key, State, Flags, Duration
_LEASE_V2 = struct.Struct("<16sIIQ16sHH")  # ... ParentLeaseKey, Epoch, Reserved
DHNQ_SIZE = 16
DHNC_SIZE = _FILE_ID.size                  # 16
DH2Q_SIZE = _DH2Q.size                     # 32
DH2C_SIZE = _DH2C.size                     # 36
LEASE_V1_SIZE = _LEASE_V1.size             # 32
LEASE_V2_SIZE = _LEASE_V2.size             # 52
assert (DH2Q_SIZE, DH2C_SIZE, LEASE_V1_SIZE, LEASE_V2_SIZE) == (32, 36, 32, 52)


@dataclass(frozen=True)
class ContextError:
    """Why a CREATE's contexts cannot be honoured: the status to answer with."""

    status: Status
    reason: str


@dataclass(frozen=True)
class CreateContext:
    name: bytes
    data: bytes


def _align8(n: int) -> int:
    return (n + 7) & ~7


def parse_chain(buf: bytes | memoryview) -> list[CreateContext] | ContextError:
    """Split a create-context chain (the bytes CreateContextsOffset/Length name).

    Each element's Next, name and data must lie inside what remains of the
    chain (inside its own Next-bounded extent when Next is set), Next and
    DataOffset must be 8-byte aligned, and Next must move forward, so a
    malicious chain can neither loop nor reach outside the buffer.
    """
    view = memoryview(buf)
    contexts: list[CreateContext] = []
    if not len(view):
        return contexts  # CreateContextsLength 0: no contexts
    offset = 0
    while True:
        remaining = len(view) - offset
        if remaining < CONTEXT_HEADER_SIZE:
            return _bad(f"create context at {offset} shorter than its header")
        nxt, name_off, name_len, _reserved, data_off, data_len = \
            _CONTEXT_HEADER.unpack_from(view, offset)
        if nxt:
            if nxt % 8 or nxt < CONTEXT_HEADER_SIZE or nxt > remaining:
                return _bad(f"create context at {offset}: bad Next {nxt}")
            extent = nxt
        else:
            extent = remaining
        if name_len == 0 or name_off < CONTEXT_HEADER_SIZE or name_off + name_len > extent:
            return _bad(f"create context at {offset}: name outside the context")
        if data_len:
            if (data_off % 8 or data_off < name_off + name_len
                    or data_off + data_len > extent):
                return _bad(f"create context at {offset}: data outside the context")
            data = bytes(view[offset + data_off:offset + data_off + data_len])
        else:
            data = b""
        name = bytes(view[offset + name_off:offset + name_off + name_len])
        contexts.append(CreateContext(name, data))
        if not nxt:
            return contexts
        offset += nxt


def pack_chain(contexts: list[CreateContext] | tuple[CreateContext, ...]) -> bytes:
    """Build a chain: name at 16, data at the next multiple of 8, elements 8-aligned."""
    out = bytearray()
    for i, ctx in enumerate(contexts):
        name_end = CONTEXT_HEADER_SIZE + len(ctx.name)
        data_off = _align8(name_end) if ctx.data else 0
        body_end = data_off + len(ctx.data) if ctx.data else name_end
        last = i == len(contexts) - 1
        size = body_end if last else _align8(body_end)
        element = bytearray(size)
        _CONTEXT_HEADER.pack_into(element, 0, 0 if last else size, CONTEXT_HEADER_SIZE,
                                  len(ctx.name), 0, data_off, len(ctx.data))
        element[CONTEXT_HEADER_SIZE:name_end] = ctx.name
        if ctx.data:
            element[data_off:data_off + len(ctx.data)] = ctx.data
        out += element
    return bytes(out)


def _bad(reason: str) -> ContextError:
    return ContextError(Status.INVALID_PARAMETER, reason)


# -- the durable-handle and lease contexts ------------------------------------

@dataclass(frozen=True)
class FileId:
    persistent: int
    volatile: int

    def pack(self) -> bytes:
        return _FILE_ID.pack(self.persistent, self.volatile)

    @classmethod
    def unpack(cls, data: bytes) -> "FileId":
        return cls(*_FILE_ID.unpack_from(data))


@dataclass(frozen=True)
class DurableV1Request:
    """DHnQ: its 16 bytes are reserved; its presence is the whole message."""


@dataclass(frozen=True)
class DurableV1Reconnect:
    file_id: FileId


@dataclass(frozen=True)
class DurableV2Request:
    timeout_ms: int
    flags: int
    create_guid: bytes

    @property
    def persistent(self) -> bool:
        return bool(self.flags & DHANDLE_FLAG_PERSISTENT)


@dataclass(frozen=True)
class DurableV2Reconnect:
    file_id: FileId
    create_guid: bytes
    flags: int

    @property
    def persistent(self) -> bool:
        return bool(self.flags & DHANDLE_FLAG_PERSISTENT)


@dataclass(frozen=True)
class LeaseContext:
    """RqLs in a request or a response; version 1 is 32 bytes, version 2 is 52.

    For version 1 parent_key and epoch are meaningless and packed as nothing.
    """

    key: bytes
    state: int
    flags: int = 0
    version: int = 2
    parent_key: bytes = b"\x00" * 16
    epoch: int = 0
    duration: int = 0

    @property
    def has_parent(self) -> bool:
        return self.version == 2 and bool(self.flags & LEASE_FLAG_PARENT_LEASE_KEY_SET)

    def pack(self) -> bytes:
        if self.version == 1:
            return _LEASE_V1.pack(self.key, self.state, self.flags, self.duration)
        return _LEASE_V2.pack(self.key, self.state, self.flags, self.duration,
                              self.parent_key, self.epoch, 0)

    def context(self) -> CreateContext:
        return CreateContext(RQLS, self.pack())


def parse_lease(data: bytes) -> LeaseContext | ContextError:
    """An RqLs body; the size alone says the version (3.3.5.9.8, 3.3.5.9.11)."""
    if len(data) == LEASE_V1_SIZE:
        key, state, flags, duration = _LEASE_V1.unpack(data)
        return LeaseContext(key, state, flags, version=1, duration=duration)
    if len(data) == LEASE_V2_SIZE:
        key, state, flags, duration, parent, epoch, _ = _LEASE_V2.unpack(data)
        return LeaseContext(key, state, flags, version=2, parent_key=parent,
                            epoch=epoch, duration=duration)
    return _bad(f"RqLs of {len(data)} bytes (32 or 52 expected)")


def durable_v1_response() -> CreateContext:
    """DHnQ response (2.2.14.2.3): 8 reserved bytes."""
    return CreateContext(DHNQ, b"\x00" * 8)


def durable_v2_response(timeout_ms: int, flags: int = 0) -> CreateContext:
    """DH2Q response (2.2.14.2.12): the timeout the server will honour, and flags."""
    return CreateContext(DH2Q, _DH2Q_RESPONSE.pack(timeout_ms, flags))


def pack_dh2q(req: DurableV2Request) -> CreateContext:
    return CreateContext(DH2Q, _DH2Q.pack(req.timeout_ms, req.flags, b"\x00" * 8, req.create_guid))


def pack_dh2c(req: DurableV2Reconnect) -> CreateContext:
    return CreateContext(DH2C, _DH2C.pack(req.file_id.persistent, req.file_id.volatile,
                                          req.create_guid, req.flags))


Durability = DurableV1Request | DurableV1Reconnect | DurableV2Request | DurableV2Reconnect


@dataclass(frozen=True)
class DurabilityIntent:
    """What a CREATE asks for about durability and leasing, after validation.

    durable is None when no durable context applies; lease is None without
    RqLs.  Other contexts are left to the CREATE handler.
    """

    durable: Durability | None
    lease: LeaseContext | None


# Besides itself, a reconnect may carry RqLs, and DHnC also a DHnQ (which
# 3.3.5.9.7 ignores).  QFid asks only for the file's on-disk id, which the
# reconnect's response can give as any open's does: MS-SMB2 (3.3.5.9.7,
# 3.3.5.9.12) does not make it fail a reconnect, and the Linux client sends
# it with every DHnC (DHnC + RqLs + QFid), so refusing it, as Samba does,
# would only cost that client its open.
_RECONNECT_ALLOWED = {DH2C: frozenset({DH2C, RQLS, QFID}),
                      DHNC: frozenset({DHNC, DHNQ, RQLS, QFID})}


def durability_request(contexts: list[CreateContext]) -> DurabilityIntent | ContextError:
    """Validate the durability and lease contexts of one CREATE request.

    The first context of each name counts (as Samba does).  Rules, in order:
    every durable context has its exact size (INVALID_PARAMETER otherwise);
    DH2Q or DH2C next to any other durable context is INVALID_PARAMETER
    (3.3.5.9.10, 3.3.5.9.12, 3.3.5.9.7); DHnQ next to DHnC is ignored
    (3.3.5.9.7); a reconnect carrying any other context besides RqLs and
    QFid, or one twice, is OBJECT_NAME_NOT_FOUND (what Windows and Samba
    answer and smbtorture asserts).
    """
    found: dict[bytes, bytes] = {}
    for ctx in contexts:
        found.setdefault(ctx.name, ctx.data)

    lease: LeaseContext | None = None
    if RQLS in found:
        parsed = parse_lease(found[RQLS])
        if isinstance(parsed, ContextError):
            return parsed
        lease = parsed

    sizes = {DHNQ: DHNQ_SIZE, DHNC: DHNC_SIZE, DH2Q: DH2Q_SIZE, DH2C: DH2C_SIZE}
    for name, size in sizes.items():
        if name in found and len(found[name]) != size:
            return _bad(f"{name.decode()} of {len(found[name])} bytes ({size} expected)")

    present = {name for name in sizes if name in found}
    if DH2Q in present and present - {DH2Q}:
        return _bad("DH2Q combined with another durable context")
    if DH2C in present and present - {DH2C}:
        return _bad("DH2C combined with another durable context")

    durable: Durability | None = None
    if DH2C in found:
        pid, vid, guid, flags = _DH2C.unpack(found[DH2C])
        durable = DurableV2Reconnect(FileId(pid, vid), guid, flags)
    elif DHNC in found:
        durable = DurableV1Reconnect(FileId.unpack(found[DHNC]))
    elif DH2Q in found:
        timeout, flags, _reserved, guid = _DH2Q.unpack(found[DH2Q])
        durable = DurableV2Request(timeout, flags, guid)
    elif DHNQ in found:
        durable = DurableV1Request()

    if isinstance(durable, (DurableV1Reconnect, DurableV2Reconnect)):
        allowed = _RECONNECT_ALLOWED[DH2C if DH2C in found else DHNC]
        if set(found) - allowed or len(contexts) != len(found):
            return ContextError(Status.OBJECT_NAME_NOT_FOUND,
                                "a durable reconnect carries other create contexts")
    return DurabilityIntent(durable, lease)

