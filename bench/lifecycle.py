"""How every bench ends: SIGTERM and Ctrl-C unwind through the cleanups
that stop the servers and etcd it started, and a failure is one line.

A bench killed with SIGTERM (``timeout``, a CI job cancelled) used to leave
its etcd and ``hanode smb`` running: Python's default SIGTERM ends the
process without running ``finally`` blocks.
"""

from __future__ import annotations

import signal
import sys
from typing import Callable


class BenchError(Exception):
    """A server or a client did not do what the bench asked; the message says what."""


def run_main(body: Callable[[], int]) -> int:
    """Run ``body()``; SIGTERM and Ctrl-C unwind through every cleanup, and errors
    are one line, not a traceback."""
    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    # Also when started with SIGINT ignored (a background job of a script).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return body()
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        return 130
