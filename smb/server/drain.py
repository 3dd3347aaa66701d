"""When a connection is drained for a planned move: a pure decision.

The Linux kernel client (cifs.ko 6.1) fails a WRITE whose bytes it is still
sending when its socket errors (the move's reset), instead of sending it
again after it reconnects; a request it has sent in full and waits an answer
for is sent again.  So before the move cuts the connection, the client must
be made to stop where nothing is half sent:

- the server grants no more credits, and keeps reading and answering, so the
  requests already on the wire finish and their replies go out while the
  address still routes them;
- a client that runs out of credits with nothing in flight is drained: it
  waits for credits and can send nothing more, the cut finds it idle;
- a client that still holds credits after a moment (``SPEND``) would go on
  sending as long as they last: cifs.ko holds hundreds (a few 4 MiB WRITEs),
  which under a slow link takes longer than any bound.  It is *finished*
  instead: the server stops taking requests (what comes in from then on is
  read and dropped, never answered), lets the requests it took end and
  answer, then shuts its sending side (FIN) and goes on reading.  The client
  sees the end of the stream, completes the request it may be sending (the
  server still reads), closes its side and resends after reconnecting what
  had no answer.  The connection is drained when the client has closed;
- or when the deadline comes first: a move must not wait on a client.

:func:`next_step` is that rule over facts the connection gathers
(``Connection.drain`` drives it).
"""

from __future__ import annotations

from dataclasses import dataclass

# How long a client holding credits may take to spend them before it is
# finished: a client writing one request at a time with a few credits runs
# dry within it; one that streams with hundreds does not.
SPEND = 0.2
# How often the driver looks again.
POLL = 0.005


@dataclass(frozen=True)
class DrainFacts:
    now: float
    started: float         # when the drain began
    deadline: float
    in_flight: int         # requests taken and not answered (an interim answer counts)
    partial: bool          # bytes of a request are in that were not processed yet
    credits_held: int      # credits the client holds and has not spent
    finishing: bool        # requests coming in are dropped (see the module docstring)
    finished: bool         # the server's sending side is shut (FIN sent)
    ended: bool            # the client closed (or the connection is gone)


@dataclass(frozen=True)
class Wait:
    until: float


@dataclass(frozen=True)
class StopTaking:
    """Read on, but drop what comes in (never answered: the client resends it)."""


@dataclass(frozen=True)
class Shut:
    """Shut the sending side (FIN): everything taken is answered."""


@dataclass(frozen=True)
class Drained:
    quiet: bool  # False: the deadline came first


DrainStep = Wait | StopTaking | Shut | Drained


def next_step(f: DrainFacts, spend: float = SPEND, poll: float = POLL) -> DrainStep:
    """Whether the connection is drained, and if not, what to do or until when to wait."""
    if f.ended:
        return Drained(quiet=True)
    if not f.finishing and f.in_flight == 0 and not f.partial and f.credits_held == 0:
        return Drained(quiet=True)
    if f.now >= f.deadline:
        return Drained(quiet=False)
    if not f.finishing and f.now >= f.started + spend:
        return StopTaking()
    if f.finishing and not f.finished and f.in_flight == 0:
        return Shut()
    return Wait(min(f.deadline, f.now + poll))
