"""The DCE/RPC layer on bytes: binds, requests, fragments, faults, NDR, and the
services' answers decoded field by field.  Client PDUs are built here from
the C706/MS-RPCE layouts, independently of smb.rpc.pdu's builders."""

from __future__ import annotations

import struct
import subprocess
import uuid

import pytest

from smb.rpc import lsarpc, srvsvc, wkssvc
from smb.rpc.interface import (
    STYPE_DISKTREE, STYPE_IPC, STYPE_SPECIAL, Call, CallFault, Facts, ShareFacts,
)
from smb.rpc.ndr import NDR64_SYNTAX, NDR_SYNTAX, NdrError, Reader, Writer
from smb.rpc.pdu import Fault
from smb.rpc.pipe import MAX_REQUEST, RpcPipe

SRVSVC = (uuid.UUID("4b324fc8-1670-01d3-1278-5a47bf6ee188").bytes_le, 3)
FEATURES = (uuid.UUID("6cb71c2c-9812-4540-0300-000000000000").bytes_le, 1)
FACTS = Facts("HNTEST", "WORKGROUP", "hanode",
              (ShareFacts("data", STYPE_DISKTREE, "the data", "C:\\srv\\data"),
               ShareFacts("IPC$", STYPE_IPC | STYPE_SPECIAL, "IPC Service (hanode)", "C:\\", True)),
              "alice", ("alice", "bob"))


def header(ptype: int, body: bytes, call_id: int = 1, flags: int = 3) -> bytes:
    return struct.pack("<BBBB4sHHI", 5, 0, ptype, flags, b"\x10\0\0\0", 16 + len(body), 0,
                       call_id) + body


def bind(contexts: list[tuple[int, tuple[bytes, int], list[tuple[bytes, int]]]],
         call_id: int = 1, ptype: int = 11, xmit: int = 4280) -> bytes:
    body = struct.pack("<HHIB3x", xmit, xmit, 0, len(contexts))
    for cid, abstract, transfers in contexts:
        body += struct.pack("<HBx", cid, len(transfers)) + struct.pack("<16sI", *abstract)
        body += b"".join(struct.pack("<16sI", *t) for t in transfers)
    return header(ptype, body, call_id)


def request(opnum: int, stub: bytes, call_id: int = 2, context: int = 0, flags: int = 3,
            alloc_hint: int | None = None) -> bytes:
    hint = len(stub) if alloc_hint is None else alloc_hint
    return header(0, struct.pack("<IHH", hint, context, opnum) + stub, call_id, flags)


def pdus(pipe: RpcPipe) -> list[bytes]:
    out = []
    while pipe.pending():
        out.append(pipe.read(1 << 20)[0])
    return out


def ack_results(ack: bytes) -> list[tuple[int, int, bytes]]:
    addr_len = struct.unpack_from("<H", ack, 24)[0]
    pos = 26 + addr_len
    pos += -pos % 4
    n = ack[pos]
    pos += 4
    out = []
    for _ in range(n):
        result, reason = struct.unpack_from("<HH", ack, pos)
        out.append((result, reason, ack[pos + 4:pos + 20]))
        pos += 24
    return out


def bound_pipe(transfer=NDR_SYNTAX) -> RpcPipe:
    pipe = RpcPipe("srvsvc", SRVSVC)
    assert pipe.receive(bind([(0, SRVSVC, [transfer])])) == []
    pdus(pipe)
    return pipe


def fault_status(pdu: bytes) -> int:
    assert pdu[2] == 3, pdu.hex()
    return struct.unpack_from("<I", pdu, 24)[0]


# -- binds ---------------------------------------------------------------------------


