"""srvsvc (MS-SRVS): the share list and server information clients browse.

NetShareEnumAll (levels 0, 1, 2, 501, 502), NetShareGetInfo (the same and
1004, 1005, 1006, 1501) and NetSrvGetInfo (100, 101, 102), NetDiskEnum and NetRemoteTOD.  Errors are the
WERROR codes Windows and Samba return, in the stub, not faults.
"""

from __future__ import annotations

import time
from typing import Callable

from smb.rpc.interface import Call, Facts, Interface, ShareFacts, uuid_syntax
from smb.rpc.ndr import NdrError, Reader, Writer
from smb.wire import security as sec

WERR_OK = 0
WERR_INVALID_NAME = 0x0000007B
WERR_INVALID_LEVEL = 0x0000007C

PLATFORM_ID_NT = 500
# Reported as Samba does for a standalone server (the SMB dialect says the rest).
VERSION = (6, 1)
# SV_TYPE_WORKSTATION | SERVER | SERVER_UNIX | NT | SERVER_NT | (potential browser off)
SERVER_TYPE = 0x00000001 | 0x00000002 | 0x00000800 | 0x00001000 | 0x00008000
_FULL_ACCESS = 0x001F01FF
_READ_ACCESS = 0x001200A9

_ENUM_LEVELS = (0, 1, 2, 501, 502)
_INFO_LEVELS = (0, 1, 2, 501, 502, 1004, 1005, 1006, 1501)


def _server_name(r: Reader) -> None:
    """The ``[in,unique,string] server_unc`` every call starts with (value unused)."""
    r.deferring(lambda: r.pointer(r.string))


def share_sd(share: ShareFacts) -> bytes:
    mask = _READ_ACCESS if share.read_only else _FULL_ACCESS
    dacl = sec.Acl((sec.Ace(sec.ACCESS_ALLOWED_ACE_TYPE, 0, mask, sec.EVERYONE),))
    return sec.SecurityDescriptor(dacl=dacl).encode()


def _sd_buf(w: Writer, sd: bytes) -> None:
    """sec_desc_buf: size, then a unique pointer to the descriptor's bytes."""
    w.align(w.ptr_align)
    w.u32(len(sd))

    def data() -> None:
        w.count(len(sd))
        w.raw(sd)
    w.pointer(data if sd else None)
    w.end_struct(w.ptr_align)


def _share_info(w: Writer, level: int, s: ShareFacts) -> None:
    """The scalars of one SHARE_INFO_<level> (pointees follow with the frame)."""
    if level in (1005, 1006):
        w.u32(0 if level == 1005 else 0xFFFFFFFF)  # no DFS flags; unlimited users
        w.end_struct(4)
        return
    if level == 1501:
        _sd_buf(w, share_sd(s))
        return
    w.align(w.ptr_align)
    if level == 1004:
        w.pointer(lambda: w.string(s.comment))
        w.end_struct(w.ptr_align)
        return
    w.pointer(lambda: w.string(s.name))
    if level != 0:
        w.u32(s.type)
        w.pointer(lambda: w.string(s.comment))
    if level == 501:
        w.u32(0)  # csc_policy: manual caching
    if level in (2, 502):
        w.u32(0)  # permissions (share-level security is not used)
        w.u32(0xFFFFFFFF)  # max_users: unlimited
        w.u32(0)  # current_users
        w.pointer(lambda: w.string(s.path))
        w.pointer(None)  # password
    if level == 502:
        _sd_buf(w, share_sd(s))  # MS-SRVS calls its size field shi502_reserved
    w.end_struct(w.ptr_align)


def _share_array(w: Writer, level: int, shares: tuple[ShareFacts, ...]) -> None:
    """SHARE_INFO_<level>_CONTAINER: count, then a pointer to the array."""
    w.align(w.ptr_align)
    w.u32(len(shares))

    def array() -> None:
        w.count(len(shares))
        for s in shares:
            _share_info(w, level, s)
    w.pointer(array if shares else None)
    w.end_struct(w.ptr_align)


def _no_entries() -> None:
    raise NdrError("a share container sent with entries")


def _read_enum_ctr(r: Reader) -> int:
    """SHARE_ENUM_STRUCT as the client sends it: the level and an empty container."""
    r.align(r.ptr_align)
    level = r.u32()
    if r.union_switch() != level:
        raise NdrError("share container level and union discriminant differ")
    if level in _INFO_LEVELS:
        r.align(r.ptr_align)

        def container() -> None:
            r.align(r.ptr_align)
            r.u32()
            r.pointer(_no_entries)
            r.end_struct(r.ptr_align)
        r.pointer(container)
    r.end_struct(r.ptr_align)
    return level


def net_share_enum_all(call: Call) -> bytes:
    """Opnum 15; NetShareEnum (opnum 36) has the same shape."""
    r = call.reader()
    _server_name(r)
    level = r.deferring(lambda: _read_enum_ctr(r))
    r.deferring(r.u32)  # PreferedMaximumLength: every share fits in one answer
    resume = r.deferring(lambda: r.pointer(r.u32))
    shares = call.facts.shares
    known = level in _ENUM_LEVELS
    w = call.writer()

    def ctr() -> None:
        w.align(w.ptr_align)
        w.u32(level)
        w.union_switch(level)
        if level in _INFO_LEVELS:
            w.align(w.ptr_align)
            w.pointer((lambda: _share_array(w, level, shares)) if known else None)
        w.end_struct(w.ptr_align)
    w.deferring(ctr)
    w.deferring(lambda: w.u32(len(shares) if known else 0))
    w.deferring(lambda: w.pointer((lambda: w.u32(0)) if resume.value is not None else None))
    w.deferring(lambda: w.u32(WERR_OK if known else WERR_INVALID_LEVEL))
    return w.getvalue()


