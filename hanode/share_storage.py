"""A share's storage as the agent sees it: its identity marker and whether it responds.

Every share carries a marker on its shared storage, ``<path>/.hanode/share-id``,
written once by ``hanode share init NAME``; the same id is kept in etcd
(``/hanode/<cluster>/shares/<name>``).  A node whose share path shows no
marker, or another id, is not looking at the cluster's storage (the LUN did
not mount and the path is an empty local directory, or another volume is
mounted there): it must not serve that share, because whatever a client wrote
there would be invisible to every other node.

The functions here block (they touch the share's filesystem, which may hang):
the agent runs them through a thread with a timeout (``hanode.checks``).
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from pathlib import Path
from typing import Any

from hanode import config as config_mod
from hanode.config import ShareConfig
from hanode.store import Store, StoreUnavailable
from smb.vfs import RESERVED_NAME

MARKER_DIR = RESERVED_NAME  # hidden from and closed to SMB clients (smb.vfs)
MARKER_FILE = "share-id"
# Longest id a marker may hold (a UUID is 36 characters).
MAX_ID = 128


class ShareInitError(Exception):
    """``hanode share init`` cannot go on; the text says why, for the operator."""


def marker_path(share_path: str) -> Path:
    return Path(share_path) / MARKER_DIR / MARKER_FILE


def read_marker(share_path: str) -> str | None:
    """The id on the storage, None when there is no marker. OSError: unreadable."""
    try:
        with open(marker_path(share_path), "rb") as f:
            data = f.read(MAX_ID + 1)
    except FileNotFoundError:
        return None
    return data.decode("utf-8", "replace").strip() or None


def write_marker(share_path: str, share_id: str) -> None:
    """Write the marker durably: a temporary file, fsync, rename, fsync the directory."""
    folder = Path(share_path) / MARKER_DIR
    folder.mkdir(mode=0o700, exist_ok=True)
    tmp = folder / f".{MARKER_FILE}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (share_id + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, folder / MARKER_FILE)
    dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def marker_problem(share_path: str, expected: str) -> str | None:
    """Why the storage under share_path is not the cluster's, or None when it is."""
    try:
        found = read_marker(share_path)
    except OSError as exc:
        return f"storage marker unreadable: {exc.strerror or exc}"
    if found is None:
        return "storage marker missing (not mounted?)"
    if found != expected:
        return f"storage marker {found[:40]} is not the cluster's {expected} (wrong storage?)"
    return None


def probe_storage(share_path: str, node: str) -> None:
    """Write, fsync, read back and unlink a small file in the hidden directory.

    Raises OSError (or ValueError when the bytes read differ) if the storage
    does not do all of it.  A hung filesystem blocks here: the caller bounds it.
    """
    folder = Path(share_path) / MARKER_DIR
    folder.mkdir(mode=0o700, exist_ok=True)
    path = folder / f"probe-{node}"
    payload = uuid.uuid4().bytes
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, payload)
        os.fsync(fd)
        back = os.pread(fd, len(payload) + 1, 0)
    finally:
        os.close(fd)
    os.unlink(path)
    if back != payload:
        raise ValueError("read back other bytes than written")


def share_id_key(store: Store, name: str) -> str:
    return store.key("shares", name.lower())


def stored_id(store: Store, name: str) -> str | None:
    """The share's id in etcd, None if it was never initialised."""
    entry = store.get(share_id_key(store, name))
    value: Any = entry.value if entry is not None else None
    share_id = value.get("id") if isinstance(value, dict) else None
    return share_id if isinstance(share_id, str) else None


def init(store: Store, share: ShareConfig, force: bool = False) -> str:
    """Give the share an identity: on its storage and in etcd; returns what was done.

    Idempotent when both agree.  Refuses to mint a new id for a share etcd
    already knows, unless forced: a missing marker then most likely means the
    storage is not mounted on this node, and a new marker would bless the
    empty directory.
    """
    known = stored_id(store, share.name)
    try:
        found = read_marker(share.path)
    except OSError as exc:
        raise ShareInitError(f"share {share.name}: cannot read {marker_path(share.path)}: "
                             f"{exc.strerror or exc}") from None
    if known is not None and found == known and not force:
        return f"share {share.name}: already initialised (id {known})"
    if known is not None and not force:
        what = "no marker" if found is None else f"marker {found}"
        raise ShareInitError(
            f"share {share.name}: etcd has id {known} but {share.path} has {what}: "
            f"is the shared storage mounted here? (--force makes a new id)")
    share_id = found if found is not None and not force else str(uuid.uuid4())
    if not Path(share.path).is_dir():
        raise ShareInitError(f"share {share.name}: {share.path} is not a directory")
    try:
        if found != share_id:
            write_marker(share.path, share_id)
    except OSError as exc:
        raise ShareInitError(f"share {share.name}: cannot write {marker_path(share.path)}: "
                             f"{exc.strerror or exc}") from None
    store.put(share_id_key(store, share.name), {"id": share_id, "path": share.path})
    return f"share {share.name}: id {share_id} written to {marker_path(share.path)} and etcd"


def main(args: argparse.Namespace) -> int:
    """``hanode share init NAME``: 0 done, 1 etcd unavailable, 2 refused."""
    cfg = config_mod.load(args.config or config_mod.DEFAULT_PATH)
    share = cfg.share(args.name)
    if share is None:
        known = ", ".join(s.name for s in cfg.shares) or "none"
        raise config_mod.ConfigError(f"{cfg.source}: no share {args.name!r} (shares: {known})")
    store = Store.from_config(cfg.cluster)
    try:
        print(init(store, share, args.force))
    except ShareInitError as exc:
        print(f"hanode: {exc}", file=sys.stderr)
        return 2
    except StoreUnavailable as exc:
        print(f"hanode: share init: etcd unavailable: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    return 0