def test_bind_ack_names_the_pipe_and_accepts_ndr():
    pipe = RpcPipe("srvsvc", SRVSVC)
    pipe.receive(bind([(0, SRVSVC, [NDR_SYNTAX])], call_id=7))
    (ack,) = pdus(pipe)
    assert ack[2] == 12 and struct.unpack_from("<I", ack, 12)[0] == 7
    xmit, recv = struct.unpack_from("<HH", ack, 16)
    assert (xmit, recv) == (4280, 4280)
    addr_len = struct.unpack_from("<H", ack, 24)[0]
    assert ack[26:26 + addr_len] == b"\\PIPE\\srvsvc\x00"
    assert ack_results(ack) == [(0, 0, NDR_SYNTAX[0])]
    assert struct.unpack_from("<H", ack, 8)[0] == len(ack)


def test_bind_negotiates_ndr64_and_feature_negotiation():
    pipe = RpcPipe("srvsvc", SRVSVC)
    pipe.receive(bind([(0, SRVSVC, [NDR64_SYNTAX]), (1, SRVSVC, [NDR_SYNTAX]),
                       (2, SRVSVC, [FEATURES])]))
    (ack,) = pdus(pipe)
    results = ack_results(ack)
    assert results[0][:2] == (2, 2)  # NDR is offered too, and preferred
    assert results[1] == (0, 0, NDR_SYNTAX[0])
    assert results[2][:2] == (3, 0)  # negotiate_ack, no features
    ndr64_only = RpcPipe("srvsvc", SRVSVC)
    ndr64_only.receive(bind([(0, SRVSVC, [NDR64_SYNTAX])]))
    assert ack_results(pdus(ndr64_only)[0]) == [(0, 0, NDR64_SYNTAX[0])]
    (call,) = ndr64_only.receive(request(21, srv_get_info_stub(101, True)))
    assert call.ndr64


def test_bind_rejects_unknown_interface_and_syntax():
    pipe = RpcPipe("srvsvc", SRVSVC)
    other = (uuid.uuid4().bytes_le, 1)
    pipe.receive(bind([(0, other, [NDR_SYNTAX]), (1, SRVSVC, [other])]))
    (ack,) = pdus(pipe)
    assert [r[:2] for r in ack_results(ack)] == [(2, 1), (2, 2)]


def test_second_bind_is_refused_and_alter_context_adds_one():
    pipe = bound_pipe()
    pipe.receive(bind([(1, SRVSVC, [NDR_SYNTAX])], call_id=3))
    (nak,) = pdus(pipe)
    assert nak[2] == 13
    pipe.receive(bind([(1, SRVSVC, [NDR_SYNTAX])], call_id=4, ptype=14))
    (resp,) = pdus(pipe)
    assert resp[2] == 15 and ack_results(resp) == [(0, 0, NDR_SYNTAX[0])]


# -- requests and faults ----------------------------------------------------------------


def srv_get_info_stub(level: int, ndr64: bool = False) -> bytes:
    w = Writer(ndr64)
    w.deferring(lambda: w.pointer(lambda: w.string("\\\\HNTEST")))
    w.deferring(lambda: w.u32(level))
    return w.getvalue()


def test_request_before_bind_faults_and_breaks_the_pipe():
    pipe = RpcPipe("srvsvc", SRVSVC)
    assert pipe.receive(request(21, srv_get_info_stub(101))) == []
    (fault,) = pdus(pipe)
    assert fault_status(fault) == Fault.PROTO_ERROR
    assert pipe.broken and pipe.receive(bind([(0, SRVSVC, [NDR_SYNTAX])])) == []


@pytest.mark.parametrize("mangle", [
    lambda p: p[:8] + struct.pack("<H", 10) + p[10:],  # frag_length below the header
    lambda p: p[:8] + struct.pack("<H", 60000) + p[10:] + bytes(60000),  # above max_recv
    lambda p: b"\x04" + p[1:],  # RPC version 4
    lambda p: p[:4] + b"\x00" + p[5:],  # big-endian data representation
    lambda p: p[:2] + b"\x0c" + p[3:],  # a bind_ack from the client
])
def test_malformed_pdus_break_the_pipe(mangle):
    pipe = bound_pipe()
    pipe.receive(mangle(request(21, srv_get_info_stub(101))))
    assert pipe.broken
    assert all(p[2] == 3 for p in pdus(pipe))


