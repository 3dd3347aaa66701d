"""A connection keeps reading while a request of it waits, compound elements
included (issue 17): the Linux kernel client removes or renames a file it
holds open with an RWH lease by a compound CREATE+CLOSE (or
CREATE+SET_INFO+CLOSE); the CREATE breaks the client's own lease and waits
for its acknowledgement, which arrives on the same connection while the
compound is still being processed.  The server must read and answer that
acknowledgement and then the compound, not sit on the compound until the
break times out (35 s).

A raw client, because the compound, the lease break and the acknowledgement
are what is under test; its socket timeout (10 s) is what bounds the wait.
"""

from __future__ import annotations

import struct

import harness
from rawclient import RawClient
from smb.wire.create import encode_create_contexts
from smb.wire.create_contexts import LeaseContext
from smb.wire.header import Command, Flags, Header, parse_header

_CREATE = struct.Struct("<HBBIQQIIIIIHHII")
_CLOSE = struct.Struct("<HHI16s")
_SET_INFO = struct.Struct("<HBBIHHI16s")
_LEASE_BREAK = struct.Struct("<HHI16sII")  # size 44, epoch, flags, key, current, new state
_LEASE_ACK = struct.Struct("<HHI16sIQ")  # size 36, reserved, flags, key, state, duration
GENERIC_READ_WRITE = 0x80000000 | 0x40000000
DELETE = 0x00010000
READ_ATTRIBUTES = 0x80
SHARE_ALL = 0x7
FILE_OPEN = 1
OPEN_IF = 3
DELETE_ON_CLOSE = 0x1000
OPLOCK_LEASE = 0xFF
RWH = 0x7
RH = 0x3  # read and handle caching
BREAK_ACK_REQUIRED = 0x1
RELATED = 0xFFFFFFFFFFFFFFFF
ALL_FF = b"\xff" * 16
FILE_RENAME_INFORMATION = 10


def _create_body(name: str, access: int, disposition: int, *, oplock: int = 0,
                 options: int = 0, lease: LeaseContext | None = None) -> bytes:
    path = name.encode("utf-16-le")
    contexts = encode_create_contexts([("RqLs", lease.pack())]) if lease else b""
    pad = -len(path) % 8 if contexts else 0
    ctx_offset = 64 + _CREATE.size + len(path) + pad if contexts else 0
    return _CREATE.pack(57, 0, oplock, 2, 0, 0, access, 0x80, SHARE_ALL, disposition,
                        options, 64 + _CREATE.size, len(path), ctx_offset,
                        len(contexts)) + path + b"\x00" * pad + contexts


def _logged_on(port: int) -> RawClient:
    c = RawClient(port)
    assert c.negotiate().status == 0
    assert c.session_setup(harness.USER, harness.PASSWORD) == 0
    assert c.tree_connect(harness.SHARE) == 0
    return c


def _hold_with_rwh_lease(client: RawClient, name: str, key: bytes) -> bytes:
    header, frame = client.request(Command.CREATE, _create_body(
        name, GENERIC_READ_WRITE, OPEN_IF, oplock=OPLOCK_LEASE,
        lease=LeaseContext(key, RWH, version=1)))
    assert header.status == 0
    assert frame[64 + 2] == OPLOCK_LEASE
    return frame[64 + 64:64 + 80]


def _send_compound(client: RawClient, elements: list[tuple[int, bytes]]) -> list[int]:
    """Send a related compound; returns the MessageIds of its elements."""
    frame = b""
    ids = []
    for i, (command, body) in enumerate(elements):
        last = i == len(elements) - 1
        size = 64 + len(body)
        pad = 0 if last else -size % 8
        first = i == 0
        header = Header(command=command, message_id=client.message_id, credits=64,
                        flags=0 if first else Flags.RELATED_OPERATIONS,
                        session_id=client.session_id if first else RELATED,
                        tree_id=client.tree_id if first else 0xFFFFFFFF)
        ids.append(client.message_id)
        client.message_id += 1
        frame += header.pack(next_command=0 if last else size + pad) + body + bytes(pad)
    client.send_frame(frame)
    return ids


