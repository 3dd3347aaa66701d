"""The deferred write-time rules of one handle, as decisions without I/O or
clock: Windows (up to Server 2016) and smbd 4.17 move a file's write time
about two seconds after the first write through a handle, not at all for
its further writes, and at its close if it wrote since the last move; a
FLUSH, a size change or FileBasicInformation make a pending move at once.
smb.server.writetime applies the decisions to an open's descriptor."""

from __future__ import annotations

from dataclasses import dataclass

UPDATE_DELAY_NS = 2_000_000_000  # Windows' and smbd's delay of the first move


@dataclass
class Deferred:
    """One handle's write-time state between its writes."""

    # The write time writes through this handle leave in place (ns since the
    # epoch); None until its first write.
    shown_ns: int | None = None
    # When the first write's move is due (monotonic ns); None once made.
    due_ns: int | None = None
    # A write since the last move: the close sets the write time.
    on_close: bool = False

    def wrote(self, now_ns: int, before_ns: int) -> int:
        """After a write that found the write time at ``before_ns``: the write
        time to put back.  The first write makes the move due."""
        self.on_close = True
        if self.shown_ns is None:
            self.shown_ns, self.due_ns = before_ns, now_ns + UPDATE_DELAY_NS
        return self.shown_ns

    def moved(self, at_ns: int) -> None:
        """The pending move was made: the write time is now ``at_ns``, and
        later writes through the handle keep it until the close."""
        self.shown_ns, self.due_ns, self.on_close = at_ns, None, False

    @property
    def pending(self) -> bool:
        return self.on_close
