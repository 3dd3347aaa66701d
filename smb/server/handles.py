"""The records of a tree connect and an open (smb.server.opens works with them).

A tree connect owns the share's directory fd (the jail's root) and the opens
made through it; an open owns its file descriptor and its rows in the node's
shared table.  Their own module, importing no behaviour, so that the modules
that act on opens (the durable lifecycle driver, create replays) can name
them without importing smb.server.opens, which imports them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from smb import vfs
from smb.lifecycle import Life
from smb.server import replay
from smb.server.nodelocal import NodeLocal
from smb.writetime import Deferred

if TYPE_CHECKING:
    from hanode.config import ShareConfig
    from smb.durable import DurableRecord


@dataclass
class DirectoryScan:
    """Where a QUERY_DIRECTORY enumeration stands on one open."""

    entries: list[tuple[str, os.stat_result]]
    next_index: int = 0


@dataclass
class Open:
    file_id: bytes
    tree: "TreeConnect"
    fd: int
    parts: tuple[str, ...]
    is_dir: bool
    access: int
    dev: int
    ino: int
    position: int = 0
    mode: int = 0
    scan: DirectoryScan | None = None
    # Oplock/lease bookkeeping (smb.server.durable_opens): the open's id in
    # the worker's NodeOplocks, its durable record once granted, and where it
    # stands in the durable-open lifecycle (smb.lifecycle).
    open_id: int | None = None
    durable: "DurableRecord | None" = None
    life: Life = Life()
    create_options: int = 0
    share_access: int = 0
    initial_allocation: int = 0  # AlSi at create; reported while larger than the file
    create_action: int = 1  # what CREATE answered (OPENED unless it made the file)
    # What its security descriptor allows the opener (MxAc), when it was asked.
    maximal_access: int | None = None
    # (ClientGuid, CreateGuid) of a DH2Q CREATE, for its replays (smb.server.create_replay).
    replay_key: tuple[bytes, bytes] | None = None
    # Open.IsReplayEligible: a replayed CREATE may be answered with this open
    # only until the open served any other request.
    replay_eligible: bool = True
    # What CHANGE_NOTIFY last saw under this directory (smb.server.notify.Snapshot).
    # The write time this handle keeps (ns): set by the client explicitly or
    # frozen with -1 (MS-FSA UserSetModificationTime); -2 lets it move again.
    frozen_write_ns: int | None = None
    # Otherwise writes move it by the deferred rules (smb.server.writetime).
    write_time: Deferred = field(default_factory=Deferred)
    notify_baseline: "dict[str, Any] | None" = None
    # Replay detection (smb.server.replay): LOCK buckets and the channel sequence.
    lock_sequences: replay.LockSequences = field(default_factory=replay.LockSequences)
    channel: replay.ChannelSequence = field(default_factory=replay.ChannelSequence)

    @property
    def key(self) -> str:
        return self.file_id.hex()

    @property
    def name(self) -> str:
        return self.parts[-1] if self.parts else ""

    @property
    def node_path(self) -> str:
        """The path the node table knows this open by."""
        return os.path.join(self.tree.root.root, *self.parts)

    @property
    def display_name(self) -> str:
        return "\\" + "\\".join(self.parts)


@dataclass
class TreeConnect:
    """What the tree-connect handler keeps in ``SessionInfo.trees``.

    ``encrypt_data`` tells the connection layer that every message on this
    tree must travel encrypted (the share's ``encrypt`` key).
    """

    tree_id: int
    share: "ShareConfig"
    root: vfs.Share
    read_only: bool
    encrypt_data: bool
    maximal_access: int
    node: NodeLocal
    opens: dict[bytes, Open] = field(default_factory=dict)
