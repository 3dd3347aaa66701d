"""hanode.looplag: a blocking call in the trio loop shows up as lag and one log line."""

from __future__ import annotations

import logging
import time

import trio

from hanode import looplag


async def test_a_blocked_loop_is_reported_with_its_length(caplog):
    lags: list[float] = []
    caplog.set_level(logging.WARNING, logger="hanode.looplag")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(looplag.watch, lags.append, "n1", 0.01, 0.25)
        await trio.sleep(0.05)
        time.sleep(0.4)  # noqa: ASYNC251 - the mistake the watch is for: a blocking call in the loop
        await trio.sleep(0.05)
        nursery.cancel_scope.cancel()
    # The blocking call's stall at least (a busy machine may add others).
    stalls = [lag for lag in lags if lag >= 0.25]
    assert max(lags) >= 0.35, lags
    assert len(lags) >= 5  # it kept watching before and after the stall
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == len(stalls), (warnings, lags)
    assert all(w.startswith("n1: event loop stalled ") for w in warnings)
