"""When a connection is drained for a planned move: a pure decision.

The Linux kernel client (cifs.ko 6.1) fails a WRITE whose bytes it is still
sending when its socket errors, instead of sending it again after it
reconnects; a request it has sent in full and waits an answer for is sent
again.  A planned move cuts the connection, so before the cut the server
makes the client stop in a state where nothing is half sent:

- it grants no more credits, so the client can start only as many requests
  as it still holds credits for,
- it keeps reading and answering, so the requests already on the wire finish
  and their replies go out while the address still routes them,
- it calls the connection drained once nothing is in flight and no request
  is partly in, and the client either holds no credit at all (it cannot send
  anything more) or has been quiet for a moment (an idle client),
- or when the deadline comes first: a move must not wait on a client.

:func:`next_step` is that rule over facts the connection gathers
(``Connection.drain`` drives it).
"""

from __future__ import annotations

from dataclasses import dataclass

# How long an idle client that still holds credits must have sent nothing: longer
# than the pause a client makes between two requests it sends one after the other.
QUIET = 0.1
# How often the driver looks again.
POLL = 0.005


@dataclass(frozen=True)
class DrainFacts:
    now: float
    deadline: float
    in_flight: int         # requests read or being read and not answered (an interim answer counts)
    partial: bool          # bytes of a request are in that were not processed yet
    credits_held: int      # credits the client holds and has not spent
    last_received: float   # when bytes last came in


@dataclass(frozen=True)
class Wait:
    until: float


@dataclass(frozen=True)
class Drained:
    quiet: bool  # False: the deadline came with requests still in flight


DrainStep = Wait | Drained


def next_step(f: DrainFacts, quiet: float = QUIET, poll: float = POLL) -> DrainStep:
    """Whether the connection is drained, and if not, until when to wait."""
    if f.in_flight == 0 and not f.partial and (
            f.credits_held == 0 or f.now >= f.last_received + quiet):
        return Drained(quiet=True)
    if f.now >= f.deadline:
        return Drained(quiet=False)
    return Wait(min(f.deadline, f.now + poll))
