"""A light SMB2/3 open load generator: many connections from one process, each
doing CREATE then CLOSE back to back, so that the bench measures the server
and not the client.

smbprotocol builds every message from field objects and costs the client
about as much CPU per open as the server spends answering it; on a two-core
machine that made the old bench measure its clients.  Here logon goes through
pyspnego (NTLM in SPNEGO, as a real client sends it) and the per-open path is
byte templates packed once with ``struct``: a request only gets its MessageId,
its CreateGuid (DH2Q) or FileId (CLOSE) and, on a signed session, its
AES-CMAC signature patched in.  One selectors loop drives every connection.

Every response is checked (status, the batch oplock for ``batch`` and
``durable``, the DH2Q response context for ``durable``); anything else stops
the run with an OpenLoadError, so a failing server never looks fast.  Only
127.0.0.1 is contacted.
"""

from __future__ import annotations

import hashlib
import os
import selectors
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Iterator

import spnego
import spnego.exceptions
from cryptography.hazmat.primitives import cmac, hashes
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.kdf.kbkdf import CounterLocation, KBKDFHMAC, Mode

KINDS = ("plain", "batch", "durable")
# DH2Q with the persistent flag and no oplock: granted only on a continuously
# available share (bench/persistent.py), so not among the kinds smbd is asked for.
PERSISTENT = "persistent"
ALL_KINDS = (*KINDS, PERSISTENT)
DHANDLE_FLAG_PERSISTENT = 0x2
DIALECTS = {"3.0.2": 0x0302, "3.1.1": 0x0311}

NEGOTIATE, SESSION_SETUP, TREE_CONNECT, CREATE, CLOSE = 0, 1, 3, 5, 6
SUCCESS, PENDING, MORE_PROCESSING = 0, 0x103, 0xC0000016
FLAG_ASYNC, FLAG_SIGNED = 0x2, 0x8
SIGNING_ENABLED, SIGNING_REQUIRED = 0x1, 0x2
OPLOCK_NONE, OPLOCK_BATCH = 0x00, 0x09
BREAK_MESSAGE_ID = 0xFFFFFFFFFFFFFFFF

# CREATE's fields as a file copier sends them: read/write data and attributes,
# sharing reads, a regular file.  FILE_OVERWRITE_IF is what a copy opens its
# target with; the files stay empty, so the truncation costs the server nothing
# and each open is the open itself.
DESIRED_ACCESS = 0x0012019F
SHARE_READ = 0x1
FILE_OVERWRITE_IF = 5
NON_DIRECTORY_FILE = 0x40
IMPERSONATION = 2
ATTRIBUTE_NORMAL = 0x80
DH2Q_TIMEOUT_MS = 60_000

HEADER = struct.Struct("<4sHHIHHIIQIIQ16s")
HEADER_SIZE = 64
NB = 4  # the Direct TCP length prefix in front of every message
MSGID_AT = NB + 24
SIGNATURE_AT = NB + 48
CREDITS_WANTED = 64


class OpenLoadError(Exception):
    """The server did not answer as a correct server must; the message says how."""


@dataclass(frozen=True)
class Server:
    """Where to connect and as whom; ``name`` only labels errors."""

    port: int
    user: str
    password: str
    share: str
    name: str = "server"


@dataclass(frozen=True)
class Held:
    """A durable open left without CLOSE (``Conn.hold``): what reclaims it."""

    client_guid: bytes  # as on the wire
    create_guid: bytes
    file_id: bytes
    name: str


@dataclass
class LoadResult:
    opens: int
    seconds: float
    latencies: list[float] = field(default_factory=list)  # open+close, seconds
    cpu: float = 0.0  # the load generator's CPU seconds during the run

    @property
    def rate(self) -> float:
        return self.opens / self.seconds if self.seconds else 0.0


def _header(command: int, session_id: int = 0, tree_id: int = 0, flags: int = 0) -> bytes:
    return HEADER.pack(b"\xfeSMB", HEADER_SIZE, 1, 0, command, CREDITS_WANTED, flags, 0, 0, 0,
                       tree_id, session_id, bytes(16))


def _framed(message: bytes) -> bytearray:
    return bytearray(struct.pack(">I", len(message)) + message)


