"""The node-local table between real processes: share modes and byte-range
locks seen across workers, and a crashed worker's entries not leaking."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest

from smb import nowait, vfs
from smb.server import nodelocal
from smb.server.nodelocal import (
    DELETE, FILE_READ_DATA, FILE_SHARE_DELETE, FILE_SHARE_READ, FILE_SHARE_WRITE,
    FILE_WRITE_DATA, NodeLocal, Range, share_conflict,
)
from smb.wire.header import Status

DEV, INO = 42, 4242


@pytest.fixture
def holder(tmp_path):
    """Start another process that takes an open and a lock, then waits to be killed."""
    procs = []

    def start(script: str) -> subprocess.Popen:
        code = textwrap.dedent(f"""
            import sys, time
            from smb.server.nodelocal import NodeLocal, Range
            t = NodeLocal({str(tmp_path / 'node.sqlite')!r})
        """) + textwrap.dedent(script) + "\nprint('ready', flush=True)\ntime.sleep(600)\n"
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "ready"
        return proc

    try:
        yield start
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


@pytest.fixture
def table(tmp_path):
    t = NodeLocal(tmp_path / "node.sqlite")
    try:
        yield t
    finally:
        t.close()


def test_share_modes_between_processes(holder, table):
    holder(f"assert t.open_file('other', {DEV}, {INO}, 0x1, 0x1) == 0")
    # The other process reads and shares only reading: writing must wait.
    assert table.open_file("w", DEV, INO, FILE_WRITE_DATA, 0x7) == Status.SHARING_VIOLATION
    assert table.open_file("r", DEV, INO, FILE_READ_DATA, FILE_SHARE_READ) == Status.SUCCESS
    # An open that touches no data (attributes only) never conflicts.
    assert table.open_file("a", DEV, INO, 0x80, 0) == Status.SUCCESS
    # A different file is unaffected.
    assert table.open_file("w2", DEV, INO + 1, FILE_WRITE_DATA, 0) == Status.SUCCESS


def test_locks_between_processes(holder, table):
    holder(f"""
        assert t.open_file('other', {DEV}, {INO}, 0x3, 0x7) == 0
        assert t.lock('other', {DEV}, {INO}, [Range(0, 10, True), Range(100, 10, False)]) == 0
    """)
    assert table.open_file("me", DEV, INO, 0x3, 0x7) == Status.SUCCESS
    assert table.lock("me", DEV, INO, [Range(5, 1, False)]) == Status.LOCK_NOT_GRANTED
    assert table.lock("me", DEV, INO, [Range(10, 90, True)]) == Status.SUCCESS
    # Shared locks coexist; an exclusive one does not.
    assert table.lock("me", DEV, INO, [Range(105, 1, False)]) == Status.SUCCESS
    assert table.lock("me", DEV, INO, [Range(105, 1, True)]) == Status.LOCK_NOT_GRANTED
    # All or nothing: the grantable first range is not kept when the second fails.
    assert table.lock("me", DEV, INO, [Range(200, 1, True), Range(0, 1, True)]) \
        == Status.LOCK_NOT_GRANTED
    assert table.lock("me", DEV, INO, [Range(200, 1, True)]) == Status.SUCCESS
    # I/O against the other process's locks.
    assert not table.io_allowed("me", DEV, INO, 0, 4, write=False)
    assert not table.io_allowed("me", DEV, INO, 100, 1, write=True)
    assert table.io_allowed("me", DEV, INO, 100, 1, write=False)
    assert table.io_allowed("me", DEV, INO, 10, 5, write=True)  # my own exclusive lock


def _opened(table, *keys):
    for key in keys:
        assert table.open_file(key, DEV, INO, 0x3, 0x7) == Status.SUCCESS


def test_unlock_must_match_exactly(table):
    _opened(table, "me", "you")
    assert table.lock("me", DEV, INO, [Range(0, 10, True)]) == Status.SUCCESS
    assert table.unlock("me", DEV, INO, [Range(0, 5)]) == Status.RANGE_NOT_LOCKED
    assert table.unlock("you", DEV, INO, [Range(0, 10)]) == Status.RANGE_NOT_LOCKED
    assert table.unlock("me", DEV, INO, [Range(0, 10)]) == Status.SUCCESS
    assert table.unlock("me", DEV, INO, [Range(0, 10)]) == Status.RANGE_NOT_LOCKED


def test_full_64_bit_lock_offsets(table):
    _opened(table, "me", "you")
    top = (1 << 64) - 1
    assert table.lock("me", DEV, INO, [Range(top, 1, True)]) == Status.SUCCESS
    assert table.lock("you", DEV, INO, [Range(top, 1, False)]) == Status.LOCK_NOT_GRANTED
    assert table.unlock("me", DEV, INO, [Range(top, 1)]) == Status.SUCCESS


def test_crashed_process_entries_are_dropped(holder, table):
    proc = holder(f"""
        assert t.open_file('other', {DEV}, {INO}, 0x3, 0) == 0
        assert t.lock('other', {DEV}, {INO}, [Range(0, 100, True)]) == 0
    """)
    assert table.open_file("me", DEV, INO, FILE_READ_DATA, 0x7) == Status.SHARING_VIOLATION
    assert table.open_file("attr", DEV, INO, 0x80, 0x7) == Status.SUCCESS
    assert table.lock("attr", DEV, INO, [Range(0, 1, True)]) == Status.LOCK_NOT_GRANTED
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert table.open_file("me", DEV, INO, FILE_READ_DATA, 0x7) == Status.SUCCESS
    assert table.lock("me", DEV, INO, [Range(0, 1, True)]) == Status.SUCCESS


def test_lock_for_a_closed_open_is_refused(table):
    """A waiting lock whose handle was closed must not leave a lock behind."""
    _opened(table, "me")
    assert table.close_file("me", DEV, INO) is False
    assert table.lock("me", DEV, INO, [Range(0, 1, True)]) == Status.FILE_CLOSED
    _opened(table, "other")
    assert table.lock("other", DEV, INO, [Range(0, 1, True)]) == Status.SUCCESS


@pytest.mark.parametrize("first, second, granted", [
    (Range(10, 0, True), Range(10, 0, True), True),
    (Range(10, 0, True), Range(9, 1, True), True),
    (Range(10, 0, True), Range(10, 2, True), True),
    (Range(10, 0, True), Range(9, 2, True), False),
    (Range(9, 3, True), Range(10, 0, True), False),
    (Range(100, 10, True), Range(102, 0, True), False),
])
def test_zero_length_locks(table, first, second, granted):
    _opened(table, "a", "b")
    assert table.lock("a", DEV, INO, [first]) == Status.SUCCESS
    want = Status.SUCCESS if granted else Status.LOCK_NOT_GRANTED
    assert table.lock("b", DEV, INO, [second]) == want


def test_unlock_prefers_the_exclusive_lock_and_keeps_earlier_unlocks(table):
    _opened(table, "me", "you")
    assert table.lock("me", DEV, INO, [Range(0, 10, True)]) == Status.SUCCESS
    assert table.lock("me", DEV, INO, [Range(0, 10, False)]) == Status.SUCCESS
    assert table.unlock("me", DEV, INO, [Range(0, 10)]) == Status.SUCCESS
    # What is left is the shared lock: another open may share, not write.
    assert table.lock("you", DEV, INO, [Range(0, 1, False)]) == Status.SUCCESS
    assert not table.io_allowed("you", DEV, INO, 0, 1, write=True)
    assert table.unlock("me", DEV, INO, [Range(0, 10), Range(50, 1)]) == Status.RANGE_NOT_LOCKED
    assert table.unlock("me", DEV, INO, [Range(0, 10)]) == Status.RANGE_NOT_LOCKED


def test_purge_on_start_counts_dead_owners(tmp_path, holder):
    proc = holder(f"assert t.open_file('other', {DEV}, {INO}, 0x3, 0) == 0")
    proc.kill()
    proc.wait()
    t = NodeLocal(tmp_path / "node.sqlite")
    try:
        assert t.purge_dead() == 0  # the constructor already dropped them
        assert t.open_file("me", DEV, INO, 0x3, 0) == Status.SUCCESS
    finally:
        t.close()


def test_delete_on_close_waits_for_the_last_open(holder, table):
    holder(f"assert t.open_file('other', {DEV}, {INO}, 0x1, 0x7) == 0")
    assert table.open_file("me", DEV, INO, DELETE, 0x7) == Status.SUCCESS
    table.set_delete_on_close("me", True)
    assert table.close_file("me", DEV, INO) is False  # the other process still has it
    assert table.delete_pending(DEV, INO)
    assert table.open_file("late", DEV, INO, 0x1, 0x7) == Status.DELETE_PENDING


def test_last_close_of_delete_pending_file_deletes(table):
    assert table.open_file("a", DEV, INO, DELETE, 0x7) == Status.SUCCESS
    assert table.open_file("b", DEV, INO, 0x1, 0x7) == Status.SUCCESS
    table.set_delete_pending(DEV, INO, True)
    assert table.close_file("a", DEV, INO) is False
    assert table.close_file("b", DEV, INO) is True
    assert not table.delete_pending(DEV, INO)


@pytest.mark.parametrize("a, sa, b, sb, conflict", [
    (FILE_READ_DATA, FILE_SHARE_READ, FILE_READ_DATA, FILE_SHARE_READ, False),
    (FILE_READ_DATA, FILE_SHARE_READ, FILE_WRITE_DATA, 0x7, True),
    (FILE_WRITE_DATA, FILE_SHARE_WRITE, FILE_WRITE_DATA, FILE_SHARE_WRITE, False),
    (DELETE, FILE_SHARE_READ, FILE_READ_DATA, FILE_SHARE_READ, True),
    (DELETE, FILE_SHARE_DELETE | FILE_SHARE_READ, FILE_READ_DATA, FILE_SHARE_DELETE, False),
    (0x80, 0, FILE_WRITE_DATA, 0, False),
])
def test_share_conflict_rule(a, sa, b, sb, conflict):
    assert share_conflict(a, sa, b, sb) is conflict
    assert share_conflict(b, sb, a, sa) is conflict


def test_open_paths_guard_directory_renames(holder, table):
    holder(f"assert t.open_file('other', {DEV}, {INO}, 0x1, 0x7, '/srv/share/dir/sub/f') == 0")
    assert table.opens_below("/srv/share/dir")
    assert table.opens_below("/srv/share/dir/sub/")
    assert not table.opens_below("/srv/share/di")  # a prefix of a name is not a parent
    assert not table.opens_below("/srv/share/dir/sub/f")
    assert table.open_file("me", DEV, INO + 1, 0x1, 0x7, "/srv/share/a") == Status.SUCCESS
    table.set_path("me", "/srv/share/dir2/a")
    assert table.opens_below("/srv/share/dir2")


@pytest.mark.parametrize("access, share, blocks", [
    (DELETE, 0x7, True),                              # the parent is held with DELETE
    (FILE_READ_DATA, FILE_SHARE_READ, True),          # ... or without sharing delete
    (FILE_READ_DATA, 0x7, False),
    (0x80, 0, False),                                  # attributes only: no say
])
def test_parent_opens_block_renames_inside(holder, table, access, share, blocks):
    holder(f"assert t.open_file('parent', {DEV}, {INO}, {access}, {share}) == 0")
    assert table.blocks_rename_inside(DEV, INO) is blocks


def test_caching_mirrored_between_processes_and_break_requests(holder, table):
    """Another worker's caching is visible; a break request reaches only that worker."""
    proc = holder(f"""
        t.open_file('held', {DEV}, {INO}, 0x3, 0x7)
        t.set_caching([('held', {DEV}, {INO}, 7)])
    """)
    assert table.others_caching(DEV, INO) == 7
    assert table.others_caching(DEV, INO + 1) == 0
    assert table.open_file("mine", DEV, INO, 0x1, 0x7) == 0
    table.set_caching([("mine", DEV, INO, 1)])
    assert table.others_caching(DEV, INO) == 7  # our own rows do not count
    table.request_breaks(DEV, INO, FILE_WRITE_DATA, 0x7, 1)
    assert table.take_break_requests() == []  # the request is for the holder, not for us
    proc.kill()
    proc.wait()
    assert table.others_caching(DEV, INO) == 0  # a dead worker caches nothing


