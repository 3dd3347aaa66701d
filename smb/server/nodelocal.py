"""State shared by the SMB workers of one node: share modes, delete-pending
flags and byte-range locks.

The workers are separate processes, so this lives in one SQLite database in
WAL mode under the node's state directory (Samba keeps the same facts in
locking.tdb and brlock.tdb).  Every check-and-record is one ``BEGIN
IMMEDIATE`` transaction, which SQLite serialises across processes, so two
workers can never both grant conflicting opens or locks.

Every row names its owner as ``pid:start-time``.  A worker that crashes
cannot remove its rows, so whenever a row stands in the way its owner's
liveness is checked (the pid must exist with the same start time, which
rules out pid reuse) and all rows of a dead owner are dropped first.

Calls may block (SQLite waits for the file lock), so callers run them
through a thread; a mutex serialises this process's threads on their shared
connection.  A call made in a :mod:`smb.nowait` attempt uses a connection of
its own that never waits: a lock another process holds makes it raise
WouldBlock before anything changed, and the call goes to a thread after all.
That connection never checkpoints the WAL (a checkpoint writes and syncs the
database file); every ``_CHECKPOINT_EVERY`` of its commits, one transaction
goes to a thread instead, whose connection checkpoints as SQLite usually does.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from smb import nowait
from smb.wire.header import Status

if TYPE_CHECKING:
    from hanode.config import Config

# Access bits that take part in share-mode checks (MS-FSA 2.1.5.1.2.1).
FILE_READ_DATA = 0x0001
FILE_WRITE_DATA = 0x0002
FILE_APPEND_DATA = 0x0004
FILE_EXECUTE = 0x0020
DELETE = 0x00010000
FILE_SHARE_READ = 0x1
FILE_SHARE_WRITE = 0x2
FILE_SHARE_DELETE = 0x4

_UINT64 = 1 << 64
_CHECKPOINT_EVERY = 256
# opens has no index on its owner (older tables had one, dropped here): each
# open and close would write one more page of it, for the sake of the only
# lookup by owner, the rare drop of a dead worker's rows, which scans instead.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS opens(
    open_key TEXT PRIMARY KEY, owner TEXT NOT NULL, dev INTEGER NOT NULL,
    ino INTEGER NOT NULL, access INTEGER NOT NULL, share INTEGER NOT NULL,
    delete_on_close INTEGER NOT NULL DEFAULT 0, path TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS opens_file ON opens(dev, ino);
DROP INDEX IF EXISTS opens_owner;
CREATE TABLE IF NOT EXISTS delete_pending(
    dev INTEGER NOT NULL, ino INTEGER NOT NULL, owner TEXT NOT NULL, PRIMARY KEY(dev, ino));
CREATE TABLE IF NOT EXISTS locks(
    open_key TEXT NOT NULL, owner TEXT NOT NULL, dev INTEGER NOT NULL, ino INTEGER NOT NULL,
    start INTEGER NOT NULL, length INTEGER NOT NULL, exclusive INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS locks_file ON locks(dev, ino);
CREATE INDEX IF NOT EXISTS locks_owner ON locks(owner);
CREATE TABLE IF NOT EXISTS caching(
    open_key TEXT PRIMARY KEY, owner TEXT NOT NULL, dev INTEGER NOT NULL,
    ino INTEGER NOT NULL, state INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS caching_file ON caching(dev, ino);
CREATE TABLE IF NOT EXISTS break_requests(
    id INTEGER PRIMARY KEY, owner TEXT NOT NULL, dev INTEGER NOT NULL, ino INTEGER NOT NULL,
    access INTEGER NOT NULL, share INTEGER NOT NULL, disposition INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS break_requests_owner ON break_requests(owner);
CREATE TABLE IF NOT EXISTS peers(owner TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS logoff_requests(
    id INTEGER NOT NULL, owner TEXT NOT NULL, session_id INTEGER NOT NULL, user TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS logoff_requests_owner ON logoff_requests(owner);
CREATE TABLE IF NOT EXISTS disconnected(
    open_key TEXT PRIMARY KEY, owner TEXT NOT NULL, dev INTEGER NOT NULL, ino INTEGER NOT NULL,
    persistent_id INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS disconnected_file ON disconnected(dev, ino);
CREATE INDEX IF NOT EXISTS disconnected_id ON disconnected(persistent_id);
CREATE TABLE IF NOT EXISTS keeping(
    open_key TEXT PRIMARY KEY, owner TEXT NOT NULL, status INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS clients(
    guid BLOB PRIMARY KEY, owner TEXT NOT NULL, address BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS clients_owner ON clients(owner);
"""


