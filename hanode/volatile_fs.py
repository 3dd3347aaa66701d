"""A lab node's storage that loses what the node had not synced when it dies.

The lab's nodes share one kernel and so one page cache: a write one node's
SMB worker made without syncing is on every other node at once and survives
the node's SIGKILL, which no real cluster of machines does.  This FUSE
passthrough stands in for one machine's page cache over the shared storage:

- data written through it stays in this process's memory (``Overlay``) until
  fsync/fdatasync of the file, or at once when the file was opened O_SYNC or
  O_DSYNC; only then does it reach the backing directory, written and
  fdatasync'ed there;
- close(2) (FUSE flush/release) syncs nothing, as on a local filesystem, and
  nothing is ever written back on its own (a kernel would within about 30 s):
  every unsynced write is still at risk when the node dies, which makes the
  loss the tests look for certain rather than a matter of timing;
- a file's size (truncate) is held with its data and reaches the backing
  file with the next sync; everything else (create, mkdir, rename, unlink,
  modes, times, xattrs) goes to the backing directory at once: the layer
  models lost data, not lost metadata;
- SIGKILL of this process drops whatever it still holds: the backing
  directory then shows the file as of its last sync.

Other nodes' mounts over the same backing directory see only what was synced
(as with shared block storage); the kernel caches no attributes or names of
it (timeouts 0), so a synced change shows on the next lookup.

Run as ``python -m hanode.volatile_fs BACKING MOUNTPOINT`` (foreground;
``hanode.lab.start_volatile_fs`` starts one per node in the node's network
namespace, so that killing the node kills it).  Lab use only: it keeps dirty
data without bound, and mfusepy comes with the test extras only.
"""

from __future__ import annotations

import errno
import os
import sys
from dataclasses import dataclass, field
from typing import Callable

import mfusepy

BLOCK = 64 << 10
# Open flags the layer honours itself instead of passing them to the backing file:
# sync ones (it writes through on its own), append (FUSE passes the offset) and
# truncation (done through the overlay, which must forget what it holds).
_SYNC_FLAGS = os.O_SYNC | os.O_DSYNC
_OWN_FLAGS = _SYNC_FLAGS | os.O_APPEND | os.O_TRUNC | os.O_CREAT | os.O_EXCL
_ACCESS = os.O_RDONLY | os.O_WRONLY | os.O_RDWR

ReadAt = Callable[[int, int], bytes]  # (offset, length) -> the backing file's bytes


@dataclass
class Overlay:
    """One file's unsynced state over its backing bytes: pure, no I/O of its own.

    size is the file's size as its writers see it; floor is the smallest size
    it was truncated to since the last sync (backing bytes past it are gone);
    blocks are the BLOCK-sized pieces written since, whole.
    """

    size: int
    floor: int
    blocks: dict[int, bytearray] = field(default_factory=dict)

    @classmethod
    def over(cls, backing_size: int) -> "Overlay":
        return cls(size=backing_size, floor=backing_size)

    def _block(self, index: int, read_at: ReadAt) -> bytes | bytearray:
        """Block index as the file shows it now (backing bytes past floor read as zeros)."""
        if index in self.blocks:
            return self.blocks[index]
        start = index * BLOCK
        data = read_at(start, max(0, min(BLOCK, self.floor - start))) if start < self.floor else b""
        return data + bytes(BLOCK - len(data))

    def read(self, offset: int, length: int, read_at: ReadAt) -> bytes:
        end = min(self.size, offset + length)
        out = bytearray()
        pos = offset
        while pos < end:
            index, within = divmod(pos, BLOCK)
            take = min(BLOCK - within, end - pos)
            out += self._block(index, read_at)[within:within + take]
            pos += take
        return bytes(out)

    def write(self, offset: int, data: bytes, read_at: ReadAt) -> None:
        pos, view = offset, memoryview(data)
        while view:
            index, within = divmod(pos, BLOCK)
            take = min(BLOCK - within, len(view))
            if index not in self.blocks:
                self.blocks[index] = bytearray(self._block(index, read_at))
            self.blocks[index][within:within + take] = view[:take]
            pos += take
            view = view[take:]
        self.size = max(self.size, offset + len(data))

    def truncate(self, length: int) -> None:
        self.floor = min(self.floor, length)
        self.size = length
        last, within = divmod(length, BLOCK)
        for index in [i for i in self.blocks if i > last or (i == last and not within)]:
            del self.blocks[index]
        if within and last in self.blocks:
            self.blocks[last][within:] = bytes(BLOCK - within)

    def writes(self) -> list[tuple[int, bytes]]:
        """What reaching stable storage takes, after truncating the backing file to
        floor: these (offset, bytes), then a truncate to size."""
        return [(i * BLOCK, bytes(self.blocks[i][:max(0, min(BLOCK, self.size - i * BLOCK))]))
                for i in sorted(self.blocks) if i * BLOCK < self.size]