def net_share_get_info(call: Call) -> bytes:
    """Opnum 16."""
    r = call.reader()
    _server_name(r)
    name = r.deferring(r.string)  # [in,string] wchar share name (a ref pointer: inline)
    level = r.deferring(r.u32)
    share = call.facts.share(name)
    w = call.writer()
    if level not in _INFO_LEVELS:
        status = WERR_INVALID_LEVEL
    elif share is None:
        status = WERR_INVALID_NAME
    else:
        status = WERR_OK

    def info() -> None:
        w.union_switch(level)
        if level in _INFO_LEVELS:
            w.align(w.ptr_align)
            w.pointer((lambda: w.deferring(lambda: _share_info(w, level, share)))
                      if share is not None and status == WERR_OK else None)
        w.end_struct(w.ptr_align)
    w.deferring(info)
    w.deferring(lambda: w.u32(status))
    return w.getvalue()


def _server_info(w: Writer, level: int, facts: Facts) -> None:
    w.align(w.ptr_align)
    w.u32(PLATFORM_ID_NT)
    w.pointer(lambda: w.string(facts.netbios_name))
    if level >= 101:
        w.u32(VERSION[0])
        w.u32(VERSION[1])
        w.u32(SERVER_TYPE)
        w.pointer(lambda: w.string(facts.comment))
    if level == 102:
        w.u32(0)  # users
        w.u32(15)  # disc: idle minutes before autodisconnect
        w.u32(0)  # hidden
        w.u32(240)  # announce
        w.u32(3000)  # anndelta
        w.u32(0)  # licenses
        w.pointer(lambda: w.string("C:\\"))  # userpath
    w.end_struct(w.ptr_align)


def net_srv_get_info(call: Call) -> bytes:
    """Opnum 21."""
    r = call.reader()
    _server_name(r)
    level = r.deferring(r.u32)
    known = level in (100, 101, 102)
    w = call.writer()

    def info() -> None:
        w.union_switch(level)
        w.pointer((lambda: _server_info(w, level, call.facts)) if known else None)
        w.end_struct(w.ptr_align)
    w.deferring(info)
    w.deferring(lambda: w.u32(WERR_OK if known else WERR_INVALID_LEVEL))
    return w.getvalue()


DISKS = ("C:", "")  # every share path is shown on C: (see ShareFacts.path); "" ends the list


def _read_disk_info(r: Reader) -> None:
    """The DISK_ENUM_CONTAINER a client sends: no entries."""
    r.align(r.ptr_align)
    r.u32()
    r.pointer(_no_entries)
    r.end_struct(r.ptr_align)


def net_disk_enum(call: Call) -> bytes:
    """Opnum 23: the disks the server's paths live on, as Samba answers."""
    r = call.reader()
    _server_name(r)
    level = r.deferring(r.u32)
    r.deferring(lambda: _read_disk_info(r))
    r.deferring(r.u32)  # maxlen
    resume = r.deferring(lambda: r.pointer(r.u32))
    disks = DISKS if level == 0 else ()
    w = call.writer()

    def info() -> None:
        w.align(w.ptr_align)
        w.u32(len(disks))

        def array() -> None:
            w.count(len(disks))  # conformant
            w.count(0)  # and varying
            w.count(len(disks))
            for disk in disks:
                text = (disk + "\x00").encode("utf-16-le")
                w.u32(0)  # a [string] WCHAR[3]: offset, length, characters
                w.u32(len(text) // 2)
                w.raw(text)
                w.end_struct(4)
        w.pointer(array if disks else None)
        w.end_struct(w.ptr_align)
    w.deferring(info)
    w.deferring(lambda: w.u32(len(disks)))
    w.deferring(lambda: w.pointer((lambda: w.u32(0)) if resume.value is not None else None))
    w.deferring(lambda: w.u32(WERR_OK if level == 0 else WERR_INVALID_LEVEL))
    return w.getvalue()


def net_remote_tod(call: Call) -> bytes:
    """Opnum 28: the server's time of day, in UTC."""
    r = call.reader()
    _server_name(r)
    now = call.facts.now
    t = time.gmtime(now)
    w = call.writer()

    def info() -> None:
        w.u32(int(now))  # elapsed: seconds since 1970
        w.u32(int(now * 1000) & 0xFFFFFFFF)  # msecs: a millisecond counter
        for value in (t.tm_hour, t.tm_min, t.tm_sec, int(now * 100) % 100):
            w.u32(value)
        w.u32(0)  # timezone: minutes west of UTC
        w.u32(310)  # tinterval: clock tick in 0.0001 s, as Windows reports it
        for value in (t.tm_mday, t.tm_mon, t.tm_year, (t.tm_wday + 1) % 7):
            w.u32(value)
    w.deferring(lambda: w.pointer(info))
    w.deferring(lambda: w.u32(WERR_OK))
    return w.getvalue()


_OPERATIONS: dict[int, Callable[[Call], bytes]] = {
    15: net_share_enum_all,
    16: net_share_get_info,
    21: net_srv_get_info,
    23: net_disk_enum,
    28: net_remote_tod,
    36: net_share_enum_all,
}

INTERFACE = Interface("srvsvc", uuid_syntax("4b324fc8-1670-01d3-1278-5a47bf6ee188", 3),
                      _OPERATIONS)