def _split(frame: bytes) -> list[tuple[Header, bytes]]:
    """The responses of a (compound) frame, each with its body."""
    out = []
    pos = 0
    while True:
        header = parse_header(frame[pos:])
        end = pos + header.next_command if header.next_command else len(frame)
        out.append((header, frame[pos + 64:end]))
        if not header.next_command:
            return out
        pos = end


def _ack_breaks_and_collect(client: RawClient, key: bytes,
                            expected: set[int]) -> tuple[dict[int, int], list[tuple[int, int]]]:
    """Read until every MessageId in ``expected`` and every lease-break
    acknowledgement sent meanwhile are answered (skipping interim responses),
    acknowledging each break of lease ``key`` as it comes.  Returns
    (MessageId -> final status, the breaks as (from, to) lease states)."""
    statuses: dict[int, int] = {}
    breaks: list[tuple[int, int]] = []
    while not expected <= statuses.keys():
        frame = client.recv_frame()  # bounded by the client's socket timeout
        assert frame is not None, "server closed the connection"
        for header, body in _split(frame):
            if header.message_id == RELATED and header.command == Command.OPLOCK_BREAK:
                size, _, flags, broken, current, new = _LEASE_BREAK.unpack_from(body)
                assert (size, broken) == (44, key)
                assert flags & BREAK_ACK_REQUIRED
                breaks.append((current, new))
                ack = Header(command=Command.OPLOCK_BREAK, message_id=client.message_id,
                             credits=64, session_id=client.session_id, tree_id=client.tree_id)
                expected = expected | {client.message_id}
                client.message_id += 1
                client.send_frame(ack.pack() + _LEASE_ACK.pack(36, 0, 0, key, new, 0))
            elif header.status != 0x103:  # STATUS_PENDING: the real reply follows
                statuses[header.message_id] = header.status
    return statuses, breaks


def test_compound_delete_reads_the_break_ack_of_its_own_client(hanode_server):
    key = bytes(range(16))
    with _logged_on(hanode_server.port) as client:
        held = _hold_with_rwh_lease(client, "held.txt", key)
        create, close = _send_compound(client, [
            (Command.CREATE, _create_body("held.txt", DELETE | READ_ATTRIBUTES, FILE_OPEN,
                                          options=DELETE_ON_CLOSE)),
            (Command.CLOSE, _CLOSE.pack(24, 0, 0, ALL_FF)),
        ])
        statuses, breaks = _ack_breaks_and_collect(client, key, {create, close})
        assert breaks == [(RWH, RH)]
        assert set(statuses.values()) == {0}  # the compound's and the acknowledgement's
        header, _ = client.request(Command.CLOSE, _CLOSE.pack(24, 0, 0, held))
        assert header.status == 0
        header, _ = client.request(Command.CREATE, _create_body(
            "held.txt", READ_ATTRIBUTES, FILE_OPEN))
        assert header.status == 0xC0000034  # OBJECT_NAME_NOT_FOUND: deleted at last close


def test_compound_rename_reads_the_break_ack_of_its_own_client(hanode_server):
    key = bytes(range(1, 17))
    target = "renamed.txt".encode("utf-16-le")
    rename = struct.pack("<BxxxxxxxQI", 0, 0, len(target)) + target
    with _logged_on(hanode_server.port) as client:
        held = _hold_with_rwh_lease(client, "moving.txt", key)
        ids = _send_compound(client, [
            (Command.CREATE, _create_body("moving.txt", DELETE | READ_ATTRIBUTES, FILE_OPEN)),
            (Command.SET_INFO, _SET_INFO.pack(33, 1, FILE_RENAME_INFORMATION, len(rename),
                                              64 + 32, 0, 0, ALL_FF) + rename),
            (Command.CLOSE, _CLOSE.pack(24, 0, 0, ALL_FF)),
        ])
        statuses, breaks = _ack_breaks_and_collect(client, key, set(ids))
        assert [statuses[i] for i in ids] == [0, 0, 0]
        assert breaks and breaks[0] == (RWH, RH)
        assert set(statuses.values()) == {0}  # the acknowledgements answered too
        header, _ = client.request(Command.CLOSE, _CLOSE.pack(24, 0, 0, held))
        assert header.status == 0
        header, _ = client.request(Command.CREATE, _create_body(
            "renamed.txt", READ_ATTRIBUTES, FILE_OPEN))
        assert header.status == 0
