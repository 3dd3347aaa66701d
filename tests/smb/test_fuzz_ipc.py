"""Malformed DCE/RPC on IPC$ named pipes never kills the worker.

A seeded loop (reproducible) opens pipes on IPC$ and writes broken PDUs
through WRITE and FSCTL_PIPE_TRANSCEIVE: mutations of valid binds and
requests of every served operation, lying frag_lengths, huge alloc hints,
unknown opnums and contexts, requests on unbound pipes, random stubs.
Every one must get an SMB answer (an RPC fault in the data, or a pipe
error status); afterwards the same worker still serves smbclient -L and its
log holds no traceback.
"""

from __future__ import annotations

import random
import struct
import subprocess
import uuid

import pytest

import harness
from rawclient import RawClient
from smb.server.ipc import MAX_PIPES_PER_SESSION
from smb.wire.header import Command, Flags, Header, parse_header

SEED = 20261203
ROUNDS = 300
NDR = (uuid.UUID("8a885d04-1ceb-11c9-9fe8-08002b104860").bytes_le, 2)
INTERFACES = {
    "srvsvc": ((uuid.UUID("4b324fc8-1670-01d3-1278-5a47bf6ee188").bytes_le, 3), (15, 16, 21)),
    "wkssvc": ((uuid.UUID("6bffd098-a112-3610-9833-46c3f87e345a").bytes_le, 1), (0,)),
    "lsarpc": ((uuid.UUID("12345778-1234-abcd-ef00-0123456789ab").bytes_le, 0),
               (0, 6, 7, 14, 15, 44, 46, 57, 58, 68, 76)),
}
FSCTL_PIPE_TRANSCEIVE = 0x0011C017
STATUS_PENDING = 0x103
STATUS_CANCELLED = 0xC0000120
PIPE_ERRORS = {0xC00000B0, 0xC00000D9, 0xC0000128, 0xC000000D, 0x80000005, 0xC0000034}


def _pdu(ptype: int, body: bytes, call_id: int = 1, flags: int = 3) -> bytes:
    return struct.pack("<BBBB4sHHI", 5, 0, ptype, flags, b"\x10\0\0\0", 16 + len(body), 0,
                       call_id) + body


def _bind(abstract) -> bytes:
    return _pdu(11, struct.pack("<HHIB3x", 4280, 4280, 0, 1) + struct.pack("<HBx", 0, 1)
                + struct.pack("<16sI", *abstract) + struct.pack("<16sI", *NDR))


def _request(rng: random.Random, opnum: int) -> bytes:
    stub = rng.randbytes(rng.choice([0, 4, 8, 20, 64, 300]))
    if rng.random() < 0.3:  # a plausible start: a NULL server name and a level
        stub = b"\0\0\0\0" + struct.pack("<I", rng.choice([0, 1, 2, 101, 502, 0xFFFF])) + stub
    return _pdu(0, struct.pack("<IHH", len(stub), 0, opnum) + stub, call_id=rng.randrange(1, 9))


def _mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    kind = rng.randrange(6)
    if kind == 0:
        for _ in range(rng.randint(1, 6)):
            buf[rng.randrange(len(buf))] = rng.randrange(256)
    elif kind == 1:  # frag_length lies
        struct.pack_into("<H", buf, 8, rng.choice([0, 1, 15, 16, len(buf) + 1, 0xFFFF]))
    elif kind == 2:  # alloc_hint, context id, opnum to extremes
        if len(buf) >= 24:
            struct.pack_into("<IHH", buf, 16, rng.choice([0, 0xFFFFFFFF, 1 << 30]),
                             rng.choice([0, 1, 0xFFFF]), rng.choice([0, 99, 0xFFFF]))
    elif kind == 3:  # fragment flags: a middle or last fragment out of nowhere
        buf[3] = rng.choice([0, 1, 2, 0xFF])
    elif kind == 4:
        del buf[rng.randrange(1, len(buf)):]
    return bytes(buf)


def _create(client: RawClient, name: str) -> bytes | None:
    raw = name.encode("utf-16-le")
    body = struct.pack("<HBBIQQIIIIIHHII", 57, 0, 0, 2, 0, 0, 0x0012019F, 0, 3, 1, 0,
                       64 + 56, len(raw), 0, 0) + raw
    header, frame = client.request(Command.CREATE, body)
    return frame[64 + 64:64 + 80] if header.status == 0 else None


def _write(client: RawClient, fid: bytes, data: bytes) -> int:
    body = struct.pack("<HHIQ16sIIHHI", 49, 64 + 48, len(data), 0, fid, 0, 0, 0, 0, 0) + data
    return client.request(Command.WRITE, body)[0].status


