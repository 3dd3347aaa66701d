"""A client that copies a file the way a Windows client survives failover:
a durable v2 handle with a batch oplock, and on a lost connection a new
connection, session and tree connect, DH2C with the original create GUID,
and the write that was in flight sent again.  Built on smbprotocol's
low-level API (the real client library, not a model of one).
"""

from __future__ import annotations

import socket
import time
import uuid
from dataclasses import dataclass

import psutil
from smbprotocol.connection import Connection
from smbprotocol.create_contexts import (
    CreateContextName, SMB2CreateContextRequest, SMB2CreateDurableHandleReconnectV2,
    SMB2CreateDurableHandleRequestV2, SMB2CreateDurableHandleResponseV2,
)
from smbprotocol.exceptions import SMBException, SMBResponseException
from smbprotocol.open import (
    CreateDisposition, CreateOptions, FileAttributes, FilePipePrinterAccessMask,
    ImpersonationLevel, Open, RequestedOplockLevel, ShareAccess, SMB2LockElement,
)
from smbprotocol.session import Session
from smbprotocol.tree import TreeConnect

CHUNK = 1024 * 1024
OBJECT_NAME_NOT_FOUND = 0xC0000034
ACCESS_DENIED = 0xC0000022

ACCESS = (FilePipePrinterAccessMask.GENERIC_READ | FilePipePrinterAccessMask.GENERIC_WRITE)
FILE_READ_ATTRIBUTES = 0x80
SHARE_ALL = ShareAccess.FILE_SHARE_READ | ShareAccess.FILE_SHARE_WRITE | \
    ShareAccess.FILE_SHARE_DELETE


def _context(name: bytes, data) -> SMB2CreateContextRequest:
    ctx = SMB2CreateContextRequest()
    ctx["buffer_name"] = name
    ctx["buffer_data"] = data
    return ctx


def dh2q(create_guid: uuid.UUID, timeout_ms: int = 60_000) -> SMB2CreateContextRequest:
    req = SMB2CreateDurableHandleRequestV2()
    req["timeout"] = timeout_ms
    req["create_guid"] = create_guid
    return _context(CreateContextName.SMB2_CREATE_DURABLE_HANDLE_REQUEST_V2, req)


def dh2c(file_id: bytes, create_guid: uuid.UUID) -> SMB2CreateContextRequest:
    req = SMB2CreateDurableHandleReconnectV2()
    req["file_id"] = file_id
    req["create_guid"] = create_guid
    return _context(CreateContextName.SMB2_CREATE_DURABLE_HANDLE_RECONNECT_V2, req)


@dataclass
class Mount:
    conn: Connection
    session: Session
    tree: TreeConnect

    def local_port(self) -> int:
        return self.conn.transport._sock.getsockname()[1]

    def drop(self) -> None:
        """Lose the TCP connection without LOGOFF or CLOSE (a cable pulled, a crash)."""
        try:
            self.conn.transport._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already gone: the server side died first


def lock_element(offset: int, length: int, flags: int) -> SMB2LockElement:
    """One range of a LOCK request, as smbprotocol's Open.lock takes them."""
    el = SMB2LockElement()
    el["offset"] = offset
    el["length"] = length
    el["flags"] = flags
    return el


def mount(port: int, user: str, password: str, share: str, client_guid: uuid.UUID,
          host: str = "127.0.0.1", connect_timeout: float = 5, dialect: int | None = None) -> Mount:
    conn = Connection(client_guid, host, port)
    conn.connect(dialect, timeout=connect_timeout)
    session = Session(conn, user, password, require_encryption=False)
    session.connect()
    tree = TreeConnect(session, f"\\\\{host}\\{share}")
    tree.connect()
    return Mount(conn, session, tree)


def open_durable(m: Mount, name: str, create_guid: uuid.UUID) -> tuple[Open, list]:
    op = Open(m.tree, name)
    contexts = op.create(ImpersonationLevel.Impersonation, ACCESS, FileAttributes.FILE_ATTRIBUTE_NORMAL,
                         ShareAccess.FILE_SHARE_READ, CreateDisposition.FILE_OVERWRITE_IF,
                         CreateOptions.FILE_NON_DIRECTORY_FILE, [dh2q(create_guid)],
                         RequestedOplockLevel.SMB2_OPLOCK_LEVEL_BATCH)
    return op, contexts or []


def stat_open(tree: TreeConnect, name: str) -> None:
    """Open for attributes only, sharing everything, and close: an open that
    conflicts with no share mode and needs no caching broken."""
    op = Open(tree, name)
    op.create(ImpersonationLevel.Impersonation, FILE_READ_ATTRIBUTES,
              FileAttributes.FILE_ATTRIBUTE_NORMAL, SHARE_ALL, CreateDisposition.FILE_OPEN,
              CreateOptions.FILE_NON_DIRECTORY_FILE, None,
              RequestedOplockLevel.SMB2_OPLOCK_LEVEL_NONE)
    op.close()


