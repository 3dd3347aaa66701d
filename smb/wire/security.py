"""NT security descriptors (MS-DTYP 2.4): the self-relative wire format,
inheritance at create (2.5.3.4, the subset a file system uses) and the
access check (2.5.3.2) as pure functions.

SIDs, ACEs and ACLs are values; a descriptor parsed and encoded again gives
the same structure back.  ACE types other than allowed/denied/audit/alarm
(object and callback ACEs) are kept as opaque bodies, so a client's
descriptor survives a round trip through the server even where the access
check ignores them, as Windows' file systems do for object ACEs.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace

from smb.wire.body import MalformedRequest

# SECURITY_INFORMATION bits (MS-DTYP 2.4.7): which parts a query or set names.
OWNER_SECURITY_INFORMATION = 0x1
GROUP_SECURITY_INFORMATION = 0x2
DACL_SECURITY_INFORMATION = 0x4
SACL_SECURITY_INFORMATION = 0x8

# SECURITY_DESCRIPTOR control bits (2.4.6).
SE_OWNER_DEFAULTED = 0x0001
SE_GROUP_DEFAULTED = 0x0002
SE_DACL_PRESENT = 0x0004
SE_DACL_DEFAULTED = 0x0008
SE_SACL_PRESENT = 0x0010
SE_SACL_DEFAULTED = 0x0020
SE_DACL_AUTO_INHERIT_REQ = 0x0100
SE_SACL_AUTO_INHERIT_REQ = 0x0200
SE_DACL_AUTO_INHERITED = 0x0400
SE_SACL_AUTO_INHERITED = 0x0800
SE_DACL_PROTECTED = 0x1000
SE_SACL_PROTECTED = 0x2000
SE_SELF_RELATIVE = 0x8000
_DACL_BITS = SE_DACL_PRESENT | SE_DACL_DEFAULTED | SE_DACL_AUTO_INHERITED | SE_DACL_PROTECTED
_SACL_BITS = SE_SACL_PRESENT | SE_SACL_DEFAULTED | SE_SACL_AUTO_INHERITED | SE_SACL_PROTECTED

# ACE types (2.4.4.1) whose body is a mask and a SID.
ACCESS_ALLOWED_ACE_TYPE = 0x0
ACCESS_DENIED_ACE_TYPE = 0x1
SYSTEM_AUDIT_ACE_TYPE = 0x2
SYSTEM_ALARM_ACE_TYPE = 0x3
_MASK_AND_SID = frozenset({ACCESS_ALLOWED_ACE_TYPE, ACCESS_DENIED_ACE_TYPE,
                           SYSTEM_AUDIT_ACE_TYPE, SYSTEM_ALARM_ACE_TYPE})

# ACE flags (2.4.4.1).
OBJECT_INHERIT_ACE = 0x01
CONTAINER_INHERIT_ACE = 0x02
NO_PROPAGATE_INHERIT_ACE = 0x04
INHERIT_ONLY_ACE = 0x08
INHERITED_ACE = 0x10
_INHERIT_FLAGS = OBJECT_INHERIT_ACE | CONTAINER_INHERIT_ACE | NO_PROPAGATE_INHERIT_ACE \
    | INHERIT_ONLY_ACE | INHERITED_ACE

ACL_REVISION = 2
_HEADER = struct.Struct("<BBHIIII")  # revision, Sbz1, control, owner, group, sacl, dacl
_ACL_HEADER = struct.Struct("<BBHHH")  # revision, Sbz1, size, count, Sbz2
_ACE_HEADER = struct.Struct("<BBH")  # type, flags, size
_MAX_SUBS = 15

# Access rights the check needs (MS-DTYP 2.4.3; the file mapping of MS-SMB2 2.2.13.1).
READ_CONTROL = 0x00020000
WRITE_DAC = 0x00040000
MAXIMUM_ALLOWED = 0x02000000
GENERIC_ALL = 0x10000000
GENERIC_EXECUTE = 0x20000000
GENERIC_WRITE = 0x40000000
GENERIC_READ = 0x80000000
FILE_ALL_ACCESS = 0x001F01FF
FILE_GENERIC_READ = 0x00120089
FILE_GENERIC_WRITE = 0x00120116
FILE_GENERIC_EXECUTE = 0x001200A0


class SecurityError(MalformedRequest):
    """A descriptor, ACL, ACE or SID whose fields do not fit its bytes."""


@dataclass(frozen=True)
class Sid:
    authority: int
    subs: tuple[int, ...]

    @classmethod
    def parse(cls, text: str) -> Sid:
        """``S-1-<authority>-<sub>...`` (authority decimal, or 0x-hex as MS-DTYP 2.4.2.1 allows)."""
        parts = text.split("-")
        if len(parts) < 3 or parts[0].upper() != "S" or parts[1] != "1":
            raise ValueError(f"not a SID: {text!r}")
        try:
            authority = int(parts[2], 16 if parts[2].lower().startswith("0x") else 10)
            subs = tuple(int(p) for p in parts[3:])
        except ValueError:
            raise ValueError(f"not a SID: {text!r}") from None
        if not 0 <= authority < 1 << 48 or len(subs) > _MAX_SUBS or any(
                not 0 <= s < 1 << 32 for s in subs):
            raise ValueError(f"not a SID: {text!r}")
        return cls(authority, subs)

    def __str__(self) -> str:
        """MS-DTYP 2.4.2.1: the authority in decimal below 2**32, else in hex."""
        authority = str(self.authority) if self.authority < 1 << 32 else f"0x{self.authority:012X}"
        return "-".join(["S-1", authority, *map(str, self.subs)])

    def encode(self) -> bytes:
        return (struct.pack("<BB", 1, len(self.subs)) + self.authority.to_bytes(6, "big")
                + struct.pack(f"<{len(self.subs)}I", *self.subs))

    def child(self, rid: int) -> Sid:
        return Sid(self.authority, (*self.subs, rid))


def decode_sid(data: bytes | memoryview, offset: int = 0) -> tuple[Sid, int]:
    """(the SID at ``offset``, its length in bytes)."""
    if offset + 8 > len(data):
        raise SecurityError("SID out of bounds")
    revision, count = data[offset], data[offset + 1]
    if revision != 1 or count > _MAX_SUBS:
        raise SecurityError("bad SID revision or sub-authority count")
    end = offset + 8 + 4 * count
    if end > len(data):
        raise SecurityError("SID out of bounds")
    authority = int.from_bytes(data[offset + 2: offset + 8], "big")
    subs = struct.unpack_from(f"<{count}I", data, offset + 8)
    return Sid(authority, tuple(subs)), end - offset


EVERYONE = Sid(1, (0,))
CREATOR_OWNER = Sid(3, (0,))
CREATOR_GROUP = Sid(3, (1,))
OWNER_RIGHTS = Sid(3, (4,))
AUTHENTICATED_USERS = Sid(5, (11,))
SYSTEM = Sid(5, (18,))


@dataclass(frozen=True)
class Ace:
    """One ACE.  ``sid`` is None only for a type whose body is kept opaque (``body``)."""

    type: int
    flags: int
    mask: int = 0
    sid: Sid | None = None
    body: bytes = b""

    def encode(self) -> bytes:
        if self.type in _MASK_AND_SID and self.sid is not None:
            payload = struct.pack("<I", self.mask) + self.sid.encode()
        else:
            payload = self.body
        payload += b"\0" * (-len(payload) % 4)
        return _ACE_HEADER.pack(self.type, self.flags, 4 + len(payload)) + payload

    @property
    def inherit_only(self) -> bool:
        return bool(self.flags & INHERIT_ONLY_ACE)


def _decode_ace(data: bytes | memoryview, offset: int, end: int) -> tuple[Ace, int]:
    if offset + 4 > end:
        raise SecurityError("ACE header out of bounds")
    kind, flags, size = _ACE_HEADER.unpack_from(data, offset)
    if size < 4 or offset + size > end:
        raise SecurityError("ACE size out of bounds")
    if kind in _MASK_AND_SID:
        if size < 16:
            raise SecurityError("ACE too short for its SID")
        (mask,) = struct.unpack_from("<I", data, offset + 4)
        sid, _ = decode_sid(data[: offset + size], offset + 8)
        return Ace(kind, flags, mask, sid), size
    return Ace(kind, flags, body=bytes(data[offset + 4: offset + size])), size


@dataclass(frozen=True)
class Acl:
    aces: tuple[Ace, ...] = ()
    revision: int = ACL_REVISION

    def encode(self) -> bytes:
        body = b"".join(a.encode() for a in self.aces)
        return _ACL_HEADER.pack(self.revision, 0, 8 + len(body), len(self.aces), 0) + body


def decode_acl(data: bytes | memoryview, offset: int) -> Acl:
    if offset + 8 > len(data):
        raise SecurityError("ACL header out of bounds")
    revision, _, size, count, _ = _ACL_HEADER.unpack_from(data, offset)
    # Windows takes revisions 2 to 4 (MIN_ACL_REVISION..MAX_ACL_REVISION); Samba sends 3.
    if not 2 <= revision <= 4 or size < 8 or offset + size > len(data):
        raise SecurityError("bad ACL revision or size")
    aces = []
    pos, end = offset + 8, offset + size
    for _ in range(count):
        ace, length = _decode_ace(data, pos, end)
        aces.append(ace)
        pos += length
    return Acl(tuple(aces), revision)


@dataclass(frozen=True)
class SecurityDescriptor:
    """A descriptor as values; ``None`` parts are absent (a DACL absent while
    SE_DACL_PRESENT is set is the NULL DACL, which grants everything)."""

    owner: Sid | None = None
    group: Sid | None = None
    dacl: Acl | None = None
    sacl: Acl | None = None
    control: int = SE_SELF_RELATIVE

    @property
    def dacl_present(self) -> bool:
        return self.dacl is not None or bool(self.control & SE_DACL_PRESENT)

    def encode(self) -> bytes:
        """Self-relative, parts in the order Samba writes them: owner, group, SACL, DACL."""
        control = self.control | SE_SELF_RELATIVE
        if self.dacl is not None:
            control |= SE_DACL_PRESENT
        if self.sacl is not None:
            control |= SE_SACL_PRESENT
        offsets = [0, 0, 0, 0]
        pos, blobs = _HEADER.size, []
        for i, part in enumerate((self.owner, self.group, self.sacl, self.dacl)):
            if part is None:
                continue
            raw = part.encode()
            offsets[i], pos = pos, pos + len(raw)
            blobs.append(raw)
        return _HEADER.pack(1, 0, control, *offsets) + b"".join(blobs)

    def select(self, which: int) -> SecurityDescriptor:
        """The parts a query's SECURITY_INFORMATION asks for (MS-SMB2 3.3.5.20.3)."""
        control = self.control
        if not which & DACL_SECURITY_INFORMATION:
            control &= ~_DACL_BITS
        if not which & SACL_SECURITY_INFORMATION:
            control &= ~_SACL_BITS
        return SecurityDescriptor(
            self.owner if which & OWNER_SECURITY_INFORMATION else None,
            self.group if which & GROUP_SECURITY_INFORMATION else None,
            self.dacl if which & DACL_SECURITY_INFORMATION else None,
            self.sacl if which & SACL_SECURITY_INFORMATION else None, control)

    def merged(self, new: SecurityDescriptor, which: int) -> SecurityDescriptor:
        """This descriptor with the parts ``which`` names taken from ``new`` (a SET_INFO)."""
        sd, control = self, self.control
        if which & OWNER_SECURITY_INFORMATION and new.owner is not None:
            sd = replace(sd, owner=new.owner)
        if which & GROUP_SECURITY_INFORMATION and new.group is not None:
            sd = replace(sd, group=new.group)
        if which & DACL_SECURITY_INFORMATION:
            # A DACL set without SE_DACL_PRESENT is stored as the NULL DACL
            # (present, no ACL: everything granted), as Windows and smbd store it.
            control = (control & ~_DACL_BITS) | SE_DACL_PRESENT | _kept_bits(
                new.control, SE_DACL_PRESENT, SE_DACL_DEFAULTED | SE_DACL_PROTECTED,
                SE_DACL_AUTO_INHERITED, SE_DACL_AUTO_INHERIT_REQ)
            sd = replace(sd, dacl=new.dacl)
        if which & SACL_SECURITY_INFORMATION:
            control = (control & ~_SACL_BITS) | _kept_bits(
                new.control, SE_SACL_PRESENT, SE_SACL_DEFAULTED | SE_SACL_PROTECTED,
                SE_SACL_AUTO_INHERITED, SE_SACL_AUTO_INHERIT_REQ)
            sd = replace(sd, sacl=new.sacl)
        return replace(sd, control=control)


