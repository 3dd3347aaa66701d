"""Windows timestamp semantics (MS-FSA 2.1.5.15.2, FileBasicInformation)
through smbprotocol, hanode against a private smbd: times a client sets are
kept exactly (far past and far future too) and stay through later writes on
the same handle; -1 freezes the write time for the handle, -2 lets it move
again; writes move the write time by the deferred rules (the first one
about two seconds later, later ones at the close; FLUSH and SET_INFO make a
pending move at once); a CLOSE asked for the attributes reports what a
query would.
(smbtorture's smb2.timestamps of Samba 4.17 also asserts that the change time
equals the write time just set, which is Samba's own choice and
not MS-FSA's: see the README.)"""

from __future__ import annotations

import struct
import time

from smbprotocol.open import (
    CreateDisposition, CreateOptions, FileAttributes, FilePipePrinterAccessMask,
    ImpersonationLevel, Open, SMB2QueryInfoRequest, SMB2QueryInfoResponse, SMB2SetInfoRequest,
)

from test_link_parity import SHARE_ALL, Client

FILE_BASIC = 4
EPOCH = 116444736000000000  # 1970-01-01 as a FILETIME
SECOND = 10_000_000


def nt(unix_seconds: int) -> int:
    return EPOCH + unix_seconds * SECOND


def set_basic(c: Client, op: Open, *, creation=0, access=0, write=0, change=0) -> None:
    req = SMB2SetInfoRequest()
    req["info_type"] = 1
    req["file_info_class"] = FILE_BASIC
    req["file_id"] = op.file_id
    req["buffer"] = struct.pack("<qqqqI4x", creation, access, write, change, 0)
    assert c._status(req) == "SUCCESS"


def basic(c: Client, op: Open) -> tuple[int, int, int, int]:
    """(creation, access, write, change) as the server reports them."""
    req = SMB2QueryInfoRequest()
    req["info_type"] = 1
    req["file_info_class"] = FILE_BASIC
    req["output_buffer_length"] = 40
    req["file_id"] = op.file_id
    sent = c.conn.send(req, c.session.session_id, c.tree.tree_connect_id)
    resp = SMB2QueryInfoResponse()
    resp.unpack(c.conn.receive(sent)["data"].get_value())
    return struct.unpack_from("<qqqq", resp["buffer"].get_value())


def open_new(c: Client, name: str) -> Open:
    op = Open(c.tree, name)
    op.create(ImpersonationLevel.Impersonation,
              FilePipePrinterAccessMask.GENERIC_READ | FilePipePrinterAccessMask.GENERIC_WRITE,
              FileAttributes.FILE_ATTRIBUTE_NORMAL, SHARE_ALL,
              CreateDisposition.FILE_OVERWRITE_IF, CreateOptions.FILE_NON_DIRECTORY_FILE)
    return op


def scenario(target) -> dict[str, object]:
    c = Client(target)
    seen: dict[str, object] = {}
    try:
        f = open_new(c, "set")
        set_basic(c, f, write=nt(981173106))
        time.sleep(0.05)
        f.write(b"after the set", 0)
        seen["a set write time stays through writes on the handle"] = \
            basic(c, f)[2] == nt(981173106)
        f.close()

        g = open_new(c, "frozen")
        g.write(b"one", 0)
        set_basic(c, g, write=-1)  # makes the first write's pending move, then freezes
        before = basic(c, g)[2]
        time.sleep(0.05)
        g.write(b"two", 3)
        g.flush()
        seen["-1 freezes the write time"] = basic(c, g)[2] == before
        set_basic(c, g, write=-2)
        time.sleep(0.05)
        g.write(b"three", 6)
        g.flush()  # makes the pending move (writes alone move it later, see below)
        seen["-2 lets it move again"] = basic(c, g)[2] > before
        g.close()

        d = open_new(c, "deferred")
        created = basic(c, d)[2]
        time.sleep(0.05)
        d.write(b"one", 0)
        seen["the first write does not move the write time at once"] = \
            basic(c, d)[2] == created
        time.sleep(2.5)
        moved = basic(c, d)[2]
        seen["about two seconds later it has moved"] = moved > created
        d.write(b"two", 3)
        time.sleep(0.05)
        seen["a later write through the handle does not move it"] = basic(c, d)[2] == moved
        closed = close_with_attributes(c, d)[2]
        seen["the close moves it for that write"] = closed > moved

        h = open_new(c, "far")
        kept = {}
        for label, seconds in (("1910", -1_893_456_000), ("1969", -1), ("2250", 8_835_000_000)):
            set_basic(c, h, creation=nt(seconds), write=nt(seconds), access=nt(seconds))
            creation, access, write, _ = basic(c, h)
            kept[label] = (creation, access, write) == (nt(seconds),) * 3
        seen["far past and far future kept exactly"] = kept
        h.close()
    finally:
        c.close()
    return seen


