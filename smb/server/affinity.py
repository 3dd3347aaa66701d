"""Which multichannel clients this worker serves, and through how many connections.

All connections of a multichannel client go to the one worker that claimed
its client GUID in the node table (smb.server.handoff moves the others
there), because its sessions and their channels live in one worker.  The
worker keeps the claim while it serves at least one connection of the
client; this count says when the last one went, so the claim can go too.
The worker owns one and hands it to each of its connections.

:func:`claim` and :func:`release` are the thin drivers that keep the node
table (smb.server.nodelocal, one per node) in step with the counts.
"""

from __future__ import annotations

from typing import Protocol

import trio


class ClientClaims(Protocol):
    """The node table's record of which worker serves which multichannel client."""

    def claim_client(self, client_guid: bytes, address: bytes) -> bytes | None:
        """Claim the client for the worker at ``address``; the address of
        the worker that holds it already, or None (blocking)."""

    def release_client(self, client_guid: bytes) -> None:
        """Drop this worker's claim of the client (blocking)."""


class ClientAffinity:
    def __init__(self) -> None:
        self._connections: dict[bytes, int] = {}

    def serves(self, client_guid: bytes) -> bool:
        """Whether the worker serves a connection of this client (and so holds its claim)."""
        return client_guid in self._connections

    def join(self, client_guid: bytes) -> None:
        """One more connection of the client is served here."""
        self._connections[client_guid] = self._connections.get(client_guid, 0) + 1

    def leave(self, client_guid: bytes) -> bool:
        """One connection of the client closed; True when it was the last
        (the claim in the node table is to be released)."""
        left = self._connections.pop(client_guid) - 1
        if left:
            self._connections[client_guid] = left
        return not left


async def claim(affinity: ClientAffinity, claims: ClientClaims, client_guid: bytes,
                here: bytes) -> bytes | None:
    """A connection of the client comes to this worker (at address ``here``):
    None when this worker serves the client (now counted), else the address
    of the worker that does, where the connection is to go."""
    if not affinity.serves(client_guid):
        there = await trio.to_thread.run_sync(claims.claim_client, client_guid, here)
        if there is not None:
            return there
    affinity.join(client_guid)
    return None


async def release(affinity: ClientAffinity, claims: ClientClaims, client_guid: bytes) -> None:
    """A connection of the client closed; with the worker's last one, the
    claim goes, so the node table holds only clients served now."""
    if affinity.leave(client_guid):
        await trio.to_thread.run_sync(claims.release_client, client_guid)