def _kept_bits(control: int, present: int, as_given: int, auto: int, request: int) -> int:
    """The control bits of one ACL a SET_INFO keeps: presence, defaulted and
    protected as given, AUTO_INHERITED only when the client also asked for
    auto-inheritance (AUTO_INHERIT_REQ, itself never stored), as Windows and
    smbd do (smbtorture's smb2.acls.INHERITFLAGS)."""
    kept = control & (present | as_given)
    if control & auto and control & request:
        kept |= auto
    return kept


def with_generic_mapped(acl: Acl | None) -> Acl | None:
    """The ACL as a SET_INFO stores it: GENERIC_* bits of the ACEs that apply
    to the file itself turned into file rights; inherit-only ACEs keep theirs
    for the children they will be mapped on (as Windows and smbd store them)."""
    if acl is None:
        return None
    return replace(acl, aces=tuple(
        a if a.inherit_only or a.sid is None else replace(a, mask=map_generic(a.mask))
        for a in acl.aces))


def decode(data: bytes | memoryview) -> SecurityDescriptor:
    """A self-relative descriptor (2.4.6); SecurityError if it does not fit its bytes."""
    if len(data) < _HEADER.size:
        raise SecurityError("security descriptor too short")
    revision, _, control, o_owner, o_group, o_sacl, o_dacl = _HEADER.unpack_from(data)
    if revision != 1:
        raise SecurityError("security descriptor revision is not 1")
    if not control & SE_SELF_RELATIVE:
        raise SecurityError("security descriptor is not self-relative")
    owner = decode_sid(data, o_owner)[0] if o_owner else None
    group = decode_sid(data, o_group)[0] if o_group else None
    sacl = decode_acl(data, o_sacl) if o_sacl and control & SE_SACL_PRESENT else None
    dacl = decode_acl(data, o_dacl) if o_dacl and control & SE_DACL_PRESENT else None
    return SecurityDescriptor(owner, group, dacl, sacl, control)


