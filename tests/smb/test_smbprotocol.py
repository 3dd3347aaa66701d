"""smbprotocol (high-level ``smbclient`` module and raw requests) against
``hanode smb``: the calls Python applications make, and names smbclient
would have cleaned up before sending."""

from __future__ import annotations

import errno
import os
import uuid

import pytest
import smbclient
from smbprotocol.connection import Connection
from smbprotocol.exceptions import SMBOSError, SMBResponseException
from smbprotocol.open import (
    CreateDisposition, CreateOptions, FileAttributes, ImpersonationLevel, LockFlags, Open,
    ShareAccess,
)
from smbprotocol.session import Session
from smbprotocol.tree import TreeConnect

import durable_client as dc



@pytest.fixture
def cache(two_workers):
    """A private connection cache, registered with encryption as smbprotocol defaults."""
    c: dict = {}
    smbclient.register_session("127.0.0.1", username=two_workers.user,
                               password=two_workers.password, port=two_workers.port,
                               connection_cache=c)
    try:
        yield c
    finally:
        smbclient.reset_connection_cache(connection_cache=c)


def _p(srv, *parts: str) -> str:
    return "\\\\127.0.0.1\\" + srv.share_name + "".join("\\" + p for p in parts)


def test_files_and_directories(two_workers, cache):
    kw = {"port": two_workers.port, "connection_cache": cache}
    share = two_workers.share
    smbclient.makedirs(_p(two_workers, "a", "b", "c"), **kw)
    assert (share / "a" / "b" / "c").is_dir()
    with smbclient.open_file(_p(two_workers, "a", "b", "f.txt"), mode="w", **kw) as f:
        f.write("héllo wörld")
    assert (share / "a" / "b" / "f.txt").read_text() == "héllo wörld"
    with smbclient.open_file(_p(two_workers, "A", "B", "F.TXT"), mode="r", **kw) as f:
        assert f.read() == "héllo wörld"
    assert sorted(smbclient.listdir(_p(two_workers, "a", "b"), **kw)) == ["c", "f.txt"]
    st = smbclient.stat(_p(two_workers, "a", "b", "f.txt"), **kw)
    assert st.st_size == len("héllo wörld".encode())
    assert st.st_ino == (share / "a" / "b" / "f.txt").stat().st_ino
    assert abs(st.st_mtime - (share / "a" / "b" / "f.txt").stat().st_mtime) < 1
    entries = {e.name: e for e in smbclient.scandir(_p(two_workers, "a", "b"), **kw)}
    assert entries["c"].is_dir() and entries["f.txt"].is_file()
    smbclient.rename(_p(two_workers, "a", "b", "f.txt"), _p(two_workers, "a", "g.txt"), **kw)
    assert (share / "a" / "g.txt").exists() and not (share / "a" / "b" / "f.txt").exists()
    smbclient.remove(_p(two_workers, "a", "g.txt"), **kw)
    assert not (share / "a" / "g.txt").exists()
    smbclient.removedirs(_p(two_workers, "a", "b", "c"), **kw)
    assert os.listdir(share) == []


def test_binary_random_access(two_workers, cache):
    kw = {"port": two_workers.port, "connection_cache": cache}
    data = os.urandom(3 << 20)
    with smbclient.open_file(_p(two_workers, "bin"), mode="wb", **kw) as f:
        f.write(data)
    with smbclient.open_file(_p(two_workers, "bin"), mode="rb", **kw) as f:
        f.seek(1 << 20)
        assert f.read(1000) == data[1 << 20: (1 << 20) + 1000]
    with smbclient.open_file(_p(two_workers, "bin"), mode="r+b", **kw) as f:
        f.seek(10)
        f.write(b"XYZ")
        f.truncate(100)
    assert (two_workers.share / "bin").read_bytes() == data[:10] + b"XYZ" + data[13:100]


def test_missing_and_existing_names(two_workers, cache):
    kw = {"port": two_workers.port, "connection_cache": cache}
    with pytest.raises(SMBOSError) as info:
        smbclient.stat(_p(two_workers, "nope"), **kw)
    assert info.value.errno == errno.ENOENT
    smbclient.mkdir(_p(two_workers, "d"), **kw)
    with pytest.raises(SMBOSError) as info:
        smbclient.mkdir(_p(two_workers, "D"), **kw)
    assert info.value.errno == errno.EEXIST
    with smbclient.open_file(_p(two_workers, "x"), mode="w", **kw) as f:
        f.write("1")
    with pytest.raises(SMBOSError):
        smbclient.rename(_p(two_workers, "x"), _p(two_workers, "d"), **kw)


