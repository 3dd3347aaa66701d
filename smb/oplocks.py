"""Oplocks and leases, node-wide: a pure state machine, events in, decisions out.

Every worker of a node shares one view of who caches what on each file, so
this module holds that view and answers the three questions MS-SMB2 asks of
it (3.3.5.9 opens, 3.3.4.7 breaks, 3.3.5.22 acknowledgements): what does a
new open get, whom must it break first, and what does an acknowledgement (or
the 35 s break timeout) change.  No sockets, no clocks: the driver sends the
breaks, runs the timers, and retries a waiting open when something changed.

Oplocks are handled as the lease states they amount to (batch = RWH,
exclusive = RW, level II = R), which is also how Windows and Samba reason
about mixtures of oplocks and leases on one file; the grant table follows
what smbtorture's smb2.oplock and smb2.lease suites expect:
- a conflicting open breaks write caching (handle caching too when it
  would otherwise fail with a sharing violation) and waits for the ack;
- an overwriting open breaks everything to none;
- only one open (or one lease) may hold write caching; no lease gets H
  while a non-lease open exists, no oplock while someone holds H;
- stat opens (only attributes, security descriptor or synchronize access,
  and not truncating) break no lease, and no oplock unless they ask for
  READ_CONTROL; they get an oplock only as the file's sole opener
  (smb2.oplock.batch9), and later opens see them only while they hold one.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from enum import Enum
from typing import Hashable, Iterator

from smb.wire.create_contexts import (
    LEASE_FLAG_BREAK_IN_PROGRESS, LEASE_FLAG_PARENT_LEASE_KEY_SET, CreateContext, LeaseContext,
)
from smb.wire.header import Status

OPLOCK_NONE = 0x00
OPLOCK_II = 0x01
OPLOCK_EXCLUSIVE = 0x08
OPLOCK_BATCH = 0x09
OPLOCK_LEASE = 0xFF

LEASE_NONE = 0x0
LEASE_READ = 0x1
LEASE_HANDLE = 0x2
LEASE_WRITE = 0x4

LEASE_BREAK_ACK_REQUIRED = 0x1     # Flags of a LEASE_BREAK notification (2.2.23.2)

BREAK_TIMEOUT_S = 35.0             # what Windows waits for an acknowledgement

# Access mask bits (MS-SMB2 2.2.13.1.1) and share access (2.2.13).
FILE_READ_DATA = 0x00000001
FILE_WRITE_DATA = 0x00000002
FILE_APPEND_DATA = 0x00000004
FILE_EXECUTE = 0x00000020
FILE_READ_ATTRIBUTES = 0x00000080
FILE_WRITE_ATTRIBUTES = 0x00000100
DELETE = 0x00010000
READ_CONTROL = 0x00020000
SYNCHRONIZE = 0x00100000
MAXIMUM_ALLOWED = 0x02000000
GENERIC_ALL = 0x10000000
GENERIC_EXECUTE = 0x20000000
GENERIC_WRITE = 0x40000000
GENERIC_READ = 0x80000000
SHARE_READ = 0x1
SHARE_WRITE = 0x2
SHARE_DELETE = 0x4

# CreateDisposition values that truncate or replace the file.
FILE_SUPERSEDE = 0
FILE_OVERWRITE = 4
FILE_OVERWRITE_IF = 5
_OVERWRITING = frozenset({FILE_SUPERSEDE, FILE_OVERWRITE, FILE_OVERWRITE_IF})
# Not a CreateDisposition: marks a break request that another worker files
# for a WRITE rather than for an open (see Breaks.remote_open).
REMOTE_WRITE = -1
# Likewise for a rename (Breaks.remote_open): leases drop handle caching.
REMOTE_RENAME = -2
# Marks an oplock's caching in the node table (Breaks.caching), beside the
# lease-state bits: a rename elsewhere breaks leases only.
CACHING_OPLOCK = 0x100

_DATA_ACCESS = FILE_READ_DATA | FILE_WRITE_DATA | FILE_APPEND_DATA | FILE_EXECUTE | DELETE
_OPLOCK_STAT_BITS = SYNCHRONIZE | FILE_READ_ATTRIBUTES | FILE_WRITE_ATTRIBUTES
_LEASE_STAT_BITS = _OPLOCK_STAT_BITS | READ_CONTROL

_OPLOCK_AS_LEASE = {OPLOCK_NONE: LEASE_NONE, OPLOCK_II: LEASE_READ,
                    OPLOCK_EXCLUSIVE: LEASE_READ | LEASE_WRITE,
                    OPLOCK_BATCH: LEASE_READ | LEASE_WRITE | LEASE_HANDLE}


def oplock_as_lease(level: int) -> int:
    """The lease-state bits (R, H, W) an oplock level amounts to."""
    return _OPLOCK_AS_LEASE.get(level, LEASE_NONE)


def _lease_as_oplock(state: int) -> int:
    if state == LEASE_READ | LEASE_WRITE | LEASE_HANDLE:
        return OPLOCK_BATCH
    if state == LEASE_READ | LEASE_WRITE:
        return OPLOCK_EXCLUSIVE
    if state & LEASE_READ:
        return OPLOCK_II
    return OPLOCK_NONE


def data_access(mask: int) -> int:
    """The data-access bits a mask amounts to once generic rights are mapped."""
    if mask & (GENERIC_ALL | MAXIMUM_ALLOWED):
        mask |= _DATA_ACCESS
    if mask & GENERIC_READ:
        mask |= FILE_READ_DATA
    if mask & GENERIC_WRITE:
        mask |= FILE_WRITE_DATA | FILE_APPEND_DATA
    if mask & GENERIC_EXECUTE:
        mask |= FILE_EXECUTE
    return mask & _DATA_ACCESS


def _is_stat_open(mask: int, stat_bits: int) -> bool:
    return bool(mask & stat_bits) and not mask & ~stat_bits


def _breaks_nothing(req: "OpenRequest", holder_is_lease: bool) -> bool:
    """Stat opens leave caches alone: oplocks unless READ_CONTROL is asked, leases always."""
    bits = _LEASE_STAT_BITS if holder_is_lease else _OPLOCK_STAT_BITS
    return _is_stat_open(req.access, bits)


def breaks_no_caching(access: int) -> bool:
    """Whether an open with this access leaves every oplock and lease alone (a stat
    open), whatever the holders are: another worker's open need not wait for them."""
    return _is_stat_open(access, _OPLOCK_STAT_BITS)


