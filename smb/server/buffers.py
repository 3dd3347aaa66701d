"""Reusable buffers for the READ replies that must pass through memory.

A signed or encrypted READ reply is read from the file into memory first.  A
fresh bytearray of up to 8 MiB costs the allocator's page faults and a
zero-fill every time, which at a few hundred MB/s is a noticeable share of a
worker's one core; reused buffers cost neither.  The pool belongs to the
worker process, not to a connection, so what it keeps is bounded however
many connections there are.
"""

from __future__ import annotations

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