def test_caching_is_mirrored_only_for_an_open_that_is_there(table):
    """A CLOSE may remove an open just before a late mirror write for it:
    that write must not bring its caching row back."""
    assert table.open_file("open", DEV, INO, 0x1, 0x7) == 0
    table.set_caching([("open", DEV, INO, 1), ("closed", DEV, INO, 7)])
    assert table._read("SELECT open_key, state FROM caching", ()) == [("open", 1)]


def test_locks_of_an_open(table):
    assert table.open_file("k", DEV, INO, FILE_WRITE_DATA, 0x7) == Status.SUCCESS
    ranges = [Range(0, 10, True), Range(1 << 63, 1, False)]
    assert table.lock("k", DEV, INO, ranges) == Status.SUCCESS
    assert table.locks_of("k") == ranges
    assert table.locks_of("other") == []


def _open_after(barrier, path, results) -> None:
    barrier.wait()
    try:
        NodeLocal(path).close()
        results.put("ok")
    except Exception as exc:  # noqa: BLE001 - the test reports what a worker would have hit
        results.put(repr(exc))


def test_workers_opening_a_new_table_at_once_all_succeed(tmp_path):
    """Workers start together; the first open of a fresh database must not fail
    any of them with 'database is locked' (SQLite's WAL switch does not wait)."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    failures = []
    for trial in range(8):
        path = tmp_path / f"t{trial}" / "smb.sqlite"
        barrier, results = ctx.Barrier(4), ctx.Queue()
        procs = [ctx.Process(target=_open_after, args=(barrier, str(path), results))
                 for _ in range(4)]
        for p in procs:
            p.start()
        outcomes = [results.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(timeout=60)
        failures += [o for o in outcomes if o != "ok"]
    assert failures == []


# -- calls made on the event loop without waiting (smb.nowait) -------------------


def test_no_wait_attempt_records_like_a_blocking_call(holder, table):
    holder(f"assert t.open_file('other', {DEV}, {INO}, 0x1, 0x7) == 0")
    got = nowait.attempt(table.register_open, "me", DEV, INO, DELETE, FILE_SHARE_READ, "/s/f",
                         True)
    assert got.status == Status.SUCCESS and got.other_owners
    assert nowait.attempt(table.open_file, "w", DEV, INO, FILE_WRITE_DATA, 0x7) == \
        Status.SHARING_VIOLATION
    # Delete-on-close recorded with the open: the last close of this process
    # leaves the file delete-pending for the other's open.
    assert not nowait.attempt(table.close_file, "me", DEV, INO)
    assert table.delete_pending(DEV, INO)
    assert nowait.attempt(table.delete_pending, DEV, INO)


def test_no_wait_attempt_gives_up_while_another_process_writes(holder, table):
    # The other process holds the table's write lock (an open transaction).
    holder("t._shared.execute('BEGIN IMMEDIATE')")
    with pytest.raises(nowait.WouldBlock):
        nowait.attempt(table.open_file, "me", DEV, INO, FILE_READ_DATA, 0x7)
    # Reads still pass (WAL readers take no lock), and nothing was recorded.
    assert nowait.attempt(table.delete_pending, DEV, INO) is False


def test_no_wait_commits_leave_the_checkpoint_to_a_thread(table):
    outcomes = []
    for i in range(nodelocal._CHECKPOINT_EVERY + 1):
        try:
            nowait.attempt(table.set_path, f"k{i}", "/p")
            outcomes.append("here")
        except nowait.WouldBlock:
            outcomes.append("thread")
    assert outcomes.count("thread") == 1 and outcomes[-1] == "thread"


def test_no_wait_attempt_does_not_list_a_directory(tmp_path):
    share = vfs.Share(str(tmp_path))
    try:
        (tmp_path / "Exact.txt").write_text("x")
        with nowait.attempt(share.lookup, ("Exact.txt",)) as where:
            assert where.st is not None
        # Another spelling needs a directory read: left to a thread.
        with pytest.raises(nowait.WouldBlock):
            nowait.attempt(share.lookup, ("exact.TXT",))
        with share.lookup(("exact.TXT",)) as where:
            assert where.name == "Exact.txt"
        assert not nowait.active()
    finally:
        share.close()
