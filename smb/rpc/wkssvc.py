"""wkssvc (MS-WKST): NetWkstaGetInfo, levels 100, 101 and 102."""

from __future__ import annotations

from smb.rpc import srvsvc
from smb.rpc.interface import Call, Facts, Interface, uuid_syntax
from smb.rpc.ndr import Writer

WERR_OK = 0
WERR_INVALID_LEVEL = 0x0000007C


def _info(w: Writer, level: int, facts: Facts) -> None:
    w.align(w.ptr_align)
    w.u32(srvsvc.PLATFORM_ID_NT)
    w.pointer(lambda: w.string(facts.netbios_name))
    w.pointer(lambda: w.string(facts.workgroup))
    w.u32(srvsvc.VERSION[0])
    w.u32(srvsvc.VERSION[1])
    if level >= 101:
        w.pointer(lambda: w.string("C:\\"))  # lan_root
    if level == 102:
        w.u32(0)  # logged-on users: nobody logs on to a file server
    w.end_struct(w.ptr_align)


def net_wksta_get_info(call: Call) -> bytes:
    """Opnum 0."""
    r = call.reader()
    r.deferring(lambda: r.pointer(r.string))  # server_name
    level = r.deferring(r.u32)
    known = level in (100, 101, 102)
    w = call.writer()

    def info() -> None:
        w.union_switch(level)
        w.pointer((lambda: _info(w, level, call.facts)) if known else None)
        w.end_struct(w.ptr_align)
    w.deferring(info)
    w.deferring(lambda: w.u32(WERR_OK if known else WERR_INVALID_LEVEL))
    return w.getvalue()


INTERFACE = Interface("wkssvc", uuid_syntax("6bffd098-a112-3610-9833-46c3f87e345a", 1),
                      {0: net_wksta_get_info})
