"""lsarpc (MS-LSAD, MS-LSAT): policy handles, the server's domain, and
translation between names and SIDs for hanode's users and the well-known
accounts.

A user's SID is the machine SID (derived from the NetBIOS name) plus a RID
derived from the user name, so every worker of every node answers the same
without a shared counter, and a user keeps its SID for as long as it keeps
its name.  Policy handles are the pipe's (``Call.handles``): they end with
the pipe, as they would on any server.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Callable

from smb.rpc.interface import Call, CallFault, Facts, Interface, sid_bytes, sid_text, uuid_syntax
from smb.rpc.ndr import NdrError, Reader, Writer
from smb.rpc.pdu import Fault

STATUS_SUCCESS = 0
STATUS_SOME_NOT_MAPPED = 0x00000107
STATUS_INVALID_INFO_CLASS = 0xC0000003
STATUS_NONE_MAPPED = 0xC0000073

# lsa_SidType (MS-LSAT 2.2.13)
SID_USER = 1
SID_DOMAIN = 3
SID_ALIAS = 4
SID_WELL_KNOWN_GROUP = 5
SID_UNKNOWN = 8

POLICY_PRIMARY_DOMAIN = 3
POLICY_ACCOUNT_DOMAIN = 5
POLICY_ROLE = 6
POLICY_DNS = 12
POLICY_LOCAL_ACCOUNT_DOMAIN = 14
ROLE_PRIMARY = 3  # a standalone server is the primary of its own account domain

STATUS_INSUFFICIENT_RESOURCES = 0xC000009A
MAX_HANDLES = 256  # open policy handles per pipe (a client needs one or two)
NO_DOMAIN = 0xFFFFFFFF
MAX_NAMES = 20480  # LSA_MAX_NAMES / SIDS per lookup, as Windows limits them


def _sid(authority: int, *subs: int) -> bytes:
    return sid_bytes(authority, subs)


# (domain name, account name, SID, type); a domain's SID is its accounts' minus the last RID.
_WELL_KNOWN: tuple[tuple[str, str, bytes, int], ...] = (
    ("", "Everyone", _sid(1, 0), SID_WELL_KNOWN_GROUP),
    ("", "CREATOR OWNER", _sid(3, 0), SID_WELL_KNOWN_GROUP),
    ("", "CREATOR GROUP", _sid(3, 1), SID_WELL_KNOWN_GROUP),
    ("NT AUTHORITY", "NETWORK", _sid(5, 2), SID_WELL_KNOWN_GROUP),
    ("NT AUTHORITY", "ANONYMOUS LOGON", _sid(5, 7), SID_WELL_KNOWN_GROUP),
    ("NT AUTHORITY", "Authenticated Users", _sid(5, 11), SID_WELL_KNOWN_GROUP),
    ("NT AUTHORITY", "SYSTEM", _sid(5, 18), SID_WELL_KNOWN_GROUP),
    ("BUILTIN", "Administrators", _sid(5, 32, 544), SID_ALIAS),
    ("BUILTIN", "Users", _sid(5, 32, 545), SID_ALIAS),
    ("BUILTIN", "Guests", _sid(5, 32, 546), SID_ALIAS),
)
_WELL_KNOWN_DOMAINS = {"NT AUTHORITY": _sid(5), "BUILTIN": _sid(5, 32)}


def user_rid(name: str) -> int:
    """A RID for a user name: stable, above the well-known RIDs, below 2**31."""
    digest = hashlib.sha256(b"hanode-user-rid:" + name.lower().encode()).digest()
    return 1000 + int.from_bytes(digest[:4], "little") % 0x7FFF0000


@dataclass(frozen=True)
class Translation:
    sid_type: int
    name: str
    domain: str
    domain_sid: bytes
    sid: bytes

    @property
    def rid(self) -> int:
        """The last sub-authority, or 0xFFFFFFFF for a domain itself."""
        if self.sid_type == SID_DOMAIN:
            return 0xFFFFFFFF
        return int.from_bytes(self.sid[-4:], "little")


def _parent(sid: bytes) -> bytes:
    return bytes([1, sid[1] - 1]) + sid[2:-4]


def _child(sid: bytes, rid: int) -> bytes:
    return bytes([1, sid[1] + 1]) + sid[2:] + rid.to_bytes(4, "little")


class Directory:
    """Every name this server can translate, indexed once per call (a lookup
    may carry thousands of names against thousands of users)."""

    def __init__(self, facts: Facts) -> None:
        machine = facts.machine_sid
        accounts = [Translation(kind, name, domain, _parent(sid), sid)
                    for domain, name, sid, kind in _WELL_KNOWN]
        accounts += [Translation(SID_DOMAIN, domain, domain, sid, sid)
                     for domain, sid in _WELL_KNOWN_DOMAINS.items()]
        accounts.append(Translation(SID_DOMAIN, facts.netbios_name, facts.netbios_name,
                                    machine, machine))
        accounts += [Translation(SID_USER, user, facts.netbios_name, machine,
                                 _child(machine, user_rid(user))) for user in facts.users]
        self._server = facts.netbios_name.lower()
        self._by_sid: dict[bytes, Translation] = {}
        self._by_name: dict[str, Translation] = {}  # "name" and "domain\\name"
        self._domains: dict[str, Translation] = {}
        for t in accounts:
            self._by_sid.setdefault(t.sid, t)
            if t.sid_type == SID_DOMAIN:
                self._domains.setdefault(t.name.lower(), t)
            self._by_name.setdefault(t.name.lower(), t)
            self._by_name.setdefault(f"{t.domain}\\{t.name}".lower(), t)

    def name(self, name: str) -> Translation | None:
        """``name`` or ``DOMAIN\\name``, case-insensitive; ``DOMAIN\\`` is the
        domain itself, and an empty name the server's own account domain."""
        domain, _, account = name.rpartition("\\")
        if not account:
            return self._domains.get(domain.lower() or self._server)
        return self._by_name.get(name.lower() if domain else account.lower())

    def sid(self, sid: bytes) -> Translation | None:
        return self._by_sid.get(sid)