def _kdf(key: bytes, label: bytes, context: bytes) -> bytes:
    return KBKDFHMAC(algorithm=hashes.SHA256(), mode=Mode.CounterMode, length=16, rlen=4,
                     llen=4, location=CounterLocation.BeforeFixed, label=label,
                     context=context, fixed=None).derive(key)


def _cmac(key: bytes, data: bytes | bytearray | memoryview) -> bytes:
    mac = cmac.CMAC(algorithms.AES(key))
    mac.update(data)
    return mac.finalize()


def create_template(kind: str, name: str, session_id: int, tree_id: int,
                    flags: int) -> tuple[bytearray, int | None]:
    """A framed CREATE for ``kind``, and where its DH2Q CreateGuid sits (None
    when it has none)."""
    path = name.encode("utf-16-le")
    oplock = OPLOCK_NONE if kind in ("plain", PERSISTENT) else OPLOCK_BATCH
    name_at = HEADER_SIZE + 56
    contexts = b""
    guid_at = None
    ctx_at = 0
    if kind in ("durable", PERSISTENT):
        ctx_at = name_at + len(path) + (-len(path) % 8)
        # Next, NameOffset, NameLength, Reserved, DataOffset, DataLength; the
        # name padded to 8; Timeout, Flags, Reserved, CreateGuid.
        dh_flags = DHANDLE_FLAG_PERSISTENT if kind == PERSISTENT else 0
        contexts = struct.pack("<IHHHHI", 0, 16, 4, 0, 24, 32) + b"DH2Q" + bytes(4) \
            + struct.pack("<II8s16s", DH2Q_TIMEOUT_MS, dh_flags, bytes(8), bytes(16))
        guid_at = NB + ctx_at + 40
    body = struct.pack("<HBBIQQIIIIIHHII", 57, 0, oplock, IMPERSONATION, 0, 0, DESIRED_ACCESS,
                       ATTRIBUTE_NORMAL, SHARE_READ, FILE_OVERWRITE_IF, NON_DIRECTORY_FILE,
                       name_at, len(path), ctx_at, len(contexts))
    padding = bytes(-len(path) % 8) if contexts else b""
    message = _header(CREATE, session_id, tree_id, flags) + body + path + padding + contexts
    return _framed(message), guid_at


def close_template(session_id: int, tree_id: int, flags: int) -> bytearray:
    """A framed CLOSE; its FileId sits at CLOSE_FILE_ID_AT."""
    return _framed(_header(CLOSE, session_id, tree_id, flags)
                   + struct.pack("<HHI16s", 24, 0, 0, bytes(16)))


CLOSE_FILE_ID_AT = NB + HEADER_SIZE + 8


def check_create(frame: bytes, kind: str, where: str) -> bytes:
    """The FileId of a CREATE response, or OpenLoadError when it is not what
    ``kind`` asked for."""
    status = struct.unpack_from("<I", frame, 8)[0]
    if status != SUCCESS:
        raise OpenLoadError(f"{where}: CREATE answered status 0x{status:08x}")
    if len(frame) < HEADER_SIZE + 88:
        raise OpenLoadError(f"{where}: CREATE response of {len(frame)} bytes is too short")
    if kind in ("batch", "durable") and frame[HEADER_SIZE + 2] != OPLOCK_BATCH:
        raise OpenLoadError(f"{where}: batch oplock asked, oplock level "
                            f"0x{frame[HEADER_SIZE + 2]:02x} granted")
    if kind in ("durable", PERSISTENT) and not _has_context(frame, b"DH2Q"):
        raise OpenLoadError(f"{where}: {kind} handle asked, no DH2Q response context")
    return bytes(frame[HEADER_SIZE + 64:HEADER_SIZE + 80])


def _has_context(frame: bytes, name: bytes) -> bool:
    offset, length = struct.unpack_from("<II", frame, HEADER_SIZE + 80)
    end = offset + length
    while length and offset + 16 <= min(end, len(frame)):
        nxt, name_off, name_len = struct.unpack_from("<IHH", frame, offset)
        if frame[offset + name_off:offset + name_off + name_len] == name:
            return True
        if not nxt:
            break
        offset += nxt
    return False


