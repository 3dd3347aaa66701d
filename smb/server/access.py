"""Access masks (MS-DTYP 2.4.3, MS-SMB2 2.2.13.1) and what a share grants."""

from __future__ import annotations

from typing import TYPE_CHECKING

from smb.wire import security
# The rights the descriptor code shares with the rest of the server (MS-DTYP 2.4.3).
from smb.wire.security import FILE_ALL_ACCESS, FILE_GENERIC_EXECUTE, FILE_GENERIC_READ, WRITE_DAC
from smb.wire.security import GENERIC_ALL as GENERIC_ALL
from smb.wire.security import MAXIMUM_ALLOWED as MAXIMUM_ALLOWED
from smb.wire.security import READ_CONTROL as READ_CONTROL

if TYPE_CHECKING:
    from hanode.config import ShareConfig
    from smb.server.handler import SessionInfo

FILE_READ_DATA = 0x00000001
FILE_WRITE_DATA = 0x00000002
FILE_APPEND_DATA = 0x00000004
FILE_READ_EA = 0x00000008
FILE_WRITE_EA = 0x00000010
FILE_EXECUTE = 0x00000020
FILE_DELETE_CHILD = 0x00000040
FILE_READ_ATTRIBUTES = 0x00000080
FILE_WRITE_ATTRIBUTES = 0x00000100
DELETE = 0x00010000
WRITE_OWNER = 0x00080000
SYNCHRONIZE = 0x00100000
ACCESS_SYSTEM_SECURITY = 0x01000000
# What a read-only share grants: read, execute, attributes, EAs, security.
READ_ONLY_ACCESS = FILE_GENERIC_READ | FILE_GENERIC_EXECUTE
# Everything that changes a file or its name.
WRITE_ACCESS = (FILE_WRITE_DATA | FILE_APPEND_DATA | FILE_WRITE_EA | FILE_WRITE_ATTRIBUTES
                | FILE_DELETE_CHILD | DELETE | WRITE_DAC | WRITE_OWNER)
_VALID = FILE_ALL_ACCESS | ACCESS_SYSTEM_SECURITY | MAXIMUM_ALLOWED | 0xF0000000


def is_valid(mask: int) -> bool:
    return mask & ~_VALID == 0


def map_generic(mask: int, maximal: int) -> int:
    """Turn GENERIC_* and MAXIMUM_ALLOWED into specific rights."""
    if mask & MAXIMUM_ALLOWED:
        mask |= maximal
    return security.map_generic(mask) & (FILE_ALL_ACCESS | ACCESS_SYSTEM_SECURITY)


def share_maximal_access(read_only: bool) -> int:
    return READ_ONLY_ACCESS if read_only else FILE_ALL_ACCESS


def may_connect(share: "ShareConfig", session: "SessionInfo") -> bool:
    """A share's ``users`` rule: empty lets every session in, else only the
    users named (case-insensitive), never a guest.  TREE_CONNECT enforces it;
    share lists (smb.server.ipc) show only the shares it lets in."""
    if not share.users:
        return True
    return not session.is_guest and session.user.lower() in (u.lower() for u in share.users)
