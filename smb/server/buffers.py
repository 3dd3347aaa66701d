"""Reusable buffers for large frames received and READ replies that must pass
through memory.

A signed or encrypted READ reply is read from the file into memory first.  A
fresh bytearray of up to 8 MiB costs the allocator's page faults and a
zero-fill every time, which at a few hundred MB/s is a noticeable share of a
worker's one core; reused buffers cost neither.  The pool belongs to the
worker process, not to a connection, so what it keeps is bounded however
many connections there are.
"""

from __future__ import annotations

import sys

# Below this a fresh bytearray is as cheap as a lookup here.
MIN_POOLED = 256 * 1024


class BufferPool:
    def __init__(self, keep_bytes: int):
        self._keep_bytes = keep_bytes
        self._free: list[bytearray] = []
        self._kept = 0

    def take(self, size: int) -> bytearray:
        """A buffer of at least ``size`` bytes, with unspecified contents."""
        if size >= MIN_POOLED:
            for i, buf in enumerate(self._free):
                if len(buf) >= size:
                    del self._free[i]
                    self._kept -= len(buf)
                    return buf
        return bytearray(size)

    def give(self, buf: bytearray) -> None:
        """Return a buffer nobody uses any more (no view of it may be in flight)."""
        if len(buf) < MIN_POOLED or self._kept + len(buf) > self._keep_bytes:
            return
        self._free.append(buf)
        self._kept += len(buf)


# Enough for the pipelined 8 MiB READs of a couple of busy clients.
READ_BUFFERS = BufferPool(keep_bytes=64 * 1024 * 1024)


class FramePool:
    """Receive buffers for large frames (8 MiB WRITEs), each reused once nothing
    refers to it any more.

    Where a frame's life ends is the dispatcher's business (after a WRITE's
    pwrite in a thread, after a signature check), so frames are not handed
    back: the pool takes a buffer again when its own reference is the only one
    left.  Every memoryview of a bytearray refers to it, so a frame still being
    written, verified or decrypted is never handed out twice.
    """

    # The pool's list, the loop variable and getrefcount's own argument.
    _UNUSED_REFS = 3

    def __init__(self, count: int):
        self._count = count
        self._bufs: list[bytearray] = []

    def take(self, size: int, capacity: int) -> memoryview:
        """``size`` bytes in a buffer of at least ``capacity`` (the largest frame
        the connection accepts, so any of its frames fits); unspecified contents."""
        for buf in self._bufs:
            if len(buf) >= size and sys.getrefcount(buf) == self._UNUSED_REFS:
                return memoryview(buf)[:size]
        if len(self._bufs) >= self._count:
            return memoryview(bytearray(size))
        buf = bytearray(max(size, capacity))
        self._bufs.append(buf)
        return memoryview(buf)[:size]


# A handful of 8 MiB WRITEs in flight per worker.
FRAMES = FramePool(count=4)