class Conn:
    """One connection with its own session and tree: logon and tree connect
    blocking, then ``depth`` CREATE+CLOSE chains driven by ``drive``."""

    def __init__(self, server: Server, *, dialect: str = "3.1.1", sign: bool = False,
                 timeout: float = 10.0):
        self.server = server
        self.dialect = DIALECTS[dialect]
        self.sign = sign
        self.client_guid = os.urandom(16)
        try:
            self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
        except OSError as exc:
            raise OpenLoadError(f"{server.name}: cannot connect to port {server.port}: "
                                f"{exc}") from None
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.message_id = 0
        self.session_id = 0
        self.tree_id = 0
        self.signing_key = b""
        self.flags = 0  # the header flags of every request after logon
        self.credits = 1
        self.buffer = bytearray()
        try:
            self._logon()
        except spnego.exceptions.SpnegoError as exc:
            self.sock.close()
            raise OpenLoadError(f"{server.name}: logon failed: {exc}") from None
        except BaseException:
            self.sock.close()
            raise

    def close(self) -> None:
        self.sock.close()

    # -- blocking setup -------------------------------------------------------------------

    def _send(self, frame: bytearray) -> None:
        struct.pack_into("<Q", frame, MSGID_AT, self.message_id)
        self.message_id += 1
        self.credits -= 1
        if frame[NB + 16] & FLAG_SIGNED:
            frame[SIGNATURE_AT:SIGNATURE_AT + 16] = bytes(16)
            frame[SIGNATURE_AT:SIGNATURE_AT + 16] = _cmac(self.signing_key,
                                                          memoryview(frame)[NB:])
        try:
            self.sock.sendall(frame)
        except OSError as exc:
            raise OpenLoadError(f"{self.server.name}: connection lost: {exc}") from None

    def _receive(self) -> None:
        """Whatever the socket has now (blocking until something) into the buffer."""
        try:
            chunk = self.sock.recv(262144)
        except OSError as exc:
            raise OpenLoadError(f"{self.server.name}: connection lost: {exc}") from None
        if not chunk:
            raise OpenLoadError(f"{self.server.name}: the server closed the connection")
        self.buffer += chunk

    def _frames(self) -> Iterator[bytes]:
        """The complete messages in the buffer, taken out of it."""
        buf = self.buffer
        while len(buf) >= NB:
            size = int.from_bytes(buf[1:NB], "big")
            if len(buf) < NB + size:
                return
            frame = bytes(buf[NB:NB + size])
            del buf[:NB + size]
            yield frame

    def _exchange(self, frame: bytearray) -> tuple[bytes, bytes]:
        """Send one framed message; the message as sent (MessageId and signature
        in) and its final response (interim PENDINGs skipped)."""
        self._send(frame)
        sent = bytes(frame[NB:])
        while True:
            for response in self._frames():
                status, _, credits, flags = struct.unpack_from("<IHHI", response, 8)
                self.credits += credits
                if not (flags & FLAG_ASYNC and status == PENDING):
                    return sent, response
            self._receive()

    def _request(self, message: bytes) -> tuple[bytes, bytes]:
        return self._exchange(_framed(message))

    def _negotiate_message(self) -> bytes:
        security = SIGNING_REQUIRED if self.sign else SIGNING_ENABLED
        guid = self.client_guid
        if self.dialect != 0x0311:
            return _header(NEGOTIATE) + struct.pack("<HHHHI16sQH", 36, 1, security, 0, 0, guid,
                                                    0, self.dialect)
        # Preauth integrity (SHA-512 with a salt), the one context 3.1.1 requires,
        # at the first 8-byte boundary after the single dialect.
        contexts_at = HEADER_SIZE + 36 + 2 + 2
        preauth = struct.pack("<HHH", 1, 32, 1) + os.urandom(32)
        return (_header(NEGOTIATE)
                + struct.pack("<HHHHI16sIHHH", 36, 1, security, 0, 0, guid, contexts_at, 1, 0,
                              self.dialect)
                + bytes(2) + struct.pack("<HHI", 1, len(preauth), 0) + preauth)

    def _logon(self) -> None:
        where = self.server.name
        request, response = self._request(self._negotiate_message())
        status = struct.unpack_from("<I", response, 8)[0]
        dialect = struct.unpack_from("<H", response, HEADER_SIZE + 4)[0]
        if status != SUCCESS or dialect != self.dialect:
            raise OpenLoadError(f"{where}: NEGOTIATE status 0x{status:08x}, "
                                f"dialect 0x{dialect:04x} (asked 0x{self.dialect:04x})")
        preauth = hashlib.sha512(bytes(64) + request).digest()
        preauth = hashlib.sha512(preauth + response).digest()

        ctx = spnego.client(self.server.user, self.server.password, hostname="127.0.0.1",
                            service="cifs", protocol="negotiate")
        token = ctx.step()
        security = SIGNING_REQUIRED if self.sign else SIGNING_ENABLED
        while True:
            request, response = self._request(
                _header(SESSION_SETUP, self.session_id)
                + struct.pack("<HBBIIHHQ", 25, 0, security, 0, 0, HEADER_SIZE + 24, len(token), 0)
                + token)
            preauth = hashlib.sha512(preauth + request).digest()
            status = struct.unpack_from("<I", response, 8)[0]
            self.session_id = struct.unpack_from("<Q", response, 40)[0]
            if status not in (SUCCESS, MORE_PROCESSING):
                raise OpenLoadError(f"{where}: SESSION_SETUP status 0x{status:08x}")
            offset, length = struct.unpack_from("<HH", response, HEADER_SIZE + 4)
            server_token = response[offset:offset + length]
            if status == SUCCESS:
                if server_token and not ctx.complete:
                    ctx.step(server_token)
                break
            preauth = hashlib.sha512(preauth + response).digest()
            token = ctx.step(server_token)
        key = (ctx.session_key + bytes(16))[:16]
        self.signing_key = (_kdf(key, b"SMBSigningKey\x00", preauth) if self.dialect == 0x0311
                            else _kdf(key, b"SMB2AESCMAC\x00", b"SmbSign\x00"))
        # 3.1.1 signs the final SESSION_SETUP response and the TREE_CONNECT
        # request even on a session that does not require signing.
        self._verify(response, "SESSION_SETUP", required=self.dialect == 0x0311)
        self.flags = FLAG_SIGNED if self.sign else 0
        tree_flags = FLAG_SIGNED if self.sign or self.dialect == 0x0311 else 0

        path = f"\\\\127.0.0.1\\{self.server.share}".encode("utf-16-le")
        _, response = self._request(_header(TREE_CONNECT, self.session_id, 0, tree_flags)
                                    + struct.pack("<HHHH", 9, 0, HEADER_SIZE + 8, len(path))
                                    + path)
        self._verify(response, "TREE_CONNECT")
        status = struct.unpack_from("<I", response, 8)[0]
        if status != SUCCESS:
            raise OpenLoadError(f"{where}: TREE_CONNECT {self.server.share} "
                                f"status 0x{status:08x}")
        self.tree_id = struct.unpack_from("<I", response, 36)[0]

    def _verify(self, frame: bytes, what: str, required: bool = False) -> None:
        """A signed response must carry the server's signature, and on a session
        that requires signing (or where ``required``) every response is signed."""
        if not frame[16] & FLAG_SIGNED:
            if self.sign or required:
                raise OpenLoadError(f"{self.server.name}: {what} response not signed")
            return
        signed = bytearray(frame)
        signature = bytes(signed[48:64])
        signed[48:64] = bytes(16)
        if _cmac(self.signing_key, signed) != signature:
            raise OpenLoadError(f"{self.server.name}: {what} response signed wrong")

    # -- one held durable open ---------------------------------------------------------------

    def hold(self, name: str) -> Held:
        """A durable open of ``name`` left open (no CLOSE): what a client whose
        connection is lost would reclaim."""
        create_guid = os.urandom(16)
        frame, guid_at = create_template("durable", name, self.session_id, self.tree_id,
                                         self.flags)
        frame[guid_at:guid_at + 16] = create_guid
        _, response = self._exchange(frame)
        self._verify(response, "CREATE")
        file_id = check_create(response, "durable", f"{self.server.name}: {name}")
        return Held(self.client_guid, create_guid, file_id, name)


