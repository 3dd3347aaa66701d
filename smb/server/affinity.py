"""Which multichannel clients this worker serves, and through how many connections.

All connections of a multichannel client go to the one worker that claimed
its client GUID in the node table (smb.server.handoff moves the others
there), because its sessions and their channels live in one worker.  The
worker keeps the claim while it serves at least one connection of the
client; this count says when the last one went, so the claim can go too.
The worker owns one and hands it to each of its connections.
"""

from __future__ import annotations


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
