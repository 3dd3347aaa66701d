"""The established sessions of one worker, by SessionId.

A session belongs to the worker, not to a connection: a binding connection
(multichannel) finds it here, and a later SESSION_SETUP naming it as its
PreviousSessionId (MS-SMB2 3.3.5.5.3) tears it down here, whichever
connection of the worker it came over.  The worker owns one table and hands
it to each of its connections; nothing here is process-wide, and nothing
does I/O but the connection's own ``drop_session``.
"""

from __future__ import annotations

from typing import Protocol

from smb.server.sessions import Session


class SessionOwner(Protocol):
    """The connection a session is reached through (its first live channel)."""

    async def drop_session(self, session: Session) -> None:
        """End ``session`` on all its channels (PreviousSessionId)."""


class SessionTable:
    def __init__(self) -> None:
        self._by_id: dict[int, tuple[SessionOwner, Session]] = {}

    def __contains__(self, session_id: int) -> bool:
        return session_id in self._by_id

    def get(self, session_id: int) -> Session | None:
        """The session of this id, valid or not; None when the worker has none."""
        found = self._by_id.get(session_id)
        return None if found is None else found[1]

    def holds(self, session: Session) -> bool:
        """Whether ``session`` is (still) the worker's session of its id."""
        found = self._by_id.get(session.id)
        return found is not None and found[1] is session

    def add(self, owner: SessionOwner, session: Session) -> None:
        """``session`` was established (or re-authenticated) over ``owner``."""
        self._by_id[session.id] = (owner, session)

    def forget(self, session: Session) -> None:
        """``session`` ended; a newer session of the same id stays."""
        if self.holds(session):
            del self._by_id[session.id]

    def reach_through(self, leaving: SessionOwner, session: Session, other: SessionOwner) -> None:
        """``leaving``, through which ``session`` is reached, goes away while
        ``other`` still is one of its channels."""
        found = self._by_id.get(session.id)
        if found is not None and found[0] is leaving and found[1] is session:
            self._by_id[session.id] = (other, session)

    async def logoff(self, session_id: int, user: str) -> bool:
        """Tear down a session of this worker; False when the worker does not
        hold it.  Only a valid session of the same user goes; anything else is
        ignored, as the spec says.  Its opens are treated as if its connection
        had been lost."""
        found = self._by_id.get(session_id)
        if found is None:
            return False
        owner, session = found
        if not session.valid or session.info.user != user:
            return True
        del self._by_id[session_id]
        await owner.drop_session(session)
        return True