def share_conflict(access_a: int, share_a: int, access_b: int, share_b: int) -> bool:
    """Whether two opens of one file exclude each other by their share modes (MS-FSA 2.1.5.1.2)."""
    a, b = data_access(access_a), data_access(access_b)
    if not a or not b:
        return False

    def denies(access: int, share: int) -> bool:
        return bool((access & (FILE_WRITE_DATA | FILE_APPEND_DATA) and not share & SHARE_WRITE)
                    or (access & (FILE_READ_DATA | FILE_EXECUTE) and not share & SHARE_READ)
                    or (access & DELETE and not share & SHARE_DELETE))
    return denies(a, share_b) or denies(b, share_a)


# -- inputs --------------------------------------------------------------------

OpenId = Hashable


@dataclass(frozen=True)
class Lease:
    """A lease as a client asks for it, or as a durable record says it is held."""

    key: bytes
    state: int
    epoch: int = 0
    version: int = 2
    parent_key: bytes | None = None

    @classmethod
    def from_context(cls, ctx: LeaseContext) -> "Lease":
        return cls(ctx.key, ctx.state, ctx.epoch, ctx.version,
                   ctx.parent_key if ctx.has_parent else None)


@dataclass(frozen=True)
class OpenRequest:
    open_id: OpenId
    client_guid: bytes
    desired_access: int
    share_access: int
    disposition: int = 1  # FILE_OPEN
    oplock_level: int = OPLOCK_NONE
    lease: Lease | None = None
    # An SMB 3.x open: a disconnected persistent open of the file refuses it
    # whatever the share modes (MS-SMB2 3.3.5.9), where older dialects meet
    # only its share mode.
    smb3: bool = False

    @property
    def access(self) -> int:
        """The access the open exercises as far as caching goes: truncating the
        file writes it (so it is never a stat open).  Share modes weigh the
        access asked for, as MS-FSA's GrantedAccess and smbd do: a reader
        that overwrites does not deny other writers."""
        if self.disposition in _OVERWRITING:
            return self.desired_access | FILE_WRITE_DATA
        return self.desired_access


# -- outputs -------------------------------------------------------------------