def test_unknown_opnum_and_context_fault_without_breaking():
    pipe = bound_pipe()
    (call,) = pipe.receive(request(99, b""))
    assert call.opnum == 99
    pipe.receive(request(21, b"", context=5, call_id=3))
    (fault,) = pdus(pipe)
    assert fault_status(fault) == Fault.UNKNOWN_IF and not pipe.broken
    with pytest.raises(CallFault) as exc:
        srvsvc.INTERFACE.invoke(Call(99, b"", False, FACTS))
    assert exc.value.status == Fault.OP_RNG_ERROR


def test_huge_alloc_hint_and_oversized_requests_are_refused():
    pipe = bound_pipe()
    pipe.receive(request(21, b"", alloc_hint=MAX_REQUEST + 1))
    assert fault_status(pdus(pipe)[0]) == Fault.PROTO_ERROR and pipe.broken


def test_answers_never_read_stop_the_pipe_taking_requests():
    pipe = bound_pipe()
    (call,) = pipe.receive(request(21, b""))
    pipe.answer(call, bytes(MAX_REQUEST))
    pipe.answer(call, bytes(MAX_REQUEST))
    assert pipe.receive(request(21, b"", call_id=3)) == [] and pipe.broken
    assert pipe.pending()  # what was answered can still be read


def test_fragments_are_reassembled_and_interleaving_is_refused():
    stub = srv_get_info_stub(101)
    pipe = bound_pipe()
    assert pipe.receive(request(21, stub[:8], flags=1)) == []
    (call,) = pipe.receive(request(21, stub[8:], flags=2))
    assert call.stub == stub
    pipe.receive(request(21, stub[:8], flags=1) + request(21, stub[8:], flags=2, call_id=9))
    assert pipe.broken


def test_responses_are_fragmented_to_max_xmit_and_reads_split_messages():
    pipe = bound_pipe()
    (call,) = pipe.receive(request(15, b""))
    stub = bytes(range(256)) * 40  # 10240 bytes: three fragments of at most 4280
    pipe.answer(call, stub)
    frags = pdus(pipe)
    assert len(frags) == 3 and all(len(f) <= 4280 for f in frags)
    assert [f[3] & 3 for f in frags] == [1, 0, 2]
    assert struct.unpack_from("<I", frags[1], 16)[0] == len(stub) - (len(frags[0]) - 24)
    assert b"".join(f[24:] for f in frags) == stub
    pipe.answer(call, b"\x01" * 100)
    head, more = pipe.read(50)
    tail, rest = pipe.read(1000)
    assert more and not rest and len(head + tail) == 124


# -- NDR and services -----------------------------------------------------------------


def test_ndr_reader_refuses_lying_counts():
    w = Writer()
    w.count(1 << 30)
    w.count(0)
    w.count(1 << 30)
    with pytest.raises(NdrError):
        Reader(w.getvalue()).string()
    with pytest.raises(CallFault) as exc:
        srvsvc.INTERFACE.invoke(Call(21, b"\x01\x00", False, FACTS))
    assert exc.value.status == Fault.NDR


def _unique_string(r: Reader) -> str | None:
    return r.pointer(r.string)


@pytest.mark.parametrize("ndr64", [False, True])
def test_net_srv_get_info_101(ndr64):
    out = srvsvc.net_srv_get_info(Call(21, srv_get_info_stub(101, ndr64), ndr64, FACTS))
    r = Reader(out, ndr64)

    def info():
        assert r.union_switch() == 101

        def body():
            fields = [r.u32(), r.pointer(r.string), r.u32(), r.u32(), r.u32(),
                      r.pointer(r.string)]
            r.end_struct(r.ptr_align)
            return fields
        return r.pointer(body)
    box = r.deferring(info)
    assert r.deferring(r.u32) == 0 and r.remaining() == 0
    platform, name, major, minor, kind, comment = box.value
    assert (platform, name.value, comment.value) == (500, "HNTEST", "hanode")
    assert kind & 0x8003 == 0x8003


