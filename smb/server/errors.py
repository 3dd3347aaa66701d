"""The exception a command handler raises to end its command with an error status.

Its own module so that every handler and helper can import it without
importing the open table (smb.server.opens) and whatever that imports.
"""

from __future__ import annotations


class CommandError(Exception):
    """Ends a command with an error status (raised inside handlers only)."""

    def __init__(self, status: int):
        super().__init__(hex(status))
        self.status = status
