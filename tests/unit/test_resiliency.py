"""FSCTL_LMR_REQUEST_RESILIENCY (MS-SMB2 2.2.31.3, 3.3.5.15.9): its input, the
timeout a request gets, the record of a resilient open and its reconnect, and
the caching a resilient open's record keeps."""

import struct

import pytest

from smb.durable import (
    MAX_RESILIENCY_TIMEOUT_MS, RESILIENT_DEFAULT_TIMEOUT_MS, DurableRecord, ReconnectRequest,
    check_reconnect, resiliency_timeout, resilient_record,
)
from smb.oplocks import (
    LEASE_READ, OPLOCK_LEASE, OPLOCK_NONE, Lease, NodeOplocks, OpenRequest,
)
from smb.wire import ioctl as wire
from smb.wire.create_contexts import (
    DurableV1Reconnect, DurableV2Reconnect, FileId, LeaseContext,
)
from smb.wire.header import Status

CLIENT = b"\xc1" * 16


def test_ctl_code_is_the_specs():
    # 2.2.31: FSCTL_LMR_REQUEST_RESILIENCY = 0x001401D4
    assert wire.FSCTL_LMR_REQUEST_RESILIENCY == 0x001401D4


@pytest.mark.parametrize("data, timeout", [
    (struct.pack("<II", 30_000, 0), 30_000),
    (struct.pack("<II", 0, 0xFFFFFFFF), 0),            # Reserved is ignored
    (struct.pack("<II", 5, 0) + b"extra", 5),          # a longer buffer is read as far as needed
    (memoryview(struct.pack("<II", 0xFFFFFFFF, 0)), 0xFFFFFFFF),
    (b"", None),
    (struct.pack("<I", 30_000), None),                 # 4 bytes: shorter than the structure
    (b"\x00" * 7, None),
])
def test_parse_resiliency_request(data, timeout):
    assert wire.parse_resiliency_request(data) == timeout


@pytest.mark.parametrize("requested, granted", [
    (None, None),                                      # short input: INVALID_PARAMETER
    (0, RESILIENT_DEFAULT_TIMEOUT_MS),                 # 0: the server's default
    (1, 1),
    (60_000, 60_000),
    (MAX_RESILIENCY_TIMEOUT_MS, MAX_RESILIENCY_TIMEOUT_MS),
    (MAX_RESILIENCY_TIMEOUT_MS + 999, MAX_RESILIENCY_TIMEOUT_MS + 999),  # same second
    (MAX_RESILIENCY_TIMEOUT_MS + 1000, None),          # above the maximum: refused, not capped
    (0xFFFFFFFF, None),
])
def test_resiliency_timeout(requested, granted):
    assert resiliency_timeout(requested) == granted


def test_defaults():
    assert RESILIENT_DEFAULT_TIMEOUT_MS == 120_000
    assert MAX_RESILIENCY_TIMEOUT_MS == 300_000


def _record(**kw):
    base = dict(persistent_id=0x77, version=1, create_guid=bytes(16), client_guid=CLIENT,
                owner="alice", share="test", path="f.txt", desired_access=0x12019F,
                share_access=7, create_options=0x40, oplock_level=OPLOCK_NONE, lease=None,
                timeout_ms=60_000, worker="/w/1", resilient=True)
    base.update(kw)
    return DurableRecord(**base)


def test_record_keeps_resilient_and_old_records_are_not():
    r = _record()
    assert DurableRecord.from_json(r.to_json()) == r
    old = r.to_json()
    del old["resilient"]
    assert DurableRecord.from_json(old).resilient is False


def test_durable_open_made_resilient_takes_the_resiliency_timeout():
    durable = _record(version=2, create_guid=b"\x01" * 16, resilient=False, timeout_ms=300_000)
    r = resilient_record(durable, 90_000)
    assert (r.resilient, r.timeout_ms, r.version, r.create_guid) == (True, 90_000, 2, b"\x01" * 16)


def _req(reconnect, **kw):
    base = dict(reconnect=reconnect, client_guid=CLIENT, user="alice", path="", lease=None)
    base.update(kw)
    return ReconnectRequest(**base)


@pytest.mark.parametrize("reconnect, kw, disconnected, status", [
    # A plain (no oplock) resilient open: DHnC, or DH2C with the zero create GUID it has.
    (DurableV1Reconnect(FileId(0x77, 1)), {}, True, Status.SUCCESS),
    (DurableV2Reconnect(FileId(0x77, 1), bytes(16), 0), {}, True, Status.SUCCESS),
    (DurableV2Reconnect(FileId(0x77, 1), b"\x05" * 16, 0), {}, True,
     Status.OBJECT_NAME_NOT_FOUND),
    (DurableV1Reconnect(FileId(0x77, 1)), {}, False, Status.OBJECT_NAME_NOT_FOUND),
    (DurableV1Reconnect(FileId(0x77, 1)), {"user": "bob"}, True, Status.ACCESS_DENIED),
    # No lease on the open: a reconnect carrying one is not this open.
    (DurableV1Reconnect(FileId(0x77, 1)), {"lease": LeaseContext(b"\x4b" * 16, 1)}, True,
     Status.OBJECT_NAME_NOT_FOUND),
])
def test_reconnect_of_a_plain_resilient_open(reconnect, kw, disconnected, status):
    assert check_reconnect(_record(), _req(reconnect, **kw),
                           disconnected=disconnected) == status


def test_caching_of_reports_what_the_record_keeps():
    table = NodeOplocks()
    table.open("f", OpenRequest(1, CLIENT, 0x12019F, 7, 1, OPLOCK_NONE, None))
    assert table.caching_of(1) == (OPLOCK_NONE, None)
    key = b"\x4b" * 16
    table.open("f", OpenRequest(2, CLIENT, 0x12019F, 7, 1, OPLOCK_LEASE,
                                Lease(key, LEASE_READ)))
    level, lease = table.caching_of(2)
    assert level == OPLOCK_LEASE and lease is not None
    assert (lease.key, lease.state) == (key, LEASE_READ)
    assert table.caching_of(99) == (OPLOCK_NONE, None)