def enum_stub(level: int, ndr64: bool = False) -> bytes:
    w = Writer(ndr64)
    w.deferring(lambda: w.pointer(lambda: w.string("\\\\HNTEST")))

    def ctr():
        w.align(w.ptr_align)
        w.u32(level)
        w.union_switch(level)

        def container():
            w.align(w.ptr_align)
            w.u32(0)
            w.pointer(None)
            w.end_struct(w.ptr_align)
        w.pointer(container)
        w.end_struct(w.ptr_align)
    w.deferring(ctr)
    w.deferring(lambda: w.u32(0xFFFFFFFF))
    w.deferring(lambda: w.pointer(lambda: w.u32(0)))
    return w.getvalue()


@pytest.mark.parametrize("ndr64", [False, True])
@pytest.mark.parametrize("level", [0, 1, 501])
def test_net_share_enum_all(level, ndr64):
    out = srvsvc.net_share_enum_all(Call(15, enum_stub(level, ndr64), ndr64, FACTS))
    r = Reader(out, ndr64)

    def entry():
        r.align(r.ptr_align)
        name = r.pointer(r.string)
        kind = comment = None
        if level:
            kind = r.u32()
            comment = r.pointer(r.string)
        if level == 501:
            r.u32()
        r.end_struct(r.ptr_align)
        return name, kind, comment

    def ctr():
        r.align(r.ptr_align)
        assert r.u32() == level and r.union_switch() == level

        def container():
            r.align(r.ptr_align)
            count = r.u32()

            def array():
                assert r.count() == count
                return [entry() for _ in range(count)]
            box = r.pointer(array)
            r.end_struct(r.ptr_align)
            return box
        return r.pointer(container)
    box = r.deferring(ctr)
    assert r.deferring(r.u32) == 2
    assert r.deferring(lambda: r.pointer(r.u32)).value == 0
    assert r.deferring(r.u32) == 0 and r.remaining() == 0
    rows = [(n.value, k, c.value if c else None) for n, k, c in box.value.value]
    if level == 0:
        assert rows == [("data", None, None), ("IPC$", None, None)]
    else:
        assert rows == [("data", 0, "the data"), ("IPC$", 0x80000003, "IPC Service (hanode)")]


def test_net_share_get_info_unknown_share_and_level():
    def stub(name, level):
        w = Writer()
        w.deferring(lambda: w.pointer(None))
        w.deferring(lambda: w.string(name))
        w.deferring(lambda: w.u32(level))
        return w.getvalue()
    out = srvsvc.net_share_get_info(Call(16, stub("nosuch", 1), False, FACTS))
    assert out[-4:] == struct.pack("<I", srvsvc.WERR_INVALID_NAME)
    out = srvsvc.net_share_get_info(Call(16, stub("data", 7), False, FACTS))
    assert out[-4:] == struct.pack("<I", srvsvc.WERR_INVALID_LEVEL)


def test_wksta_info_100():
    out = wkssvc.net_wksta_get_info(Call(0, srv_get_info_stub(100), False, FACTS))
    r = Reader(out)

    def info():
        assert r.union_switch() == 100
        return r.pointer(lambda: (r.u32(), r.pointer(r.string), r.pointer(r.string), r.u32(),
                                  r.u32()))
    box = r.deferring(info)
    assert r.deferring(r.u32) == 0
    platform, name, domain, _, _ = box.value
    assert (platform, name.value, domain.value) == (500, "HNTEST", "WORKGROUP")