# -- wire helpers --------------------------------------------------------------------


def _handle(call: Call, r: Reader) -> bytes:
    """The policy handle a call starts with; one this pipe never opened (or
    closed) is a context-mismatch fault, as Windows and Samba answer."""
    handle = r.deferring(r.policy_handle)
    if handle not in call.handles:
        raise CallFault(Fault.CONTEXT_MISMATCH)
    return handle


def _with_status(call: Call, body: Callable[[Writer], int]) -> bytes:
    w = call.writer()
    status = body(w)
    w.deferring(lambda: w.u32(status))
    return w.getvalue()


def _object_attribute(r: Reader) -> None:
    """lsa_ObjectAttribute: read for its length; its contents change nothing."""
    r.align(r.ptr_align)
    r.count()  # len is a uint3264: eight bytes in NDR64
    r.pointer(r.u8)  # root_dir
    r.pointer(r.string)  # object_name
    r.u32()  # attributes
    r.pointer(_no_security_descriptor)

    def qos() -> None:
        r.align(r.ptr_align)
        r.count()  # len, a uint3264 too
        r.enum16()  # impersonation level
        r.u8()
        r.u8()
        r.end_struct(r.ptr_align)
    r.pointer(qos)
    r.end_struct(r.ptr_align)


def _no_security_descriptor() -> None:
    raise NdrError("a security descriptor in LsaOpenPolicy is not taken")


def _open(call: Call, system_name: Callable[[Reader], None]) -> bytes:
    r = call.reader()
    system_name(r)
    r.deferring(lambda: _object_attribute(r))
    r.deferring(r.u32)  # access mask: every caller may read the policy
    if len(call.handles) >= MAX_HANDLES:
        handle, status = bytes(20), STATUS_INSUFFICIENT_RESOURCES
    else:
        handle, status = b"\x00\x00\x00\x00" + secrets.token_bytes(16), STATUS_SUCCESS
        call.handles.add(handle)

    def body(w: Writer) -> int:
        w.deferring(lambda: w.raw(handle))
        return status
    return _with_status(call, body)


def open_policy(call: Call) -> bytes:
    """Opnum 6: system_name is a pointer to one wchar."""
    return _open(call, lambda r: r.deferring(lambda: r.pointer(r.u16)))


def open_policy2(call: Call) -> bytes:
    """Opnum 44."""
    return _open(call, lambda r: r.deferring(lambda: r.pointer(r.string)))


def close(call: Call) -> bytes:
    """Opnum 0: the handle comes back zeroed."""
    handle = _handle(call, call.reader())
    call.handles.discard(handle)

    def body(w: Writer) -> int:
        w.deferring(lambda: w.raw(bytes(20)))
        return STATUS_SUCCESS
    return _with_status(call, body)


def _domain_info(w: Writer, name: str, sid: bytes | None) -> None:
    """lsa_DomainInfo: name (lsa_StringLarge) and a pointer to the SID."""
    w.align(w.ptr_align)
    w.lsa_string(name, large=True)
    w.pointer((lambda: w.sid(sid)) if sid is not None else None)
    w.end_struct(w.ptr_align)


