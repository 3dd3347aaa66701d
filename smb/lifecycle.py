"""How a durable open of this worker lives and ends, as one pure decision.

A durable open is in one of six phases::

    ATTACHED --connection lost--> DISCONNECTED --reconnect here--> ATTACHED (a new open)
       |                               |
       | CLOSE / tree disconnect       +--conflicting open--> (ending) --> PURGED
       v                               +--timeout-----------> (ending) --> EXPIRED
     CLOSED                            +--record names another worker--> RECLAIMED
                                       +--record gone (ended elsewhere)--> PURGED

A persistent or resilient open *keeps its file* while disconnected
(``Life.keeps_file``): it is detached so that a conflicting open is refused
instead of purging it, and a purge never ends it; only its timeout, its
reclaim or its record ending elsewhere do.

RECLAIMED, PURGED, EXPIRED and CLOSED are final: no fact moves an open out of
them, so a late timer or a second purge of the same open does nothing.  An
open that was never durable lives the same way with ``durable=False``: losing
its connection closes it.

Ending a disconnected open takes a few steps with I/O between them (read its
record, claim its node-table rows, delete the record unless a reconnect adopted
it meanwhile); :func:`ending` says, from the facts gathered so far, which step
comes next or how the open ended.  Whoever applies these decisions
(smb.server.durable_opens) only gathers facts and applies actions, the way
hanode.election applies :func:`hanode.leadership.decide`.

Nothing here does I/O, reads a clock or imports anything that does.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace


class Phase(enum.Enum):
    ATTACHED = "attached"
    DISCONNECTED = "disconnected"
    RECLAIMED = "reclaimed"  # a reconnect took it (here as a new open, or elsewhere)
    PURGED = "purged"        # a conflicting open ended it (or another worker did)
    EXPIRED = "expired"      # nobody reclaimed it within its timeout
    CLOSED = "closed"        # its client closed it (or it was never durable)


FINAL = frozenset({Phase.RECLAIMED, Phase.PURGED, Phase.EXPIRED, Phase.CLOSED})


class Action(enum.Enum):
    """What the driver does, in the order given."""

    # This worker's memory of it goes: the oplock/lease table, the caching
    # mirrored for other workers, the worker's durable opens (record and rows stay).
    FORGET = "forget"
    DISCARD_RECORD = "discard_record"  # its record's delete is queued (nobody waits for it)
    DELETE_RECORD = "delete_record"    # its record is deleted now
    DETACH = "detach"                  # breaks no longer go to a connection; marked disconnected
    # ... and, while disconnected, a conflicting open is refused rather than purging it.
    DETACH_KEEPING = "detach_keeping"
    STORE_RECORD = "store_record"      # the disconnected record (locks, position) is written
    ARM_EXPIRY = "arm_expiry"          # its timeout starts
    REVIVE = "revive"                  # marked connected again in the oplock/lease table
    FORGET_ROWS = "forget_rows"        # its node-table rows go, without a close's effects
    CLOSE_ROWS = "close_rows"          # its rows go as a CLOSE's would (no delete-on-close)
    CLOSE_ROWS_DELETING = "close_rows_deleting"  # ... with its delete-on-close taking effect
    DELETE_ON_CLOSE = "delete_on_close"  # a dead worker's open (no rows): its delete-on-close
    # Steps of an ending that produce the next fact:
    READ_RECORD = "read_record"
    CLAIM_ROWS = "claim_rows"
    DELETE_RECORD_IF_UNCHANGED = "delete_record_if_unchanged"


@dataclass(frozen=True)
class Life:
    phase: Phase = Phase.ATTACHED
    durable: bool = False
    keeps_file: bool = False  # persistent or resilient: never purged by a conflicting open


# -- facts ---------------------------------------------------------------------------

class Event(enum.Enum):
    GRANTED = "granted"              # its durable record is stored: it is durable now
    # Its record (persistent, or made resilient) is stored: durable, and it keeps
    # its share mode and locks while disconnected.
    GRANTED_KEEPING = "granted_keeping"
    CLOSED = "closed"                # CLOSE, TREE_DISCONNECT, or a reclaimed file gone
    CONNECTION_LOST = "lost"         # its connection or session ended without CLOSE
    RECLAIMED_HERE = "reclaimed_here"  # a reconnect on this worker adopted it (a new open)
    PURGE = "purge"                  # a conflicting open closed it
    TIMED_OUT = "timed_out"          # its timeout ran out
    RECORD_ELSEWHERE = "record_elsewhere"  # its record names another worker now
    RECORD_GONE = "record_gone"      # its record is gone (ended by another worker)


@dataclass(frozen=True)
class Decision:
    life: Life
    actions: tuple[Action, ...] = ()
    # Set when the open starts ending (a purge or its timeout): the driver then
    # steps through :func:`ending` with this cause.
    ending: Phase | None = None


def decide(life: Life, event: Event) -> Decision:
    """The open's next phase and what to do, given what just happened to it."""
    if life.phase in FINAL:
        return Decision(life)
    if life.phase is Phase.ATTACHED:
        if event is Event.GRANTED:
            return Decision(replace(life, durable=True))
        if event is Event.GRANTED_KEEPING:
            return Decision(replace(life, durable=True, keeps_file=True))
        if event is Event.CLOSED or (event is Event.CONNECTION_LOST and not life.durable):
            actions = (Action.FORGET, Action.DISCARD_RECORD) if life.durable \
                else (Action.FORGET,)
            return Decision(replace(life, phase=Phase.CLOSED), actions)
        if event is Event.CONNECTION_LOST:
            # It stays tracked: its caching row stays mirrored, and other
            # workers' break requests for its file still find it.
            detach = Action.DETACH_KEEPING if life.keeps_file else Action.DETACH
            return Decision(replace(life, phase=Phase.DISCONNECTED),
                            (detach, Action.STORE_RECORD, Action.ARM_EXPIRY))
        return Decision(life)
    # DISCONNECTED
    if event is Event.RECLAIMED_HERE:
        return Decision(replace(life, phase=Phase.RECLAIMED), (Action.REVIVE,))
    if event is Event.PURGE:
        # A conflicting open is refused by an open that keeps its file; a purge
        # that reaches one anyway (a stale break request) changes nothing.
        return Decision(life) if life.keeps_file else Decision(life, ending=Phase.PURGED)
    if event is Event.TIMED_OUT:
        return Decision(life, ending=Phase.EXPIRED)
    if event is Event.RECORD_ELSEWHERE:
        return Decision(replace(life, phase=Phase.RECLAIMED), (Action.FORGET, Action.FORGET_ROWS))
    if event is Event.RECORD_GONE:
        return Decision(replace(life, phase=Phase.PURGED), (Action.FORGET, Action.FORGET_ROWS))
    if event is Event.CLOSED:  # its reclaim found the file gone from storage
        return Decision(replace(life, phase=Phase.CLOSED), (Action.FORGET, Action.DELETE_RECORD))
    return Decision(life)


