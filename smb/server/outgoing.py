"""A response on its way out, before it is signed, sealed or framed."""

from __future__ import annotations

from dataclasses import dataclass

from smb import vfs
from smb.server.channels import Channel
from smb.wire.header import Header


@dataclass(slots=True)
class Out:
    """One response of a (possibly compound) reply, not yet signed or framed;
    ``sign_with`` is the channel whose key signs it (None: unsigned)."""

    header: Header
    body: bytes
    payload: bytes | memoryview | vfs.FileSlice = b""
    sign_with: Channel | None = None
