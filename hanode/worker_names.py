"""How an SMB worker is named under ``workers/<node>/`` in etcd: the worker
writes its liveness key under this name and the agent's supervisor reads it
back, so both import it from here (neither imports the other)."""

from __future__ import annotations


def worker_name(index: int) -> str:
    """The worker's name under ``workers/<node>/``."""
    return f"w{index}"
