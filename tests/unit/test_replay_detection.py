"""The lock sequence array (MS-SMB2 3.3.5.14) and the channel sequence
check (3.3.5.2.10), as pure state."""

from __future__ import annotations

import pytest

from smb.server.replay import (ChannelSequence, LockSequences, StaleChannel, admit,
                               channel_sequence_of, checks_lock_sequence, lock_bucket,
                               refuses_stale)
from smb.wire.crypto import Dialect
from smb.wire.header import Command, Flags
from smb.wire.negotiate import Capabilities


def test_lock_sequence_splits_into_index_and_number():
    assert lock_bucket(0x11) == (1, 1)
    assert lock_bucket(0x402) == (64, 2)
    assert lock_bucket(0x123ab1) == (0x123ab, 1)


def test_a_repeated_lock_sequence_is_a_replay_only_after_success():
    seq = LockSequences()
    assert not seq.replayed(0x11)
    assert not seq.replayed(0x11)  # the first one never succeeded
    seq.succeeded(0x11)
    assert seq.replayed(0x11)
    assert seq.replayed(0x11)


def test_another_number_invalidates_the_bucket_until_it_succeeds():
    seq = LockSequences()
    seq.succeeded(0x11)
    assert not seq.replayed(0x12)  # e.g. LOCK_NOT_GRANTED: not stored
    assert not seq.replayed(0x11)  # the old number no longer counts either
    seq.succeeded(0x12)
    assert seq.replayed(0x12)


def test_buckets_are_independent():
    seq = LockSequences()
    seq.succeeded(0x11)
    seq.succeeded(0x401)
    assert not seq.replayed(0x21)
    assert seq.replayed(0x11)
    assert seq.replayed(0x401)


@pytest.mark.parametrize("lock_sequence", [0x001, 0x00F, 0x411, 0xFFFFFFF1])
def test_buckets_outside_1_to_64_are_never_checked(lock_sequence):
    seq = LockSequences()
    seq.succeeded(lock_sequence)
    assert not seq.replayed(lock_sequence)
    assert seq.valid == {}


def test_the_array_round_trips_through_a_durable_record():
    seq = LockSequences()
    seq.succeeded(0x401)
    seq.succeeded(0x13)
    pairs = seq.to_pairs()
    assert pairs == ((1, 3), (64, 1))
    again = LockSequences.from_pairs(pairs)
    assert again.replayed(0x13) and again.replayed(0x401)
    assert LockSequences.from_pairs([(0, 1), (65, 1)]).valid == {}


@pytest.mark.parametrize("dialect,durable,caps,checked", [
    (Dialect.SMB_2_0_2, True, 0, False),
    (Dialect.SMB_2_1, True, 0, True),
    (Dialect.SMB_2_1, False, Capabilities.MULTI_CHANNEL, False),
    (Dialect.SMB_3_0, False, 0, False),
    (Dialect.SMB_3_0, True, 0, True),
    (Dialect.SMB_3_1_1, False, Capabilities.MULTI_CHANNEL, True),
])
def test_which_opens_verify_lock_sequences(dialect, durable, caps, checked):
    assert checks_lock_sequence(dialect, durable, caps) is checked


def test_equal_channel_sequence_counts_the_request():
    ch = ChannelSequence()
    assert ch.admit(0, replay=False)
    assert ch.admit(0, replay=False)
    assert (ch.sequence, ch.current, ch.earlier) == (0, 2, 0)
    ch.done(0)
    assert ch.current == 1


def test_a_newer_channel_sequence_moves_the_outstanding_requests_to_earlier():
    ch = ChannelSequence()
    ch.admit(0, replay=False)
    ch.admit(0, replay=False)
    assert ch.admit(1, replay=False)
    assert (ch.sequence, ch.current, ch.earlier) == (1, 1, 2)
    ch.done(0)
    ch.done(1)
    ch.done(0)
    assert (ch.current, ch.earlier) == (0, 0)