def test_lsa_names_and_sids_round_trip():
    alice = lsarpc.Directory(FACTS).name("HNTEST\\Alice")
    assert alice is not None and alice.sid_type == lsarpc.SID_USER
    assert lsarpc.Directory(FACTS).sid(alice.sid) == alice
    assert alice.sid[:2] == b"\x01\x05" and alice.domain_sid == FACTS.machine_sid
    assert lsarpc.Directory(FACTS).name("carol") is None
    assert lsarpc.Directory(FACTS).name("BUILTIN\\").sid_type == lsarpc.SID_DOMAIN
    assert lsarpc.Directory(FACTS).name("everyone").sid == bytes.fromhex("010100000000000100000000")
    # The same name gives the same SID on any node; another name another RID.
    assert lsarpc.user_rid("alice") == lsarpc.user_rid("ALICE") != lsarpc.user_rid("bob")


def test_lsa_stale_handle_faults_with_context_mismatch():
    w = Writer()
    w.deferring(lambda: w.raw(bytes(20)))
    with pytest.raises(CallFault) as exc:
        lsarpc.INTERFACE.invoke(Call(0, w.getvalue(), False, FACTS, set()))
    assert exc.value.status == Fault.CONTEXT_MISMATCH


def test_net_remote_tod_reports_the_call_time_in_utc():
    facts = Facts("HN", "WG", "c", (), "alice", now=1_700_000_000.25)  # 2023-11-14 22:13:20 UTC
    out = srvsvc.net_remote_tod(Call(28, bytes(4), False, facts))  # a NULL server name
    r = Reader(out)
    box = r.deferring(lambda: r.pointer(lambda: [r.u32() for _ in range(12)]))
    assert r.deferring(r.u32) == 0 and r.remaining() == 0
    elapsed, _, hours, mins, secs, hunds, tz, _, day, month, year, weekday = box.value
    assert (elapsed, hours, mins, secs, hunds, tz) == (1_700_000_000, 22, 13, 20, 25, 0)
    assert (day, month, year, weekday) == (14, 11, 2023, 2)  # a Tuesday


def test_lsa_get_user_name():
    w = Writer()
    w.deferring(lambda: w.pointer(None))
    w.deferring(lambda: w.pointer(None))
    w.deferring(lambda: w.pointer(lambda: w.pointer(None)))
    out = lsarpc.get_user_name(Call(45, w.getvalue(), False, FACTS))
    r = Reader(out)
    account = r.deferring(lambda: r.pointer(r.lsa_string))
    authority = r.deferring(lambda: r.pointer(lambda: r.pointer(r.lsa_string)))
    assert r.deferring(r.u32) == 0 and r.remaining() == 0
    assert account.value.value == "alice" and authority.value.value.value == "HNTEST"


# -- Samba's NDR parser reads what the services write ---------------------------------
#
# ndrdump (samba-testsuite, installed by scripts/setup.sh) is Samba's IDL-generated
# NDR/NDR64 parser run on a file: an independent reader of every request these
# tests build and of every answer the services give, in both transfer syntaxes.

HANDLE = b"\x00" * 4 + bytes(range(16))


def _handle_stub(w: Writer) -> None:
    w.deferring(lambda: w.raw(HANDLE))


def _lookup_names_stub(version: int, ndr64: bool) -> bytes:
    names = ["HNTEST\\alice", "Everyone", "nobody-here"]
    w = Writer(ndr64)
    _handle_stub(w)
    w.deferring(lambda: w.u32(len(names)))

    def array():
        w.count(len(names))
        for name in names:
            w.lsa_string(name)
    w.deferring(array)
    w.deferring(lambda: (w.align(w.ptr_align), w.u32(0), w.pointer(None),
                         w.end_struct(w.ptr_align)))
    w.deferring(lambda: w.enum16(1))
    w.deferring(lambda: w.u32(0))
    if version >= 2:
        w.deferring(lambda: w.u32(0))
        w.deferring(lambda: w.u32(2))
    return w.getvalue()


