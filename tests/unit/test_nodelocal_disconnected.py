"""Disconnected durable opens in the node-local table, between real processes:
another worker's disconnected open stands in the way of a conflicting open,
draws its purge request, and is ended by exactly one of its worker (claim)
or a reconnect (take-over); a rename sees other workers' leases apart from
their oplocks."""

from __future__ import annotations

import sqlite3

from smb import nowait
from smb.oplocks import CACHING_OPLOCK, LEASE_HANDLE, LEASE_READ, LEASE_WRITE
from smb.server.nodelocal import FILE_READ_DATA, FILE_SHARE_READ, FILE_WRITE_DATA, Range
from smb.wire.header import Status
from test_nodelocal import DEV, INO, holder, table  # noqa: F401 (fixtures)

PID = (1 << 64) - 5  # persistent ids use all 64 bits


def test_another_workers_disconnected_open_stands_in_the_way(holder, table):
    holder(f"""
        t.open_file('gone', {DEV}, {INO}, 0x3, {FILE_SHARE_READ})
        t.lock('gone', {DEV}, {INO}, [Range(0, 10, True)])
        t.set_caching([('gone', {DEV}, {INO}, 7)])
        t.keep_disconnected('gone', {DEV}, {INO}, {PID})
    """)
    assert table.open_file("w", DEV, INO, FILE_WRITE_DATA, 0x7) == Status.SHARING_VIOLATION
    assert table.disconnected_in_way(DEV, INO, FILE_WRITE_DATA, 0x7)
    assert not table.disconnected_in_way(DEV, INO, FILE_READ_DATA, 0x7)  # shares reading
    assert not table.disconnected_in_way(DEV, INO + 1, FILE_WRITE_DATA, 0x7)
    assert table.others_caching(DEV, INO) == 7  # its caching row stays
    assert table.io_allowed("w", DEV, INO, 0, 10, True)  # its locks went (the record has them)
    table.request_purges(DEV, INO, FILE_WRITE_DATA, 0x7, 1)
    assert table.take_break_requests() == []  # for its worker, not for us


def test_a_resilient_disconnected_open_keeps_its_locks_until_taken_over_or_ended(holder, table):
    holder(f"""
        t.open_file('res', {DEV}, {INO}, 0x3, 0x7)
        t.lock('res', {DEV}, {INO}, [Range(0, 10, True)])
        t.keep_disconnected('res', {DEV}, {INO}, {PID}, refuse={int(Status.SHARING_VIOLATION)})
    """)
    assert table.open_file("w", DEV, INO, FILE_WRITE_DATA, 0x7) == Status.SUCCESS
    # Its share mode shares everything: nothing to refuse, nothing to purge.
    assert table.kept_in_way(DEV, INO, FILE_WRITE_DATA, 0x7) is None
    assert not table.disconnected_in_way(DEV, INO, FILE_WRITE_DATA, 0x7)
    assert not table.io_allowed("w", DEV, INO, 0, 10, True)  # still its lock
    assert table.lock("w", DEV, INO, [Range(0, 10, True)]) == Status.LOCK_NOT_GRANTED
    table.take_over_disconnected(PID)  # a reconnect: the reopen takes its locks again
    assert table.io_allowed("w", DEV, INO, 0, 10, True)


def test_a_reconnect_takes_the_open_over_and_its_worker_may_no_longer_end_it(table):
    assert table.open_file("old", DEV, INO, FILE_WRITE_DATA, 0) == Status.SUCCESS
    table.set_caching([("old", DEV, INO, 7)])
    table.keep_disconnected("old", DEV, INO, PID)
    table.take_over_disconnected(PID)
    assert not table.claim_disconnected("old")
    assert table.open_file("new", DEV, INO, FILE_WRITE_DATA, 0) == Status.SUCCESS
    table.take_over_disconnected(PID)  # nothing left to take: no effect on the reopen
    assert table.others_open("x", DEV, INO)