def test_an_older_channel_sequence_is_refused():
    ch = ChannelSequence(sequence=5)
    assert not ch.admit(4, replay=False)
    assert not ch.admit(4, replay=True)
    assert (ch.sequence, ch.current, ch.earlier) == (5, 0, 0)


@pytest.mark.parametrize("stored,sent,newer", [
    (0xFFFF, 0x0000, True),     # wraps around to newer
    (0xFFF0, 0x0005, True),
    (0x0000, 0x7FFF, True),     # the largest step forward
    (0x0000, 0x8000, False),    # one more is behind
    (0x0005, 0xFFF0, False),
    (0x8000, 0x0000, False),
])
def test_channel_sequence_compares_modulo_2_to_the_16(stored, sent, newer):
    ch = ChannelSequence(sequence=stored)
    assert ch.admit(sent, replay=False) is newer
    assert ch.sequence == (sent if newer else stored)


def test_a_replay_waits_for_no_request_of_an_older_channel_sequence():
    ch = ChannelSequence()
    ch.admit(0, replay=False)            # the original, still outstanding
    assert ch.admit(1, replay=True)      # the replay on the new channel is newer: fine
    assert not ch.admit(1, replay=True)  # another replay while the original is out
    assert ch.admit(1, replay=False)     # a plain request is not held up
    ch.done(0)
    assert ch.admit(1, replay=True)


def test_channel_sequence_is_the_low_half_of_the_status_field():
    assert channel_sequence_of(0xABCD1234) == 0x1234


@pytest.mark.parametrize("dialect,command,checked", [
    (Dialect.SMB_3_0, Command.WRITE, True),
    (Dialect.SMB_3_1_1, Command.SET_INFO, True),
    (Dialect.SMB_3_0_2, Command.IOCTL, True),
    (Dialect.SMB_3_0, Command.READ, False),
    (Dialect.SMB_2_1, Command.WRITE, False),
])
def test_which_requests_a_stale_channel_sequence_fails(dialect, command, checked):
    assert refuses_stale(dialect, command) is checked


def test_a_durable_record_keeps_the_lock_sequence_array():
    from smb.durable import DurableRecord
    rec = DurableRecord(persistent_id=1, version=1, create_guid=b"\0" * 16,
                        client_guid=b"c" * 16, owner="alice", share="test", path="f",
                        desired_access=0x12019F, share_access=7, create_options=0,
                        oplock_level=9, lease=None, timeout_ms=60_000, worker="w",
                        lock_sequences=((1, 3), (64, 1)))
    assert DurableRecord.from_json(rec.to_json()) == rec
    older = rec.to_json()
    del older["lock_sequences"]  # written before the array was kept
    assert DurableRecord.from_json(older).lock_sequences == ()


def test_admit_counts_a_verified_request_until_it_is_answered():
    ch = ChannelSequence()
    admission = admit(ch, Dialect.SMB_3_1_1, Command.WRITE, 0, 0xBEEF0001)
    assert admission is not None and (ch.sequence, ch.current) == (1, 1)
    admission.done()
    assert ch.current == 0


def test_admit_leaves_2_x_alone():
    ch = ChannelSequence(sequence=5)
    assert admit(ch, Dialect.SMB_2_1, Command.WRITE, 0, 1) is None
    assert (ch.sequence, ch.current, ch.earlier) == (5, 0, 0)


def test_a_read_moves_the_channel_sequence_on_and_a_stale_one_passes_uncounted():
    ch = ChannelSequence(sequence=5)
    assert admit(ch, Dialect.SMB_3_0, Command.READ, 0, 6) is not None
    assert ch.sequence == 6
    assert admit(ch, Dialect.SMB_3_0, Command.READ, 0, 5) is None  # allowed, not counted
    with pytest.raises(StaleChannel):
        admit(ch, Dialect.SMB_3_0, Command.WRITE, 0, 5)
    assert (ch.sequence, ch.current) == (6, 1)


def test_admit_refuses_a_stale_write():
    ch = ChannelSequence(sequence=5)
    with pytest.raises(StaleChannel):
        admit(ch, Dialect.SMB_3_0, Command.SET_INFO, Flags.REPLAY_OPERATION, 4)
