"""The worker's reusable buffers: never handed out twice while in use."""

from __future__ import annotations

from smb.server.buffers import MIN_POOLED, BufferPool, FramePool


def test_frame_buffer_is_reused_only_when_nothing_refers_to_it():
    pool = FramePool(count=2)
    first = pool.take(1000, 4096)
    assert len(first) == 1000 and len(first.obj) == 4096
    inner = first[100:200]  # e.g. a WRITE's data, still being written
    del first
    second = pool.take(1000, 4096)
    assert second.obj is not inner.obj
    del inner
    third = pool.take(4000, 4096)  # the first buffer is free again
    assert len(third) == 4000 and third.obj is not second.obj
    fourth = pool.take(10, 4096)  # both kept buffers in use: a fresh one, not kept
    assert len(fourth.obj) == 10
    assert len(pool._bufs) == 2


def test_frame_too_large_for_the_kept_buffers_gets_its_own():
    pool = FramePool(count=1)
    small = pool.take(10, 100)
    del small
    big = pool.take(1000, 1000)
    assert len(big) == 1000


def test_read_buffers_are_bounded():
    pool = BufferPool(keep_bytes=2 * MIN_POOLED)
    a, b, c = (pool.take(MIN_POOLED) for _ in range(3))
    for buf in (a, b, c):
        pool.give(buf)
    again = [pool.take(MIN_POOLED) for _ in range(3)]
    assert again[0] is a and again[1] is b
    assert again[2] is not c  # the third was not kept
    assert len(pool.take(100)) == 100  # small ones are not pooled