@pytest.fixture
def raw_tree(two_workers):
    conn = Connection(uuid.uuid4(), "127.0.0.1", two_workers.port)
    conn.connect()
    try:
        session = Session(conn, two_workers.user, two_workers.password)
        session.connect()
        tree = TreeConnect(session, f"\\\\127.0.0.1\\{two_workers.share_name}")
        tree.connect()
        yield tree
    finally:
        conn.disconnect(True)


def _open(tree, name: str, disposition=CreateDisposition.FILE_OPEN, options=0):
    op = Open(tree, name)
    op.create(ImpersonationLevel.Impersonation, 0x80000000 | 0x80,
              FileAttributes.FILE_ATTRIBUTE_NORMAL,
              ShareAccess.FILE_SHARE_READ | ShareAccess.FILE_SHARE_WRITE, disposition, options)
    return op


@pytest.mark.parametrize("name, status", [
    ("..\\outside.txt", "STATUS_OBJECT_PATH_SYNTAX_BAD"),
    ("sub\\..\\..\\outside.txt", "STATUS_OBJECT_PATH_SYNTAX_BAD"),
    ("bad*name", "STATUS_OBJECT_NAME_INVALID"),
    ("file.txt:stream", "STATUS_OBJECT_NAME_INVALID"),
    ("\\outside.txt", "STATUS_INVALID_PARAMETER"),
])
def test_raw_escape_and_invalid_names(two_workers, raw_tree, name, status):
    (two_workers.share / "sub").mkdir()
    (two_workers.share / "file.txt").write_text("x")
    (two_workers.share.parent / "outside.txt").write_text("secret")
    with pytest.raises(SMBResponseException) as info:
        _open(raw_tree, name, CreateDisposition.FILE_OPEN_IF)
    assert status in str(info.value)
    assert sorted(os.listdir(two_workers.share)) == ["file.txt", "sub"]


def test_raw_symlink_to_etc(two_workers, raw_tree):
    (two_workers.share / "etc").symlink_to("/etc")
    with pytest.raises(SMBResponseException) as info:
        _open(raw_tree, "etc\\passwd")
    assert "STATUS_OBJECT_PATH_NOT_FOUND" in str(info.value)
    with pytest.raises(SMBResponseException) as info:
        _open(raw_tree, "etc", options=CreateOptions.FILE_DIRECTORY_FILE)
    assert "STATUS_ACCESS_DENIED" in str(info.value)


@pytest.fixture
def spread_trees(two_workers):
    """Tree connects on fresh connections until both workers have served one.

    The kernel spreads connections over the SO_REUSEPORT workers by hash; the
    workers log each session, so the log tells when both took part.  The first
    tree then shares a file with at least one tree on the other worker.
    """
    conns, trees = [], []
    try:
        for _ in range(24):
            conn = Connection(uuid.uuid4(), "127.0.0.1", two_workers.port)
            conn.connect()
            conns.append(conn)
            session = Session(conn, two_workers.user, two_workers.password)
            session.connect()
            tree = TreeConnect(session, f"\\\\127.0.0.1\\{two_workers.share_name}")
            tree.connect()
            trees.append(tree)
            log = two_workers.log_text()
            if len(trees) >= 2 and all(f"worker{i} INFO smb.server.session_setup: session" in log
                                       for i in (0, 1)):
                break
        else:
            pytest.fail("24 connections all landed on one worker")
        yield trees
    finally:
        for conn in conns:
            conn.disconnect(True)


def _create(tree, name: str, access: int, share: int) -> Open:
    op = Open(tree, name)
    op.create(ImpersonationLevel.Impersonation, access, 0, share, CreateDisposition.FILE_OPEN, 0)
    return op


def test_share_modes_across_workers(two_workers, spread_trees):
    (two_workers.share / "f").write_text("x")
    first = _create(spread_trees[0], "f", 0x1 | 0x2, ShareAccess.FILE_SHARE_READ)
    for tree in spread_trees[1:]:
        with pytest.raises(SMBResponseException) as info:
            _create(tree, "f", 0x2, 0x7)
        assert "STATUS_SHARING_VIOLATION" in str(info.value)
        _create(tree, "f", 0x1, 0x7).close()
    first.close()
    _create(spread_trees[-1], "f", 0x2, 0x7).close()