def test_its_worker_ends_it_once_and_a_delete_on_close_is_due(table):
    assert table.open_file("old", DEV, INO, FILE_WRITE_DATA, 0) == Status.SUCCESS
    table.set_delete_on_close("old", True)
    table.keep_disconnected("old", DEV, INO, PID)
    assert table.claim_disconnected("old")
    assert not table.claim_disconnected("old")
    table.take_over_disconnected(PID)  # too late: the claim won
    assert table.close_file("old", DEV, INO) is True


def test_leases_told_apart_from_oplocks(holder, table):
    batch = LEASE_READ | LEASE_WRITE | LEASE_HANDLE | CACHING_OPLOCK
    holder(f"""
        t.open_file('batch', {DEV}, {INO}, 0x3, 0x7)
        t.open_file('rh', {DEV}, {INO + 1}, 0x3, 0x7)
        t.set_caching([('batch', {DEV}, {INO}, {batch}),
                       ('rh', {DEV}, {INO + 1}, {LEASE_READ | LEASE_HANDLE})])
    """)
    assert not table.others_leases_caching(DEV, INO, LEASE_HANDLE, CACHING_OPLOCK)
    assert table.others_leases_caching(DEV, INO + 1, LEASE_HANDLE, CACHING_OPLOCK)
    assert not table.others_leases_caching(DEV, INO + 1, LEASE_WRITE, CACHING_OPLOCK)


def test_caching_and_disconnected_opens_are_read_while_another_process_writes(
        holder, table, tmp_path):
    """Both questions are plain reads: a write transaction another process holds
    (a worker busy in the table) does not make them wait, even where waiting is
    forbidden; a dead owner's rows still count for nothing and are dropped."""
    proc = holder(f"""
        t.open_file('gone', {DEV}, {INO}, 0x3, {FILE_SHARE_READ})
        t.set_caching([('gone', {DEV}, {INO}, 7)])
        t.keep_disconnected('gone', {DEV}, {INO}, {PID})
    """)
    writer = sqlite3.connect(tmp_path / "node.sqlite", isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        assert nowait.attempt(table.others_caching, DEV, INO) == 7
        assert nowait.attempt(table.disconnected_in_way, DEV, INO, FILE_WRITE_DATA, 0x7)
        assert not nowait.attempt(table.disconnected_in_way, DEV, INO, FILE_READ_DATA, 0x7)
        writer.execute("ROLLBACK")
    finally:
        writer.close()
    proc.kill()
    proc.wait()
    assert table.others_caching(DEV, INO) == 0
    assert not table.disconnected_in_way(DEV, INO, FILE_WRITE_DATA, 0x7)
    assert table.open_file("w", DEV, INO, FILE_WRITE_DATA, 0x7) == Status.SUCCESS


def test_a_persistent_disconnected_open_refuses_conflicting_opens_instead_of_being_purged(
        holder, table):
    holder(f"""
        t.open_file('per', {DEV}, {INO}, 0x3, 0x1)
        t.lock('per', {DEV}, {INO}, [Range(0, 10, True)])
        t.keep_disconnected('per', {DEV}, {INO}, {PID}, refuse={int(Status.FILE_NOT_AVAILABLE)})
    """)
    # A writer conflicts with its share mode (read only): refused, never a purge request.
    assert table.kept_in_way(DEV, INO, FILE_WRITE_DATA, 0x7) == Status.FILE_NOT_AVAILABLE
    assert not table.disconnected_in_way(DEV, INO, FILE_WRITE_DATA, 0x7)
    assert table.kept_in_way(DEV, INO, FILE_READ_DATA, 0x7) is None
    # An SMB 3.x reader is refused all the same (MS-SMB2 3.3.5.9).
    assert table.register_open("r3", DEV, INO, FILE_READ_DATA, 0x7,
                               smb3=True).status == Status.FILE_NOT_AVAILABLE
    assert table.open_file("r", DEV, INO, FILE_READ_DATA, 0x7) == Status.SUCCESS
    assert table.lock("r", DEV, INO, [Range(0, 10, True)]) == Status.LOCK_NOT_GRANTED
    table.take_over_disconnected(PID)
    assert table.kept_in_way(DEV, INO, FILE_WRITE_DATA, 0x7) is None