def _read(client: RawClient, fid: bytes) -> int:
    """A READ; one that waits (nothing to read: a blocking pipe read goes
    async) is cancelled, and must then end with STATUS_CANCELLED."""
    body = struct.pack("<HBBIQ16sIIIHHB", 49, 0, 0, 65536, 0, fid, 0, 0, 0, 0, 0, 0)
    header = Header(command=Command.READ, message_id=client.message_id, credits=64,
                    credit_charge=1, session_id=client.session_id, tree_id=client.tree_id)
    client.message_id += 1
    client.send_frame(header.pack() + body)
    reply = parse_header(client.recv_frame())
    if reply.status != STATUS_PENDING:
        return reply.status
    cancel = Header(command=Command.CANCEL, message_id=0, flags=Flags.ASYNC_COMMAND,
                    async_id=reply.async_id, session_id=client.session_id)
    client.send_frame(cancel.pack() + struct.pack("<HH", 4, 0))
    status = parse_header(client.recv_frame()).status
    assert status == STATUS_CANCELLED, hex(status)
    return 0


def _transceive(client: RawClient, fid: bytes, data: bytes) -> int:
    body = struct.pack("<HHI16sIIIIIIII", 57, 0, FSCTL_PIPE_TRANSCEIVE, fid, 64 + 56,
                       len(data), 0, 0, 0, 65536, 1, 0) + data
    return client.request(Command.IOCTL, body)[0].status


@pytest.fixture(scope="module")
def ipc_server(etcd_server, tmp_path_factory):
    """One ``hanode smb`` for the module; its log must hold no traceback."""
    with harness.running_hanode(etcd_server.url, tmp_path_factory.mktemp("ipc")) as target:
        yield target


def test_malformed_rpc_never_kills_the_worker(ipc_server):
    rng = random.Random(SEED)
    workers = {p.pid for p in harness.worker_processes(ipc_server)}
    with RawClient(ipc_server.port) as client:
        client.negotiate()
        assert client.session_setup(harness.USER, harness.PASSWORD) == 0
        assert client.tree_connect("IPC$") == 0
        assert _create(client, "nosuchpipe") is None
        for _ in range(ROUNDS):
            name = rng.choice(sorted(INTERFACES))
            abstract, opnums = INTERFACES[name]
            fid = _create(client, name)
            assert fid is not None
            frames = [_bind(abstract)] if rng.random() < 0.8 else []  # else: unbound
            frames += [_request(rng, rng.choice(opnums + (99,))) for _ in range(rng.randint(1, 3))]
            frames = [_mutate(rng, f) if rng.random() < 0.5 else f for f in frames]
            for frame in frames:
                if rng.random() < 0.5:
                    status = _transceive(client, fid, frame)
                else:
                    status = _write(client, fid, frame)
                    if status == 0:
                        status = _read(client, fid)
                assert status == 0 or status in PIPE_ERRORS, hex(status)
            client.request(Command.CLOSE, struct.pack("<HHI16s", 24, 0, 0, fid))
    assert {p.pid for p in harness.worker_processes(ipc_server)} == workers
    listed = subprocess.run(["smbclient", "-p", str(ipc_server.port), "-L", "//127.0.0.1",
                             "-U", ipc_server.credentials], capture_output=True, text=True,
                            timeout=60)
    assert listed.returncode == 0 and "IPC$" in listed.stdout, listed.stdout + listed.stderr


def test_waiting_read_does_not_hold_a_close_back_for_good(ipc_server):
    """A READ on an empty pipe waits (async) for a bounded time: the CLOSE the
    client sends behind it (which the connection runs only after the READ)
    is answered, and the READ ends as an empty pipe's does."""
    with RawClient(ipc_server.port) as client:
        client.negotiate()
        assert client.session_setup(harness.USER, harness.PASSWORD) == 0
        assert client.tree_connect("IPC$") == 0
        fid = _create(client, "srvsvc")
        body = struct.pack("<HBBIQ16sIIIHHB", 49, 0, 0, 65536, 0, fid, 0, 0, 0, 0, 0, 0)
        read = Header(command=Command.READ, message_id=client.message_id, credits=64,
                      credit_charge=1, session_id=client.session_id, tree_id=client.tree_id)
        client.message_id += 1
        client.send_frame(read.pack() + body)
        interim = parse_header(client.recv_frame())
        assert interim.status == STATUS_PENDING
        close = Header(command=Command.CLOSE, message_id=client.message_id, credits=64,
                       credit_charge=1, session_id=client.session_id, tree_id=client.tree_id)
        client.message_id += 1
        client.send_frame(close.pack() + struct.pack("<HHI16s", 24, 0, 0, fid))
        answers = {}
        for _ in range(2):
            reply = parse_header(client.recv_frame())
            answers[reply.command] = reply.status
        assert answers == {Command.READ: 0xC00000D9, Command.CLOSE: 0}  # PIPE_EMPTY


def test_pipe_opens_per_session_are_bounded(ipc_server):
    with RawClient(ipc_server.port) as client:
        client.negotiate()
        assert client.session_setup(harness.USER, harness.PASSWORD) == 0
        assert client.tree_connect("IPC$") == 0
        opened = [_create(client, "wkssvc") for _ in range(MAX_PIPES_PER_SESSION)]
        assert None not in opened
        assert _create(client, "wkssvc") is None  # INSUFFICIENT_RESOURCES
        client.request(Command.CLOSE, struct.pack("<HHI16s", 24, 0, 0, opened[0]))
        assert _create(client, "wkssvc") is not None
