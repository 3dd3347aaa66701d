"""What an open remembers so that a request the client sent again is not done twice.

A client that lost a response (a dropped connection, a failover) cannot tell
whether its request was carried out, so it sends it again.  Two records on
the open let the server tell such a replay from a new request:

- the lock sequence array (MS-SMB2 3.3.5.14): a LOCK names one of 64 buckets
  and a 4-bit number; the same number in the same bucket again means "the
  one you already did", answered with success and not done a second time;
- the channel sequence (3.3.5.2.10): a counter the client raises when it
  moves to another channel; a WRITE, SET_INFO or IOCTL that still carries an
  older value was overtaken and must not land on top of the newer ones.

Both are pure state; the LOCK handler and open_of(), where a request meets
its open, drive them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Awaitable, Callable, Iterable

from smb.wire.crypto import Dialect
from smb.wire.header import Command, Flags
from smb.wire.negotiate import Capabilities

LOCK_BUCKETS = 64
_INDEX_SHIFT = 4
_NUMBER_MASK = 0xF
_UINT16 = 0x10000
_NEWER_LIMIT = 0x7FFF

# The commands 3.3.5.2.10 refuses when their channel sequence is stale.
CHANNEL_CHECKED = frozenset({Command.WRITE, Command.SET_INFO, Command.IOCTL})


def lock_bucket(lock_sequence: int) -> tuple[int, int]:
    """LockSequence (2.2.26) as (LockSequenceIndex, LockSequenceNumber)."""
    return lock_sequence >> _INDEX_SHIFT, lock_sequence & _NUMBER_MASK


@dataclass
class LockSequences:
    """Open.LockSequenceArray: bucket index (1..64) to the number of the last
    LOCK that succeeded through it; a bucket not in ``valid`` is not Valid."""

    valid: dict[int, int] = field(default_factory=dict)

    def replayed(self, lock_sequence: int) -> bool:
        """True when this LOCK repeats the last one that succeeded in its bucket.

        Otherwise the bucket is invalidated until this request succeeds
        (succeeded()), so that a request that fails, or is still waiting, is
        never mistaken for done.  Buckets outside 1..64 are not checked.
        """
        index, number = lock_bucket(lock_sequence)
        if not 1 <= index <= LOCK_BUCKETS:
            return False
        if self.valid.get(index) == number:
            return True
        self.valid.pop(index, None)
        return False

    def succeeded(self, lock_sequence: int) -> None:
        index, number = lock_bucket(lock_sequence)
        if 1 <= index <= LOCK_BUCKETS:
            self.valid[index] = number

    def to_pairs(self) -> tuple[tuple[int, int], ...]:
        """For an open's durable record: the array is part of the open (3.3.1.10)."""
        return tuple(sorted(self.valid.items()))

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[int, int]]) -> "LockSequences":
        return cls({index: number & _NUMBER_MASK for index, number in pairs
                    if 1 <= index <= LOCK_BUCKETS})


def checks_lock_sequence(dialect: int, durable: bool, server_capabilities: int) -> bool:
    """Whether 3.3.5.14 verifies lock sequences on this open: not on 2.0.2;
    on durable (or resilient, persistent) opens; on every open of a 3.x
    connection that offers multi-channel, where a request may come again on
    another channel."""
    if dialect == Dialect.SMB_2_0_2:
        return False
    multi = dialect >= Dialect.SMB_3_0 and bool(server_capabilities & Capabilities.MULTI_CHANNEL)
    return durable or multi


@dataclass
class ChannelSequence:
    """Open.ChannelSequence with Open.OutstandingRequestCount (``current``) and
    Open.OutstandingPreRequestCount (``earlier``): requests admitted under the
    current value and under older ones, not answered yet."""

    sequence: int = 0
    current: int = 0
    earlier: int = 0

    def admit(self, channel_sequence: int, replay: bool) -> bool:
        """3.3.5.2.10 for one request; False means STATUS_FILE_NOT_AVAILABLE.

        A replay with the current value is refused while requests sent under
        an older value are still outstanding: the replayed one might otherwise
        overtake the original it repeats.  Comparison is modulo 2**16, a
        difference up to 0x7FFF counting as newer.
        """
        ahead = (channel_sequence - self.sequence) % _UINT16
        if ahead == 0:
            if replay and self.earlier:
                return False
            self.current += 1
            return True
        if ahead <= _NEWER_LIMIT:
            self.earlier += self.current
            self.current = 1
            self.sequence = channel_sequence
            return True
        return False

    def done(self, channel_sequence: int) -> None:
        """A request admitted with ``channel_sequence`` was answered."""
        if channel_sequence == self.sequence and self.current:
            self.current -= 1
        elif self.earlier:
            self.earlier -= 1


def channel_sequence_of(status_field: int) -> int:
    """In a 3.x request the header's Status field is ChannelSequence (low
    16 bits) and Reserved."""
    return status_field & 0xFFFF


def refuses_stale(dialect: int, command: int) -> bool:
    """Whether a stale ChannelSequence fails this request (it is counted on 3.x
    whatever the command, so that a READ on a new channel moves it on too)."""
    return dialect >= Dialect.SMB_3_0 and command in CHANNEL_CHECKED


def is_replay(flags: int) -> bool:
    return bool(flags & Flags.REPLAY_OPERATION)


@dataclass
class Admission:
    """A request counted in an open's ChannelSequence, to be let go once answered."""

    channel: ChannelSequence
    sequence: int
    # This request raised the open's ChannelSequence: what a persistent open's
    # record carries must follow before the answer (smb.server.durable_life.keep_channel).
    advanced: bool = False
    # What the request's answer waits for then (set by whoever knows the open).
    keep: Callable[[], Awaitable[None]] | None = None

    def done(self) -> None:
        self.channel.done(self.sequence)


def admit(channel: ChannelSequence, dialect: int, command: int, flags: int,
          status_field: int) -> Admission | None:
    """3.3.5.2.10 for a request that met its open: None when it is not counted
    (below 3.0, or stale and not one that must fail); raises StaleChannel for
    a WRITE, SET_INFO or IOCTL that must fail."""
    if dialect < Dialect.SMB_3_0:
        return None
    sequence = channel_sequence_of(status_field)
    before = channel.sequence
    if channel.admit(sequence, is_replay(flags)):
        return Admission(channel, sequence, advanced=channel.sequence != before)
    if refuses_stale(dialect, command):
        raise StaleChannel()
    return None


class StaleChannel(Exception):
    """The request's ChannelSequence is behind the open's: STATUS_FILE_NOT_AVAILABLE."""