# -- ending a disconnected open ---------------------------------------------------------

class Owner(enum.Enum):
    US = "us"          # its record names this worker
    OTHER = "other"    # a reconnect on another worker or node adopted it
    UNKNOWN = "unknown"  # no record (gone, or etcd could not be read)


@dataclass(frozen=True)
class EndFacts:
    """What the driver learned so far while ending one disconnected open."""

    cause: Phase                      # PURGED or EXPIRED
    owner: Owner | None = None        # None: not read yet
    rows_claimed: bool | None = None  # None: not tried yet
    # None: not tried yet; True also when etcd could not take the delete
    # (the scavenger ends the record; the file's open still ends here).
    record_deleted: bool | None = None


@dataclass(frozen=True)
class EndStep:
    """Either the next action to learn a fact, or how the open ended (``final``)."""

    action: Action | None
    final: Phase | None = None
    actions: tuple[Action, ...] = ()


def ending(facts: EndFacts) -> EndStep:
    """The next step of ending a disconnected open of this worker.

    Its memory goes first (no later fact brings it back); a record naming
    another worker means a reconnect there owns it, so only its rows go; rows
    another worker of the node claimed mean a reconnect here owns them; the
    record goes next, and a reconnect that adopted it in the meantime keeps the
    file, so delete-on-close takes effect only when the record went.
    """
    if facts.owner is None:
        return EndStep(Action.READ_RECORD, actions=(Action.FORGET,))
    if facts.owner is Owner.OTHER:
        return EndStep(None, Phase.RECLAIMED, (Action.FORGET_ROWS,))
    if facts.rows_claimed is None:
        return EndStep(Action.CLAIM_ROWS)
    if not facts.rows_claimed:
        return EndStep(None, Phase.RECLAIMED)
    if facts.owner is Owner.US and facts.record_deleted is None:
        return EndStep(Action.DELETE_RECORD_IF_UNCHANGED)
    deleted = facts.owner is Owner.UNKNOWN or bool(facts.record_deleted)
    return EndStep(None, facts.cause,
                   (Action.CLOSE_ROWS_DELETING if deleted else Action.CLOSE_ROWS,))


def orphan_purged(record_deleted: bool | None) -> tuple[Action, ...]:
    """A conflicting open closed a dead worker's disconnected open (known only by its
    record): its delete-on-close takes effect only if its record went now; a
    reconnect that adopted it meanwhile (False) or etcd unreachable (None) keep the file."""
    return (Action.DELETE_ON_CLOSE,) if record_deleted else ()
