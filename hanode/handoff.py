"""The order of a planned move (switchover, SIGTERM, health handover): a pure decision.

A client that reconnects the moment it learns its connection is gone must find
the VIP answered by its new holder, else its SYN goes into the void and Linux
sends it again only after a second (Windows later still).  So the old leader
never resets its clients while it still holds the address; instead:

1. it records every client it serves in its hand-off record, which the
   successor tickles after its claim along with the connection list (the list
   alone would not do: a worker deletes its entry when its connection ends,
   which step 4 makes happen, and a client younger than the agent's last
   reconciliation is not in it),
2. its SMB workers drain their connections (smb.server.drain): no more
   credits, the requests in flight answered while the address still routes
   the replies, bounded by DRAIN_BOUND.  The Linux kernel client fails a
   WRITE it is still sending when its connection breaks, but sends again one
   it has sent in full; a drained client is sending nothing,
3. the address goes: from here on no new connection is taken, and the
   clients' packets are dropped,
4. its own sockets on the VIP are dropped.  Without the address the kernel
   cannot route their RSTs, so no client hears of it yet, but the SMB
   workers see the connections closed and mark their durable opens
   disconnected before any client can ask the successor to reclaim them,
5. the leader key goes, so the successor claims at once, announces the VIP
   (GARP/NA) and then tickles the listed clients: their answers reach the new
   holder, which resets them, and their reconnect finds it,
6. it waits (bounded) to see the successor's claim, for the log line.  With
   no claim within the bound (the last node stopping) nobody would tickle
   the clients, so it resets them itself (hanode.net.farreset: its own
   tickle, and a RST in answer to the client's ACK that still reaches it),
   and none waits on a dead socket; a later leader tickles the listed
   clients too when it claims.

:func:`next_step` is that order as a function of facts the driver
(``takeover.VipOwner.hand_off``) gathers; it is tested over sequences of facts.
"""

from __future__ import annotations

from dataclasses import dataclass

# (VIP, client address, client port): one connection the old leader served.
Client = tuple[str, str, int]

# How long the old leader waits to see its successor's claim.  Well inside the
# agent's stop budget (1.5 s), so that a SIGTERM still revokes the lease after.
CLAIM_BOUND = 0.5
# How long the old leader, when nobody claimed, waits for its clients' answers
# to its tickles (a round trip on the LAN).
RESET_WAIT = 0.1
# How long the workers may take to drain their connections (smb.drain_timeout's
# default).  A drain ends as soon as its clients have stopped or closed (see
# smb.server.drain), so this bounds only a client that does neither.
DRAIN_BOUND = 2.0


@dataclass(frozen=True)
class HandOffFacts:
    now: float
    address_held: bool                  # our VIP addresses are still on the interface
    clients: frozenset[Client] | None   # our live connections on the VIPs; None: not read
    recording_tried: bool               # we tried to record them (etcd may have refused)
    drained: bool                       # the workers drained their connections, or tried
    sockets_dropped: bool               # our sockets on the VIP are gone
    resigned: bool                      # we deleted our leader key, or tried to
    released_at: float | None           # when the address went
    claimed_by: str | None              # another node holding the leader key, seen after resigning
    clients_reset: bool = False         # we reset the clients ourselves (nobody claimed), or tried


@dataclass(frozen=True)
class ReadClients:
    """Read our live connections on the VIPs (from the kernel)."""


@dataclass(frozen=True)
class RecordClients:
    """Write the hand-off record of these clients, for the successor's tickles."""
    clients: frozenset[Client]


@dataclass(frozen=True)
class Drain:
    """Have the SMB workers drain their connections on the VIPs, within ``bound``."""
    bound: float


@dataclass(frozen=True)
class RemoveAddress:
    """Take the VIP addresses off the interface."""


@dataclass(frozen=True)
class DropSockets:
    """Destroy our sockets on the VIP (silently: the address is gone)."""


@dataclass(frozen=True)
class Resign:
    """Delete our leader key, so the successor claims."""


@dataclass(frozen=True)
class WaitForClaim:
    until: float


@dataclass(frozen=True)
class ResetClients:
    """Nobody claimed: reset these clients from here, waiting up to ``wait`` for their answers."""
    clients: frozenset[Client]
    wait: float


@dataclass(frozen=True)
class Done:
    claimed_by: str | None  # None: nobody claimed within the bound


Step = ReadClients | RecordClients | Drain | RemoveAddress | DropSockets | Resign | WaitForClaim | ResetClients | Done


def next_step(f: HandOffFacts, bound: float = CLAIM_BOUND,
              drain_bound: float = DRAIN_BOUND) -> Step:
    """The next thing the old leader does in a planned move (drain_bound 0: no drain)."""
    if f.address_held:
        if f.clients is None:
            return ReadClients()
        if f.clients and not f.recording_tried:
            return RecordClients(f.clients)
        if f.clients and not f.drained and drain_bound > 0:
            return Drain(drain_bound)
        return RemoveAddress()
    if not f.sockets_dropped:
        return DropSockets()
    if not f.resigned:
        return Resign()
    if f.claimed_by is not None:
        return Done(f.claimed_by)
    assert f.released_at is not None  # the address went before
    if f.now >= f.released_at + bound:
        if f.clients and not f.clients_reset:
            return ResetClients(f.clients, RESET_WAIT)
        return Done(None)
    return WaitForClaim(f.released_at + bound)