# -- access --------------------------------------------------------------------------


def map_generic(mask: int) -> int:
    """GENERIC_* bits as the file rights they stand for (MS-SMB2 2.2.13.1.1)."""
    if mask & GENERIC_READ:
        mask |= FILE_GENERIC_READ
    if mask & GENERIC_WRITE:
        mask |= FILE_GENERIC_WRITE
    if mask & GENERIC_EXECUTE:
        mask |= FILE_GENERIC_EXECUTE
    if mask & GENERIC_ALL:
        mask |= FILE_ALL_ACCESS
    return mask & ~(GENERIC_READ | GENERIC_WRITE | GENERIC_EXECUTE | GENERIC_ALL)


def granted(sd: SecurityDescriptor, token: frozenset[Sid]) -> int:
    """The rights ``sd`` grants a caller holding ``token``: the maximal access of
    MS-DTYP 2.5.3.2, in ACE order, a right denied before it is allowed staying
    denied.  The owner holds READ_CONTROL and WRITE_DAC whatever the DACL says,
    unless OWNER RIGHTS ACEs say otherwise; a descriptor without a DACL (the
    NULL DACL) grants everything."""
    if not sd.dacl_present or sd.dacl is None:
        return FILE_ALL_ACCESS
    allowed = denied = 0
    if sd.owner is not None and sd.owner in token:
        # OWNER RIGHTS ACEs, where there are any, say what the owner gets instead.
        token = token | {OWNER_RIGHTS}
        if not any(ace.sid == OWNER_RIGHTS and not ace.inherit_only for ace in sd.dacl.aces):
            allowed = READ_CONTROL | WRITE_DAC
    for ace in sd.dacl.aces:
        if ace.inherit_only or ace.sid not in token:
            continue
        mask = map_generic(ace.mask)
        if ace.type == ACCESS_ALLOWED_ACE_TYPE:
            allowed |= mask & ~denied
        elif ace.type == ACCESS_DENIED_ACE_TYPE:
            denied |= mask & ~allowed
    return allowed & FILE_ALL_ACCESS


