"""CREATE context codecs against bytes laid out by hand from MS-SMB2 2.2.13.2 / 2.2.14.2."""

import struct

import pytest

from smb.wire.create_contexts import (
    ContextError, CreateContext, DurableV1Reconnect, DurableV1Request, DurableV2Reconnect,
    DurableV2Request, FileId, LeaseContext, DurabilityIntent, durability_request,
    durable_v1_response, durable_v2_response, pack_chain, pack_dh2c, pack_dh2q, parse_chain,
    parse_lease,
)
from smb.wire.header import Status

GUID = bytes(range(16))
KEY = bytes(range(0x20, 0x30))
PARENT = bytes(range(0x40, 0x50))


def element(name: bytes, data: bytes, last: bool) -> bytes:
    """One context the way Windows lays it out: name at 16, data at 24 (for 4-byte names)."""
    data_off = 24 if data else 0
    body = name + b"\x00" * (8 - len(name) % 8 if len(name) % 8 else 0) + data
    size = 16 + len(body)
    padded = size if last else (size + 7) // 8 * 8
    head = struct.pack("<IHHHHI", 0 if last else padded, 16, len(name), 0, data_off, len(data))
    return (head + body).ljust(padded, b"\x00")


def ok(result):
    assert not isinstance(result, ContextError), result
    return result


def test_parse_two_element_chain_by_hand():
    dh2q = struct.pack("<II8s16s", 0, 0, b"\x00" * 8, GUID)
    lease = KEY + struct.pack("<IIQ", 7, 0, 0)
    raw = element(b"DH2Q", dh2q, False) + element(b"RqLs", lease, True)
    # First element: 16 header + 4 name + 4 pad + 32 data = 56, already aligned.
    assert struct.unpack_from("<I", raw)[0] == 56
    assert ok(parse_chain(raw)) == [CreateContext(b"DH2Q", dh2q), CreateContext(b"RqLs", lease)]


def test_pack_chain_matches_hand_layout_and_roundtrips():
    ctxs = [CreateContext(b"DHnQ", b"\x00" * 16), CreateContext(b"MxAc", b""),
            CreateContext(b"RqLs", KEY + bytes(16))]
    raw = pack_chain(ctxs)
    assert raw == (element(b"DHnQ", b"\x00" * 16, False) + element(b"MxAc", b"", False)
                   + element(b"RqLs", KEY + bytes(16), True))
    assert ok(parse_chain(raw)) == ctxs


def test_unaligned_data_of_odd_length_is_padded_between_elements():
    raw = pack_chain([CreateContext(b"ExtA", b"abc"), CreateContext(b"QFid", b"")])
    nxt = struct.unpack_from("<I", raw)[0]
    assert nxt == 32 and nxt % 8 == 0  # 16 + 4 + 4 pad + 3 = 27 -> 32
    assert ok(parse_chain(raw))[0].data == b"abc"


@pytest.mark.parametrize("mutate, why", [
    (lambda b: b[:15], "shorter than its header"),
    (lambda b: struct.pack("<I", 12) + b[4:], "Next not a multiple of 8"),
    (lambda b: struct.pack("<I", 8) + b[4:], "Next that does not move past the header"),
    (lambda b: struct.pack("<I", 4096) + b[4:], "Next beyond the buffer"),
    (lambda b: b[:4] + struct.pack("<H", 8) + b[6:], "name inside the header"),
    (lambda b: b[:6] + struct.pack("<H", 0) + b[8:], "empty name"),
    (lambda b: b[:6] + struct.pack("<H", 60000) + b[8:], "name length lies"),
    (lambda b: b[:10] + struct.pack("<H", 20) + b[12:], "data not aligned"),
    (lambda b: b[:10] + struct.pack("<H", 16) + b[12:], "data over the name"),
    (lambda b: b[:12] + struct.pack("<I", 0xFFFFFFF0) + b[16:], "data length lies"),
])
def test_lying_lengths_are_error_values(mutate, why):
    raw = pack_chain([CreateContext(b"DH2Q", bytes(32)), CreateContext(b"RqLs", bytes(32))])
    result = parse_chain(mutate(raw))
    assert isinstance(result, ContextError), why
    assert result.status == Status.INVALID_PARAMETER


def test_data_may_not_reach_into_the_next_element():
    first = bytearray(element(b"DHnQ", bytes(16), False))
    struct.pack_into("<I", first, 12, 24)  # DataLength 24 > the 16 left before Next
    raw = bytes(first) + element(b"RqLs", bytes(32), True)
    assert isinstance(parse_chain(raw), ContextError)


def test_dh2q_and_dh2c_bytes():
    req = DurableV2Request(timeout_ms=0x1234, flags=2, create_guid=GUID)
    assert pack_dh2q(req).data == b"\x34\x12\x00\x00" + b"\x02\x00\x00\x00" + bytes(8) + GUID
    rc = DurableV2Reconnect(FileId(0x1122334455667788, 9), GUID, 0)
    assert pack_dh2c(rc).data == (bytes.fromhex("8877665544332211") + struct.pack("<Q", 9)
                                  + GUID + bytes(4))
    intent = ok(durability_request([pack_dh2c(rc)]))
    assert intent.durable == rc and intent.lease is None


def test_responses_bytes():
    assert durable_v1_response() == CreateContext(b"DHnQ", bytes(8))
    assert durable_v2_response(300000, 0) == CreateContext(
        b"DH2Q", bytes.fromhex("e0930400") + bytes(4))


