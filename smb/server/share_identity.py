"""Whether this worker may serve a share: its storage must be the cluster's.

The agent's marker check takes the VIP away from a node whose share path
lost its shared storage (an unmounted LUN leaves an empty local directory),
but only once per check interval.  Between the unmount and that check a new
TREE_CONNECT would otherwise be served from the local directory, and what the
client wrote there would be invisible to every other node.  So the worker
looks at the marker itself on every TREE_CONNECT of a disk share: the id
etcd keeps for the share (read at most every ``REFRESH`` seconds) must be
the one on the storage.  A share never initialised (``hanode share init``)
has no id and is served unchecked, as the agent's check reports it.
"""

from __future__ import annotations

import trio

from hanode.config import ShareConfig
from hanode.share_storage import marker_problem, stored_id
from hanode.store import Store, StoreUnavailable

# How long a share id read from etcd is trusted: ids change only by
# ``hanode share init --force``.
REFRESH = 5.0


class ShareIdentities:
    """The ids etcd holds for the shares, cached per worker."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._ids: dict[str, tuple[float, str | None]] = {}

    async def _expected(self, name: str) -> str | None:
        now = trio.current_time()
        cached = self._ids.get(name)
        if cached is not None and now - cached[0] < REFRESH:
            return cached[1]
        try:
            share_id = await trio.to_thread.run_sync(stored_id, self._store, name)
        except StoreUnavailable:
            # etcd is away: the last id known still holds; none known, unchecked.
            return cached[1] if cached is not None else None
        self._ids[name] = (now, share_id)
        return share_id

    async def problem(self, share: ShareConfig) -> str | None:
        """Why the storage under the share's path is not the cluster's, or None."""
        expected = await self._expected(share.name)
        if expected is None:
            return None
        return await trio.to_thread.run_sync(marker_problem, share.path, expected)
