"""When written data must be on stable storage before the reply that acknowledges it.

A WRITE is written through (data on stable storage, not only in the node's page
cache, before the answer leaves) when the client asks for it, per write
(SMB2_WRITEFLAG_WRITE_THROUGH, MS-SMB2 2.2.21) or per open (FILE_WRITE_THROUGH,
2.2.13), and always on a continuously available share, as Windows does there:
a CA share promises that a write it acknowledged survives the death of the
node that took it, which the page cache of that node cannot keep.  For the
same reason a CA share makes the names it creates and moves durable before it
answers (the parent directory synced), so that an acknowledged create or rename
is not lost with the node either.
"""

from __future__ import annotations

from hanode.config import ShareConfig
from smb.server.opens import Open
from smb.wire.create import CreateOptions
from smb.wire.io import WRITE_FLAG_WRITE_THROUGH


def write_through(write_flags: int, create_options: int, continuously_available: bool) -> bool:
    """The decision, from the write's flags, the open's options and the share's switch."""
    return (continuously_available or bool(write_flags & WRITE_FLAG_WRITE_THROUGH)
            or bool(create_options & CreateOptions.WRITE_THROUGH))


def for_open(op: Open, write_flags: int = 0) -> bool:
    """write_through for a write through op (write_flags 0: a server-side copy)."""
    return write_through(write_flags, op.create_options, op.tree.share.continuous_availability)


def names_through(share: ShareConfig) -> bool:
    """Whether a file created or renamed on this share has its directory entry
    on stable storage before the answer."""
    return share.continuous_availability