def test_lease_v1_and_v2_by_size():
    v1 = KEY + struct.pack("<IIQ", 0x7, 0, 0)
    lease = ok(parse_lease(v1))
    assert (lease.version, lease.key, lease.state) == (1, KEY, 7)
    assert lease.pack() == v1 and len(lease.pack()) == 32
    v2 = KEY + struct.pack("<IIQ", 0x3, 4, 0) + PARENT + struct.pack("<HH", 5, 0)
    lease2 = ok(parse_lease(v2))
    assert (lease2.version, lease2.parent_key, lease2.epoch, lease2.has_parent) == (
        2, PARENT, 5, True)
    assert lease2.pack() == v2 and len(v2) == 52
    assert isinstance(parse_lease(v1 + bytes(4)), ContextError)


def test_lease_v2_response_with_break_in_progress():
    resp = LeaseContext(KEY, state=0x7, flags=0x2, version=2, epoch=3)
    state_flags = bytes.fromhex("07000000" "02000000")
    assert resp.context().data == KEY + state_flags + bytes(8) + bytes(16) + b"\x03\x00\x00\x00"


def dh(name, size):
    return CreateContext(name, bytes(size))


@pytest.mark.parametrize("ctxs, status", [
    ([dh(b"DH2C", 35)], Status.INVALID_PARAMETER),
    ([dh(b"DH2C", 37)], Status.INVALID_PARAMETER),
    ([dh(b"DH2Q", 31)], Status.INVALID_PARAMETER),
    ([dh(b"DHnQ", 8)], Status.INVALID_PARAMETER),
    ([dh(b"DHnC", 15)], Status.INVALID_PARAMETER),
    ([dh(b"RqLs", 40)], Status.INVALID_PARAMETER),
    ([dh(b"DH2Q", 32), dh(b"DHnQ", 16)], Status.INVALID_PARAMETER),
    ([dh(b"DHnC", 16), dh(b"DH2Q", 32)], Status.INVALID_PARAMETER),
    ([dh(b"DH2Q", 32), dh(b"DH2C", 36)], Status.INVALID_PARAMETER),
    ([dh(b"DH2C", 36), dh(b"DHnQ", 16)], Status.INVALID_PARAMETER),
    ([dh(b"DH2C", 36), dh(b"MxAc", 0)], Status.OBJECT_NAME_NOT_FOUND),
    ([dh(b"DHnC", 16), dh(b"MxAc", 0)], Status.OBJECT_NAME_NOT_FOUND),
    ([dh(b"DHnC", 16), dh(b"QFid", 0), dh(b"QFid", 0)], Status.OBJECT_NAME_NOT_FOUND),
    ([dh(b"DH2C", 36), dh(b"RqLs", 32), dh(b"RqLs", 32)], Status.OBJECT_NAME_NOT_FOUND),
])
def test_invalid_combinations(ctxs, status):
    result = durability_request(ctxs)
    assert isinstance(result, ContextError) and result.status == status


def test_valid_combinations():
    assert ok(durability_request([dh(b"DHnQ", 16), dh(b"MxAc", 0)])) == \
        DurabilityIntent(DurableV1Request(), None)
    # DHnC with DHnQ: the request is ignored, the reconnect wins (3.3.5.9.7).
    intent = ok(durability_request([dh(b"DHnQ", 16), dh(b"DHnC", 16), dh(b"RqLs", 52)]))
    assert intent.durable == DurableV1Reconnect(FileId(0, 0)) and intent.lease.version == 2
    # The Linux client's reconnect: DHnC, RqLs and QFid (the on-disk id it
    # asks of every open); MS-SMB2 does not make QFid fail a reconnect.
    intent = ok(durability_request([dh(b"DHnC", 16), dh(b"RqLs", 52), dh(b"QFid", 0)]))
    assert intent.durable == DurableV1Reconnect(FileId(0, 0)) and intent.lease.version == 2
    intent = ok(durability_request([dh(b"DH2C", 36), dh(b"QFid", 0)]))
    assert isinstance(intent.durable, DurableV2Reconnect)
    intent = ok(durability_request([dh(b"DH2Q", 32), dh(b"RqLs", 32), dh(b"MxAc", 0)]))
    assert isinstance(intent.durable, DurableV2Request) and intent.lease.version == 1
    assert ok(durability_request([dh(b"MxAc", 0)])) == DurabilityIntent(None, None)


def test_empty_chain_is_no_contexts():
    assert parse_chain(b"") == []


# -- properties ----------------------------------------------------------------

from hypothesis import given, strategies as st  # noqa: E402

names = st.sampled_from([b"DHnQ", b"DHnC", b"DH2Q", b"DH2C", b"RqLs", b"MxAc", b"QFid",
                         bytes(range(16))])
contexts = st.lists(st.builds(CreateContext, names, st.binary(max_size=80)), min_size=1, max_size=6)


@given(contexts)
def test_pack_then_parse_is_identity(ctxs):
    assert parse_chain(pack_chain(ctxs)) == ctxs


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(raw):
    result = parse_chain(raw)
    if not isinstance(result, ContextError):
        assert sum(len(c.name) + len(c.data) for c in result) <= len(raw)
        intent = durability_request(result)
        assert isinstance(intent, (DurabilityIntent, ContextError))


@given(contexts, st.integers(0, 200), st.integers(0, 255))
def test_any_corrupted_byte_yields_a_value_not_an_exception(ctxs, pos, value):
    raw = bytearray(pack_chain(ctxs))
    raw[pos % len(raw)] = value
    assert isinstance(parse_chain(bytes(raw)), (list, ContextError))