def conflicting_open_status(tree: TreeConnect, name: str) -> int:
    """The status of a read/write FILE_OPEN that shares only reads (0 when it
    succeeded; that open then stays)."""
    try:
        Open(tree, name).create(
            ImpersonationLevel.Impersonation, ACCESS, FileAttributes.FILE_ATTRIBUTE_NORMAL,
            ShareAccess.FILE_SHARE_READ, CreateDisposition.FILE_OPEN,
            CreateOptions.FILE_NON_DIRECTORY_FILE, None,
            RequestedOplockLevel.SMB2_OPLOCK_LEVEL_NONE)
    except SMBResponseException as exc:
        return exc.status
    return 0


def reclaim(m: Mount, file_id: bytes, create_guid: uuid.UUID) -> Open:
    """DH2C as Windows sends it: empty name, only the reconnect context."""
    op = Open(m.tree, "")
    op.create(ImpersonationLevel.Impersonation, ACCESS, FileAttributes.FILE_ATTRIBUTE_NORMAL,
              ShareAccess.FILE_SHARE_READ, CreateDisposition.FILE_OPEN,
              CreateOptions.FILE_NON_DIRECTORY_FILE, [dh2c(file_id, create_guid)],
              RequestedOplockLevel.SMB2_OPLOCK_LEVEL_BATCH)
    return op


def reclaim_after_a_conflicting_open(port: int, user: str, password: str, share: str,
                                     name: str, data: bytes, client_guid: uuid.UUID,
                                     file_id: bytes, create_guid: uuid.UUID) -> int:
    """Another client opens ``name`` (sharing read only), writes ``data`` and
    closes; then the durable handle's own client tries its reconnect.  Returns
    that reconnect's status (0 when it got the handle back)."""
    other = mount(port, user, password, share, uuid.uuid4())
    theirs, _ = open_durable(other, name, uuid.uuid4())
    theirs.write(data, 0)
    theirs.close()
    other.conn.disconnect()
    late = mount(port, user, password, share, client_guid)
    try:
        reclaim(late, file_id, create_guid)
    except SMBResponseException as exc:
        return exc.status
    finally:
        late.conn.disconnect()
    return 0


def serving_pid(port: int, client_port: int) -> int:
    """The server process holding the other end of the client's connection."""
    for c in psutil.net_connections(kind="tcp"):
        if c.laddr and c.raddr and c.laddr.port == port and c.raddr.port == client_port \
                and c.pid is not None:
            return c.pid
    raise LookupError(f"no server process has a connection from port {client_port}")


@dataclass
class CopyReport:
    reconnects: int
    reclaim_seconds: list[float]
    serving_pids: list[int]


def copy_with_failover(port: int, user: str, password: str, share: str, name: str,
                       data: bytes, disrupt, *, disrupt_at: int, reconnect_port: int | None = None,
                       reclaim_timeout: float = 30.0) -> CopyReport:
    """Write ``data`` in CHUNK writes; before chunk ``disrupt_at``, ``disrupt(mount)``.

    A write that fails on a dead connection is retried after reclaiming the
    handle on a new connection, as many times as needed within reclaim_timeout.
    reconnect_port: where the client comes back (another node), if not to ``port``.
    """
    client_guid, create_guid = uuid.uuid4(), uuid.uuid4()
    m = mount(port, user, password, share, client_guid)
    op, contexts = open_durable(m, name, create_guid)
    if op.oplock_level != RequestedOplockLevel.SMB2_OPLOCK_LEVEL_BATCH:
        raise AssertionError(f"no batch oplock: {op.oplock_level}")
    if not any(isinstance(c, SMB2CreateDurableHandleResponseV2) for c in contexts):
        raise AssertionError(f"no durable v2 grant: {contexts}")
    file_id = op.file_id
    report = CopyReport(0, [], [serving_pid(port, m.local_port())])
    offset = 0
    chunk_no = 0
    while offset < len(data):
        if chunk_no == disrupt_at:
            disrupt(m)
        piece = data[offset:offset + CHUNK]
        try:
            op.write(piece, offset)
        except (SMBException, OSError, ConnectionError) as exc:
            if isinstance(exc, SMBResponseException):
                raise
            started = time.monotonic()
            port = reconnect_port or port
            op, m = _reclaim_until(port, user, password, share, client_guid, file_id,
                                   create_guid, started + reclaim_timeout)
            report.reconnects += 1
            report.reclaim_seconds.append(time.monotonic() - started)
            report.serving_pids.append(serving_pid(port, m.local_port()))
            op.write(piece, offset)  # the write that was in flight
        offset += len(piece)
        chunk_no += 1
    op.close()
    m.conn.disconnect()
    return report


def _reclaim_until(port, user, password, share, client_guid, file_id, create_guid,
                   deadline: float):
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            m = mount(port, user, password, share, client_guid)
        except (SMBException, OSError, ConnectionError, ValueError) as exc:
            # smbprotocol raises ValueError when the TCP connect fails: a
            # connection the kernel queued on the killed worker's listener is
            # reset, and the client connects again, as a real one does.
            last = exc
            time.sleep(0.2)
            continue
        try:
            return reclaim(m, file_id, create_guid), m
        except SMBResponseException as exc:
            last = exc
            m.conn.disconnect()
            if exc.status != OBJECT_NAME_NOT_FOUND:
                raise
            time.sleep(0.2)  # the old worker's liveness lease has not expired yet
    raise AssertionError(f"could not reclaim the durable handle: {last!r}")
