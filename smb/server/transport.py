"""The connection's byte stream, the thin I/O around the sans-IO parts:
direct-TCP messages in (smb.server.framing decides, this reads), and
(compound) replies out, signed or sealed, with READ data sent from where it
lies (a pooled buffer, or the file itself by sendfile(2)).

Nothing here knows sessions or commands: the connection passes the sealing
function of a reply's session and the signing channel of each response.
"""

from __future__ import annotations

import functools
import os
import socket
from dataclasses import replace
from typing import Callable, Iterable

import trio

from smb import vfs
from smb.server.buffers import FRAMES, MIN_POOLED, READ_BUFFERS
from smb.server.framing import FrameBuffer, frame_prefix
from smb.server.outgoing import Out
from smb.server.violation import ProtocolViolation
from smb.wire import crypto
from smb.wire.header import HEADER_SIZE, error_body

RECEIVE_CHUNK = 64 * 1024
# Reads in a row that found bytes at once before the receiver yields to others.
READS_PER_CHECKPOINT = 4
# Messages from this size on are encrypted, decrypted and signed in a worker thread.
OFFLOAD_CRYPTO = 256 * 1024
# The most pieces one writev(2) takes (Linux's UIO_MAXIOV).
_IOV_MAX = 1024

# Encrypts a reply's pieces for its session (crypto.encrypt with key, cipher,
# nonce and session id bound), in place where it may.
Seal = Callable[..., Iterable[crypto.Buffer]]


def _is_lent(piece: crypto.Buffer, lent: list[bytearray]) -> bool:
    return isinstance(piece, memoryview) and any(piece.obj is buf for buf in lent)


def _read_only(piece: crypto.Buffer) -> crypto.Buffer:
    """A handler's body or payload as the encryption must leave it: a handler
    may keep what it returned, so only the reply's own buffers are overwritten."""
    return piece if isinstance(piece, bytes) else memoryview(piece).toreadonly()


def _frame(outs: list[Out], direct: vfs.FileSlice | None, lent: list[bytearray],
           seal: functools.partial | None) -> list[crypto.Buffer]:
    """The reply's bytes after its 4-byte length, in pieces (blocking: reads
    file data into ``lent``, one buffer per FileSlice but ``direct``)."""
    buffers = iter(lent)
    outs = [out if out.payload is direct or not isinstance(out.payload, vfs.FileSlice)
            else _materialize(out, next(buffers)) for out in outs]
    pieces: list[crypto.Buffer] = []
    for i, out in enumerate(outs):
        last = i == len(outs) - 1
        size = HEADER_SIZE + len(out.body) + len(out.payload)
        pad = 0 if last else (-size) % 8
        header = bytearray(out.header.pack(next_command=0 if last else size + pad))
        rest = [p for p in (out.body, out.payload, bytes(pad))
                if len(p) and p is not direct]
        if out.sign_with is not None and seal is None:
            crypto.sign_header(out.sign_with.signing_key, out.sign_with.signing_alg, header,
                               rest)
        if seal is None:
            pieces += [header, *rest]
        else:  # sealed in place: only what is this reply's own may be overwritten
            pieces += [header, *(p if _is_lent(p, lent) else _read_only(p) for p in rest)]
    if seal is None:
        return pieces
    # The headers and the pooled READ data are this reply's own: they are
    # encrypted where they lie (see _read_only).
    return list(seal(pieces, overwrite=True))


def _materialize(out: Out, buf: bytearray) -> Out:
    """The reply with its file data read into ``buf``, or, when the read
    fails, the error the client is told instead (blocking)."""
    data = out.payload
    assert isinstance(data, vfs.FileSlice)
    try:
        data.read_into(buf)
    except vfs.VfsError as exc:
        return Out(out.header.evolve(status=exc.status), error_body(), b"", out.sign_with)
    finally:
        data.close()
    return replace(out, payload=memoryview(buf)[:len(data)])


