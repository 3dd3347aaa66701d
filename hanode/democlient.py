"""The demo's SMB client: copies one file to a share and comes back after a reset
the way Windows does.

It is the test client of ``hanode demo``, not part of the server, and is built
on smbprotocol's low-level Connection/Session/TreeConnect/Open objects:

- CREATE with a durable v2 handle request (DH2Q, a create GUID of its own)
  and a batch oplock; or, with ``--persistent``, DH2Q with the persistent
  flag and no oplock and no lease, as Windows opens files on a continuously
  available share (the DH2C then carries the flag too);
- WRITEs pipelined, several in flight;
- when the connection breaks (reset, closed, no answer): a new TCP
  connection, NEGOTIATE with the same client GUID, SESSION_SETUP carrying
  the old session as PreviousSessionId, TREE_CONNECT, CREATE with DH2C (the
  original file id and create GUID), then every write that was in flight is
  sent again.

The data is a deterministic pseudo-random stream (seeded per client), so no
source file has to exist: the client hashes what it sends, in order, and the
demo compares that hash with the file on the shared storage.

Run as ``python -m hanode.democlient ...``; it prints one JSON object per line
(``ev``: open, progress, lost, connected, reclaimed, reopened, done, error;
``t``: CLOCK_MONOTONIC, comparable across processes).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any

from smbprotocol.connection import Connection
from smbprotocol.create_contexts import (
    CreateContextName, DurableHandleFlags, SMB2CreateContextRequest, SMB2CreateDurableHandleReconnectV2,
    SMB2CreateDurableHandleRequestV2, SMB2CreateDurableHandleResponseV2,
)
from smbprotocol.exceptions import SMBResponseException
from smbprotocol.open import (
    CreateDisposition, CreateOptions, FileAttributes, FilePipePrinterAccessMask,
    ImpersonationLevel, Open, RequestedOplockLevel, ShareAccess,
)
from smbprotocol.session import Session, SMB2SessionSetupRequest
from smbprotocol.tree import TreeConnect

CHUNK = 1 << 20           # bytes per WRITE unless told otherwise
DEPTH = 8                 # writes in flight
DURABLE_TIMEOUT_MS = 60_000
# A TCP connect that gets no answer is retried after 50 ms, then 100, 200, ...
# up to 1 s: right after a reset the VIP may still be on its way to the new
# node, and a SYN sent into that gap is lost.
CONNECT_TIMEOUT_FIRST = 0.05
CONNECT_TIMEOUT_MAX = 1.0
# --reconnect kernel: as the Linux kernel client does, one connect at a time that
# relies on the kernel's own SYN retransmission (1 s, then 3 s...), and a pause
# after a connect that failed outright.
KERNEL_CONNECT_TIMEOUT = 10.0
KERNEL_RETRY_PAUSE = 2.0
RESPONSE_TIMEOUT = 10.0   # a write unanswered this long means the connection is gone
RECONNECT_FOR = 60.0      # give up after this long without a server
PROGRESS_EVERY = 0.1
# A wait for an acknowledgement at least this long is reported on its own (a
# "stall" event: when it began and how long), so that a run with several
# moves (a rolling restart) can tell which move cost what.
STALL_EVERY = 0.05


def emit(ev: str, **fields: Any) -> None:
    print(json.dumps({"ev": ev, "t": time.monotonic(), **fields}), flush=True)


def chunk_at(seed: int, offset: int, length: int) -> bytes:
    """The stream's bytes at offset (where a write starts): the same on every resend."""
    return random.Random(seed * 1_000_003 + offset).randbytes(length)


class Broken(Exception):
    """The connection is gone (reset, closed, or silent); reconnect."""


class ReconnectingConnection(Connection):
    """A Connection whose SESSION_SETUP names the session it replaces (3.3.5.5.3)."""

    previous_session_id = 0

    def send(self, message, *args, **kwargs):
        if isinstance(message, SMB2SessionSetupRequest) and self.previous_session_id:
            message["previous_session_id"] = self.previous_session_id
        return super().send(message, *args, **kwargs)


