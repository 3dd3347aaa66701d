"""A nursery for one kind of long-lived work, with the owner that runs it.

A request handler may start work that outlives it (a break's 35 s timer, a
disconnected durable open's expiry): it hands it to the :class:`Background`
of that kind of work, which the worker's state runs for the worker's
lifetime, instead of to a nursery everyone shares.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

import trio


class Background:
    def __init__(self, what: str) -> None:
        self.what = what
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Hold the nursery until cancelled (its tasks are cancelled with it)."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self._nursery = None

    def start_soon(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        if self._nursery is None:
            raise RuntimeError(f"{self.what}: not running")
        self._nursery.start_soon(fn, *args)
