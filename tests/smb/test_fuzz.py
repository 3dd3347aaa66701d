"""Malformed input never kills the worker and never produces a traceback.

A seeded loop (reproducible) sends a few hundred broken messages: mutations of
recorded real-client NEGOTIATE and SESSION_SETUP requests on fresh connections,
random commands and bodies on an authenticated session, lying length fields
and transform headers.  Afterwards the same worker process must still serve a
real smbclient, and its log must hold no traceback and no connection that
escaped the error handling.
"""

from __future__ import annotations

import json
import random
import socket
import struct
from pathlib import Path

import psutil

import harness
from rawclient import RawClient

SEED = 20261123
FIXTURES = Path(__file__).parent.parent / "unit" / "fixtures"


def _recorded_requests() -> list[bytes]:
    out = []
    for name in ("smbclient_smb311_signed.json", "smbclient_smb300_signed.json",
                 "smbprotocol_smb311_encrypted.json"):
        frames = json.loads((FIXTURES / name).read_text())
        out += [bytes.fromhex(h) for d, h in frames[:6] if d == "c"]
    return out


def _mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    kind = rng.randrange(6)
    if kind == 0:
        for _ in range(rng.randint(1, 8)):
            buf[rng.randrange(len(buf))] = rng.randrange(256)
    elif kind == 1:
        del buf[rng.randrange(len(buf)):]
    elif kind == 2:
        buf += rng.randbytes(rng.randint(1, 200))
    elif kind == 3:  # a header field set to an extreme: charge, command, NextCommand, MessageId
        offset, fmt = rng.choice([(6, "<H"), (12, "<H"), (20, "<I"), (24, "<Q"), (14, "<H")])
        top = 2 ** (8 * struct.calcsize(fmt)) - 1
        struct.pack_into(fmt, buf, offset, rng.choice([0, 1, 0xFF, 64, 72, top // 2, top]))
    elif kind == 4:  # body lengths and offsets
        if len(buf) > 80:
            pos = rng.randrange(64, min(len(buf) - 4, 120))
            struct.pack_into("<I", buf, pos, rng.choice([0, 0xFFFF, 0xFFFFFFFF, 65, 7]))
    else:
        buf = bytearray(rng.randbytes(rng.randint(0, 300)))
        if rng.random() < 0.5 and len(buf) >= 4:
            buf[:4] = rng.choice([b"\xfeSMB", b"\xfdSMB", b"\xffSMB", b"\xfcSMB"])
    return bytes(buf)


def _exchange(port: int, frames: list[bytes], *, raw_prefix: bytes = b"") -> None:
    """Send frames, then EOF; read until the server closes. It must close or answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        try:
            s.sendall(raw_prefix + b"".join(struct.pack(">I", len(f)) + f for f in frames))
            s.shutdown(socket.SHUT_WR)
            while s.recv(65536):
                pass
        except (ConnectionResetError, BrokenPipeError):
            pass


def _worker_pids(target: harness.Target) -> set[int]:
    return {p.pid for p in psutil.Process(target.proc.pid).children(recursive=True)}


def test_malformed_messages_never_kill_the_worker(hanode_server):
    rng = random.Random(SEED)
    workers = _worker_pids(hanode_server)
    assert len(workers) == 1
    recorded = _recorded_requests()
    negotiate = recorded[0]

    # Pre-authentication: one broken message per connection, half after a good NEGOTIATE.
    for _ in range(250):
        after_negotiate = rng.random() < 0.5
        base = bytearray(rng.choice(recorded))
        struct.pack_into("<Q", base, 24, 1 if after_negotiate else 0)  # a granted MessageId
        message = _mutate(rng, bytes(base))
        _exchange(hanode_server.port, [negotiate, message] if after_negotiate else [message])

    # Framing lies: huge length before negotiation, non-session NetBIOS types, truncation.
    _exchange(hanode_server.port, [], raw_prefix=b"\x00\xff\xff\xff" + b"\xfeSMB" * 4)
    _exchange(hanode_server.port, [], raw_prefix=b"\x85\x00\x00\x00")
    _exchange(hanode_server.port, [], raw_prefix=b"\x00\x00\x01\x00\xfeSMB")
    _exchange(hanode_server.port, [negotiate],
              raw_prefix=b"")  # a clean one in between, answered
    # A transform header with no negotiated encryption, and one claiming a session.
    _exchange(hanode_server.port, [negotiate, b"\xfdSMB" + rng.randbytes(80)])

    # After authentication: random commands and bodies on a live session and tree.
    client = RawClient(hanode_server.port)
    try:
        client.negotiate()
        assert client.session_setup(hanode_server.user, hanode_server.password) == 0
        assert client.tree_connect(hanode_server.share_name) == 0
        answered = 0
        for _ in range(200):
            command = rng.randrange(0x14)
            if command in (0, 1, 2, 0x0C):  # NEGOTIATE, SESSION_SETUP, LOGOFF, CANCEL
                continue
            body = rng.randbytes(rng.randint(0, 120))
            if body and rng.random() < 0.7:
                # A plausible StructureSize keeps the request past the first check.
                sizes = {3: 9, 4: 4, 5: 57, 6: 24, 7: 24, 8: 49, 9: 49, 0xA: 48, 0xB: 57,
                         0xD: 4, 0xE: 33, 0xF: 32, 0x10: 41, 0x11: 33, 0x12: 24}
                body = struct.pack("<H", sizes.get(command, 2)) + body[2:]
            try:
                client.request(command, body)
                answered += 1
            except ConnectionError:
                client.close()
                client = RawClient(hanode_server.port)
                client.negotiate()
                assert client.session_setup(hanode_server.user, hanode_server.password) == 0
                client.tree_connect(hanode_server.share_name)
    finally:
        client.close()
    assert answered > 150  # the session survived: the fuzz reached the command handlers

    assert _worker_pids(hanode_server) == workers, "a worker died and was restarted"
    result = harness.smbclient(hanode_server, "ls", "-m", "SMB3")
    assert result.returncode == 0, result.stdout + result.stderr
    log = hanode_server.log_text()
    assert "Traceback" not in log
    assert "failed:" not in log.replace("handler failed:", ""), log[-3000:]