def _policy_info(w: Writer, level: int, facts: Facts) -> None:
    w.union_switch(level, enum16=True)
    if level == POLICY_ROLE:
        w.u32(ROLE_PRIMARY)  # lsa_Role is a 32-bit enum on the wire
        w.end_struct(4)
        return
    if level == POLICY_PRIMARY_DOMAIN:
        _domain_info(w, facts.workgroup, None)  # standalone: a workgroup, no domain SID
    elif level == POLICY_DNS:
        w.align(w.ptr_align)
        w.lsa_string(facts.workgroup, large=True)
        w.lsa_string("", large=True)
        w.lsa_string("", large=True)
        w.raw(bytes(16))  # no domain GUID
        w.pointer(None)
        w.end_struct(w.ptr_align)
    else:
        _domain_info(w, facts.netbios_name, facts.machine_sid)


_POLICY_LEVELS = (POLICY_PRIMARY_DOMAIN, POLICY_ACCOUNT_DOMAIN, POLICY_ROLE, POLICY_DNS,
                  POLICY_LOCAL_ACCOUNT_DOMAIN)


def query_info_policy(call: Call) -> bytes:
    """Opnums 7 and 46 (QueryInfoPolicy2 has the same shape)."""
    r = call.reader()
    _handle(call, r)
    level = r.deferring(r.enum16)
    known = level in _POLICY_LEVELS

    def body(w: Writer) -> int:
        w.deferring(lambda: w.pointer(
            (lambda: _policy_info(w, level, call.facts)) if known else None))
        return STATUS_SUCCESS if known else STATUS_INVALID_INFO_CLASS
    return _with_status(call, body)


# -- lookups -------------------------------------------------------------------------