# smbd 4.17 lets writes move a write time frozen with -1; MS-FSA does not.
BEYOND_SMBD = {"-1 freezes the write time"}


def test_timestamps_as_on_smbd(hanode_server, smbd_server):
    ours, theirs = scenario(hanode_server), scenario(smbd_server)
    for item, outcome in ours.items():
        assert outcome is True or (isinstance(outcome, dict) and all(outcome.values())), \
            f"{item}: {outcome}"
        if item not in BEYOND_SMBD:
            assert outcome == theirs[item], f"{item}: hanode {outcome}, smbd {theirs[item]}"


def test_change_time_is_never_the_clients(hanode_server):
    """MS-FSA: the change time is the file system's; a client's value for it
    in FileBasicInformation is not stored (smbd 4.17 reports the write time
    instead, which MS-FSA does not)."""
    c = Client(hanode_server)
    try:
        f = open_new(c, "change")
        set_basic(c, f, write=nt(981173106), change=nt(981173106))
        creation, _, write, change = basic(c, f)
        assert write == nt(981173106)
        assert change != nt(981173106)
        assert abs(change - nt(int(time.time()))) < 120 * SECOND
    finally:
        c.close()


NETWORK_OPEN = 34


def network_open(c: Client, op: Open) -> tuple[int, ...]:
    """FileNetworkOpenInformation: the four times, allocation, size, attributes."""
    req = SMB2QueryInfoRequest()
    req["info_type"] = 1
    req["file_info_class"] = NETWORK_OPEN
    req["output_buffer_length"] = 56
    req["file_id"] = op.file_id
    sent = c.conn.send(req, c.session.session_id, c.tree.tree_connect_id)
    resp = SMB2QueryInfoResponse()
    resp.unpack(c.conn.receive(sent)["data"].get_value())
    return struct.unpack_from("<qqqqqqI", resp["buffer"].get_value())


def close_with_attributes(c: Client, op: Open) -> tuple[int, ...]:
    """CLOSE with SMB2_CLOSE_FLAG_POSTQUERY_ATTRIB: what it reports, same order."""
    req, _ = op.close(get_attributes=True, send=False)
    sent = c.conn.send(req, c.session.session_id, c.tree.tree_connect_id)
    return struct.unpack_from("<8xqqqqqqI", c.conn.receive(sent)["data"].get_value())


def test_close_reports_what_a_query_would(hanode_server, smbd_server):
    """MS-SMB2 3.3.5.10: the attributes a CLOSE returns are the file's as a
    query would give them, here after a write under a write time the handle
    keeps."""
    for target in (hanode_server, smbd_server):
        c = Client(target)
        try:
            f = open_new(c, "closing")
            f.write(b"x" * 5000, 0)
            set_basic(c, f, write=nt(981173106))
            f.write(b"y" * 100, 5000)
            queried = network_open(c, f)
            closed = close_with_attributes(c, f)
            assert closed == queried, f"{target.name}: close {closed} / query {queried}"
            assert closed[2] == nt(981173106) and closed[5] == 5100, closed
        finally:
            c.close()


def test_a_handle_ended_by_its_connection_moves_the_write_time(hanode_server, smbd_server):
    """A handle that wrote and ends without a CLOSE (its connection dropped
    within the two seconds) still moves the write time, as smbd does: the
    data changed, and the pending move would not happen any more."""
    for target in (hanode_server, smbd_server):
        c = Client(target)
        f = open_new(c, "dropped")
        created = basic(c, f)[2]
        time.sleep(0.05)
        f.write(b"data", 0)
        c.conn.disconnect(False)  # the socket closes; no CLOSE, no LOGOFF
        path = target.share / "dropped"
        deadline = time.monotonic() + 1.5  # within the delay the handle itself had
        while nt(0) + path.stat().st_mtime_ns // 100 <= created and time.monotonic() < deadline:
            time.sleep(0.05)
        written = nt(0) + path.stat().st_mtime_ns // 100
        assert written > created, f"{target.name}: write time {written}, created {created}"