def _signed(v: int) -> int:
    """SQLite integers are signed 64-bit; lock offsets use the whole unsigned range."""
    return v - _UINT64 if v >= 1 << 63 else v


def _unsigned(v: int) -> int:
    return v + _UINT64 if v < 0 else v


def share_conflict(access_a: int, share_a: int, access_b: int, share_b: int) -> bool:
    """Whether two opens of one file exclude each other by their share modes.

    An open that touches neither data nor the name (attributes, security)
    takes no part in sharing at all (MS-FSA 2.1.5.1.2.1).
    """
    def needs(access: int) -> int:
        n = 0
        if access & (FILE_READ_DATA | FILE_EXECUTE):
            n |= FILE_SHARE_READ
        if access & (FILE_WRITE_DATA | FILE_APPEND_DATA):
            n |= FILE_SHARE_WRITE
        if access & DELETE:
            n |= FILE_SHARE_DELETE
        return n
    need_a, need_b = needs(access_a), needs(access_b)
    if not need_a or not need_b:
        return False
    return bool(need_a & ~share_b) or bool(need_b & ~share_a)


def _overlap(a_start: int, a_len: int, b_start: int, b_len: int) -> bool:
    """Whether two byte ranges collide.

    A zero-length range at X collides only with a range that holds X and
    starts before it, which is how Windows (and Samba's brlock) treat them.
    """
    return not (a_start >= b_start + b_len or b_start >= a_start + a_len)


@dataclass(frozen=True)
class Registered:
    """What recording an open found: its NT status, and whether another live
    process (worker) holds the file open too."""

    status: int
    other_owners: bool = False


@dataclass(frozen=True)
class Range:
    start: int
    length: int
    exclusive: bool = False


def _process_owner() -> str:
    pid = os.getpid()
    return f"{pid}:{psutil.Process(pid).create_time()}"


def _alive(owner: str) -> bool:
    pid_text, _, started = owner.partition(":")
    try:
        return str(psutil.Process(int(pid_text)).create_time()) == started
    except (psutil.NoSuchProcess, ValueError):
        return False


