"""IOCTL: the FSCTLs clients need from a plain file server."""

from __future__ import annotations

import struct

import trio

from hanode.net.addresses import local_addresses
from smb.durable import resiliency_timeout
from smb.server.handler import CommandContext, Reply, Request
from smb.server import copychunk, durable_opens, sparse
from smb.server.opens import CommandError, Open, open_of
from smb.wire import ioctl as wire
from smb.wire.header import Status

_LINK_SPEED = 10_000_000_000  # reported, not measured: clients only rank interfaces by it


def _interfaces() -> list[wire.NetworkInterface]:
    """Every address of the host, by its interface's index."""
    return [wire.NetworkInterface(index, address, _LINK_SPEED)
            for index, address in local_addresses()]


def _validate_negotiate(ctx: CommandContext, data: memoryview) -> bytes:
    """MS-SMB2 3.3.5.15.12: the client's view of NEGOTIATE must match ours."""
    conn = ctx.connection
    v = wire.parse_validate_negotiate(data)
    if (v.capabilities != conn.client_capabilities or v.guid != conn.client_guid
            or v.security_mode != conn.client_security_mode
            or tuple(v.dialects) != tuple(conn.client_dialects)):
        raise CommandError(Status.ACCESS_DENIED)
    return wire.validate_negotiate_response(conn.server_capabilities, conn.server_guid,
                                            conn.security_mode, conn.dialect)


async def _request_resiliency(ctx: CommandContext, op: Open, r: wire.IoctlRequest) -> bytes:
    """MS-SMB2 3.3.5.15.9, in its order: SMB 2.0.2 has no resiliency; a short
    input or a timeout above the maximum is INVALID_PARAMETER.  A directory is
    refused with INVALID_PARAMETER too (the spec names no status; NOT_SUPPORTED
    would make the Linux client stop asking for its files too)."""
    if ctx.connection.dialect == 0x0202:
        raise CommandError(Status.INVALID_DEVICE_REQUEST)
    timeout = resiliency_timeout(wire.parse_resiliency_request(r.input))
    if timeout is None or op.is_dir:
        raise CommandError(Status.INVALID_PARAMETER)
    await durable_opens.make_resilient(ctx, op, timeout)
    return b""


def _on_open(op: Open, r: wire.IoctlRequest) -> bytes:
    """The FSCTLs answered from one open alone."""
    if r.ctl_code == wire.FSCTL_CREATE_OR_GET_OBJECT_ID:
        # A stable object id from the inode: clients use it to track a file.
        return wire.object_id(struct.pack("<QQ", op.ino, op.dev))
    if r.ctl_code == wire.FSCTL_SRV_REQUEST_RESUME_KEY:
        return wire.resume_key_response(copychunk.resume_key(op))
    if r.ctl_code == wire.FSCTL_GET_COMPRESSION:
        return struct.pack("<H", wire.COMPRESSION_FORMAT_NONE)
    if r.ctl_code == wire.FSCTL_SET_COMPRESSION:
        # Nothing is compressed; asking for "none" is the one request that holds.
        if len(r.input) < 2:
            raise CommandError(Status.INVALID_PARAMETER)
        if struct.unpack_from("<H", r.input)[0] != wire.COMPRESSION_FORMAT_NONE:
            raise CommandError(Status.NOT_SUPPORTED)
        return b""
    raise CommandError(Status.NOT_SUPPORTED)


async def ioctl(ctx: CommandContext, req: Request) -> Reply:
    r = wire.parse_ioctl(req.body, req.message)
    if not r.flags & wire.IOCTL_IS_FSCTL:
        raise CommandError(Status.NOT_SUPPORTED)
    if r.ctl_code in (wire.FSCTL_DFS_GET_REFERRALS, wire.FSCTL_DFS_GET_REFERRALS_EX):
        raise CommandError(Status.FS_DRIVER_REQUIRED)  # 3.3.5.15.2: not a DFS server
    if r.ctl_code == wire.FSCTL_VALIDATE_NEGOTIATE_INFO:
        output = _validate_negotiate(ctx, r.input)
    elif r.ctl_code == wire.FSCTL_QUERY_NETWORK_INTERFACE_INFO:
        output = wire.network_interfaces(await trio.to_thread.run_sync(_interfaces))
    else:
        op = open_of(ctx, req, r.file_id)  # a stale handle is reported before the FSCTL
        if r.ctl_code in (wire.FSCTL_SRV_COPYCHUNK, wire.FSCTL_SRV_COPYCHUNK_WRITE):
            return await copychunk.copychunk(ctx, r, op)
        if r.ctl_code in sparse.CODES:
            return await sparse.fsctl(op, r)
        if r.ctl_code == wire.FSCTL_LMR_REQUEST_RESILIENCY:
            output = await _request_resiliency(ctx, op, r)
        else:
            output = _on_open(op, r)
    if len(output) > r.max_output:
        raise CommandError(Status.BUFFER_TOO_SMALL)
    return Reply(body=wire.ioctl_response(r.ctl_code, r.file_id, output))