@dataclass
class Target:
    server: str
    port: int
    share: str
    user: str
    password: str
    name: str


def _context(name: bytes, data: Any) -> SMB2CreateContextRequest:
    ctx = SMB2CreateContextRequest()
    ctx["buffer_name"] = name
    ctx["buffer_data"] = data
    return ctx


class Copier:
    def __init__(self, target: Target, size: int, seed: int, chunk: int = CHUNK,
                 pace: float = 0.0, kernel_reconnect: bool = False, persistent: bool = False):
        self.target = target
        self.persistent = persistent
        self.kernel_reconnect = kernel_reconnect
        self.size = size
        self.seed = seed
        self.chunk = chunk
        self.pace = pace  # bytes/s at most; 0: as fast as the server takes them
        self.client_guid = uuid.uuid4()
        self.create_guid = uuid.uuid4()
        self.conn: ReconnectingConnection | None = None
        self.session: Session | None = None
        self.open: Open | None = None
        self.file_id = b""
        self.durable = False
        self.handle_flags = DurableHandleFlags.SMB2_DHANDLE_FLAG_PERSISTENT if persistent else 0
        self.oplock = RequestedOplockLevel.SMB2_OPLOCK_LEVEL_NONE if persistent else \
            RequestedOplockLevel.SMB2_OPLOCK_LEVEL_BATCH

    # -- connecting ---------------------------------------------------------------

    def _connect(self, previous_session_id: int, timeout: float) -> None:
        t = self.target
        conn = ReconnectingConnection(self.client_guid, t.server, t.port)
        conn.previous_session_id = previous_session_id
        try:
            conn.connect(timeout=timeout)
            session = Session(conn, t.user, t.password, require_encryption=False,
                              auth_protocol="ntlm")
            session.connect()
            tree = TreeConnect(session, rf"\\{t.server}\{t.share}")
            tree.connect()
        except BaseException:
            conn.disconnect(False)
            raise
        self.conn, self.session = conn, session
        self.open = Open(tree, t.name)

    def _create(self, contexts: list[SMB2CreateContextRequest],
                disposition: int) -> list[Any]:
        assert self.open is not None
        responses = self.open.create(
            ImpersonationLevel.Impersonation,
            FilePipePrinterAccessMask.GENERIC_READ | FilePipePrinterAccessMask.GENERIC_WRITE,
            FileAttributes.FILE_ATTRIBUTE_NORMAL, ShareAccess.FILE_SHARE_READ, disposition,
            CreateOptions.FILE_NON_DIRECTORY_FILE, create_contexts=contexts,
            oplock_level=self.oplock)
        self.file_id = self.open.file_id
        return responses or []

    def open_durable(self) -> None:
        request = SMB2CreateDurableHandleRequestV2()
        request["timeout"] = DURABLE_TIMEOUT_MS
        request["create_guid"] = self.create_guid
        request["flags"] = self.handle_flags
        responses = self._create(
            [_context(CreateContextName.SMB2_CREATE_DURABLE_HANDLE_REQUEST_V2, request)],
            CreateDisposition.FILE_OVERWRITE_IF)
        assert self.open is not None
        granted = [r for r in responses if isinstance(r, SMB2CreateDurableHandleResponseV2)]
        self.durable = bool(granted)
        emit("open", durable=self.durable,
             persistent=any(r["flags"].get_value() & DurableHandleFlags.SMB2_DHANDLE_FLAG_PERSISTENT
                            for r in granted),
             oplock=int(self.open.oplock_level) == RequestedOplockLevel.SMB2_OPLOCK_LEVEL_BATCH)

    def _connect_retrying(self, previous_session_id: int) -> int:
        """Connect, retrying at once while no server answers; returns the attempts made."""
        deadline = time.monotonic() + RECONNECT_FOR
        attempts = 0
        while True:
            attempts += 1
            timeout = KERNEL_CONNECT_TIMEOUT if self.kernel_reconnect else \
                min(CONNECT_TIMEOUT_FIRST * 2 ** (attempts - 1), CONNECT_TIMEOUT_MAX)
            try:
                self._connect(previous_session_id, timeout)
                return attempts
            except Exception as exc:  # refused, reset, timed out: smbprotocol says it many ways
                if time.monotonic() >= deadline:
                    raise RuntimeError(f"no server for {RECONNECT_FOR:.0f} s: {exc}") from exc
                time.sleep(KERNEL_RETRY_PAUSE if self.kernel_reconnect else 0.02)

    def reconnect(self) -> None:
        """New connection, PreviousSessionId, tree, DH2C."""
        old_session = self.session.session_id if self.session else 0
        old_file_id = self.file_id
        self._drop()
        attempts = self._connect_retrying(old_session)
        emit("connected", attempts=attempts)
        reconnect = SMB2CreateDurableHandleReconnectV2()
        reconnect["file_id"] = old_file_id
        reconnect["create_guid"] = self.create_guid
        reconnect["flags"] = self.handle_flags
        try:
            self._create(
                [_context(CreateContextName.SMB2_CREATE_DURABLE_HANDLE_RECONNECT_V2, reconnect)],
                CreateDisposition.FILE_OPEN)
            emit("reclaimed")
        except SMBResponseException as exc:
            # What a client without a durable handle can do: open the file again.
            # The demo reports it, and fails: the point is the reclaim.
            emit("reopened", status=f"0x{exc.status:08x}")
            self._create([], CreateDisposition.FILE_OPEN)

    def _drop(self) -> None:
        if self.conn is not None:
            try:
                self.conn.disconnect(False)
            except Exception:
                pass  # already broken; nothing left to close
        self.conn = self.session = self.open = None

    # -- copying --------------------------------------------------------------------

    def _credits(self) -> int:
        """Credits the connection holds (smbprotocol's window), to send no more than them."""
        assert self.conn is not None
        window = self.conn.sequence_window
        return int(window["high"] - window["low"])

    def _charge(self, offset: int) -> int:
        return (max(min(self.chunk, self.size - offset), 1) - 1) // 65536 + 1

    def _wait_for_credits(self, need: int) -> None:
        """With nothing in flight and no credit (a server draining its connections
        before a planned move grants none), wait as Windows and Linux do until the
        server grants some or the connection ends; Broken when it ends."""
        assert self.conn is not None
        deadline = time.monotonic() + RESPONSE_TIMEOUT
        while time.monotonic() < deadline:
            if self._credits() >= need:
                return
            try:
                self.conn._check_worker_running()  # raises once the socket failed
            except Exception as exc:  # smbprotocol reports a dead socket in several ways
                raise Broken(str(exc) or type(exc).__name__) from exc
            time.sleep(0.005)
        raise Broken(f"no credit for {RESPONSE_TIMEOUT:g} s")

    def _send_write(self, offset: int):
        assert self.open is not None and self.conn is not None and self.session is not None
        data = chunk_at(self.seed, offset, min(self.chunk, self.size - offset))
        message, receive = self.open.write(data, offset, send=False)
        try:
            request = self.conn.send(message, self.session.session_id,
                                     self.open.tree_connect.tree_connect_id)
        except Exception as exc:  # a dead socket, however smbprotocol words it
            raise Broken(str(exc) or type(exc).__name__) from exc
        return request, receive, len(data)

    def _await(self, request, receive) -> int:
        """The write's count, or Broken when the connection failed under it."""
        try:
            if not request.response_event.wait(RESPONSE_TIMEOUT):
                raise Broken("no answer")
            if request.response is None:
                raise Broken("connection closed")
            return receive(request)
        except SMBResponseException:
            raise
        except Broken:
            raise
        except Exception as exc:  # smbprotocol reports a dead socket in several ways
            raise Broken(str(exc) or type(exc).__name__) from exc

    def run(self) -> None:
        """Copy, then emit done with the sha256 of the stream sent."""
        self._connect_retrying(0)
        self.open_durable()
        started = time.monotonic()
        sha = hashlib.sha256()
        acked = 0                # bytes acknowledged, in order
        inflight: deque[int] = deque()
        pending: dict[int, Any] = {}
        resend: list[int] = []
        next_offset = 0
        # The stall: how long the copy waited for an acknowledgement, counted
        # from the later of the previous one and the write's first sending (a
        # paced copy is not waiting while it has nothing to send).
        last_ack = started
        first_sent: dict[int, float] = {}
        longest_gap = 0.0
        last_progress = 0.0
        while acked < self.size:
            try:
                while resend:
                    pending[resend[0]] = self._send_write(resend[0])
                    resend.pop(0)
                while len(inflight) < DEPTH and next_offset < self.size:
                    if self._credits() < self._charge(next_offset):
                        if inflight:
                            break  # their answers may bring credits
                        self._wait_for_credits(self._charge(next_offset))
                    due = started + next_offset / self.pace if self.pace else 0.0
                    if time.monotonic() < due:
                        if inflight:
                            break
                        time.sleep(due - time.monotonic())
                    # Stamped before sending: a send that finds the connection
                    # dead starts the wait all the same.
                    first_sent.setdefault(next_offset, time.monotonic())
                    pending[next_offset] = self._send_write(next_offset)
                    inflight.append(next_offset)
                    sha.update(chunk_at(self.seed, next_offset,
                                        min(self.chunk, self.size - next_offset)))
                    next_offset += self.chunk
                offset = inflight[0]
                request, receive, length = pending[offset]
                count = self._await(request, receive)
                if count != length:
                    raise RuntimeError(f"write at {offset} wrote {count} of {length} bytes")
                inflight.popleft()
                del pending[offset]
                waited_from = max(last_ack, first_sent.pop(offset))
                acked += length
                now = time.monotonic()
                longest_gap = max(longest_gap, now - waited_from)
                if now - waited_from >= STALL_EVERY:
                    emit("stall", since=waited_from, seconds=round(now - waited_from, 4))
                last_ack = now
                if now - last_progress >= PROGRESS_EVERY or acked == self.size:
                    emit("progress", acked=acked)
                    last_progress = now
            except Broken as exc:
                emit("lost", why=str(exc), inflight=len(inflight))
                self.reconnect()
                resend = list(inflight)  # the writes in flight, once more
        assert self.open is not None
        self.open.close()
        self._drop()
        emit("done", bytes=acked, longest_gap=longest_gap, sha256=sha.hexdigest())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="hanode.democlient")
    p.add_argument("--server", required=True)
    p.add_argument("--port", type=int, default=445)
    p.add_argument("--share", default="test")
    p.add_argument("--user", required=True)
    p.add_argument("--name", required=True, help="file name on the share")
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--chunk", type=int, default=CHUNK, help="bytes per WRITE")
    p.add_argument("--pace", type=float, default=0.0, help="at most this many bytes/s")
    p.add_argument("--reconnect", choices=["eager", "kernel"], default="eager",
                   help="eager: connect attempts from 50 ms up; kernel: one at a time, "
                        "with the kernel's SYN retransmission")
    p.add_argument("--persistent", action="store_true",
                   help="ask for a persistent handle (no oplock, no lease): a CA share's open")
    args = p.parse_args(argv)
    password = sys.stdin.readline().rstrip("\n")
    copier = Copier(Target(args.server, args.port, args.share, args.user, password, args.name),
                    args.size, args.seed, args.chunk, args.pace,
                    kernel_reconnect=args.reconnect == "kernel", persistent=args.persistent)
    try:
        copier.run()
    except Exception as exc:  # the edge: one event line for the demo, no traceback
        emit("error", message=f"{type(exc).__name__}: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