# -- inheritance ---------------------------------------------------------------------


def _inherited_aces(ace: Ace, is_dir: bool, owner: Sid, group: Sid, mark: int) -> list[Ace]:
    """What one ACE of the parent's DACL becomes on a new child (2.5.3.4.2);
    ``mark`` is INHERITED_ACE, or 0 where the parent is not auto-inherited."""
    if not is_dir:
        if not ace.flags & OBJECT_INHERIT_ACE:
            return []
        return [_effective(ace, owner, group, mark)]
    propagates = not ace.flags & NO_PROPAGATE_INHERIT_ACE
    if ace.flags & CONTAINER_INHERIT_ACE:
        if not propagates:
            return [_effective(ace, owner, group, mark)]
        if ace.sid in (CREATOR_OWNER, CREATOR_GROUP):
            # The substituted ACE applies to the child; the original passes on.
            return [_effective(ace, owner, group, mark),
                    replace(ace, flags=(ace.flags & ~INHERITED_ACE) | INHERIT_ONLY_ACE | mark)]
        return [replace(ace, flags=(ace.flags & ~(INHERIT_ONLY_ACE | INHERITED_ACE)) | mark,
                        mask=map_generic(ace.mask) if ace.sid is not None else ace.mask)]
    if ace.flags & OBJECT_INHERIT_ACE and propagates:
        # Only for files below: kept on the directory, inherit-only.
        return [replace(ace, flags=(ace.flags & ~INHERITED_ACE) | INHERIT_ONLY_ACE | mark)]
    return []


