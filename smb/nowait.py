"""Running short blocking work on the event loop when it cannot wait.

A hop to a worker thread and back costs a worker 50-100 us of CPU (two
wake-ups through the kernel), more than most requests' real work: an fstat on
an open descriptor, a stat of an exact name, one small SQLite transaction on
the node table.  :func:`run` therefore first calls the function right on the
event loop with "no waiting" switched on for this thread; code that would
have to wait (a directory read, a SQLite lock another process holds, a
create whose retry would not be the same) checks :func:`active` and raises
:class:`WouldBlock` before it has changed anything, and the call is then
made again in a thread, where it may wait as before.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Callable, Iterator, TypeVar

import trio

T = TypeVar("T")

_state = threading.local()


class WouldBlock(Exception):
    """The call would have to wait; nothing was changed: run it in a thread."""


def active() -> bool:
    """Whether this thread is inside an attempt that must not wait."""
    return getattr(_state, "active", False)


def attempt(fn: Callable[..., T], *args: object) -> T:
    """``fn(*args)`` right here with waiting forbidden; raises WouldBlock."""
    _state.active = True
    try:
        return fn(*args)
    finally:
        _state.active = False


@contextmanager
def suspended() -> Iterator[None]:
    """Waiting allowed again inside an attempt: for undoing what it already
    changed when a later step fails (it cannot give up with WouldBlock then)."""
    was = active()
    _state.active = False
    try:
        yield
    finally:
        _state.active = was


async def run(fn: Callable[..., T], *args: object) -> T:
    """``fn(*args)`` on the event loop if it can finish without waiting, else in a thread."""
    try:
        return attempt(fn, *args)
    except WouldBlock:
        return await trio.to_thread.run_sync(fn, *args)
