"""The NT security descriptors of a share's files: who a session is, where a
descriptor is kept, and the CREATE and SET_INFO hooks that use them.

A descriptor lives in the file's ``user.hanode.sd`` extended attribute
(smb.vfs) on the shared storage, so every node checks the same one.  Most
files have none: they show and are checked against
``security.default_descriptor`` (the asking user as owner, Everyone with
what the share grants), which is what hanode granted before it kept
descriptors.  One is stored only when a client sets one, gives one at
create, or the parent's stored one passes ACEs on.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace

from smb import vfs
from smb.rpc.interface import machine_sid
from smb.rpc.lsarpc import user_rid
from smb.server.handler import SessionInfo
from smb.server.opens import CommandError, Open
from smb.wire import security as sec
from smb.wire.header import Status

log = logging.getLogger(__name__)

_GUEST_RID = 501  # the Guest account of an account domain
_BUILTIN_GUESTS = sec.Sid(5, (32, 546))
_OWNER_PARTS = sec.OWNER_SECURITY_INFORMATION | sec.GROUP_SECURITY_INFORMATION
_WRITE_OWNER = 0x00080000


@dataclass(frozen=True)
class Token:
    """The SIDs a session acts as: its user's (the machine SID lsarpc reports
    plus the user's RID, so a name and its SID translate both ways), and
    the groups every caller of its kind belongs to."""

    user: sec.Sid
    sids: frozenset[sec.Sid]


def token_of(server_name: str, session: SessionInfo) -> Token:
    machine = sec.decode_sid(machine_sid(server_name))[0]
    if session.is_guest or not session.user:
        user = machine.child(_GUEST_RID)
        return Token(user, frozenset({user, sec.EVERYONE, _BUILTIN_GUESTS}))
    user = machine.child(user_rid(session.user))
    return Token(user, frozenset({user, sec.EVERYONE, sec.AUTHENTICATED_USERS}))


def _unix_group(st: os.stat_result) -> sec.Sid:
    """S-1-22-2-<gid>: Samba's SID for a Unix group, the group a default descriptor shows."""
    return sec.Sid(22, (2, st.st_gid))


def stored(fd: int) -> sec.SecurityDescriptor | None:
    """The file's own descriptor, or None when it has none (or one hanode cannot read)."""
    raw = vfs.get_sd(fd)
    if raw is None:
        return None
    try:
        return sec.decode(raw)
    except sec.SecurityError as exc:
        log.warning("ignoring an unreadable stored security descriptor: %s", exc)
        return None


def of_file(fd: int, token: Token, share_access: int,
            st: os.stat_result | None = None) -> sec.SecurityDescriptor:
    """The descriptor a file shows and is checked against: its own, or the default."""
    found = stored(fd)
    if found is not None:
        return found
    return sec.default_descriptor(token.user, _unix_group(st or os.fstat(fd)), share_access)


def check_open(fd: int, parent_fd: int | None, token: Token, share_access: int, desired: int,
               implied: int) -> int | None:
    """The access an open of the existing file ``fd`` (in ``parent_fd``; None
    for the share's root) gets; ACCESS_DENIED when its descriptor (or the
    parent's) does not allow it.  None when neither has a descriptor: the
    share's grant stands, as before."""
    if stored(fd) is None and (parent_fd is None or stored(parent_fd) is None):
        return None
    parent = None if parent_fd is None else of_file(parent_fd, token, share_access)
    allowed = sec.open_access(of_file(fd, token, share_access), parent,
                              token.sids, share_access, desired, implied)
    if allowed is None:
        raise CommandError(Status.ACCESS_DENIED)
    return allowed


def maximal_access(op: Open, token: Token) -> int:
    """What the open file's descriptor (and its parent's FILE_DELETE_CHILD)
    would grant this caller: the MxAc create context's answer.  A file with
    no descriptor of its own grants what the share grants; only one with a
    descriptor costs a walk to its parent."""
    share_access = op.tree.maximal_access
    own = stored(op.fd)
    if own is None:
        return share_access
    parent = None
    try:
        if op.parts:
            with op.tree.root.lookup(op.parts) as where:
                parent = of_file(where.parent_fd, token, share_access)
    except vfs.VfsError:
        pass  # renamed away meanwhile: the file's own descriptor still answers
    return sec.open_access(own, parent, token.sids, share_access, sec.MAXIMUM_ALLOWED) or 0


def check_create(parent_fd: int, token: Token, share_access: int, is_dir: bool) -> None:
    """CREATE of a new name: the parent must let this caller add it."""
    parent = stored(parent_fd)
    if parent is not None and not sec.may_create(parent, token.sids, share_access, is_dir):
        raise CommandError(Status.ACCESS_DENIED)


def label_new(fd: int, parent_fd: int, given: sec.SecurityDescriptor | None, token: Token,
              share_access: int, is_dir: bool) -> None:
    """Store the descriptor a new file gets (the client's, or what its parent
    passes on); nothing when neither exists, so the default applies."""
    sd = sec.for_new_file(stored(parent_fd), given, is_dir, token.user,
                          _unix_group(os.fstat(fd)), share_access)
    if sd is not None:
        vfs.set_sd(fd, sd.encode())


def query(op: Open, token: Token, which: int) -> bytes:
    """QUERY_INFO SMB2_0_INFO_SECURITY: the parts ``which`` names."""
    return of_file(op.fd, token, op.tree.maximal_access).select(which).encode()


def set_descriptor(op: Open, token: Token, which: int, data: memoryview) -> None:
    """SET_INFO SMB2_0_INFO_SECURITY (MS-SMB2 3.3.5.21.3): the parts ``which``
    names replace the file's, with the rights Windows requires for each."""
    if which & sec.SACL_SECURITY_INFORMATION:
        raise CommandError(Status.PRIVILEGE_NOT_HELD)  # no open holds ACCESS_SYSTEM_SECURITY
    if which & _OWNER_PARTS and not op.access & _WRITE_OWNER:
        raise CommandError(Status.ACCESS_DENIED)
    if which & sec.DACL_SECURITY_INFORMATION and not op.access & sec.WRITE_DAC:
        raise CommandError(Status.ACCESS_DENIED)
    new = sec.decode(data)
    new = replace(new, dacl=sec.with_generic_mapped(new.dacl))
    current = of_file(op.fd, token, op.tree.maximal_access)
    if (which & sec.OWNER_SECURITY_INFORMATION and new.owner is not None
            and new.owner != current.owner and new.owner not in token.sids):
        raise CommandError(Status.INVALID_OWNER)  # only oneself (no restore privilege)
    vfs.set_sd(op.fd, current.merged(new, which).encode())