class NodeLocal:
    """This process's handle on the node's shared open and lock tables."""

    def __init__(self, path: str | Path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.owner = _process_owner()
        self._path = str(path)
        self._mutex = threading.Lock()
        self._shared = sqlite3.connect(self._path, isolation_level=None,
                                       check_same_thread=False, timeout=30)
        self._quick: sqlite3.Connection | None = None
        self._quick_commits = 0
        self._db.execute("PRAGMA busy_timeout = 30000")
        # Workers start together; switching a new database to WAL answers "database
        # is locked" at once (no busy wait) to all but one of them, so the first
        # open of each process is serialised through a lock file beside it.
        with open(f"{path}.init-lock", "a") as init_lock:
            fcntl.flock(init_lock, fcntl.LOCK_EX)
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            with self._mutex:
                self._db.executescript(_SCHEMA)
        self.purge_dead()
        self._txn(lambda: self._db.execute("INSERT OR REPLACE INTO peers VALUES (?)",
                                           (self.owner,)))

    def close(self) -> None:
        self._shared.close()
        if self._quick is not None:
            self._quick.close()

    # -- transactions and crash cleanup ----------------------------------

    @property
    def _db(self) -> sqlite3.Connection:
        """The connection of the calling thread: the event loop's own in a
        no-waiting attempt, the shared one otherwise."""
        if not nowait.active():
            return self._shared
        if self._quick is None:
            quick = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False,
                                    timeout=0)
            try:
                quick.execute("PRAGMA synchronous = NORMAL")
                quick.execute("PRAGMA wal_autocheckpoint = 0")
            except sqlite3.OperationalError:
                quick.close()
                raise nowait.WouldBlock() from None
            self._quick = quick
        return self._quick

    def _read(self, sql: str, args: tuple) -> list[tuple]:
        """One autocommit query (WAL readers take no lock a writer holds)."""
        if nowait.active():
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.OperationalError:
                raise nowait.WouldBlock() from None
        with self._mutex:
            return self._shared.execute(sql, args).fetchall()

    def _txn(self, fn, *args):
        if nowait.active():
            return self._txn_now(fn, *args)
        with self._mutex:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                result = fn(*args)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return result

    def _txn_now(self, fn, *args):
        if self._quick_commits >= _CHECKPOINT_EVERY:
            self._quick_commits = 0
            raise nowait.WouldBlock()  # this one commits (and checkpoints) in a thread
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:
            raise nowait.WouldBlock() from None
        try:
            result = fn(*args)
        except sqlite3.OperationalError:
            db.execute("ROLLBACK")
            raise nowait.WouldBlock() from None
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        self._quick_commits += 1
        return result

    def _drop_owner(self, owner: str) -> None:
        for table in ("opens", "locks", "delete_pending", "caching", "break_requests", "peers",
                      "logoff_requests", "disconnected", "keeping", "clients"):
            self._db.execute(f"DELETE FROM {table} WHERE owner = ?", (owner,))

    def _live(self, owner: str) -> bool:
        """Whether ``owner`` lives; a dead owner's rows are dropped on the spot."""
        if owner == self.owner or _alive(owner):
            return True
        self._drop_owner(owner)
        return False

    def _live_rows(self, sql: str, args: tuple) -> list[tuple]:
        """The rows of a query (owner first) whose owner lives, read without the
        write lock while every owner found lives.

        Safe as a plain read: in WAL mode it sees the last committed state,
        exactly what a BEGIN IMMEDIATE transaction would see, and a caller acts
        on the answer only after either has ended, so the lock bought nothing
        but the dropping of dead owners' rows.  Only when a dead owner turns
        up (a worker crashed) is the query run again locked, dropping them.
        """
        rows = self._read(sql, args)
        owners = {row[0] for row in rows}
        if all(owner == self.owner or _alive(owner) for owner in owners):
            return rows
        return self._txn(lambda: [row for row in self._db.execute(sql, args).fetchall()
                                  if self._live(row[0])])

    def purge_dead(self) -> int:
        """Drop every row of every dead owner; returns how many owners were dead."""
        def run() -> int:
            owners = {row[0] for table in ("opens", "locks", "delete_pending", "caching", "peers",
                                           "clients")
                      for row in self._db.execute(f"SELECT DISTINCT owner FROM {table}")}
            dead = [o for o in owners if o != self.owner and not _alive(o)]
            for owner in dead:
                self._drop_owner(owner)
            return len(dead)
        return self._txn(run)

    # -- share modes and delete-on-close ---------------------------------

    def open_file(self, open_key: str, dev: int, ino: int, access: int, share: int,
                  path: str = "") -> int:
        """Record an open if no live open's share mode forbids it; returns an NT status."""
        return self.register_open(open_key, dev, ino, access, share, path).status

    def register_open(self, open_key: str, dev: int, ino: int, access: int, share: int,
                      path: str = "", delete_on_close: bool = False,
                      smb3: bool = False) -> "Registered":
        """open_file, also saying whether another live worker holds the file, and
        recording delete-on-close with the open: a CREATE needs one transaction.
        An SMB 3.x open (``smb3``) of a file another worker keeps a disconnected
        persistent open of is refused whatever the share modes (MS-SMB2 3.3.5.9;
        this worker's own are refused in its oplock decision).

        ``path`` (the file's absolute path) lets a rename of a directory see
        the opens below it.  It stays true because such renames are refused.
        """
        def run() -> Registered:
            db = self._db
            rows = db.execute(
                "SELECT owner, access, share FROM opens WHERE dev = ? AND ino = ?",
                (dev, ino)).fetchall()
            live = [r for r in rows if self._live(r[0])]
            if smb3 and live and any(self._live(owner) for owner, in db.execute(
                    "SELECT d.owner FROM disconnected d JOIN keeping k ON k.open_key = d.open_key"
                    " WHERE d.dev = ? AND d.ino = ? AND d.owner != ? AND k.status = ?",
                    (dev, ino, self.owner, Status.FILE_NOT_AVAILABLE))):
                return Registered(Status.FILE_NOT_AVAILABLE)
            pending = db.execute(
                "SELECT owner FROM delete_pending WHERE dev = ? AND ino = ?", (dev, ino)).fetchone()
            if pending is not None:
                if live:
                    return Registered(Status.DELETE_PENDING)
                db.execute("DELETE FROM delete_pending WHERE dev = ? AND ino = ?", (dev, ino))
            for _, other_access, other_share in live:
                if share_conflict(access, share, other_access, other_share):
                    return Registered(Status.SHARING_VIOLATION)
            db.execute(
                "INSERT INTO opens(open_key, owner, dev, ino, access, share, path,"
                " delete_on_close) VALUES (?,?,?,?,?,?,?,?)",
                (open_key, self.owner, dev, ino, access, share, path, int(delete_on_close)))
            return Registered(Status.SUCCESS, any(r[0] != self.owner for r in live))
        return self._txn(run)

    def set_path(self, open_key: str, path: str) -> None:
        self._txn(lambda: self._db.execute("UPDATE opens SET path = ? WHERE open_key = ?",
                                           (path, open_key)))

    def opens_below(self, path: str) -> bool:
        """Whether a live open holds anything under the directory ``path``."""
        prefix = path.rstrip("/") + "/"

        def run() -> bool:
            rows = self._db.execute(
                "SELECT owner FROM opens WHERE substr(path, 1, ?) = ?",
                (len(prefix), prefix)).fetchall()
            return any(self._live(r[0]) for r in rows)
        return self._txn(run)

    def blocks_rename_inside(self, dev: int, ino: int) -> bool:
        """Whether an open of this directory forbids renaming entries in it.

        Samba and Windows refuse (SHARING_VIOLATION) while another handle on
        the parent that takes part in sharing (data or DELETE access) holds
        DELETE access or does not share delete.
        """
        data = FILE_READ_DATA | FILE_WRITE_DATA | FILE_APPEND_DATA | FILE_EXECUTE | DELETE

        def run() -> bool:
            rows = self._db.execute(
                "SELECT owner, access, share FROM opens WHERE dev = ? AND ino = ?",
                (dev, ino)).fetchall()
            return any(access & data and (access & DELETE or not share & FILE_SHARE_DELETE)
                       and self._live(owner) for owner, access, share in rows)
        return self._txn(run)

    def set_delete_on_close(self, open_key: str, flag: bool) -> None:
        self._txn(lambda: self._db.execute(
            "UPDATE opens SET delete_on_close = ? WHERE open_key = ?", (int(flag), open_key)))

    def set_delete_pending(self, dev: int, ino: int, flag: bool) -> None:
        def run() -> None:
            if flag:
                self._db.execute("INSERT OR REPLACE INTO delete_pending VALUES (?,?,?)",
                                 (dev, ino, self.owner))
            else:
                self._db.execute("DELETE FROM delete_pending WHERE dev = ? AND ino = ?",
                                 (dev, ino))
        self._txn(run)

    def delete_pending(self, dev: int, ino: int) -> bool:
        return bool(self._read("SELECT 1 FROM delete_pending WHERE dev = ? AND ino = ?",
                               (dev, ino)))

    def others_open(self, open_key: str, dev: int, ino: int) -> bool:
        """Whether a live open other than ``open_key`` holds the file."""
        def run() -> bool:
            rows = self._db.execute(
                "SELECT owner FROM opens WHERE dev = ? AND ino = ? AND open_key != ?",
                (dev, ino, open_key)).fetchall()
            return any(self._live(r[0]) for r in rows)
        return self._txn(run)

    def other_owners_open(self, dev: int, ino: int) -> bool:
        """Whether another live process (worker) holds the file open.

        Oplocks and leases are granted and broken inside one worker, so an
        open gets caching only while no other worker has the file open.
        """
        def run() -> bool:
            rows = self._db.execute(
                "SELECT DISTINCT owner FROM opens WHERE dev = ? AND ino = ? AND owner != ?",
                (dev, ino, self.owner)).fetchall()
            return any(self._live(r[0]) for r in rows)
        return self._txn(run)

    def close_file(self, open_key: str, dev: int, ino: int) -> bool:
        """Forget an open and its locks; True when the caller must now delete the file."""
        def run() -> bool:
            db = self._db
            # fetchall: the statement runs to its end before the next one.
            deleted = db.execute("DELETE FROM opens WHERE open_key = ? RETURNING delete_on_close",
                                 (open_key,)).fetchall()
            db.execute("DELETE FROM locks WHERE open_key = ?", (open_key,))
            db.execute("DELETE FROM caching WHERE open_key = ?", (open_key,))
            if deleted and deleted[0][0]:
                db.execute("INSERT OR REPLACE INTO delete_pending VALUES (?,?,?)",
                           (dev, ino, self.owner))
            rest = db.execute("SELECT owner FROM opens WHERE dev = ? AND ino = ?",
                              (dev, ino)).fetchall()
            if any(self._live(r[0]) for r in rest):
                return False
            gone = db.execute("DELETE FROM delete_pending WHERE dev = ? AND ino = ?",
                              (dev, ino)).rowcount
            return gone > 0
        return self._txn(run)

    # -- oplock and lease caching across workers -----------------------------
    #
    # Each worker decides oplocks and leases for its own opens (smb.oplocks),
    # and mirrors what each open caches (lease-state bits R=1 H=2 W=4) here.
    # An open in another worker that conflicts files a break request for the
    # holder's worker, which breaks its clients as for a local open; the
    # requester waits until the mirrored caching allows it to go on.

    def set_caching(self, states: list[tuple[str, int, int, int]]) -> None:
        """Mirror (open_key, dev, ino, state) of this worker's opens; state 0 drops the row."""
        def run() -> None:
            for key, dev, ino, state in states:
                if state:  # only while the open is there (a CLOSE may have just gone)
                    self._db.execute("INSERT OR REPLACE INTO caching SELECT ?,?,?,?,?"
                                     " WHERE EXISTS (SELECT 1 FROM opens WHERE open_key = ?)",
                                     (key, self.owner, dev, ino, state, key))
                else:
                    self._db.execute("DELETE FROM caching WHERE open_key = ?", (key,))
        self._txn(run)

    def others_caching(self, dev: int, ino: int) -> int:
        """The union of what other live workers' opens of the file cache."""
        state = 0
        for _, bits in self._live_rows(
                "SELECT owner, state FROM caching WHERE dev = ? AND ino = ? AND owner != ?",
                (dev, ino, self.owner)):
            state |= bits
        return state

    def others_leases_caching(self, dev: int, ino: int, bits: int, oplock_flag: int) -> bool:
        """Whether another live worker's lease (a row without ``oplock_flag``)
        caches any of ``bits`` of the file."""
        def run() -> bool:
            rows = self._db.execute(
                "SELECT owner FROM caching WHERE dev = ? AND ino = ? AND owner != ?"
                " AND state & ? != 0 AND state & ? = 0",
                (dev, ino, self.owner, bits, oplock_flag)).fetchall()
            return any(self._live(r[0]) for r in rows)
        return self._txn(run)

    def request_breaks(self, dev: int, ino: int, access: int, share: int,
                       disposition: int) -> None:
        """Ask every other worker caching the file to break as this open requires."""
        self._txn(self._file_break_requests, "caching", dev, ino, access, share, disposition)

    def _file_break_requests(self, holders: str, dev: int, ino: int, access: int, share: int,
                             disposition: int) -> None:
        """A break request with every other worker that has a row of the file in
        the ``holders`` table (a constant of this module's schema)."""
        owners = {r[0] for r in self._db.execute(
            f"SELECT DISTINCT owner FROM {holders} WHERE dev = ? AND ino = ? AND owner != ?",
            (dev, ino, self.owner))}
        for owner in owners:
            self._db.execute(
                "INSERT INTO break_requests(owner, dev, ino, access, share, disposition)"
                " VALUES (?,?,?,?,?,?)", (owner, dev, ino, access, share, disposition))

    def take_break_requests(self) -> list[tuple[int, int, int, int, int, int]]:
        """This worker's pending break requests (id, dev, ino, access, share, disposition)."""
        if not self._read("SELECT 1 FROM break_requests WHERE owner = ? LIMIT 1",
                          (self.owner,)):
            return []

        def run() -> list[tuple[int, int, int, int, int, int]]:
            rows = self._db.execute(
                "SELECT id, dev, ino, access, share, disposition FROM break_requests"
                " WHERE owner = ?", (self.owner,)).fetchall()
            self._db.execute("DELETE FROM break_requests WHERE owner = ?", (self.owner,))
            return rows
        return self._txn(run)

    # -- disconnected durable opens ------------------------------------------
    #
    # A durable open whose connection dropped keeps its share-mode and caching
    # rows while its worker keeps it for a reconnect, so that other workers'
    # opens see it as its own worker does: one that conflicts with it files a
    # break request there, which purges it.  A durable open's byte-range locks
    # go (its record carries them to the reconnect); a resilient open keeps
    # them until it is reclaimed or ends (MS-SMB2 keeps the open itself, locks
    # included, while it waits for its client).  Whoever removes the
    # ``disconnected`` row owns the open's end: its worker purging or expiring
    # it, or a reconnect on any worker taking it over.  A persistent or
    # resilient open also has a ``keeping`` row: it keeps its locks, and an
    # open that conflicts with it is refused with the row's status, never
    # purges it.

    def keep_disconnected(self, open_key: str, dev: int, ino: int, persistent_id: int,
                          refuse: int | None = None) -> None:
        """``refuse``: the open keeps its file (and locks) while disconnected, and
        conflicting opens get this status (smb.durable.refusal_while_disconnected)."""
        def run() -> None:
            if refuse is None:
                self._db.execute("DELETE FROM locks WHERE open_key = ?", (open_key,))
            else:
                self._db.execute("INSERT OR REPLACE INTO keeping VALUES (?,?,?)",
                                 (open_key, self.owner, refuse))
            self._db.execute("INSERT OR REPLACE INTO disconnected VALUES (?,?,?,?,?)",
                             (open_key, self.owner, dev, ino, _signed(persistent_id)))
        self._txn(run)

    def _disconnected_rows(self, dev: int, ino: int) -> list[tuple]:
        """(owner, access, share, refusal or None) of other workers' disconnected opens."""
        return self._live_rows(
            "SELECT o.owner, o.access, o.share, k.status FROM disconnected d"
            " JOIN opens o ON o.open_key = d.open_key"
            " LEFT JOIN keeping k ON k.open_key = d.open_key"
            " WHERE d.dev = ? AND d.ino = ? AND d.owner != ?",
            (dev, ino, self.owner))

    def disconnected_in_way(self, dev: int, ino: int, access: int, share: int) -> bool:
        """Whether another live worker keeps a disconnected open of the file whose
        share mode excludes this one, and that a purge request may end."""
        return any(k is None and share_conflict(access, share, a, s)
                   for _, a, s, k in self._disconnected_rows(dev, ino))

    def kept_in_way(self, dev: int, ino: int, access: int, share: int) -> int | None:
        """The status refusing this open when another worker's disconnected open
        that keeps its file (persistent, resilient) excludes it by share mode."""
        return next((k for _, a, s, k in self._disconnected_rows(dev, ino)
                     if k is not None and share_conflict(access, share, a, s)), None)

    def request_purges(self, dev: int, ino: int, access: int, share: int,
                       disposition: int) -> None:
        """File this open as a break request with every other worker keeping a
        disconnected open of the file (its worker purges what stands in the way)."""
        self._txn(self._file_break_requests, "disconnected", dev, ino, access, share,
                  disposition)

    def claim_disconnected(self, open_key: str) -> bool:
        """Whether the caller may end this disconnected open (purged or timed out;
        close_file then does the rest); False when a reconnect took it over first."""
        def run() -> bool:
            self._db.execute("DELETE FROM keeping WHERE open_key = ?", (open_key,))
            return self._db.execute(
                "DELETE FROM disconnected WHERE open_key = ?", (open_key,)).rowcount > 0
        return self._txn(run)

    def stand_in(self, open_key: str, dev: int, ino: int, access: int, share: int,
                 persistent_id: int, locks: list[Range], refuse: int) -> None:
        """Rows for a dead worker's disconnected open that keeps its file, known
        from its etcd record: its share mode and byte-range locks then hold on
        this node as they held where it was (until a reconnect takes it over,
        its record ends, or this worker dies with the rows)."""
        def run() -> None:
            self._drop_open_rows(open_key)
            self._db.execute(
                "INSERT INTO opens(open_key, owner, dev, ino, access, share) VALUES (?,?,?,?,?,?)",
                (open_key, self.owner, dev, ino, access, share))
            self._db.executemany(
                "INSERT INTO locks VALUES (?,?,?,?,?,?,?)",
                [(open_key, self.owner, dev, ino, _signed(r.start), _signed(r.length),
                  int(r.exclusive)) for r in locks])
            self._db.execute("INSERT INTO disconnected VALUES (?,?,?,?,?)",
                             (open_key, self.owner, dev, ino, _signed(persistent_id)))
            self._db.execute("INSERT INTO keeping VALUES (?,?,?)", (open_key, self.owner, refuse))
        self._txn(run)

    def still_disconnected(self, open_key: str) -> bool:
        """Whether this disconnected open is still its worker's to keep (no
        reconnect on any worker of the node took it over)."""
        return bool(self._read("SELECT 1 FROM disconnected WHERE open_key = ?", (open_key,)))

    def take_over_disconnected(self, persistent_id: int) -> None:
        """A reconnect adopted the durable open: the rows its old open left (on
        whichever worker) go, without the effects of a close; the reopen records
        its own."""
        def run() -> None:
            row = self._db.execute("SELECT open_key FROM disconnected WHERE persistent_id = ?",
                                   (_signed(persistent_id),)).fetchone()
            if row is not None:
                self._drop_open_rows(row[0])
        self._txn(run)

    def forget_disconnected(self, open_key: str) -> None:
        """The rows this worker's disconnected open left, without the effects of
        a close: it was reclaimed through another node (whose table has its own)."""
        self._txn(self._drop_open_rows, open_key)

    def _drop_open_rows(self, open_key: str) -> None:
        for table in ("disconnected", "keeping", "opens", "locks", "caching"):
            self._db.execute(f"DELETE FROM {table} WHERE open_key = ?", (open_key,))

    # -- PreviousSessionId across workers ------------------------------------
    #
    # A client's earlier session may live in any worker of the node; the
    # worker that got the new SESSION_SETUP files one request per other live
    # worker, each takes its own, logs the session off if it holds it, and
    # removes its row; the requester waits until no live worker's row is left.

    def request_logoff(self, request_id: int, session_id: int, user: str) -> None:
        def run() -> None:
            peers = [r[0] for r in self._db.execute(
                "SELECT owner FROM peers WHERE owner != ?", (self.owner,)).fetchall()]
            self._db.executemany(
                "INSERT INTO logoff_requests VALUES (?,?,?,?)",
                [(request_id, p, session_id, user) for p in peers if self._live(p)])
        self._txn(run)

    def logoff_requests(self) -> list[tuple[int, int, str]]:
        """This worker's pending logoff requests (request id, session id, user)."""
        return self._read("SELECT id, session_id, user FROM logoff_requests WHERE owner = ?",
                          (self.owner,))

    def logoff_done(self, request_id: int) -> None:
        self._txn(lambda: self._db.execute(
            "DELETE FROM logoff_requests WHERE id = ? AND owner = ?", (request_id, self.owner)))

    def logoff_pending(self, request_id: int) -> bool:
        """Whether a live worker has not yet answered the request."""
        def run() -> bool:
            rows = self._db.execute("SELECT owner FROM logoff_requests WHERE id = ?",
                                    (request_id,)).fetchall()
            return any(self._live(r[0]) for r in rows)
        return self._txn(run)

    # -- multichannel clients ----------------------------------------------
    # All connections of one client (GUID) are served by one worker, so that
    # a connection can bind to a session set up on another; a worker that gets
    # a client's NEGOTIATE hands the connection to the worker named here.

    def claim_client(self, guid: bytes, address: bytes) -> bytes | None:
        """The hand-off address of the live worker that serves ``guid``, or
        None when this worker does (it claims clients nobody serves)."""
        def run() -> bytes | None:
            row = self._db.execute("SELECT owner, address FROM clients WHERE guid = ?",
                                   (guid,)).fetchone()
            if row is not None and row[0] != self.owner and self._live(row[0]):
                return bytes(row[1])
            self._db.execute("INSERT OR REPLACE INTO clients VALUES (?,?,?)",
                             (guid, self.owner, address))
            return None
        return self._txn(run)

    def release_client(self, guid: bytes) -> None:
        """This worker no longer serves ``guid`` (its last connection closed)."""
        self._txn(lambda: self._db.execute("DELETE FROM clients WHERE guid = ? AND owner = ?",
                                           (guid, self.owner)))

    # -- byte-range locks --------------------------------------------------

    def _file_locks(self, dev: int, ino: int) -> list[tuple[str, Range]]:
        rows = self._db.execute(
            "SELECT open_key, owner, start, length, exclusive FROM locks WHERE dev = ? AND ino = ?",
            (dev, ino)).fetchall()
        held = []
        dead: set[str] = set()
        for key, owner, start, length, excl in rows:
            if owner in dead:
                continue
            if not self._live(owner):
                dead.add(owner)
                continue
            held.append((key, Range(_unsigned(start), _unsigned(length), bool(excl))))
        return held

    @staticmethod
    def _lock_conflict(open_key: str, want: Range, key: str, have: Range) -> bool:
        if not _overlap(want.start, want.length, have.start, have.length):
            return False
        if not want.exclusive and not have.exclusive:
            return False
        # A shared lock may stack on the same open's exclusive lock.
        return not (key == open_key and not want.exclusive)

    def lock(self, open_key: str, dev: int, ino: int, ranges: list[Range]) -> int:
        """Take all ``ranges`` or none of them; returns an NT status.

        An open that was closed meanwhile (a waiting lock outlived its
        handle) gets nothing: its locks would never be released.
        """
        def run() -> int:
            if self._db.execute("SELECT 1 FROM opens WHERE open_key = ?",
                                (open_key,)).fetchone() is None:
                return Status.FILE_CLOSED
            held = self._file_locks(dev, ino)
            for want in ranges:
                if any(self._lock_conflict(open_key, want, k, h) for k, h in held):
                    return Status.LOCK_NOT_GRANTED
                held.append((open_key, want))
            self._db.executemany(
                "INSERT INTO locks VALUES (?,?,?,?,?,?,?)",
                [(open_key, self.owner, dev, ino, _signed(r.start), _signed(r.length),
                  int(r.exclusive)) for r in ranges])
            return Status.SUCCESS
        return self._txn(run)

    def locks_of(self, open_key: str) -> list[Range]:
        """The byte-range locks one open holds, in the order they were taken."""
        with self._mutex:
            rows = self._db.execute(
                "SELECT start, length, exclusive FROM locks WHERE open_key = ? ORDER BY rowid",
                (open_key,)).fetchall()
        return [Range(_unsigned(a), _unsigned(n), bool(x)) for a, n, x in rows]

    def unlock(self, open_key: str, dev: int, ino: int, ranges: list[Range]) -> int:
        """Release exactly-matching locks of this open, one per range, in order.

        Like Windows, the unlocks before a failing one stay done.
        """
        def run() -> int:
            for r in ranges:
                row = self._db.execute(
                    "SELECT rowid FROM locks WHERE open_key = ? AND start = ? AND length = ?"
                    " ORDER BY exclusive DESC, rowid ASC LIMIT 1",
                    (open_key, _signed(r.start), _signed(r.length))).fetchone()
                if row is None:
                    return Status.RANGE_NOT_LOCKED
                self._db.execute("DELETE FROM locks WHERE rowid = ?", (row[0],))
            return Status.SUCCESS
        return self._txn(run)

    def io_allowed(self, open_key: str, dev: int, ino: int, start: int, length: int,
                   write: bool) -> bool:
        """Whether a READ/WRITE of the range may pass the locks of the file."""
        # Autocommit read: most files have no locks, and then no write
        # transaction is needed at all.
        if not self._read("SELECT 1 FROM locks WHERE dev = ? AND ino = ? LIMIT 1", (dev, ino)):
            return True

        def run() -> bool:
            for key, have in self._file_locks(dev, ino):
                if not _overlap(start, length, have.start, have.length):
                    continue
                if write and (key != open_key or not have.exclusive):
                    return False
                if not write and have.exclusive and key != open_key:
                    return False
            return True
        return self._txn(run)


_node_tables: dict[str, NodeLocal] = {}


def node_table(config: "Config") -> NodeLocal:
    """This process's connection to the node's shared table, made on first use
    (one per file: the worker's state and its tree connects share it)."""
    path = str(Path(config.node.state_dir) / f"smb-{config.cluster.name}.sqlite")
    table = _node_tables.get(path)
    if table is None:
        table = _node_tables[path] = NodeLocal(path)
    return table