def test_byte_range_locks_across_workers(two_workers, spread_trees):
    (two_workers.share / "f").write_bytes(b"0123456789" * 10)
    holder = _create(spread_trees[0], "f", 0x1 | 0x2, 0x7)
    holder.lock([dc.lock_element(0, 10, LockFlags.SMB2_LOCKFLAG_EXCLUSIVE_LOCK
                       | LockFlags.SMB2_LOCKFLAG_FAIL_IMMEDIATELY)])
    for tree in spread_trees[1:]:
        other = _create(tree, "f", 0x1 | 0x2, 0x7)
        with pytest.raises(SMBResponseException) as info:
            other.lock([dc.lock_element(5, 1, LockFlags.SMB2_LOCKFLAG_SHARED_LOCK
                              | LockFlags.SMB2_LOCKFLAG_FAIL_IMMEDIATELY)])
        assert info.value.status == 0xC0000055  # STATUS_LOCK_NOT_GRANTED
        with pytest.raises(SMBResponseException) as info:
            other.write(b"x", 3)
        assert info.value.status == 0xC0000054  # STATUS_FILE_LOCK_CONFLICT
        assert other.read(20, 5) == b"01234"  # outside the locked range
        other.close()
    holder.lock([dc.lock_element(0, 10, LockFlags.SMB2_LOCKFLAG_UNLOCK)])
    other = _create(spread_trees[-1], "f", 0x1 | 0x2, 0x7)
    other.write(b"x", 3)
    other.close()
    holder.close()
    assert (two_workers.share / "f").read_bytes()[:5] == b"012x4"


def test_crashed_worker_leaves_no_share_mode_behind(two_workers):
    """SIGKILL every worker while one holds a file exclusively: the restarted
    workers must let the file be opened again (the dead owner's rows go)."""
    import signal
    import time

    import psutil

    (two_workers.share / "f").write_text("x")

    def connect() -> tuple[Connection, TreeConnect]:
        conn = Connection(uuid.uuid4(), "127.0.0.1", two_workers.port)
        conn.connect(timeout=5)
        session = Session(conn, two_workers.user, two_workers.password)
        session.connect()
        tree = TreeConnect(session, f"\\\\127.0.0.1\\{two_workers.share_name}")
        tree.connect()
        return conn, tree

    holder_conn, holder_tree = connect()
    _create(holder_tree, "f", 0x1 | 0x2, 0)
    other_conn, other_tree = connect()
    with pytest.raises(SMBResponseException) as info:
        _create(other_tree, "f", 0x1, 0x7)
    assert "STATUS_SHARING_VIOLATION" in str(info.value)
    workers = psutil.Process(two_workers.proc.pid).children()
    assert len(workers) == 2
    for worker in workers:
        worker.send_signal(signal.SIGKILL)
    for conn in (holder_conn, other_conn):
        try:
            conn.disconnect(False)
        except Exception:  # the socket died with the worker
            pass
    deadline = time.monotonic() + 20
    while True:
        try:
            conn, tree = connect()
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    try:
        _create(tree, "f", 0x1 | 0x2, 0).close()
    finally:
        conn.disconnect(True)
    assert {p.pid for p in psutil.Process(two_workers.proc.pid).children()}.isdisjoint(
        {w.pid for w in workers})


def test_change_notify_reports_a_file_made_elsewhere(two_workers, raw_tree):
    """A file created outside this connection (here: on the share's disk, as
    another worker or node would) is reported to a waiting CHANGE_NOTIFY."""
    import time

    from smbprotocol.change_notify import (
        ChangeNotifyFlags, CompletionFilter, FileAction, FileSystemWatcher,
    )

    directory = Open(raw_tree, "")
    directory.create(ImpersonationLevel.Impersonation, 0x1 | 0x80 | 0x100000, 0, 0x7,
                     CreateDisposition.FILE_OPEN, CreateOptions.FILE_DIRECTORY_FILE)
    watcher = FileSystemWatcher(directory)
    watcher.start(CompletionFilter.FILE_NOTIFY_CHANGE_FILE_NAME,
                  flags=ChangeNotifyFlags.SMB2_WATCH_TREE)
    # The server takes its first look when the request arrives; a change made
    # before that is part of the starting point, not news.
    time.sleep(1.0)
    (two_workers.share / "made-elsewhere.txt").write_text("x")
    changes = watcher.wait()
    assert [(c["action"].get_value(), c["file_name"].get_value()) for c in changes] == [
        (FileAction.FILE_ACTION_ADDED, "made-elsewhere.txt")]
    watcher = FileSystemWatcher(directory)
    watcher.start(CompletionFilter.FILE_NOTIFY_CHANGE_FILE_NAME)
    directory.close()
    with pytest.raises(SMBResponseException):  # STATUS_NOTIFY_CLEANUP ends the watch
        watcher.wait()