def _effective(ace: Ace, owner: Sid, group: Sid, flags: int) -> Ace:
    sid = {CREATOR_OWNER: owner, CREATOR_GROUP: group}.get(ace.sid, ace.sid) \
        if ace.sid is not None else None
    mask = map_generic(ace.mask) if ace.sid is not None else ace.mask
    return replace(ace, flags=(ace.flags & ~_INHERIT_FLAGS) | flags, sid=sid, mask=mask)


def inherit(parent: SecurityDescriptor, is_dir: bool, owner: Sid, group: Sid) -> Acl | None:
    """The DACL a new file or directory inherits from its parent's descriptor,
    or None when the parent passes nothing on (the creator's default then applies).

    The inherited ACEs are marked INHERITED_ACE only below a DACL marked
    auto-inherited, as Samba does: a DACL set without the mark (smbcacls -S)
    passes its ACEs on as if set on each child."""
    if parent.dacl is None:
        return None
    mark = INHERITED_ACE if parent.control & SE_DACL_AUTO_INHERITED else 0
    aces = [a for ace in parent.dacl.aces
            for a in _inherited_aces(ace, is_dir, owner, group, mark)]
    return Acl(tuple(aces)) if aces else None


# -- the decisions CREATE and SET_INFO make ------------------------------------------