@dataclass(frozen=True)
class OplockBreak:
    """Send OPLOCK_BREAK (2.2.23.1) to this open's connection."""

    open_id: OpenId
    new_level: int
    ack_required: bool
    token: int


@dataclass(frozen=True)
class LeaseBreak:
    """Send LEASE_BREAK (2.2.23.2) for this lease to a connection of its client."""

    client_guid: bytes
    key: bytes
    current_state: int
    new_state: int
    new_epoch: int
    version: int
    ack_required: bool
    token: int
    open_ids: tuple[OpenId, ...]

    @property
    def flags(self) -> int:
        return LEASE_BREAK_ACK_REQUIRED if self.ack_required else 0


Break = OplockBreak | LeaseBreak


@dataclass(frozen=True)
class LeaseGrant:
    key: bytes
    state: int
    epoch: int
    version: int
    parent_key: bytes | None
    flags: int  # LEASE_FLAG_BREAK_IN_PROGRESS while the lease is being broken

    def response_context(self) -> CreateContext:
        """The RqLs of the CREATE response, in the version the client asked in."""
        flags = self.flags | (LEASE_FLAG_PARENT_LEASE_KEY_SET if self.parent_key else 0)
        return LeaseContext(self.key, self.state, flags, self.version,
                            self.parent_key or bytes(16), self.epoch).context()


class Outcome(Enum):
    GRANT = "grant"     # open proceeds with oplock_level / lease
    WAIT = "wait"       # send the breaks, answer STATUS_PENDING, retry when something changes
    REFUSE = "refuse"   # fail the open with status


@dataclass(frozen=True)
class OpenDecision:
    outcome: Outcome
    status: Status = Status.SUCCESS
    oplock_level: int = OPLOCK_NONE
    lease: LeaseGrant | None = None
    breaks: tuple[Break, ...] = ()
    # Disconnected durable opens that stood in the way and are now closed
    # (their durable records must be deleted).
    purged: tuple[OpenId, ...] = ()
    # REFUSE because of this disconnected open that keeps its file (persistent,
    # resilient): its driver makes sure it is still disconnected here.
    refused_by: OpenId | None = None


@dataclass(frozen=True)
class AckResult:
    status: Status
    level: int = 0                  # oplock level, or lease state, now held
    breaks: tuple[Break, ...] = ()  # a lease acked above what is now required breaks again


# -- state ---------------------------------------------------------------------

@dataclass
class _Lease:
    client_guid: bytes
    key: bytes
    state: int
    epoch: int
    version: int
    parent_key: bytes | None
    breaking: bool = False
    breaking_to: int = 0           # what the break notification asked for
    breaking_to_required: int = 0  # what later conflicts need (may be lower)
    token: int = 0


@dataclass
class _Open:
    client_guid: bytes
    access: int
    share: int
    oplock: int  # OPLOCK_* ; OPLOCK_LEASE for lease opens
    lease_id: tuple[bytes, bytes] | None
    breaking_to: int | None = None
    token: int = 0
    disconnected: bool = False
    # While disconnected, a conflicting open is refused with this status
    # instead of purging it (a persistent or resilient open keeps its file).
    refuse: int | None = None


@dataclass
class _Holder:
    """One cache holder of a file: a lease (with its opens) or an oplock open."""

    cached: int
    lease: _Lease | None
    open_ids: tuple[OpenId, ...]


@dataclass
class _File:
    opens: dict[OpenId, _Open] = field(default_factory=dict)
    leases: dict[tuple[bytes, bytes], _Lease] = field(default_factory=dict)


