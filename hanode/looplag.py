"""How late the agent's trio loop wakes a sleeping task: its event-loop lag.

With a 1 s lease the leader fences itself 0.75 s after the last keepalive
that succeeded, so a loop that does not turn for a few hundred milliseconds
(a blocking call made outside ``trio.to_thread``, a long garbage collection,
a process starved of CPU) costs the node its leadership.  This task sleeps a
short interval again and again and reports by how much each wake-up came
late, so an operator sees such stalls before they turn into a failover.
"""

from __future__ import annotations

import logging
from typing import Callable

import trio

log = logging.getLogger("hanode.looplag")

# Short enough to catch a stall a tenth of a 1 s lease long, and cheap: twenty
# wake-ups a second cost the agent well under a millisecond of CPU.
INTERVAL = 0.05
# A wake-up this late is logged: a quarter of the shortest lease (1 s).
WARN_AFTER = 0.25


async def watch(observe: Callable[[float], None], me: str, interval: float = INTERVAL,
                warn_after: float = WARN_AFTER) -> None:
    """Report each wake-up's lateness (seconds) to observe(), until cancelled;
    one log line for every stall of warn_after or more."""
    while True:
        due = trio.current_time() + interval
        await trio.sleep_until(due)
        lag = max(0.0, trio.current_time() - due)
        observe(lag)
        if lag >= warn_after:
            log.warning("%s: event loop stalled %.3f s", me, lag)
