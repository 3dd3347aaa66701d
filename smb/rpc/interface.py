"""What a service on a named pipe is given and gives back.

A service is pure: an operation turns one call (the request stub, the
transfer syntax, the server's facts and the pipe's handles) into the
response stub, or raises :class:`CallFault`.  The facts are gathered by the
SMB side for every call from the config, the session and etcd, so nothing a
service answers depends on state kept in one process: after a failover the
client binds again and gets the same answers from another node.
"""

from __future__ import annotations

import hashlib
import struct
import uuid
from dataclasses import dataclass, field
from typing import Callable

from smb.rpc.ndr import NdrError, Reader, Writer
from smb.rpc.pdu import Fault, Syntax

# Share types (MS-SRVS 2.2.2.4).
STYPE_DISKTREE = 0x00000000
STYPE_IPC = 0x00000003
STYPE_SPECIAL = 0x80000000


@dataclass(frozen=True)
class ShareFacts:
    name: str
    type: int
    comment: str
    path: str  # as Windows paths are shown: "C:\srv\data"
    read_only: bool = False


@dataclass(frozen=True)
class Facts:
    """The server as one caller may see it, at the time of the call."""

    netbios_name: str
    workgroup: str
    comment: str
    # Only the shares the caller may connect to, IPC$ included.
    shares: tuple[ShareFacts, ...]
    # The caller's user name; "" for an anonymous or guest session.
    caller: str
    # hanode's users (gathered for lsarpc only; empty for the other pipes).
    users: tuple[str, ...] = ()
    # The time of the call (seconds since the epoch, UTC).
    now: float = 0.0

    def share(self, name: str) -> ShareFacts | None:
        for s in self.shares:
            if s.name.lower() == name.lower():
                return s
        return None

    @property
    def machine_sid(self) -> bytes:
        return machine_sid(self.netbios_name)


def machine_sid(netbios_name: str) -> bytes:
    """S-1-5-21-a-b-c, derived from the NetBIOS name: the same on every node."""
    digest = hashlib.sha256(b"hanode-machine-sid:" + netbios_name.upper().encode())
    subs = struct.unpack("<III", digest.digest()[:12])
    return sid_bytes(5, (21, *subs))


def sid_bytes(authority: int, subs: tuple[int, ...]) -> bytes:
    return bytes([1, len(subs)]) + authority.to_bytes(6, "big") + struct.pack(
        f"<{len(subs)}I", *subs)


def sid_text(sid: bytes) -> str:
    n = sid[1]
    subs = struct.unpack_from(f"<{n}I", sid, 8)
    return "S-1-" + "-".join([str(int.from_bytes(sid[2:8], "big")), *map(str, subs)])


class CallFault(Exception):
    """Ends a call with a fault PDU carrying ``status`` (pdu.Fault)."""

    def __init__(self, status: int):
        super().__init__(hex(status))
        self.status = status


@dataclass
class Call:
    """One request as a service operation sees it."""

    opnum: int
    stub: bytes
    ndr64: bool
    facts: Facts
    # The pipe's open context handles (e.g. LSA policy handles): they live
    # and die with the pipe, which lives and dies with its SMB open.
    handles: set[bytes] = field(default_factory=set)

    def reader(self) -> Reader:
        return Reader(self.stub, self.ndr64)

    def writer(self) -> Writer:
        return Writer(self.ndr64)


Operation = Callable[[Call], bytes]


@dataclass(frozen=True)
class Interface:
    """A service behind a pipe name: its abstract syntax and operations by opnum."""

    pipe: str
    syntax: Syntax
    operations: dict[int, Operation]
    # The operations that need etcd's user list (name and SID lookups).
    needs_users: frozenset[int] = frozenset()

    def invoke(self, call: Call) -> bytes:
        op = self.operations.get(call.opnum)
        if op is None:
            raise CallFault(Fault.OP_RNG_ERROR)
        try:
            return op(call)
        except NdrError:
            raise CallFault(Fault.NDR) from None


def uuid_syntax(text: str, major: int, minor: int = 0) -> Syntax:
    """A syntax id from its textual uuid, in the wire's mixed-endian layout."""
    return uuid.UUID(text).bytes_le, major | minor << 16