class Transport:
    def __init__(self, stream: trio.abc.Stream, received: bytes, max_frame: int) -> None:
        """``received``: bytes another worker read from this connection
        before handing it here."""
        self.stream = stream
        # Replies are written to the socket's descriptor directly (_write_now).
        self.sock: trio.socket.SocketType | None = getattr(stream, "socket", None)
        self.frames = FrameBuffer(received, max_frame)
        self._send_lock = trio.Lock()
        # For a drain (smb.server.drain): when bytes last came in, and whether
        # a large frame is partly read into its buffer.
        self.last_received = float("-inf")
        self.reading_frame = False
        # The sending side is shut (a drain finished the connection): replies
        # are dropped, the client reconnects and asks again.
        self.shut = False
        self._ready_reads = 0  # reads in a row that found bytes without waiting

    async def _fill(self) -> bool:
        """Read what the socket holds; False at the end of the stream.

        A read(2) that finds nothing waits for the socket to be readable and
        reads then: one trip through trio's scheduler (trio's own
        receive_some paid a failed recv(2) and two trips for a request that
        was not there yet, the usual case of a client waiting for each
        reply).  Reads that find bytes at once (a client that pipelines)
        checkpoint every READS_PER_CHECKPOINT-th time in a row, so a busy
        connection lets the others run after at most that many reads' worth
        of messages (one read may hold many already), without a trip per read.
        """
        sock = self.sock
        if sock is None:
            chunk = await self.stream.receive_some(RECEIVE_CHUNK)
            waited = True
        else:
            chunk = self._read_now(sock)
            waited = chunk is None
            while chunk is None:  # (woken without bytes is rare: then it waits again)
                await trio.lowlevel.wait_readable(sock)
                chunk = self._read_now(sock)
        self.last_received = trio.current_time()
        self.frames.receive_data(chunk)
        self._ready_reads = 0 if waited else self._ready_reads + 1
        if self._ready_reads >= READS_PER_CHECKPOINT:
            self._ready_reads = 0
            await trio.lowlevel.checkpoint()  # kept in the frame buffer if cancelled here
        return bool(chunk)

    @staticmethod
    def _read_now(sock: trio.socket.SocketType) -> bytes | None:
        """The bytes the socket holds now (b"" at its end), None if it holds none."""
        fd = sock.fileno()
        if fd < 0:
            raise trio.ClosedResourceError("connection closed")
        try:
            return os.read(fd, RECEIVE_CHUNK)
        except BlockingIOError:
            return None

    async def _receive_into(self, view: memoryview) -> int:
        """Read straight into the frame's buffer, so a large WRITE is copied once."""
        sock = self.sock
        if sock is not None:
            return await sock.recv_into(view)
        chunk = await self.stream.receive_some(len(view))
        view[:len(chunk)] = chunk
        return len(chunk)

    async def receive_message(self) -> bytearray | memoryview | None:
        """One direct-TCP frame's message, refused before allocation if too large."""
        frames = self.frames
        while True:
            message = frames.next_message()
            if message is not None:
                return message
            length = frames.pending()
            if length >= MIN_POOLED:
                break
            if not await self._fill():
                if len(frames):
                    raise ProtocolViolation("connection closed mid-message")
                return None
        # A large frame goes into a reused buffer: no allocation, no zero-fill,
        # and its bytes are read straight into it.
        view = FRAMES.take(length, frames.max_frame)
        have = frames.take(view)
        self.reading_frame = True
        while have < length:
            got = await self._receive_into(view[have:])
            self.last_received = trio.current_time()
            if not got:
                raise ProtocolViolation("connection closed mid-message")
            have += got
        self.reading_frame = False
        return view

    @property
    def partial(self) -> bool:
        """Whether bytes of a request are in that were not handed on yet."""
        return self.reading_frame or len(self.frames) > 0

    async def send(self, outs: list[Out], seal: Seal | None) -> None:
        """Frame, sign or encrypt (``seal``), and send one (compound) reply.

        Large payloads (READ data) are handed to the socket as they are instead
        of being copied into the frame, also when they are encrypted (with GCM).
        READ data still in its file goes by sendfile(2) when the reply is the
        last of its compound and neither signed nor encrypted; otherwise it is
        read into a pooled buffer first, and signed or encrypted in the same
        thread hop (a hop costs more than signing a MiB with GMAC).
        """
        direct = outs[-1].payload if seal is None and outs[-1].sign_with is None else None
        if not isinstance(direct, vfs.FileSlice):
            direct = None
        # Taken here, not in the thread: the pool belongs to the event loop.
        lent = [READ_BUFFERS.take(len(out.payload)) for out in outs
                if isinstance(out.payload, vfs.FileSlice) and out.payload is not direct]
        try:
            if self.shut:
                return
            frame = functools.partial(_frame, outs, direct, lent, seal)
            crypto_size = sum(HEADER_SIZE + len(o.body) + len(o.payload) for o in outs
                              if seal is not None or o.sign_with is not None)
            # File data is read, and large replies signed or sealed, in a thread:
            # pread may wait for the disk, and AES and HMAC release the GIL.
            pieces = await trio.to_thread.run_sync(frame) \
                if lent or crypto_size >= OFFLOAD_CRYPTO else frame()
            total = sum(len(p) for p in pieces) + (len(direct) if direct is not None else 0)
            pieces.insert(0, frame_prefix(total))
            if direct is None and not self._send_lock.locked():
                pieces = self._write_now(pieces)
                if not pieces:
                    return
            small = bytearray()
            # Taken without a checkpoint when free: send_all yields anyway.
            if self._send_lock.locked():
                await self._send_lock.acquire()
            else:
                self._send_lock.acquire_nowait()
            try:
                for piece in pieces:
                    if len(piece) < RECEIVE_CHUNK:
                        small += piece
                        continue
                    if small:
                        await self.stream.send_all(small)
                        small = bytearray()
                    await self.stream.send_all(piece)
                if small:
                    await self.stream.send_all(small)
                if direct is not None:
                    await self._send_file(direct, lent)
            finally:
                self._send_lock.release()
        finally:
            for out in outs:
                if isinstance(out.payload, vfs.FileSlice):
                    out.payload.close()
            for buf in lent:
                READ_BUFFERS.give(buf)

    async def shut_sending(self) -> None:
        """Send the end of the stream (FIN) once no reply is being sent, and
        send nothing more; the receiving side stays open."""
        async with self._send_lock:
            self.shut = True
            try:
                if self.sock is not None:
                    self.sock.shutdown(socket.SHUT_WR)
                elif isinstance(self.stream, trio.abc.HalfCloseableStream):
                    await self.stream.send_eof()
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # already gone: nothing left to finish

    def _write_now(self, pieces: list[crypto.Buffer]) -> list[crypto.Buffer]:
        """Hand a reply to the kernel at once, without a trip through trio's
        scheduler (a reply per request: the scheduler round trip cost more
        than the write); returns what the socket did not take, for send_all.
        Nothing else sends meanwhile: the caller checked that no send is in
        progress, and nothing here yields.  Fairness stays with the receive
        side, which checkpoints once per message read."""
        if self.sock is None:
            return pieces
        # Asked each time: a closed socket says -1, and its number may be reused.
        fd = self.sock.fileno()
        if fd < 0:
            raise trio.ClosedResourceError("connection closed")
        try:
            written = os.writev(fd, pieces[:_IOV_MAX])
        except BlockingIOError:
            return pieces
        except OSError as exc:  # reset by the client, or the socket is closed
            raise trio.BrokenResourceError(str(exc)) from None
        for i, piece in enumerate(pieces):
            if written < len(piece):
                return [memoryview(piece)[written:], *pieces[i + 1:]]
            written -= len(piece)
        return []

    async def _send_file(self, data: vfs.FileSlice, lent: list[bytearray]) -> None:
        """The payload of a reply whose header went already: sendfile(2) while the
        kernel takes it, then (a file that cannot be sent so, or shrank) read.

        sendfile runs in a thread: a page that is not in the cache is read from
        the disk meanwhile, and the event loop must not wait for that.
        """
        sock = self.sock
        done = 0
        while sock is not None and done < len(data):
            try:
                sent, full = await trio.to_thread.run_sync(data.send_some, sock.fileno(), done)
            except OSError:
                break
            done += sent
            if not full:
                break
            await trio.lowlevel.wait_writable(sock)
        if done == len(data):
            return
        buf = READ_BUFFERS.take(len(data) - done)
        lent.append(buf)
        try:
            await trio.to_thread.run_sync(data.read_into, buf, done)
        except vfs.VfsError as exc:  # the header promised data: the stream is lost
            raise ProtocolViolation(f"read failed mid-reply: status {exc.status:#x}") from None
        await self.stream.send_all(memoryview(buf)[:len(data) - done])