FILE_LIST_DIRECTORY = 0x00000001
FILE_ADD_FILE = 0x00000002
FILE_ADD_SUBDIRECTORY = 0x00000004
FILE_DELETE_CHILD = 0x00000040
FILE_READ_ATTRIBUTES = 0x00000080
DELETE = 0x00010000


def default_descriptor(owner: Sid, group: Sid, share_access: int) -> SecurityDescriptor:
    """What a file without a stored descriptor shows and is checked against:
    its owner with every right, Everyone with what the share grants; exactly
    what hanode granted before it kept descriptors."""
    dacl = Acl((Ace(ACCESS_ALLOWED_ACE_TYPE, 0, FILE_ALL_ACCESS, owner),
                Ace(ACCESS_ALLOWED_ACE_TYPE, 0, share_access, EVERYONE)))
    return SecurityDescriptor(owner, group, dacl, None, SE_SELF_RELATIVE | SE_DACL_PRESENT)


def open_access(sd: SecurityDescriptor, parent: SecurityDescriptor | None,
                token: frozenset[Sid], share_access: int, desired: int, implied: int = 0) -> int | None:
    """The access an open of an existing file gets, or None if it is denied.

    ``desired`` is the client's mask (generic bits and MAXIMUM_ALLOWED
    included); ``implied`` are rights the disposition needs without granting
    them (an overwrite needs FILE_WRITE_DATA).  As on Windows (MS-FSA
    2.1.5.1.2.1), FILE_DELETE_CHILD on the parent stands in for DELETE on the
    file and FILE_LIST_DIRECTORY for FILE_READ_ATTRIBUTES.
    """
    allowed = granted(sd, token) & share_access
    if parent is not None:
        from_parent = granted(parent, token) & share_access
        if from_parent & FILE_DELETE_CHILD:
            allowed |= DELETE & share_access
        if from_parent & FILE_LIST_DIRECTORY:
            allowed |= FILE_READ_ATTRIBUTES
    wanted = map_generic(desired & ~MAXIMUM_ALLOWED)
    if (wanted | implied) & ~allowed:
        return None
    return wanted | (allowed if desired & MAXIMUM_ALLOWED else 0)


def may_create(parent: SecurityDescriptor, token: frozenset[Sid], share_access: int,
               is_dir: bool) -> bool:
    """Whether the parent lets this caller add a file (or a directory) to it."""
    need = FILE_ADD_SUBDIRECTORY if is_dir else FILE_ADD_FILE
    return bool(granted(parent, token) & share_access & need)


def for_new_file(parent: SecurityDescriptor | None, given: SecurityDescriptor | None,
                 is_dir: bool, owner: Sid, group: Sid,
                 share_access: int) -> SecurityDescriptor | None:
    """The descriptor to store on a file being created, or None to store none
    (the default then applies): a client's SMB2_CREATE_SD_BUFFER, its missing
    parts filled in, or what ``parent`` (its stored descriptor) passes on."""
    if given is None and parent is None:
        return None
    owner = given.owner if given is not None and given.owner is not None else owner
    group = given.group if given is not None and given.group is not None else group
    if given is not None and given.dacl_present:
        control = SE_SELF_RELATIVE | (given.control & _DACL_BITS)
        return SecurityDescriptor(owner, group, given.dacl, None, control)
    dacl = inherit(parent, is_dir, owner, group) if parent is not None else None
    if dacl is not None:
        assert parent is not None
        control = SE_SELF_RELATIVE | SE_DACL_PRESENT | (parent.control & SE_DACL_AUTO_INHERITED)
        return SecurityDescriptor(owner, group, dacl, None, control)
    if given is None:
        return None
    return default_descriptor(owner, group, share_access)