def _lookup_sids_stub(version: int, ndr64: bool) -> bytes:
    sids = [lsarpc.Directory(FACTS).name("alice").sid, bytes.fromhex("010100000000000100000000"),
            bytes.fromhex("010400000000000515000000010000000200000003000000")]
    w = Writer(ndr64)
    _handle_stub(w)

    def sid_array():
        w.align(w.ptr_align)
        w.u32(len(sids))

        def pointers():
            w.count(len(sids))
            for sid in sids:
                w.pointer(lambda sid=sid: w.sid(sid))
        w.pointer(pointers)
        w.end_struct(w.ptr_align)
    w.deferring(sid_array)
    w.deferring(lambda: (w.align(w.ptr_align), w.u32(0), w.pointer(None),
                         w.end_struct(w.ptr_align)))
    w.deferring(lambda: w.enum16(1))
    w.deferring(lambda: w.u32(0))
    if version >= 2:
        w.deferring(lambda: w.u32(0))
        w.deferring(lambda: w.u32(2))
    return w.getvalue()


def _open_policy2_stub(ndr64: bool) -> bytes:
    w = Writer(ndr64)
    w.deferring(lambda: w.pointer(lambda: w.string("\\\\HNTEST")))

    def attr():
        w.align(w.ptr_align)
        w.count(24)  # uint3264
        w.pointer(None)
        w.pointer(None)
        w.u32(0)
        w.pointer(None)
        w.pointer(lambda: (w.align(w.ptr_align), w.count(12), w.enum16(2), w.u8(1), w.u8(0),
                           w.end_struct(w.ptr_align)))
        w.end_struct(w.ptr_align)
    w.deferring(attr)
    w.deferring(lambda: w.u32(0x02000000))
    return w.getvalue()


def _query_policy_stub(level: int, ndr64: bool) -> bytes:
    w = Writer(ndr64)
    _handle_stub(w)
    w.deferring(lambda: w.enum16(level))
    return w.getvalue()


def _get_info_stub(share: str, level: int, ndr64: bool) -> bytes:
    w = Writer(ndr64)
    w.deferring(lambda: w.pointer(lambda: w.string("\\\\HNTEST")))
    w.deferring(lambda: w.string(share))
    w.deferring(lambda: w.u32(level))
    return w.getvalue()


def _disk_enum_stub(ndr64: bool) -> bytes:
    w = Writer(ndr64)
    w.deferring(lambda: w.pointer(None))
    w.deferring(lambda: w.u32(0))
    w.deferring(lambda: (w.align(w.ptr_align), w.u32(0), w.pointer(None),
                         w.end_struct(w.ptr_align)))
    w.deferring(lambda: w.u32(26))
    w.deferring(lambda: w.pointer(lambda: w.u32(0)))
    return w.getvalue()


def _user_name_stub(ndr64: bool) -> bytes:
    w = Writer(ndr64)
    w.deferring(lambda: w.pointer(None))
    w.deferring(lambda: w.pointer(None))
    w.deferring(lambda: w.pointer(lambda: w.pointer(None)))
    return w.getvalue()