class _Chain:
    """One outstanding CREATE-or-CLOSE on a connection, on its own file."""

    __slots__ = ("conn", "name", "create", "guid_at", "close", "started", "closing")

    def __init__(self, conn: Conn, kind: str, name: str):
        self.conn = conn
        self.name = name
        self.create, self.guid_at = create_template(kind, name, conn.session_id, conn.tree_id,
                                                    conn.flags)
        self.close = close_template(conn.session_id, conn.tree_id, conn.flags)
        self.started = 0.0
        self.closing = False


def drive(conns: list[Conn], kind: str, seconds: float, *, depth: int = 1,
          prefix: str = "openload") -> LoadResult:
    """CREATE+CLOSE on every connection (``depth`` chains each, a file per
    chain) for ``seconds``; chains that are mid-open then finish their CLOSE.
    Counts only opens whose CLOSE completed."""
    if kind not in ALL_KINDS:
        raise ValueError(f"kind must be one of {ALL_KINDS}")
    selector = selectors.DefaultSelector()
    pending: dict[tuple[int, int], _Chain] = {}
    latencies: list[float] = []
    chains: list[_Chain] = []
    for c, conn in enumerate(conns):
        if conn.credits < depth:
            raise OpenLoadError(f"{conn.server.name}: {conn.credits} credits granted, "
                                f"{depth} needed")
        conn.sock.setblocking(False)
        selector.register(conn.sock, selectors.EVENT_READ, conn)
        chains += [_Chain(conn, kind, f"{prefix}-{c}-{d}-{kind}.dat") for d in range(depth)]

    def send(chain: _Chain, frame: bytearray) -> None:
        conn = chain.conn
        if conn.credits <= 0:
            raise OpenLoadError(f"{conn.server.name}: no credit left to send a request")
        pending[(id(conn), conn.message_id)] = chain
        conn._send(frame)

    def start(chain: _Chain) -> None:
        if chain.guid_at is not None:
            chain.create[chain.guid_at:chain.guid_at + 16] = os.urandom(16)
        chain.closing = False
        chain.started = time.perf_counter()
        send(chain, chain.create)

    def answer(conn: Conn, frame: bytes) -> None:
        status, _, credits, flags, _, message_id = struct.unpack_from("<IHHIIQ", frame, 8)
        conn.credits += credits
        if flags & FLAG_ASYNC and status == PENDING:
            return
        if message_id == BREAK_MESSAGE_ID:
            raise OpenLoadError(f"{conn.server.name}: unexpected oplock break")
        chain = pending.pop((id(conn), message_id), None)
        if chain is None:
            raise OpenLoadError(f"{conn.server.name}: a response to message {message_id}, "
                                f"which is not outstanding")
        conn._verify(frame, "CLOSE" if chain.closing else "CREATE")
        where = f"{conn.server.name}: {chain.name}"
        if not chain.closing:
            file_id = check_create(frame, kind, where)
            chain.close[CLOSE_FILE_ID_AT:CLOSE_FILE_ID_AT + 16] = file_id
            chain.closing = True
            send(chain, chain.close)
            return
        if status != SUCCESS:
            raise OpenLoadError(f"{where}: CLOSE answered status 0x{status:08x}")
        latencies.append(time.perf_counter() - chain.started)
        if running:
            start(chain)

    cpu0 = time.process_time()
    t0 = time.perf_counter()
    deadline = t0 + seconds
    running = True
    try:
        for chain in chains:
            start(chain)
        while pending:
            if running and time.perf_counter() >= deadline:
                running = False
            events = selector.select(timeout=10.0)
            if not events:
                raise OpenLoadError(f"{conns[0].server.name}: no response in 10 s "
                                    f"({len(pending)} requests outstanding)")
            for key, _ in events:
                conn = key.data
                conn._receive()
                for frame in conn._frames():
                    answer(conn, frame)
    finally:
        elapsed = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        selector.close()
        for conn in conns:
            conn.sock.setblocking(True)
    return LoadResult(len(latencies), elapsed, latencies, cpu)


def connect(server: Server, count: int, *, dialect: str = "3.1.1",
            sign: bool = False) -> list[Conn]:
    """``count`` logged-on connections; all closed again if one fails."""
    conns: list[Conn] = []
    try:
        for _ in range(count):
            conns.append(Conn(server, dialect=dialect, sign=sign))
    except BaseException:
        for conn in conns:
            conn.close()
        raise
    return conns
