"""OPLOCK_BREAK codecs: notifications out, acknowledgements in."""

import struct

import pytest

from smb.wire import oplock
from smb.wire.body import MalformedRequest

FID = bytes(range(16))
KEY = b"\xaa" * 16


def test_oplock_break_notification_and_ack_share_one_layout():
    body = oplock.oplock_break(0x01, FID)
    assert len(body) == 24 and body[:3] == b"\x18\x00\x01"
    assert oplock.parse_ack(body) == oplock.OplockAck(0x01, FID)


def test_lease_break_notification_layout():
    body = oplock.lease_break(3, 1, KEY, 7, 3)
    assert len(body) == 44
    size, epoch, flags, key, cur, new = struct.unpack_from("<HHI16sII", body)
    assert (size, epoch, flags, key, cur, new) == (44, 3, 1, KEY, 7, 3)


def test_lease_ack_roundtrip():
    body = oplock.lease_ack_response(KEY, 3)
    assert len(body) == 36
    assert oplock.parse_ack(body) == oplock.LeaseAck(KEY, 3)


@pytest.mark.parametrize("body", [b"", b"\x18\x00", b"\x2c\x00" + bytes(42),
                                  b"\x24\x00" + bytes(10)])
def test_bad_acks_are_malformed(body):
    with pytest.raises(MalformedRequest):
        oplock.parse_ack(body)