class NodeOplocks:
    """The oplock and lease state of every open file of one node.

    Files are named by any hashable the caller chooses (e.g. (device, inode));
    opens by their OpenId.  Lease keys are per client GUID and tied to one
    file, as 3.3.5.9.8 requires.
    """

    def __init__(self) -> None:
        self._files: dict[Hashable, _File] = {}
        self._open_file: dict[OpenId, Hashable] = {}
        self._lease_file: dict[tuple[bytes, bytes], Hashable] = {}
        self._tokens: Iterator[int] = itertools.count(1)

    # -- queries -------------------------------------------------------------

    def oplock_level(self, open_id: OpenId) -> int:
        f = self._files[self._open_file[open_id]]
        return f.opens[open_id].oplock

    def client_of(self, open_id: OpenId) -> bytes | None:
        file = self._open_file.get(open_id)
        return None if file is None else self._files[file].opens[open_id].client_guid

    def caching_of(self, open_id: OpenId) -> tuple[int, Lease | None]:
        """The open's oplock level and its lease as held now (OPLOCK_NONE and None
        for an open this table does not know): what its durable record keeps."""
        file = self._open_file.get(open_id)
        if file is None:
            return OPLOCK_NONE, None
        f = self._files[file]
        o = f.opens[open_id]
        if o.lease_id is None:
            return o.oplock, None
        lease = f.leases[o.lease_id]
        return o.oplock, Lease(lease.key, lease.state, lease.epoch, lease.version,
                               lease.parent_key)

    def lease_state(self, client_guid: bytes, key: bytes) -> tuple[int, int, bool] | None:
        """(state, epoch, breaking) of a lease, or None."""
        file = self._lease_file.get((client_guid, key))
        if file is None:
            return None
        lease = self._files[file].leases[(client_guid, key)]
        return lease.state, lease.epoch, lease.breaking

    # -- a new open ----------------------------------------------------------

    def has_opens(self, file: Hashable) -> bool:
        """Whether any open of ``file`` (connected or not) is known here."""
        f = self._files.get(file)
        return f is not None and bool(f.opens)

    def open(self, file: Hashable, req: OpenRequest, *, first_attempt: bool = True,
             has_byte_range_locks: bool = False) -> OpenDecision:
        """Decide a new open of ``file``; on GRANT the open is registered.

        first_attempt is False when the driver retries an open that had to
        WAIT: a lease still breaking then keeps it waiting.
        """
        lease_id = (req.client_guid, req.lease.key) if req.lease else None
        if lease_id is not None and self._lease_file.get(lease_id, file) != file:
            return OpenDecision(Outcome.REFUSE, Status.INVALID_PARAMETER)
        f = self._files.setdefault(file, _File())
        refusal = self._settle_kept(f, req, lease_id)
        if refusal is not None:
            return OpenDecision(Outcome.REFUSE, refusal[1], refused_by=refusal[0])
        purged = self._purge_disconnected(f, req, lease_id)
        self._files[file] = f  # purging the last open may have dropped it
        sharing_violation = any(
            share_conflict(o.access, o.share, req.desired_access, req.share_access)
            for o in f.opens.values())

        breaks: list[Break] = []
        delay = False
        got_handle = got_oplock = other_lease = False
        for target in self._holders(f, lease_id):
            cached, is_lease, lease = target.cached, target.lease is not None, target.lease
            # Even a stat open that breaks nothing must not get caching others exclude.
            got_handle |= bool(cached & LEASE_HANDLE)
            got_oplock |= not is_lease
            other_lease = True
            if _breaks_nothing(req, is_lease):
                continue
            wanted = self._break_to(cached, req, sharing_violation, is_lease)
            if wanted is None:
                if lease is not None and lease.breaking:
                    delay = True
                continue
            breaks.extend(self._start_break(f, target, wanted))
            delay_mask = LEASE_HANDLE if sharing_violation else LEASE_WRITE
            if cached & delay_mask or (lease is not None and lease.breaking
                                       and not first_attempt):
                delay = True
        if delay or sharing_violation:
            if not f.opens:
                del self._files[file]
            if delay:
                return OpenDecision(Outcome.WAIT, Status.PENDING, breaks=tuple(breaks),
                                    purged=purged)
            return OpenDecision(Outcome.REFUSE, Status.SHARING_VIOLATION,
                                breaks=tuple(breaks), purged=purged)
        return self._grant(file, f, req, lease_id, breaks, purged, has_byte_range_locks,
                           got_handle=got_handle, got_oplock=got_oplock,
                           other_lease=other_lease)

    def _holders(self, f: _File, own_lease: tuple[bytes, bytes] | None) -> list[_Holder]:
        holders: list[_Holder] = []
        for lid, lease in f.leases.items():
            if lid == own_lease:
                continue
            ids = tuple(i for i, o in f.opens.items() if o.lease_id == lid)
            holders.append(_Holder(lease.state, lease, ids))
        for oid, o in f.opens.items():
            if o.lease_id is None and (o.oplock != OPLOCK_NONE
                                       or not _is_stat_open(o.access, _LEASE_STAT_BITS)):
                holders.append(_Holder(_OPLOCK_AS_LEASE[o.oplock], None, (oid,)))
        return holders

    @staticmethod
    def _break_to(cached: int, req: OpenRequest, sharing_violation: bool,
                  is_lease: bool) -> int | None:
        """The state a holder must be broken to for this open; None if nothing to break."""
        overwrite = req.disposition in _OVERWRITING
        keep = cached & ~(LEASE_HANDLE if sharing_violation else LEASE_WRITE)
        if overwrite:
            keep = LEASE_NONE
        if not cached & ~keep:
            return None
        if not is_lease:
            keep &= LEASE_READ  # oplocks break to level II or none only
        return keep

    def _in_way(self, f: _File, req: OpenRequest, lease_id: tuple[bytes, bytes] | None
                ) -> list[tuple[OpenId, _Open, bool, int | None]]:
        """The disconnected opens this open conflicts with, each with whether
        their share modes conflict and what its caching would have to be broken
        to (None: nothing); a break nobody can acknowledge."""
        found = []
        for oid, o in f.opens.items():
            if not o.disconnected or (lease_id is not None and o.lease_id == lease_id):
                continue
            cached = (f.leases[o.lease_id].state if o.lease_id else _OPLOCK_AS_LEASE[o.oplock])
            conflict = share_conflict(o.access, o.share, req.desired_access, req.share_access)
            is_lease = o.lease_id is not None
            to = None if _breaks_nothing(req, is_lease) else \
                self._break_to(cached, req, conflict, is_lease)
            if conflict or to is not None:
                found.append((oid, o, conflict, to))
        return found

    def _settle_kept(self, f: _File, req: OpenRequest,
                     lease_id: tuple[bytes, bytes] | None) -> tuple[OpenId, int] | None:
        """Disconnected opens that keep their file (persistent, resilient) never
        lose it to this open: one whose share mode it conflicts with refuses it
        (returned: that open and its status); one whose caching it only needs
        broken is broken at once to what it needs, without a notification
        nobody could receive or acknowledge (its client learns its state on
        reclaim), so no open waits out a break timeout on it.  A 3.x open is
        refused by any disconnected persistent open of the file, in its way or
        not."""
        if req.smb3:
            for oid, o in f.opens.items():
                if o.disconnected and o.refuse == Status.FILE_NOT_AVAILABLE:
                    return oid, o.refuse
        for oid, o, conflict, to in self._in_way(f, req, lease_id):
            if o.refuse is None:
                continue
            if conflict:
                return oid, o.refuse
            assert to is not None
            if o.lease_id is not None:
                lease = f.leases[o.lease_id]
                lease.state, lease.breaking = to, False
            else:
                o.oplock = _lease_as_oplock(to)
        return None

    def _purge_disconnected(self, f: _File, req: OpenRequest,
                            lease_id: tuple[bytes, bytes] | None) -> tuple[OpenId, ...]:
        """Close disconnected durable opens that stand in this open's way.

        Their breaks could not be delivered and a share conflict with them
        cannot be waited out, so (as Windows does) they lose the file.
        """
        purged = []
        for oid, o, _, _ in self._in_way(f, req, lease_id):
            if o.refuse is None:
                self._remove_open(f, oid)
                purged.append(oid)
        return tuple(purged)

    def _start_break(self, f: _File, h: _Holder, to: int) -> list[Break]:
        token = next(self._tokens)
        if h.lease is None:
            o = f.opens[h.open_ids[0]]
            new_level = _lease_as_oplock(to)
            if o.breaking_to is not None:
                o.breaking_to = min(o.breaking_to, new_level)
                return []
            if o.oplock == OPLOCK_II:  # level II breaks to none at once, unacknowledged
                o.oplock = OPLOCK_NONE
                return [OplockBreak(h.open_ids[0], OPLOCK_NONE, False, token)]
            o.breaking_to, o.token = new_level, token
            return [OplockBreak(h.open_ids[0], new_level, True, token)]
        lease = h.lease
        if lease.breaking:
            lease.breaking_to_required &= to
            return []
        return [self._lease_break(lease, to, token, h.open_ids)]

    @staticmethod
    def _lease_break(lease: _Lease, to: int, token: int, open_ids: tuple[OpenId, ...], *,
                     required: int | None = None) -> LeaseBreak:
        """Start breaking a lease to ``to`` (``required`` may be lower: see _settle_lease).

        A v2 lease's epoch counts up once per break episode, not for the
        follow-up breaks of one episode (smb2.lease.v2_breaking3).  Breaking
        a lease that caches neither writes nor handles needs no ack.
        """
        current = lease.state
        if lease.version == 2 and not lease.breaking:
            lease.epoch += 1
        ack = bool(current & (LEASE_WRITE | LEASE_HANDLE))
        if ack:
            lease.breaking, lease.breaking_to = True, to
            lease.breaking_to_required = to if required is None else required
            lease.token = token
        else:
            lease.state, lease.breaking = to, False
            lease.breaking_to = lease.breaking_to_required = 0
        return LeaseBreak(lease.client_guid, lease.key, current, to,
                          lease.epoch if lease.version == 2 else 0,
                          lease.version, ack, token, open_ids)

    def _grant(self, file: Hashable, f: _File, req: OpenRequest,
               lease_id: tuple[bytes, bytes] | None, breaks: list[Break],
               purged: tuple[OpenId, ...], has_byte_range_locks: bool, *,
               got_handle: bool, got_oplock: bool, other_lease: bool) -> OpenDecision:
        if req.oplock_level == OPLOCK_LEASE and req.lease is not None:
            granted = req.lease.state
            if not granted & (LEASE_READ | LEASE_WRITE) or granted in (
                    LEASE_WRITE, LEASE_WRITE | LEASE_HANDLE):
                granted = LEASE_NONE
        else:
            granted = _OPLOCK_AS_LEASE.get(req.oplock_level, LEASE_NONE)
        if has_byte_range_locks:
            granted &= ~LEASE_READ
        if other_lease:
            granted &= ~LEASE_WRITE

        if req.oplock_level == OPLOCK_LEASE and req.lease is not None and lease_id:
            if got_oplock:
                granted &= ~LEASE_HANDLE
            lease = self._grant_lease(f, lease_id, req.lease, granted)
            self._lease_file[lease_id] = file
            f.opens[req.open_id] = _Open(req.client_guid, req.desired_access,
                                         req.share_access, OPLOCK_LEASE, lease_id)
            self._open_file[req.open_id] = file
            grant = LeaseGrant(lease.key, lease.state, lease.epoch, lease.version,
                               lease.parent_key,
                               LEASE_FLAG_BREAK_IN_PROGRESS if lease.breaking else 0)
            return OpenDecision(Outcome.GRANT, oplock_level=OPLOCK_LEASE, lease=grant,
                                breaks=tuple(breaks), purged=purged)
        if got_handle or (other_lease and _is_stat_open(req.access, _LEASE_STAT_BITS)):
            granted = LEASE_NONE  # a stat open caches only what nobody else holds
        level = _lease_as_oplock(granted)
        f.opens[req.open_id] = _Open(req.client_guid, req.desired_access, req.share_access,
                                     level, None)
        self._open_file[req.open_id] = file
        return OpenDecision(Outcome.GRANT, oplock_level=level, breaks=tuple(breaks),
                            purged=purged)

    @staticmethod
    def _grant_lease(f: _File, lease_id: tuple[bytes, bytes], req: Lease,
                     granted: int) -> _Lease:
        """A new lease, or the client's existing one, upgraded only to a strict superset."""
        lease = f.leases.get(lease_id)
        if lease is None:
            lease = _Lease(lease_id[0], lease_id[1], granted, req.epoch + 1, req.version,
                           req.parent_key)
            f.leases[lease_id] = lease
            return lease
        existing = lease.state
        if (existing & req.state == existing and granted != existing
                and granted == req.state and not lease.breaking):
            lease.state = granted
            lease.epoch += 1
        return lease

    # -- writes --------------------------------------------------------------

    def contend_write(self, open_id: OpenId) -> tuple[Break, ...]:
        """Breaks a WRITE (or a byte-range lock, or a size change) through open_id causes.

        Read caches turn stale: every level II oplock, the writer's own
        included (smb2.oplock.batch1 and batch6 expect that self break), and
        every other lease caching reads is broken to none.  The write never
        waits for that.  A writer holding write caching is alone: nothing to do.
        """
        file = self._open_file.get(open_id)
        if file is None:
            return ()
        f = self._files[file]
        me = f.opens[open_id]
        own = f.leases.get(me.lease_id) if me.lease_id else None
        mine = own.state if own is not None else _OPLOCK_AS_LEASE[me.oplock]
        if mine & LEASE_WRITE:
            return ()
        return self._break_readers(f, me.lease_id)

    def contend_remote_write(self, file: Hashable) -> tuple[Break, ...]:
        """Breaks a write through an open this table does not know (another worker's) causes.

        That writer holds no caching here, so every read cache of the file goes.
        """
        f = self._files.get(file)
        return () if f is None else self._break_readers(f, None)

    def _break_readers(self, f: _File, own_lease: tuple[bytes, bytes] | None
                       ) -> tuple[Break, ...]:
        breaks: list[Break] = []
        for h in self._holders(f, own_lease):
            if h.cached & LEASE_READ:
                breaks.extend(self._start_break(f, h, LEASE_NONE))
        return tuple(breaks)

    # -- renames -----------------------------------------------------------------

    def rename_breaks(self, open_id: OpenId) -> tuple[tuple[Break, ...], bool]:
        """(breaks, must wait) before a rename through ``open_id``.

        Other leases may cache handles only as long as the name stays: they
        are broken to drop H, and the rename waits for their acknowledgements
        (smb2.lease.v2_rename, rename_wait).  The renamer's own lease keeps
        its caching; oplock holders are left alone (the smb2.oplock suite
        expects no break on rename).
        """
        file = self._open_file.get(open_id)
        if file is None:
            return (), False
        f = self._files[file]
        return self._handle_breaks(f, f.opens[open_id].lease_id)

    def contend_remote_rename(self, file: Hashable) -> tuple[Break, ...]:
        """Breaks a rename through an open this table does not know (another
        worker's) causes; that worker waits on the mirrored caching."""
        f = self._files.get(file)
        return () if f is None else self._handle_breaks(f, None)[0]

    def _handle_breaks(self, f: _File, own_lease: tuple[bytes, bytes] | None
                       ) -> tuple[tuple[Break, ...], bool]:
        breaks: list[Break] = []
        wait = False
        for h in self._holders(f, own_lease):
            if h.lease is None:
                continue
            if h.cached & LEASE_HANDLE:
                breaks.extend(self._start_break(f, h, h.cached & ~LEASE_HANDLE))
            wait = wait or (h.lease.breaking and bool(h.lease.state & LEASE_HANDLE))
        return tuple(breaks), wait

    def move(self, old: Hashable, new: Hashable) -> None:
        """The file known as ``old`` is now called ``new`` (it was renamed)."""
        f = self._files.pop(old, None)
        if f is None or old == new:
            if f is not None:
                self._files[old] = f
            return
        into = self._files.setdefault(new, _File())
        into.opens.update(f.opens)
        into.leases.update(f.leases)
        for oid in f.opens:
            self._open_file[oid] = new
        for lid in f.leases:
            self._lease_file[lid] = new

    # -- durable opens taken over -----------------------------------------------

    def restore(self, file: Hashable, open_id: OpenId, client_guid: bytes, access: int,
                share: int, oplock_level: int, lease: Lease | None, *,
                disconnected: bool = True, refuse: int | None = None) -> None:
        """Register a durable open this node learns from its etcd record.

        A node taking over loads every durable record this way (disconnected)
        before it serves, so that a conflicting open purges or breaks it as
        it would have on the old node; the reconnect then just attaches it
        (set_disconnected).  The recorded caching is taken as is: lease.state
        and lease.epoch are what the record says the client holds.  A lease
        the node already knows (another open of it) keeps its current state.
        """
        lease_id = (client_guid, lease.key) if lease is not None else None
        f = self._files.setdefault(file, _File())
        if lease is not None and lease_id not in f.leases:
            f.leases[lease_id] = _Lease(client_guid, lease.key, lease.state, lease.epoch,
                                        lease.version, lease.parent_key)
            self._lease_file[lease_id] = file
        level = OPLOCK_LEASE if lease is not None else oplock_level
        f.opens[open_id] = _Open(client_guid, access, share, level, lease_id,
                                 disconnected=disconnected, refuse=refuse)
        self._open_file[open_id] = file

    # -- closes and durable disconnects ----------------------------------------

    def close(self, open_id: OpenId) -> None:
        """Forget an open; a lease without opens goes with it."""
        file = self._open_file.get(open_id)
        if file is not None:
            self._remove_open(self._files[file], open_id)

    def _remove_open(self, f: _File, open_id: OpenId) -> None:
        o = f.opens.pop(open_id)
        file = self._open_file.pop(open_id)
        if o.lease_id is not None and not any(x.lease_id == o.lease_id for x in f.opens.values()):
            del f.leases[o.lease_id]
            del self._lease_file[o.lease_id]
        if not f.opens:
            del self._files[file]

    def set_disconnected(self, open_id: OpenId, disconnected: bool,
                         refuse: int | None = None) -> None:
        """A durable open lost (or regained) its connection; it keeps its caching.
        ``refuse``: while disconnected, conflicting opens get this status rather
        than purge it (smb.durable.refusal_while_disconnected)."""
        f = self._files[self._open_file[open_id]]
        o = f.opens[open_id]
        o.disconnected = disconnected
        o.refuse = refuse if disconnected else None

    # -- acknowledgements and timeouts -------------------------------------------

    def ack_oplock(self, open_id: OpenId, level: int) -> AckResult:
        """An OPLOCK_BREAK acknowledgement (3.3.5.22.1)."""
        file = self._open_file.get(open_id)
        if file is None:
            return AckResult(Status.FILE_CLOSED)
        o = self._files[file].opens[open_id]
        if o.oplock == OPLOCK_LEASE:
            return AckResult(Status.INVALID_PARAMETER)
        if o.breaking_to is None or level not in (OPLOCK_NONE, OPLOCK_II):
            return AckResult(Status.INVALID_OPLOCK_PROTOCOL, o.oplock)
        if level > o.breaking_to:
            o.oplock, o.breaking_to = OPLOCK_NONE, None
            return AckResult(Status.INVALID_OPLOCK_PROTOCOL, OPLOCK_NONE)
        o.oplock, o.breaking_to = level, None
        return AckResult(Status.SUCCESS, level)

    def ack_lease(self, client_guid: bytes, key: bytes, state: int) -> AckResult:
        """A LEASE_BREAK acknowledgement (3.3.5.22.2).

        The acked state must lie within what the break asked for.  If further
        opens needed less in the meantime, the lease is broken again at once.
        """
        file = self._lease_file.get((client_guid, key))
        if file is None:
            return AckResult(Status.OBJECT_NAME_NOT_FOUND)
        f = self._files[file]
        lease = f.leases[(client_guid, key)]
        if not lease.breaking:
            return AckResult(Status.UNSUCCESSFUL, lease.state)
        if state & ~lease.breaking_to:
            return AckResult(Status.REQUEST_NOT_ACCEPTED, lease.state)
        return AckResult(Status.SUCCESS, state, self._settle_lease(f, lease, state))

    def _settle_lease(self, f: _File, lease: _Lease, state: int) -> tuple[Break, ...]:
        """Apply an acknowledged (or timed out) lease state; break on if opens need less.

        Windows steps down: a lease still caching handles or writes is first
        broken to keep only read caching, and only then to what is required
        (smb2.lease.breaking3 expects RH -> R -> none, one ack at a time).
        """
        required = lease.breaking_to_required
        lease.state = state
        if not state & ~required:
            lease.breaking = False
            lease.breaking_to = lease.breaking_to_required = 0
            return ()
        step = required | (state & LEASE_READ if state & (LEASE_WRITE | LEASE_HANDLE) else 0)
        ids = tuple(i for i, o in f.opens.items() if o.lease_id == (lease.client_guid, lease.key))
        return (self._lease_break(lease, step, next(self._tokens), ids, required=required),)

    def break_timed_out(self, brk: Break) -> tuple[Break, ...]:
        """The 35 s acknowledgement timer of ``brk`` fired.

        Stale timers (the break was acknowledged, or superseded) change
        nothing.  An oplock, and a lease, falls to none: the client that
        did not answer is no longer trusted with any caching, so a later
        write need not break it again (smb2.lease.timeout).
        """
        if isinstance(brk, OplockBreak):
            file = self._open_file.get(brk.open_id)
            if file is None:
                return ()
            o = self._files[file].opens[brk.open_id]
            if o.breaking_to is not None and o.token == brk.token:
                o.oplock, o.breaking_to = OPLOCK_NONE, None
            return ()
        file = self._lease_file.get((brk.client_guid, brk.key))
        if file is None:
            return ()
        f = self._files[file]
        lease = f.leases[(brk.client_guid, brk.key)]
        if not lease.breaking or lease.token != brk.token:
            return ()
        return self._settle_lease(f, lease, LEASE_NONE)