class _Domains:
    """lsa_RefDomainList as it is built: each domain once, in order of first use."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, bytes]] = []

    def index(self, t: Translation | None) -> int:
        if t is None:
            return NO_DOMAIN
        key = (t.domain, t.domain_sid)
        if key not in self.entries:
            self.entries.append(key)
        return self.entries.index(key)

    def write(self, w: Writer) -> None:
        w.align(w.ptr_align)
        w.u32(len(self.entries))

        def array() -> None:
            w.count(len(self.entries))
            for name, sid in self.entries:
                _domain_info(w, name, sid)
        w.pointer(array if self.entries else None)
        w.u32(32)  # max_size, as Windows and Samba send it
        w.end_struct(w.ptr_align)


def _empty_array_in(r: Reader) -> None:
    """The [in,out] translation array a client sends: a count and no entries."""
    r.align(r.ptr_align)
    r.u32()
    r.pointer(_no_entries)
    r.end_struct(r.ptr_align)


def _no_entries() -> None:
    raise NdrError("a translation array sent with entries")


def _names_in(r: Reader) -> list[str]:
    """``num_names`` then the conformant array of lsa_String."""
    count = r.deferring(r.u32)
    if count > MAX_NAMES:
        raise CallFault(Fault.NDR)

    def names() -> list:
        if r.count() != count:
            raise NdrError("names array size differs from num_names")
        return [r.lsa_string() for _ in range(r.bounded(count, 8))]
    boxes = r.deferring(names)
    return [b.value or "" for b in boxes]


def _status(mapped: int, total: int) -> int:
    if mapped == total:
        return STATUS_SUCCESS
    return STATUS_SOME_NOT_MAPPED if mapped else STATUS_NONE_MAPPED


def _lookup_names(call: Call, version: int) -> bytes:
    """LookupNames (1), LookupNames2 (2), LookupNames3 (3): one codec, three layouts."""
    r = call.reader()
    if version != 4:
        _handle(call, r)
    names = _names_in(r)
    r.deferring(lambda: _empty_array_in(r))
    r.deferring(r.enum16)  # level: every level is answered from the same accounts
    r.deferring(r.u32)  # count
    if version >= 2:
        r.deferring(r.u32)  # lookup_options
        r.deferring(r.u32)  # client_revision
    directory = Directory(call.facts)
    found = [directory.name(n) for n in names]
    domains = _Domains()
    indexes = [domains.index(t) for t in found]
    mapped = sum(t is not None for t in found)

    def entry(w: Writer, t: Translation | None, index: int) -> None:
        w.align(w.ptr_align if version == 3 else 4)
        w.enum16(t.sid_type if t else SID_UNKNOWN)
        if version == 3:
            w.pointer((lambda: w.sid(t.sid)) if t else None)
        else:
            w.u32(t.rid if t else 0)
        w.u32(index)
        if version >= 2:
            w.u32(0)  # flags
        w.end_struct(w.ptr_align if version == 3 else 4)

    def sids() -> None:
        w.align(w.ptr_align)
        w.u32(len(found))

        def array() -> None:
            w.count(len(found))
            for t, index in zip(found, indexes):
                entry(w, t, index)
        w.pointer(array if found else None)
        w.end_struct(w.ptr_align)

    w = call.writer()
    w.deferring(lambda: w.pointer(lambda: domains.write(w)))
    w.deferring(sids)
    w.deferring(lambda: w.u32(mapped))
    w.deferring(lambda: w.u32(_status(mapped, len(found))))
    return w.getvalue()


def _sids_in(r: Reader) -> list[bytes]:
    """lsa_SidArray: the count, then a pointer to pointers to SIDs."""
    def scalars() -> list:
        r.align(r.ptr_align)
        count = r.u32()
        if count > MAX_NAMES:
            raise CallFault(Fault.NDR)

        def array() -> list:
            if r.count() != count:
                raise NdrError("SID array size differs from num_sids")
            return [r.pointer(r.sid) for _ in range(r.bounded(count, r.ptr_align))]
        box = r.pointer(array)
        r.end_struct(r.ptr_align)
        return [box]
    (box,) = r.deferring(scalars)
    return [b.value for b in (box.value or []) if b.value is not None]


def _lookup_sids(call: Call, version: int) -> bytes:
    """LookupSids (1) and LookupSids2 (2)."""
    r = call.reader()
    _handle(call, r)
    sids = _sids_in(r)
    r.deferring(lambda: _empty_array_in(r))
    r.deferring(r.enum16)  # level
    r.deferring(r.u32)  # count
    if version >= 2:
        r.deferring(r.u32)
        r.deferring(r.u32)
    directory = Directory(call.facts)
    found = [directory.sid(s) for s in sids]
    domains = _Domains()
    indexes = [domains.index(t) for t in found]
    mapped = sum(t is not None for t in found)

    def names() -> None:
        w.align(w.ptr_align)
        w.u32(len(found))

        def array() -> None:
            w.count(len(found))
            for t, index, sid in zip(found, indexes, sids):
                w.align(w.ptr_align)
                w.enum16(t.sid_type if t else SID_UNKNOWN)
                w.lsa_string(t.name if t else sid_text(sid))  # unknown: the SID itself
                w.u32(index)
                if version >= 2:
                    w.u32(0)  # unknown
                w.end_struct(w.ptr_align)
        w.pointer(array if found else None)
        w.end_struct(w.ptr_align)

    w = call.writer()
    w.deferring(lambda: w.pointer(lambda: domains.write(w)))
    w.deferring(names)
    w.deferring(lambda: w.u32(mapped))
    w.deferring(lambda: w.u32(_status(mapped, len(found))))
    return w.getvalue()


def get_user_name(call: Call) -> bytes:
    """Opnum 45: who the caller is, and the authority that vouched for it."""
    r = call.reader()
    r.deferring(lambda: r.pointer(r.string))  # system_name
    r.deferring(lambda: r.pointer(r.lsa_string))  # account_name: [ref] to a unique pointer
    authority = r.deferring(lambda: r.pointer(lambda: r.pointer(r.lsa_string)))
    facts = call.facts
    user, domain = (facts.caller, facts.netbios_name) if facts.caller else \
        ("ANONYMOUS LOGON", "NT AUTHORITY")

    def body(w: Writer) -> int:
        w.deferring(lambda: w.pointer(lambda: w.lsa_string(user)))
        w.deferring(lambda: w.pointer(
            (lambda: w.pointer(lambda: w.lsa_string(domain)))
            if authority.value is not None else None))
        return STATUS_SUCCESS
    return _with_status(call, body)


def _schannel_only(call: Call) -> bytes:
    """LookupSids3 and LookupNames4 are for schannel-sealed callers (domain
    members); as Samba, any other caller gets an access-denied fault."""
    raise CallFault(Fault.ACCESS_DENIED)


_OPERATIONS: dict[int, Callable[[Call], bytes]] = {
    0: close,
    6: open_policy,
    7: query_info_policy,
    14: lambda call: _lookup_names(call, 1),
    15: lambda call: _lookup_sids(call, 1),
    44: open_policy2,
    45: get_user_name,
    46: query_info_policy,
    57: lambda call: _lookup_sids(call, 2),
    58: lambda call: _lookup_names(call, 2),
    68: lambda call: _lookup_names(call, 3),
    76: _schannel_only,
    77: _schannel_only,
}

INTERFACE = Interface("lsarpc", uuid_syntax("12345778-1234-abcd-ef00-0123456789ab", 0),
                      _OPERATIONS,
                      needs_users=frozenset({14, 15, 57, 58, 68}))
