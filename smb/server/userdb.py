"""Where workers look users up: their NT hashes in etcd, cached briefly.

The cache keeps a burst of session setups from hammering etcd, and its short
TTL lets `hanode user del` take effect within seconds on every worker.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

import trio

from hanode.store import Store, StoreUnavailable

log = logging.getLogger(__name__)

CACHE_TTL = 2.0


class UserLookup(Protocol):
    async def nt_hash(self, name: str) -> bytes | None:
        """The user's NT hash, or None when there is no such user (or etcd is down)."""


class EtcdUsers:
    def __init__(self, store: Store, ttl: float = CACHE_TTL):
        self._store = store
        self._ttl = ttl
        self._cache: dict[str, tuple[float, bytes | None]] = {}

    async def nt_hash(self, name: str) -> bytes | None:
        # User names are case-insensitive on the wire; the store keeps them lower-case.
        key = name.lower()
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit and now - hit[0] < self._ttl:
            return hit[1]
        if not key or "/" in key:
            return None
        try:
            entry = await trio.to_thread.run_sync(self._store.get, self._store.user_key(key))
        except StoreUnavailable as exc:
            log.warning("user lookup failed: %s", exc)
            return None
        value = None
        if entry and isinstance(entry.value, dict):
            try:
                value = bytes.fromhex(entry.value.get("nt_hash", ""))
            except (TypeError, ValueError):
                value = None
            if value is not None and len(value) != 16:
                value = None
        self._cache[key] = (now, value)
        if len(self._cache) > 4096:
            self._cache.clear()
        return value