def _oserror(err: int) -> mfusepy.FuseOSError:
    return mfusepy.FuseOSError(err)


class VolatilePassthrough(mfusepy.Operations):
    """The FUSE driver: backing-directory I/O around one Overlay per dirty inode.

    Runs single-threaded (``-s``), so the overlays need no lock.
    """

    use_ns = True

    def __init__(self, backing: str):
        self.backing = os.path.realpath(backing)
        self.dirty: dict[int, Overlay] = {}   # by backing inode number
        self.sync_handles: set[int] = set()   # fds opened O_SYNC/O_DSYNC

    def _path(self, path: str) -> str:
        return os.path.join(self.backing, path.lstrip("/"))

    def _ino(self, path: str, fh: int | None = None) -> int:
        return (os.fstat(fh) if fh is not None else os.lstat(self._path(path))).st_ino

    def _overlay(self, fd: int) -> Overlay:
        st = os.fstat(fd)
        return self.dirty.setdefault(st.st_ino, Overlay.over(st.st_size))

    def _sync(self, fd: int) -> None:
        """Put the file's overlay on the backing storage and fdatasync it there."""
        overlay = self.dirty.pop(os.fstat(fd).st_ino, None)
        if overlay is not None:
            os.ftruncate(fd, overlay.floor)
            for offset, data in overlay.writes():
                os.pwrite(fd, data, offset)
            os.ftruncate(fd, overlay.size)
        os.fdatasync(fd)

    # -- attributes and names: straight to the backing directory -----------------

    def getattr(self, path: str, fh: int | None = None) -> dict[str, int]:
        st = os.fstat(fh) if fh is not None else os.lstat(self._path(path))
        attrs = {key: getattr(st, key) for key in (
            "st_mode", "st_ino", "st_nlink", "st_uid", "st_gid", "st_size", "st_blocks",
            "st_atime_ns", "st_mtime_ns", "st_ctime_ns")}
        attrs = {k.removesuffix("_ns"): v for k, v in attrs.items()}
        overlay = self.dirty.get(st.st_ino)
        if overlay is not None:
            attrs["st_size"] = overlay.size
            attrs["st_blocks"] = max(st.st_blocks, -(-overlay.size // 512))
        return attrs

    def access(self, path: str, amode: int) -> int:
        if not os.access(self._path(path), amode):
            raise _oserror(errno.EACCES)
        return 0

    def readdir(self, path: str, fh: int) -> list[str]:
        return [".", "..", *os.listdir(self._path(path))]

    def readlink(self, path: str) -> str:
        return os.readlink(self._path(path))

    def mkdir(self, path: str, mode: int) -> int:
        os.mkdir(self._path(path), mode)
        return 0

    def rmdir(self, path: str) -> int:
        os.rmdir(self._path(path))
        return 0

    def unlink(self, path: str) -> int:
        st = os.lstat(self._path(path))
        os.unlink(self._path(path))
        if st.st_nlink <= 1:
            self.dirty.pop(st.st_ino, None)
        return 0

    def symlink(self, target: str, source: str) -> int:
        os.symlink(source, self._path(target))
        return 0

    def link(self, target: str, source: str) -> int:
        os.link(self._path(source), self._path(target))
        return 0

    def rename(self, old: str, new: str) -> int:
        try:
            replaced = os.lstat(self._path(new))
        except FileNotFoundError:
            replaced = None
        os.rename(self._path(old), self._path(new))
        if replaced is not None and replaced.st_nlink <= 1 and not os.path.isdir(self._path(new)):
            self.dirty.pop(replaced.st_ino, None)
        return 0

    def chmod(self, path: str, mode: int) -> int:
        os.chmod(self._path(path), mode)
        return 0

    def chown(self, path: str, uid: int, gid: int) -> int:
        os.chown(self._path(path), uid, gid)
        return 0

    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        os.utime(self._path(path), ns=times) if times else os.utime(self._path(path))
        return 0

    def statfs(self, path: str) -> dict[str, int]:
        sv = os.statvfs(self._path(path))
        return {key: getattr(sv, key) for key in (
            "f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files",
            "f_flag", "f_frsize", "f_namemax")}

    def getxattr(self, path: str, name: str, position: int = 0) -> bytes:
        return os.getxattr(self._path(path), name, follow_symlinks=False)

    def listxattr(self, path: str) -> list[str]:
        return os.listxattr(self._path(path), follow_symlinks=False)

    def setxattr(self, path: str, name: str, value: bytes, options: int,
                 position: int = 0) -> int:
        os.setxattr(self._path(path), name, value, options, follow_symlinks=False)
        return 0

    def removexattr(self, path: str, name: str) -> int:
        os.removexattr(self._path(path), name, follow_symlinks=False)
        return 0

    def fsyncdir(self, path: str, datasync: int, fh: int) -> int:
        fd = os.open(self._path(path), os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return 0

    # -- file data: through the overlay ------------------------------------------

    def _opened(self, fd: int, flags: int) -> int:
        if flags & os.O_TRUNC:
            self._overlay(fd).truncate(0)
        if flags & _SYNC_FLAGS:
            self.sync_handles.add(fd)
        return fd

    def open(self, path: str, flags: int) -> int:
        # Read-write whatever was asked: a partial block write reads the backing bytes.
        fd = os.open(self._path(path), (flags & ~(_OWN_FLAGS | _ACCESS)) | os.O_RDWR)
        return self._opened(fd, flags)

    def create(self, path: str, mode: int, flags: int) -> int:
        fd = os.open(self._path(path),
                     (flags & ~(_OWN_FLAGS | _ACCESS)) | os.O_RDWR | os.O_CREAT
                     | (flags & os.O_EXCL), mode)
        return self._opened(fd, flags)

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        overlay = self.dirty.get(os.fstat(fh).st_ino)
        if overlay is None:
            return os.pread(fh, size, offset)
        return overlay.read(offset, size, lambda at, n: os.pread(fh, n, at))

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        self._overlay(fh).write(offset, data, lambda at, n: os.pread(fh, n, at))
        if fh in self.sync_handles:
            self._sync(fh)
        return len(data)

    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        fd = fh if fh is not None else os.open(self._path(path), os.O_RDWR)
        try:
            self._overlay(fd).truncate(length)
        finally:
            if fh is None:
                os.close(fd)
        return 0

    def flush(self, path: str, fh: int) -> int:
        return 0  # close(2) is no sync

    def fsync(self, path: str, datasync: int, fh: int) -> int:
        self._sync(fh)
        return 0

    def release(self, path: str, fh: int) -> int:
        self.sync_handles.discard(fh)
        os.close(fh)
        return 0


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m hanode.volatile_fs BACKING MOUNTPOINT", file=sys.stderr)
        return 2
    backing, mountpoint = argv
    mfusepy.FUSE(VolatilePassthrough(backing), mountpoint, foreground=True, nothreads=True,
                 fsname="volatile", attr_timeout=0, entry_timeout=0, negative_timeout=0)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