def _ndrdump_cases():
    for level in (0, 1, 2, 501, 502):
        yield ("srvsvc", "srvsvc_NetShareEnumAll", srvsvc.INTERFACE, 15,
               lambda n, level=level: enum_stub(level, n), ["'data'", "'IPC$'"])
    for level in (0, 1, 2, 501, 502, 1004, 1005, 1006, 1501):
        yield ("srvsvc", "srvsvc_NetShareGetInfo", srvsvc.INTERFACE, 16,
               lambda n, level=level: _get_info_stub("data", level, n), ["WERR_OK"])
    for level in (100, 101, 102):
        yield ("srvsvc", "srvsvc_NetSrvGetInfo", srvsvc.INTERFACE, 21,
               lambda n, level=level: srv_get_info_stub(level, n), ["'HNTEST'"])
        yield ("wkssvc", "wkssvc_NetWkstaGetInfo", wkssvc.INTERFACE, 0,
               lambda n, level=level: srv_get_info_stub(level, n), ["'WORKGROUP'"])
    yield ("srvsvc", "srvsvc_NetDiskEnum", srvsvc.INTERFACE, 23, _disk_enum_stub,
           ["'C:'", "totalentries             : *"])
    yield ("srvsvc", "srvsvc_NetRemoteTOD", srvsvc.INTERFACE, 28,
           lambda n: bytes(8 if n else 4), ["WERR_OK"])
    yield ("lsarpc", "lsa_OpenPolicy2", lsarpc.INTERFACE, 44, _open_policy2_stub,
           ["NT_STATUS_OK"])
    for level in (3, 5, 6, 12, 14):
        yield ("lsarpc", "lsa_QueryInfoPolicy", lsarpc.INTERFACE, 7,
               lambda n, level=level: _query_policy_stub(level, n), ["NT_STATUS_OK"])
    for opnum, func, version in ((14, "lsa_LookupNames", 1), (58, "lsa_LookupNames2", 2),
                                 (68, "lsa_LookupNames3", 3)):
        yield ("lsarpc", func, lsarpc.INTERFACE, opnum,
               lambda n, version=version: _lookup_names_stub(version, n),
               ["'HNTEST'", "SID_NAME_USER", "SID_NAME_UNKNOWN", "STATUS_SOME_UNMAPPED"])
    for opnum, func, version in ((15, "lsa_LookupSids", 1), (57, "lsa_LookupSids2", 2)):
        yield ("lsarpc", func, lsarpc.INTERFACE, opnum,
               lambda n, version=version: _lookup_sids_stub(version, n),
               ["'alice'", "'Everyone'", "'S-1-5-21-1-2-3'", "STATUS_SOME_UNMAPPED"])
    yield ("lsarpc", "lsa_GetUserName", lsarpc.INTERFACE, 45, _user_name_stub, ["'alice'"])
    yield ("lsarpc", "lsa_Close", lsarpc.INTERFACE, 0,
           lambda n: _handle_only(n), ["NT_STATUS_OK"])


def _handle_only(ndr64: bool) -> bytes:
    w = Writer(ndr64)
    _handle_stub(w)
    return w.getvalue()


def _ndrdump(ndr64: bool, iface: str, func: str, direction: str, path, context=None) -> str:
    args = ["ndrdump", *(["--ndr64"] if ndr64 else []), iface, func, direction, str(path)]
    if context is not None:
        args += ["--context-file", str(context)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=30)
    return done.stdout + done.stderr


@pytest.mark.parametrize("ndr64", [False, True], ids=["ndr", "ndr64"])
def test_samba_ndrdump_reads_requests_and_answers(tmp_path, ndr64):
    failures = []
    for i, (iface, func, interface, opnum, stub, expect) in enumerate(_ndrdump_cases()):
        request = stub(ndr64)
        answer = interface.invoke(Call(opnum, request, ndr64, FACTS, {HANDLE}))
        (tmp_path / f"{i}.in").write_bytes(request)
        (tmp_path / f"{i}.out").write_bytes(answer)
        # The request is pulled too, as the context the answer is read in.
        seen = _ndrdump(ndr64, iface, func, "out", tmp_path / f"{i}.out", tmp_path / f"{i}.in")
        if "dump OK" not in seen or "unread bytes" in seen \
                or not all(e in seen for e in expect):
            failures.append(f"{func} answer {i}: {seen[-1500:]}")
    assert not failures, "\n".join(failures)


def test_lsa_policy_handles_per_pipe_are_bounded():
    handles: set[bytes] = set()
    stub = _open_policy2_stub(False)
    for _ in range(lsarpc.MAX_HANDLES):
        out = lsarpc.INTERFACE.invoke(Call(44, stub, False, FACTS, handles))
        assert out[-4:] == bytes(4)
    out = lsarpc.INTERFACE.invoke(Call(44, stub, False, FACTS, handles))
    assert out == bytes(20) + struct.pack("<I", lsarpc.STATUS_INSUFFICIENT_RESOURCES)
    assert len(handles) == lsarpc.MAX_HANDLES
